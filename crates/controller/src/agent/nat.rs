//! The outgoing-NAT reconciler: the pools, every node's pod CIDRs and the Service ranges in, the
//! nat table's `CARACAL-POSTROUTING` chain and its two sets per family out
//! ([`crate::dataplane::nat`]). Applies when the program changes, reads the kernel back and
//! repairs it every `policy_resync_secs`, and retries a failed apply every 10 s.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::reconcile::{self, Next, Reconcile, Schedule, Wake};
use super::{AgentConfig, health};
use crate::{
    dataplane::nat::NatApplier,
    datastore::Snapshot,
    nat::{self, NatProgram},
};

/// The outgoing-NAT program for `snapshot`.
pub fn nat_program(config: &AgentConfig, snapshot: &Snapshot) -> NatProgram {
    nat::desired(
        &config.pod_pools,
        snapshot.nodes.values(),
        &config.services.ranges(),
    )
}

pub async fn reconcile_nat(
    config: Arc<AgentConfig>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    health: health::LoopHealth,
) -> Result<()> {
    let applier = tokio::task::spawn_blocking(|| NatApplier::new(None, None))
        .await?
        .context("detecting iptables")?;
    let schedule = Schedule {
        tick: Duration::from_secs(10),
        resync: (config.policy_resync_secs > 0).then(|| Duration::from_secs(config.policy_resync_secs)),
    };
    let r = NatReconciler {
        config,
        applier: Some(applier),
        applied: None,
    };
    reconcile::run("outgoing NAT", r, snapshots, health, schedule).await
}

struct NatReconciler {
    config: Arc<AgentConfig>,
    /// Taken while an apply runs on the blocking pool.
    applier: Option<NatApplier>,
    /// The program the kernel holds, as far as we know.
    applied: Option<NatProgram>,
}

impl Reconcile for NatReconciler {
    async fn reconcile(&mut self, snapshot: &Arc<Snapshot>, wake: Wake) -> Result<Next> {
        let want = nat_program(&self.config, snapshot);
        let must = matches!(wake, Wake::Resync | Wake::Retry);
        if !must && self.applied.as_ref() == Some(&want) {
            return Ok(Next::Wait);
        }
        let mut a = self
            .applier
            .take()
            .expect("the applier is returned after every apply");
        let program = want.clone();
        let (a, result) = tokio::task::spawn_blocking(move || {
            let r = a.apply(&program);
            (a, r)
        })
        .await?;
        self.applier = Some(a);
        self.applied = None;
        let stats = result.context("outgoing NAT failed")?;
        if stats != Default::default() {
            tracing::info!(?stats, families = want.families.len(), "outgoing NAT applied");
        }
        self.applied = Some(want);
        Ok(Next::Wait)
    }

    fn error_policy(&self, _: &anyhow::Error) -> Duration {
        Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{Node, model::Object};

    #[test]
    fn the_program_takes_the_pools_the_nodes_and_the_service_ranges() {
        let config: AgentConfig = serde_yaml::from_str(
            "{pod_pools: [{cidr: 10.244.0.0/16, nat_outgoing: true}], services: {cluster_ips: [10.96.0.0/16]}}",
        )
        .unwrap();
        let snap = Snapshot::from_objects([Object::Node(Node {
            name: "n1".into(),
            pod_cidrs: vec!["10.245.1.0/24".parse().unwrap()],
            ..Default::default()
        })]);
        let p = nat_program(&config, &snap);
        let v4 = &p.families[&caracal_policy::program::Family::V4];
        let all: Vec<String> = v4.all.iter().map(ToString::to_string).collect();
        assert_eq!(all, ["10.96.0.0/16", "10.244.0.0/16", "10.245.1.0/24"]);
        assert!(nat_program(&AgentConfig::default(), &snap).families.is_empty());
    }
}
