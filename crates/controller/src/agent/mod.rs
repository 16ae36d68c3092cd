//! The node agent: one desired-state model in, one reconciler per dataplane out.
//!
//! ```text
//!  datastore (kube-rs reflectors | manifest dir) ─┐
//!                                                  ├─► compile ─► iptables/ipset applier
//!  CNI endpoint records (/var/run/caracal/...) ───┘
//!  Node objects ─► BGP speaker (originate this node's pod CIDRs, mesh with the other nodes)
//! ```
//!
//! Nothing is programmed before the datastore has delivered its first complete snapshot, so a
//! restart never writes a ruleset built from half a cluster. Until the first apply succeeded,
//! the readiness file the CNI plugin's STATUS checks is absent, so the runtime starts no pods.

pub mod config;
pub mod health;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use caracal_policy::model::{ClusterState, Key, LocalEndpoint, Pod};
use tokio::sync::watch;

pub use config::AgentConfig;

use crate::{
    dataplane::{Dataplane, applier::Applier},
    datastore::{Node, Snapshot},
};

/// Reads every endpoint record in `dir` through the plugin's own record type
/// ([`caracal_contract::endpoint`]); unreadable or half-written files are skipped (the plugin
/// writes them atomically, so a skipped file is one being removed), and so are attachments
/// without a pod.
pub fn read_endpoints(dir: &Path) -> Vec<LocalEndpoint> {
    let mut eps: Vec<LocalEndpoint> = caracal_contract::endpoint::read_dir(dir)
        .into_iter()
        .filter_map(|r| {
            let pod = r.pod?;
            Some(LocalEndpoint {
                pod: Key::new(pod.namespace, pod.name),
                iface: r.iface,
                ips: r.ips,
            })
        })
        .collect();
    eps.sort_by(|a, b| a.pod.cmp(&b.pod).then(a.iface.cmp(&b.iface)));
    eps
}

/// A cheap fingerprint of the endpoints folder (names and modification times), to notice a pod
/// added or removed without re-reading every record.
fn dir_fingerprint(dir: &Path) -> Vec<(String, Option<SystemTime>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().ok().and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    v.sort();
    v
}

/// The local pods the API does not yet report addresses for (the kubelet has not written
/// `status.podIPs` yet), with the addresses the CNI plugin gave them, so their policy is in
/// place before the API catches up.
pub fn local_address_overrides(cluster: &ClusterState, eps: &[LocalEndpoint]) -> BTreeMap<Key, Pod> {
    eps.iter()
        .filter_map(|ep| {
            let pod = cluster.pods.get(&ep.pod)?;
            pod.ips.is_empty().then(|| {
                let mut pod = pod.clone();
                pod.ips = ep.ips.clone();
                (ep.pod.clone(), pod)
            })
        })
        .collect()
}

/// The cluster as the compiler should see it: `cluster` with [`local_address_overrides`].
pub fn with_local_addresses<'c>(cluster: &'c ClusterState, eps: &[LocalEndpoint]) -> Cow<'c, ClusterState> {
    let overrides = local_address_overrides(cluster, eps);
    if overrides.is_empty() {
        return Cow::Borrowed(cluster);
    }
    let mut c = cluster.clone();
    c.pods.extend(overrides);
    Cow::Owned(c)
}

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

/// How one policy reconciliation went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStep {
    /// Compiled from scratch and compared whole with the kernel (the first step, a changed set
    /// of local endpoints, a resync, or the step after a failure); otherwise only the compiler's
    /// delta was rendered and applied.
    pub full: bool,
    /// The kernel was read back first (a resync).
    pub resynced: bool,
    pub compile: Duration,
    pub stats: crate::dataplane::applier::ApplyStats,
}

/// The policy side of the agent without the async loop: keeps the incremental compiler between
/// steps, so that a change costs what the change touches, not what the cluster holds. Programs
/// through a [`Dataplane`] (iptables + ipset by default).
pub struct PolicyReconciler<D: Dataplane = Applier> {
    applier: D,
    compiler: Option<caracal_policy::compile::Compiler>,
    endpoints: Vec<LocalEndpoint>,
    errors: std::collections::BTreeSet<String>,
}

impl<D: Dataplane> PolicyReconciler<D> {
    pub fn new(applier: D) -> Self {
        PolicyReconciler {
            applier,
            compiler: None,
            endpoints: Vec::new(),
            errors: Default::default(),
        }
    }

    pub fn applier(&self) -> &D {
        &self.applier
    }

    pub fn applier_mut(&mut self) -> &mut D {
        &mut self.applier
    }

    /// The program of the last successful step, if any.
    pub fn compiled_program(&self) -> Option<&caracal_policy::program::Program> {
        self.compiler.as_ref().map(|c| c.program())
    }

    /// Brings the kernel to the program of `cluster` with the local endpoints `eps`. With
    /// `resync`, the applier forgets what it programmed and reads the kernel back, so rules or
    /// sets changed behind its back are put right.
    pub fn step(
        &mut self,
        cluster: &ClusterState,
        eps: &[LocalEndpoint],
        resync: bool,
    ) -> Result<PolicyStep> {
        use caracal_policy::compile::Compiler;
        let start = Instant::now();
        let incremental = match self.compiler.as_mut() {
            // Only the few local pods without addresses in the API are copied, not the cluster.
            Some(c) if !resync && self.endpoints == eps => {
                Some(c.sync_to_with(cluster, &local_address_overrides(cluster, eps)))
            }
            _ => None,
        };
        let full = incremental.is_none();
        if full {
            let cluster_now = with_local_addresses(cluster, eps).into_owned();
            self.compiler = Some(Compiler::new(cluster_now, eps));
            self.endpoints = eps.to_vec();
        }
        let compiler = self.compiler.as_ref().expect("compiled above");
        let compile = start.elapsed();
        let errors: std::collections::BTreeSet<String> =
            compiler.errors().iter().map(ToString::to_string).collect();
        for e in errors.difference(&self.errors) {
            tracing::warn!("policy rejected: {e}");
        }
        self.errors = errors;
        if resync {
            self.applier.resync();
        }
        let result = match &incremental {
            None => self.applier.apply(compiler.program()),
            Some(delta) if delta.is_empty() => Ok(Default::default()),
            Some(delta) => self.applier.apply_delta(compiler.program(), delta),
        };
        match result {
            Ok(stats) => Ok(PolicyStep {
                full,
                resynced: resync,
                compile,
                stats,
            }),
            Err(e) => {
                // The compiler moved on but the kernel may not have: start over next time.
                self.compiler = None;
                self.applier.resync();
                Err(e.into())
            }
        }
    }
}

/// The policy reconciler: applies whenever the model or the local endpoints change, through
/// the incremental compiler's deltas, and every `policy_resync_secs` compares the whole program
/// with what the kernel holds. Runs until `snapshots` closes.
pub async fn reconcile_policy(
    config: Arc<AgentConfig>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    health: health::LoopHealth,
) -> Result<()> {
    let applier = tokio::task::spawn_blocking(|| Applier::new(None, None))
        .await?
        .context("detecting iptables")?;
    let mut reconciler = Some(PolicyReconciler::new(applier));
    let endpoints_dir = config.endpoints_dir.clone();
    let mut last_fp = None;
    let mut dirty = true;
    let mut resync_due = false;
    let mut tick = tokio::time::interval(Duration::from_millis(config.endpoint_poll_ms));
    let every = Duration::from_secs(config.policy_resync_secs.max(1));
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() { return Ok(()); }
                dirty = true;
            }
            _ = tick.tick() => {
                let fp = dir_fingerprint(&endpoints_dir);
                if last_fp.as_ref() != Some(&fp) {
                    last_fp = Some(fp);
                    dirty = true;
                }
            }
            _ = resync.tick(), if config.policy_resync_secs > 0 => {
                resync_due = true;
                dirty = true;
            }
        }
        health.beat();
        if !dirty {
            continue;
        }
        dirty = false;
        let snap = snapshots.borrow_and_update().clone();
        let eps = read_endpoints(&endpoints_dir);
        let mut r = reconciler
            .take()
            .expect("the reconciler is returned after every step");
        let full_resync = std::mem::take(&mut resync_due);
        let (r, result) = tokio::task::spawn_blocking(move || {
            let result = r.step(&snap.cluster, &eps, full_resync).map(|s| (s, eps.len()));
            (r, result)
        })
        .await?;
        reconciler = Some(r);
        match result {
            Ok((step, n)) => {
                tracing::info!(
                    endpoints = n,
                    full = step.full,
                    resync = step.resynced,
                    compile_time = ?step.compile,
                    stats = ?step.stats,
                    "policy applied"
                );
                health.ready();
                if let Some(ready) = &config.readiness_file
                    && !ready.exists()
                {
                    std::fs::write(ready, b"ok\n").with_context(|| format!("writing {}", ready.display()))?;
                }
            }
            Err(e) => {
                tracing::error!("applying policy failed, retrying: {e:#}");
                health.not_ready(format!("applying policy failed: {e:#}"));
                dirty = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Keeps the CNI config list in step with this node's pod CIDRs.
pub async fn reconcile_cni_config(
    config: Arc<AgentConfig>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
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
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let nodes = snapshots.borrow_and_update().nodes.clone();
        let node = Node {
            name: config.node_name.clone(),
            pod_cidrs: pod_cidrs(&config, &nodes),
            ..Default::default()
        };
        let node = (!node.pod_cidrs.is_empty()).then_some(node);
        match node.map(|n| write_cni_config(&template, &out, &n)) {
            Some(Ok(written)) => {
                if written {
                    tracing::info!(path = %out.display(), "CNI config written");
                }
                health.ready();
            }
            Some(Err(e)) => {
                tracing::warn!("CNI config: {e:#}");
                health.not_ready(format!("{e:#}"));
            }
            None => {
                tracing::debug!(node = %config.node_name, "this node is not in the datastore yet, or has no pod CIDR");
                health.not_ready(format!("node {} has no pod CIDR yet", config.node_name));
            }
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return Ok(()) },
            _ = tick.tick() => {}
        }
    }
}

/// This node's pod CIDRs: the configured ones, else the Node object's.
pub fn pod_cidrs(config: &AgentConfig, nodes: &BTreeMap<String, Node>) -> Vec<ipnet::IpNet> {
    if !config.pod_cidrs.is_empty() {
        return config.pod_cidrs.clone();
    }
    nodes
        .get(&config.node_name)
        .map(|n| n.pod_cidrs.clone())
        .unwrap_or_default()
}

/// The speaker configuration for a snapshot: the configured one, originating this node's pod
/// CIDRs, plus (with `bgp_node_mesh`) an iBGP or eBGP session to every other node's InternalIP.
pub fn speaker_config(
    config: &AgentConfig,
    base: &caracal_bgp::config::SpeakerConfig,
    nodes: &BTreeMap<String, Node>,
) -> caracal_bgp::config::SpeakerConfig {
    let mut c = base.clone();
    for cidr in pod_cidrs(config, nodes) {
        let cidr = cidr.trunc();
        if !c.originate.contains(&cidr) {
            c.originate.push(cidr);
        }
    }
    if config.bgp_node_mesh {
        let template = c.peers.first().cloned();
        for (name, node) in nodes {
            if *name == config.node_name {
                continue;
            }
            let Some(address) = node.internal_ips().next() else {
                continue;
            };
            if c.peers.iter().any(|p| p.address == address) {
                continue;
            }
            let mut peer = mesh_peer(address, node.asn.unwrap_or(base.local_as));
            match &template {
                Some(t) => {
                    peer.hold_time = t.hold_time;
                    peer.password = t.password.clone();
                    peer.graceful_restart_time = t.graceful_restart_time;
                }
                None => peer.graceful_restart_time = config.bgp_mesh_graceful_restart_time,
            }
            c.peers.push(peer);
        }
    }
    c
}

/// A mesh peer: `address` and `remote_as`, the speaker's defaults for everything else.
fn mesh_peer(address: IpAddr, remote_as: u32) -> caracal_bgp::config::PeerConfig {
    #[derive(serde::Serialize)]
    struct Required {
        address: IpAddr,
        remote_as: u32,
    }
    let value = serde_json::to_value(Required { address, remote_as }).expect("two plain fields encode");
    serde::Deserialize::deserialize(value).expect("a peer needs only its address and AS")
}

/// The BGP reconciler: starts the speaker once the first snapshot is there, then reloads it with
/// only the differences whenever this node's pod CIDRs or the node mesh change.
pub async fn reconcile_bgp(
    config: Arc<AgentConfig>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut stop: watch::Receiver<bool>,
    health: health::LoopHealth,
) -> Result<()> {
    let Some(bgp) = config.bgp.clone() else {
        health.ready();
        return Ok(());
    };
    // One config for every node (a DaemonSet's ConfigMap): without a router_id, the node's
    // first IPv4 InternalIP is its BGP identifier, as Calico does.
    let router_id = match bgp.router_id {
        Some(id) => id,
        None => loop {
            let found = snapshots
                .borrow_and_update()
                .nodes
                .get(&config.node_name)
                .and_then(|n| {
                    n.internal_ips().find_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    })
                });
            if let Some(ip) = found {
                break ip;
            }
            tracing::info!(node = %config.node_name, "waiting for this node's InternalIP to pick a BGP router ID");
            health.not_ready(format!(
                "node {} has no IPv4 InternalIP for a router ID yet",
                config.node_name
            ));
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.changed() => return Ok(()),
            }
        },
    };
    let base = bgp.speaker(router_id);
    base.validate().context("bgp")?;
    let mut current = speaker_config(&config, &base, &snapshots.borrow_and_update().nodes);
    let (handle, task) = caracal_bgp::speaker::start(current.clone(), None)
        .await
        .context("starting the BGP speaker")?;
    tracing::info!(originate = ?current.originate, peers = current.peers.len(), "BGP speaker started");
    health.ready();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => health.beat(),
            changed = snapshots.changed() => {
                if changed.is_err() { break; }
                let next = speaker_config(&config, &base, &snapshots.borrow_and_update().nodes);
                if next != current {
                    tracing::info!(originate = ?next.originate, peers = next.peers.len(), "BGP config changed");
                    if let Err(e) = handle.reload(next.clone()).await {
                        tracing::error!("BGP reload: {e}");
                        health.not_ready(format!("BGP reload failed: {e}"));
                    } else {
                        current = next;
                        health.ready();
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    let _ = handle.shutdown().await;
    let _ = task.await;
    Ok(())
}

/// Runs every reconciler against `snapshots` until SIGINT or SIGTERM.
pub async fn run(config: AgentConfig, snapshots: watch::Receiver<Arc<Snapshot>>) -> Result<()> {
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let health = health::Health::default();
    if config.policy {
        let h = health.register("policy", "the first snapshot is not applied yet");
        tasks.spawn(reconcile_policy(config.clone(), snapshots.clone(), h));
    }
    let h = health.register("cni-config", "not written yet");
    tasks.spawn(reconcile_cni_config(config.clone(), snapshots.clone(), h));
    let h = health.register("bgp", "the speaker is not configured yet");
    tasks.spawn(reconcile_bgp(config.clone(), snapshots.clone(), stop_rx, h));
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
        if config.bgp.is_none() || tasks.len() <= usize::from(config.policy) + 1 {
            break;
        }
    }
    tasks.abort_all();
    if let Some(h) = health_server {
        h.abort();
    }
    result
}

/// Where the agent keeps its files by default.
pub fn default_run_dir() -> PathBuf {
    PathBuf::from("/var/run/caracal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_records_without_a_pod_or_unreadable_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("c1_eth0.json"),
            r#"{"pod":{"namespace":"x","name":"a"},"containerID":"c1","ifname":"eth0","iface":"cara0123","mac":"ee:ee:ee:ee:ee:ee","ips":["10.244.1.2"],"netns":"/x","network":"caracal"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("c2_eth0.json"),
            r#"{"pod":null,"iface":"cara1","ips":[]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("c3_eth0.json"), "{not json").unwrap();
        let eps = read_endpoints(d.path());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].pod, Key::new("x", "a"));
        assert_eq!(eps[0].iface, "cara0123");
        assert_eq!(eps[0].ips, vec!["10.244.1.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn local_pods_without_api_addresses_take_the_cni_addresses() {
        let mut c = ClusterState::default();
        let k = Key::new("x", "a");
        c.pods.insert(
            k.clone(),
            caracal_policy::model::Pod {
                namespace: "x".into(),
                name: "a".into(),
                ..Default::default()
            },
        );
        let k2 = Key::new("x", "b");
        let ip_b: IpAddr = "10.0.0.9".parse().unwrap();
        c.pods.insert(
            k2.clone(),
            caracal_policy::model::Pod {
                ips: vec![ip_b],
                ..Default::default()
            },
        );
        let eps = vec![
            LocalEndpoint {
                pod: k.clone(),
                iface: "cara1".into(),
                ips: vec!["10.244.1.2".parse().unwrap()],
            },
            LocalEndpoint {
                pod: k2.clone(),
                iface: "cara2".into(),
                ips: vec!["10.244.1.3".parse().unwrap()],
            },
        ];
        let out = with_local_addresses(&c, &eps);
        assert_eq!(out.pods[&k].ips, eps[0].ips);
        assert_eq!(
            out.pods[&k2].ips,
            vec![ip_b],
            "the API's addresses win when present"
        );
    }

    #[test]
    fn node_mesh_peers_every_other_node_with_its_asn_and_graceful_restart() {
        use crate::datastore::model::NodeAddress;
        let node = |name: &str, ip: &str, cidr: &str, asn: Option<u32>| {
            (
                name.to_string(),
                Node {
                    name: name.into(),
                    pod_cidrs: vec![cidr.parse().unwrap()],
                    addresses: vec![
                        NodeAddress {
                            kind: "ExternalIP".into(),
                            ip: "203.0.113.9".parse().unwrap(),
                        },
                        NodeAddress {
                            kind: "InternalIP".into(),
                            ip: ip.parse().unwrap(),
                        },
                    ],
                    asn,
                    ..Default::default()
                },
            )
        };
        let nodes: BTreeMap<String, Node> = [
            node("n1", "192.0.2.1", "10.244.1.0/24", None),
            node("n2", "192.0.2.2", "10.244.2.0/24", None),
            node("n3", "192.0.2.3", "10.244.3.0/24", Some(65003)),
        ]
        .into();
        let config: AgentConfig = serde_yaml::from_str("{node_name: n1, bgp_node_mesh: true}").unwrap();
        let base =
            caracal_bgp::config::SpeakerConfig::parse("{local_as: 64512, router_id: 192.0.2.1}").unwrap();
        let c = speaker_config(&config, &base, &nodes);
        assert_eq!(
            c.originate,
            vec!["10.244.1.0/24".parse().unwrap()],
            "only this node's CIDR"
        );
        let peers: Vec<(String, u32, u16)> = c
            .peers
            .iter()
            .map(|p| (p.address.to_string(), p.remote_as, p.graceful_restart_time))
            .collect();
        assert_eq!(
            peers,
            vec![
                ("192.0.2.2".to_string(), 64512, 120),
                ("192.0.2.3".to_string(), 65003, 120),
            ],
            "every other node's InternalIP, iBGP unless annotated, graceful restart by default"
        );
        // A configured first peer is the template; mesh peers copy its graceful-restart time.
        let base = caracal_bgp::config::SpeakerConfig::parse(
            "{local_as: 64512, router_id: 192.0.2.1, peers: [{address: 192.0.2.254, remote_as: 65000, graceful_restart_time: 30}]}",
        )
        .unwrap();
        let c = speaker_config(&config, &base, &nodes);
        assert_eq!(c.peers.len(), 3);
        assert!(
            c.peers.iter().all(|p| p.graceful_restart_time == 30),
            "{:?}",
            c.peers
        );
        // Turned off.
        let off: AgentConfig =
            serde_yaml::from_str("{node_name: n1, bgp_node_mesh: true, bgp_mesh_graceful_restart_time: 0}")
                .unwrap();
        let base =
            caracal_bgp::config::SpeakerConfig::parse("{local_as: 64512, router_id: 192.0.2.1}").unwrap();
        assert!(
            speaker_config(&off, &base, &nodes)
                .peers
                .iter()
                .all(|p| p.graceful_restart_time == 0)
        );
    }

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
