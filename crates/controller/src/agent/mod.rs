//! The node agent: one desired-state model in, one reconciler per dataplane out.
//!
//! ```text
//!  datastore (kube-rs reflectors | manifest dir) ─┐
//!                                                  ├─► compile ─► iptables/ipset applier
//!  CNI endpoint records (/var/run/caracal/...) ───┘
//!  Nodes, BGPConfiguration, BGPPeers, Secrets ─► BGP speaker (originate this node's pod
//!  CIDRs; sessions from the BGP objects, or the ConfigMap's peers and node mesh)
//!  Services, EndpointSlices ─► service routes ─► BGP speaker (originate, keep out of the kernel)
//!  pod pools, Node pod CIDRs, Service ranges ─► outgoing NAT (nat table, ipsets)
//! ```
//!
//! Nothing is programmed before the datastore has delivered its first complete snapshot, so a
//! restart never writes a ruleset built from half a cluster. Until the first apply succeeded,
//! the readiness file the CNI plugin's STATUS checks is absent, so the runtime starts no pods.

pub mod bgp;
pub mod cni;
pub mod config;
pub mod health;
pub mod nat;
pub mod policy;
pub mod reconcile;
pub mod services;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::watch;

pub use bgp::{pod_cidrs, reconcile_bgp, speaker_config};
pub use cni::{reconcile_cni_config, write_cni_config};
pub use config::AgentConfig;
pub use policy::{
    PolicyReconciler, PolicyStep, local_address_overrides, read_endpoints, reconcile_policy,
    with_local_addresses,
};
pub use services::{reconcile_services, service_routes};

use crate::datastore::Snapshot;

/// Runs every reconciler against `snapshots` until SIGINT or SIGTERM, counting into `metrics`;
/// with a `client` and `lb_ipam`, also the LoadBalancer IP allocator's election and controller.
pub async fn run(
    config: AgentConfig,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: crate::metrics::Metrics,
    client: Option<kube::Client>,
) -> Result<()> {
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let health = health::Health::default();
    if !config.pod_pools.is_empty() {
        let h = health.register("nat", "outgoing NAT not applied yet");
        tasks.spawn(nat::reconcile_nat(config.clone(), snapshots.clone(), h));
    }
    if config.policy {
        let h = health.register("policy", "the first snapshot is not applied yet");
        tasks.spawn(reconcile_policy(
            config.clone(),
            snapshots.clone(),
            h,
            metrics.policy.clone(),
        ));
    }
    let h = health.register("cni-config", "not written yet");
    tasks.spawn(reconcile_cni_config(config.clone(), snapshots.clone(), h));
    if config.bgp.is_none() && !config.services.is_empty() {
        tracing::warn!("services: ranges are configured but there is no bgp section: nothing is advertised");
    }
    // The first value is computed here, so the speaker starts with this node's Service routes.
    let (routes_tx, routes_rx) = watch::channel(service_routes(&config, &snapshots.borrow()));
    let h = health.register("services", "the first snapshot is not read yet");
    tasks.spawn(reconcile_services(
        config.clone(),
        snapshots.clone(),
        routes_tx,
        h,
    ));
    let lb_stop = stop_rx.clone();
    let h = health.register("bgp", "the speaker is not configured yet");
    tasks.spawn(reconcile_bgp(
        config.clone(),
        snapshots.clone(),
        routes_rx,
        stop_rx.clone(),
        h,
        metrics.bgp.clone(),
    ));
    // Outside the JoinSet: it retries on its own, and on stop it releases its Lease.
    let lb_ipam = match client.filter(|_| config.lb_ipam) {
        Some(client) => {
            let h = health.register("lb-ipam", "starting");
            let settings = crate::lbipam::Settings::for_node(&config.node_name);
            Some(tokio::spawn(crate::lbipam::run(client, settings, lb_stop, h)))
        }
        None => None,
    };
    // Not one of the reconcilers: it never ends on its own, and its failure to bind is fatal.
    let health_server = match config.health_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("health endpoint on {addr}"))?;
            drop(listener);
            Some(tokio::spawn(health::serve(health.clone(), addr)))
        }
        None => None,
    };
    let metrics_server = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics endpoint on {addr}"))?;
            Some(tokio::spawn(crate::metrics::server::serve_metrics(
                metrics.clone(),
                listener,
            )))
        }
        None => None,
    };
    let observer = tokio::spawn(crate::metrics::observe::run(
        metrics.clone(),
        config.endpoints_dir.clone(),
        crate::metrics::observe::PERIOD,
        stop_rx,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            done = tasks.join_next() => match done {
                None => break Ok(()),
                Some(Ok(Ok(()))) => continue,
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(e)) => break Err(e.into()),
            },
        }
    };
    tracing::info!("agent stopping");
    let _ = stop_tx.send(true);
    // The BGP reconciler says goodbye to its peers (or keeps routes for a graceful restart);
    // the others are stopped where they are: rules stay in place while the agent is away.
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tasks.join_next() => {}
        }
        // Only BGP ends on stop; the others (policy, NAT, CNI config, services) are not waited for.
        let lingering = usize::from(config.policy) + usize::from(!config.pod_pools.is_empty()) + 2;
        if config.bgp.is_none() || tasks.len() <= lingering {
            break;
        }
    }
    tasks.abort_all();
    if let Some(h) = lb_ipam {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    if let Some(h) = health_server {
        h.abort();
    }
    if let Some(h) = metrics_server {
        h.abort();
    }
    observer.abort();
    result
}

/// Where the agent keeps its files by default.
pub fn default_run_dir() -> PathBuf {
    PathBuf::from("/var/run/caracal")
}
