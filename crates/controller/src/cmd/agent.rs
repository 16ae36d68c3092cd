//! `caracal agent`: runs the datastore (Kubernetes API or a manifest directory) and, for now,
//! logs each new model; the reconcilers subscribe to the same snapshots.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;

use crate::datastore::{self, Datastore, KubeOptions, Snapshot};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// kubeconfig to use; without it (and without --manifests), $KUBECONFIG, ~/.kube/config or
    /// the in-cluster service account.
    #[arg(long, conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// Read the model from a directory of manifests instead of the API server, and watch it.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// This node's name (default: $NODE_NAME, as a DaemonSet sets it from spec.nodeName).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Milliseconds to gather API events into one model update.
    #[arg(long, default_value_t = 50)]
    pub debounce_ms: u64,
    /// Write no status: neither the Valid condition of GlobalPolicies nor this node's
    /// CaracalNodeStatus and BGP session events.
    #[arg(long)]
    pub no_status: bool,
    /// The agent's configuration file (folders, pod CIDRs, BGP); see `crate::agent::config`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only follow the datastore and log the model: program no iptables, ipsets or BGP.
    #[arg(long)]
    pub no_dataplane: bool,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    rt.block_on(agent(args))
}

/// Builds the kube client from `--kubeconfig`/`--context`, or infers it (kubeconfig from the
/// environment, else in-cluster).
pub async fn kube_client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            let options = kube::config::KubeConfigOptions {
                context: context.map(str::to_string),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("use kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found and not running in a cluster")?,
    };
    kube::Client::try_from(config).context("create the Kubernetes client")
}

async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => crate::agent::AgentConfig::load(path)?,
        None => crate::agent::AgentConfig::default(),
    };
    let node = match args
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .or_else(|| Some(config.node_name.clone()))
    {
        Some(n) if !n.is_empty() => n,
        _ => anyhow::bail!("the node name is required: --node-name, $NODE_NAME or node_name in --config"),
    };
    config.node_name = node.clone();
    let manifests = args.manifests.clone().or_else(|| config.manifests.clone());
    let metrics = crate::metrics::Metrics::new();
    let mut status_client = None;
    let mut lb_client = None;
    let ds: Datastore = match &manifests {
        Some(dir) => datastore::watch_dir(dir, Duration::from_millis(500))
            .await
            .with_context(|| format!("read manifests from {}", dir.display()))?,
        None => {
            let client = kube_client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
            lb_client = Some(client.clone());
            tracing::info!(%node, "watching the Kubernetes API");
            status_client = (!args.no_status).then(|| client.clone());
            let options = KubeOptions {
                debounce: Duration::from_millis(args.debounce_ms),
                report_status: !args.no_status,
                // The DaemonSet sets it from metadata.namespace: BGP passwords' Secrets live there.
                namespace: std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| datastore::kube::DEFAULT_NAMESPACE.to_string()),
                metrics: metrics.datastore.clone(),
                ..Default::default()
            };
            tokio::select! {
                ds = datastore::watch_kube(client, options) => ds,
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    };
    let mut rx = ds.subscribe();
    log_model(&node, &rx.borrow_and_update().clone());
    if !args.no_dataplane {
        let log_rx = rx.clone();
        let log_node = node.clone();
        tokio::spawn(async move {
            let mut rx = log_rx;
            while rx.changed().await.is_ok() {
                log_model(&log_node, &rx.borrow_and_update().clone());
            }
        });
        // The node status reports what the reconcilers do: only with a dataplane.
        let writer = status_client
            .map(|c| tokio::spawn(crate::nodestatus::writer::run(c, node.clone(), metrics.clone())));
        let result = crate::agent::run(config, rx, metrics, lb_client).await;
        if let Some(w) = writer {
            w.abort();
        }
        result?;
        drop(ds);
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the datastore stopped");
                }
                log_model(&node, &rx.borrow_and_update().clone());
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted, stopping");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn log_model(node: &str, snapshot: &Arc<Snapshot>) {
    let local_pods = snapshot
        .cluster
        .pods
        .values()
        .filter(|p| p.node.as_deref() == Some(node))
        .count();
    match snapshot.nodes.get(node) {
        Some(n) => tracing::info!(
            %node,
            pod_cidrs = ?n.pod_cidrs,
            local_pods,
            "model: {}",
            snapshot.summary()
        ),
        None => tracing::info!(%node, local_pods, "model (this node not listed): {}", snapshot.summary()),
    }
    for (name, reason) in &snapshot.rejected {
        tracing::warn!(globalpolicy = %name, "ignored: {reason}");
    }
    for (object, reason) in &snapshot.rejected_bgp {
        tracing::warn!(%object, "ignored: {reason}");
    }
}
