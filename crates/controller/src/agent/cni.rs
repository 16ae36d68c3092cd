//! The CNI config reconciler: keeps the node's CNI config list in step with its pod CIDRs.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::reconcile::{self, Next, Reconcile, Schedule, Wake};
use super::{AgentConfig, bgp::pod_cidrs, health};
use crate::datastore::{Node, Snapshot};

/// Writes the CNI config list, rendered from its template (the plugin's built-in one, or the
/// configured file) with this node's pod CIDRs by the plugin's own installer code,
/// atomically and only when it changes.
pub fn write_cni_config(template: &str, out: &Path, node: &Node) -> Result<bool> {
    if node.pod_cidrs.is_empty() {
        anyhow::bail!("node {} has no pod CIDR yet", node.name);
    }
    let text = caracal_cni::install::render(template, &node.pod_cidrs, None)
        .map_err(|e| anyhow::anyhow!("rendering the CNI config list: {}", e.to_json("1.1.0")))?;
    if std::fs::read_to_string(out).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, out)?;
    Ok(true)
}

/// Keeps the CNI config list in step with this node's pod CIDRs.
pub async fn reconcile_cni_config(
    config: Arc<AgentConfig>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    health: health::LoopHealth,
) -> Result<()> {
    let Some(out) = config.cni_conflist.clone() else {
        health.ready();
        return Ok(());
    };
    let template = match &config.cni_conflist_template {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => caracal_cni::install::TEMPLATE.to_string(),
    };
    let schedule = Schedule {
        tick: Duration::from_secs(10),
        resync: None,
    };
    let r = CniReconciler {
        config,
        template,
        out,
    };
    reconcile::run("CNI config", r, snapshots, health, schedule).await
}

struct CniReconciler {
    config: Arc<AgentConfig>,
    template: String,
    out: PathBuf,
}

impl Reconcile for CniReconciler {
    /// Also on every tick: the file is rewritten if someone changed it.
    async fn reconcile(&mut self, snapshot: &Arc<Snapshot>, _: Wake) -> Result<Next> {
        let node = Node {
            name: self.config.node_name.clone(),
            pod_cidrs: pod_cidrs(&self.config, &snapshot.nodes),
            ..Default::default()
        };
        if node.pod_cidrs.is_empty() {
            tracing::debug!(node = %self.config.node_name, "this node is not in the datastore yet, or has no pod CIDR");
            return Ok(Next::NotReady(format!(
                "node {} has no pod CIDR yet",
                self.config.node_name
            )));
        }
        if write_cni_config(&self.template, &self.out, &node)? {
            tracing::info!(path = %self.out.display(), "CNI config written");
        }
        Ok(Next::Wait)
    }

    fn error_policy(&self, _: &anyhow::Error) -> Duration {
        Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_config_gets_the_node_pod_cidr_and_is_rewritten_only_on_change() {
        let d = tempfile::tempdir().unwrap();
        let t = caracal_cni::install::TEMPLATE;
        let out = d.path().join("net.d/10-caracal.conflist");
        let mut node = Node {
            name: "n1".into(),
            ..Default::default()
        };
        assert!(write_cni_config(t, &out, &node).is_err(), "no pod CIDR yet");
        node.pod_cidrs = vec!["10.244.1.0/24".parse().unwrap()];
        assert!(write_cni_config(t, &out, &node).unwrap());
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(
            written["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert!(!write_cni_config(t, &out, &node).unwrap());
    }
}
