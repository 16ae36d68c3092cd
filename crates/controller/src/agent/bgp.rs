//! The BGP reconciler: the speaker originating this node's pod CIDRs and Service routes (from
//! the services reconciler's channel), with the sessions the BGP objects give this node (or,
//! without them, the ConfigMap's peers and node mesh), reloaded with only the differences.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::{AgentConfig, health};
use crate::{
    bgpapi::select::SessionKind,
    datastore::{Node, Snapshot},
    metrics::bgp::PeerType,
    services::ServiceRoutes,
};

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
        if !c.originate.iter().any(|o| o.prefix == cidr) {
            c.originate.push(cidr.into());
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

/// The speaker configuration for a snapshot, and the sessions left out with why.
///
/// When the datastore holds BGP objects (a BGPConfiguration `default` or any BGPPeer), they win:
/// they decide this node's AS, cluster ID, listen port and sessions ([`crate::bgpapi`]), and the
/// ConfigMap's `bgp.peers` and `bgp_node_mesh` are ignored; the rest of the ConfigMap (router
/// ID, listen address, control socket, `local_as` as the default AS, and
/// `bgp_mesh_graceful_restart_time` as the default restart time) still applies, and the
/// BGPConfiguration's communities go on the originated prefixes. Without objects,
/// [`speaker_config`] from the ConfigMap alone. Both add the Service routes.
pub fn desired_speaker(
    config: &AgentConfig,
    base: &caracal_bgp::config::SpeakerConfig,
    snapshot: &Snapshot,
    services: &ServiceRoutes,
) -> Desired {
    let Some(objects) = crate::bgpapi::Objects::of(snapshot) else {
        let mut c = speaker_config(config, base, &snapshot.nodes);
        with_service_routes(&mut c, services);
        return Desired {
            peer_types: crate::metrics::bgp::peer_types(base, &c),
            speaker: c,
            problems: Vec::new(),
        };
    };
    let defaults = crate::bgpapi::select::Defaults {
        local_as: base.local_as,
        listen_port: if base.listen_port == 0 {
            179
        } else {
            base.listen_port
        },
        restart_time: config.bgp_mesh_graceful_restart_time,
    };
    let node = objects.node_bgp(snapshot, &config.node_name, defaults);
    // Originated prefixes as without objects; the sessions only from the objects.
    let mut no_mesh = config.clone();
    no_mesh.bgp_node_mesh = false;
    let mut no_peers = base.clone();
    no_peers.peers.clear();
    let mut originating = speaker_config(&no_mesh, &no_peers, &snapshot.nodes);
    with_service_routes(&mut originating, services);
    // The BGPConfiguration's communities on every originated prefix they cover, Service routes
    // included.
    objects.communities.apply(&mut originating.originate);
    let peer_types = node
        .sessions
        .iter()
        .map(|s| {
            let kind = match s.kind {
                SessionKind::Mesh => PeerType::Mesh,
                SessionKind::Global => PeerType::Global,
                SessionKind::Node => PeerType::Node,
            };
            (s.address, kind)
        })
        .collect();
    Desired {
        speaker: node.apply_to(&originating),
        problems: node.problems,
        peer_types,
    }
}

/// What [`desired_speaker`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub speaker: caracal_bgp::config::SpeakerConfig,
    /// Sessions left out, and why.
    pub problems: Vec<String>,
    /// Why this node peers with each peer (the metrics' `type` label), as the selection chose.
    pub peer_types: BTreeMap<IpAddr, PeerType>,
}

/// The BGP speaker's log level the BGPConfiguration `default` asks for (`logSeverityScreen`), if
/// any; without one, `RUST_LOG` decides.
pub fn bgp_log_level(snapshot: &Snapshot) -> Option<&'static str> {
    snapshot
        .bgp_configurations
        .get(crate::bgpapi::types::DEFAULT_CONFIGURATION)
        .and_then(|c| c.log_severity_screen)
        .map(|l| l.level())
}

/// Adds the Service routes to a speaker configuration: the prefixes to `originate`, the
/// configured ranges to `no_install` (kube-proxy answers for them on every node; a learned
/// route in the kernel would take the traffic away from it) and to `no_transit` (a node passes
/// on no other node's Service route: `externalTrafficPolicy: Local` next hops stay the nodes
/// with endpoints).
pub fn with_service_routes(c: &mut caracal_bgp::config::SpeakerConfig, routes: &ServiceRoutes) {
    for p in &routes.advertise {
        if !c.originate.iter().any(|o| o.prefix == *p) {
            c.originate.push((*p).into());
        }
    }
    for r in &routes.ranges {
        if !c.no_install.contains(r) {
            c.no_install.push(*r);
        }
        if !c.no_transit.contains(r) {
            c.no_transit.push(*r);
        }
    }
}

/// A mesh peer: `address` and `remote_as`, the speaker's defaults for everything else.
fn mesh_peer(address: IpAddr, remote_as: u32) -> caracal_bgp::config::PeerConfig {
    crate::bgpapi::select::base_peer(address, remote_as)
}

fn log_problems(problems: &[String], last: &mut Vec<String>) {
    if problems != last.as_slice() {
        for p in problems {
            tracing::warn!("BGP session left out: {p}");
        }
        *last = problems.to_vec();
    }
}

/// The BGP reconciler: starts the speaker once the first snapshot is there, then reloads it with
/// only the differences whenever this node's pod CIDRs or sessions change.
pub async fn reconcile_bgp(
    config: Arc<AgentConfig>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut services: watch::Receiver<ServiceRoutes>,
    mut stop: watch::Receiver<bool>,
    health: health::LoopHealth,
    metrics: crate::metrics::BgpMetrics,
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
    let mut problems = Vec::new();
    let mut desire = |snapshots: &mut watch::Receiver<Arc<Snapshot>>,
                      services: &mut watch::Receiver<ServiceRoutes>| {
        let snapshot = snapshots.borrow_and_update();
        crate::logging::set_bgp_level(bgp_log_level(&snapshot));
        let desired = desired_speaker(&config, &base, &snapshot, &services.borrow_and_update());
        log_problems(&desired.problems, &mut problems);
        desired
    };
    let desired = desire(&mut snapshots, &mut services);
    let mut current = desired.speaker;
    let mut peer_types = desired.peer_types;
    let (mut handle, mut task) = caracal_bgp::speaker::start(current.clone(), None)
        .await
        .context("starting the BGP speaker")?;
    tracing::info!(originate = ?current.originate, peers = current.peers.len(), "BGP speaker started");
    let publish = |handle: &caracal_bgp::speaker::SpeakerHandle,
                   c: &caracal_bgp::config::SpeakerConfig,
                   types: &BTreeMap<IpAddr, PeerType>| {
        metrics.publish(
            handle,
            types.clone(),
            c.originate.iter().map(|o| o.prefix).collect(),
        );
    };
    publish(&handle, &current, &peer_types);
    health.ready();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                health.beat();
                continue;
            }
            changed = snapshots.changed() => if changed.is_err() { break },
            changed = services.changed() => if changed.is_err() { break },
            _ = stop.changed() => break,
        }
        let desired = desire(&mut snapshots, &mut services);
        let next = desired.speaker;
        if next.listen_port != current.listen_port {
            // The listener is bound once: a new port (BGPConfiguration listenPort) needs a new
            // speaker.
            tracing::info!(
                from = current.listen_port,
                to = next.listen_port,
                "BGP listen port changed: restarting the speaker"
            );
            let _ = handle.shutdown().await;
            let _ = task.await;
            (handle, task) = caracal_bgp::speaker::start(next.clone(), None)
                .await
                .context("restarting the BGP speaker on its new listen port")?;
            current = next;
            peer_types = desired.peer_types;
            publish(&handle, &current, &peer_types);
            health.ready();
        } else if next != current {
            tracing::info!(originate = ?next.originate, peers = next.peers.len(), cluster_id = ?next.cluster_id, "BGP config changed");
            if let Err(e) = handle.reload(next.clone()).await {
                tracing::error!("BGP reload: {e}");
                health.not_ready(format!("BGP reload failed: {e}"));
            } else {
                current = next;
                peer_types = desired.peer_types;
                publish(&handle, &current, &peer_types);
                health.ready();
            }
        } else if desired.peer_types != peer_types {
            peer_types = desired.peer_types;
            publish(&handle, &current, &peer_types);
        }
    }
    metrics.stopped();
    let _ = handle.shutdown().await;
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgp_objects_win_over_the_configmaps_peers_and_mesh() {
        use crate::datastore::model::{NodeAddress, Object};
        let node = |name: &str, ip: &str, rack: &str| {
            let mut n = Node {
                name: name.into(),
                pod_cidrs: vec![format!("10.244.{}.0/24", &ip[ip.len() - 1..]).parse().unwrap()],
                addresses: vec![NodeAddress {
                    kind: "InternalIP".into(),
                    ip: ip.parse().unwrap(),
                }],
                ..Default::default()
            };
            n.labels.insert("rack".into(), rack.into());
            Object::Node(n)
        };
        let manifest = |yaml: &str| {
            crate::datastore::convert::object(&serde_yaml::from_str(yaml).unwrap())
                .unwrap()
                .unwrap()
        };
        let config: AgentConfig = serde_yaml::from_str("{node_name: n1, bgp_node_mesh: true}").unwrap();
        let base = caracal_bgp::config::SpeakerConfig::parse(
            "{local_as: 64512, router_id: 192.0.2.1, peers: [{address: 192.0.2.254, remote_as: 65000}]}",
        )
        .unwrap();
        let nodes = [node("n1", "192.0.2.1", "a"), node("n2", "192.0.2.2", "b")];
        let none = ServiceRoutes::default();
        // Without objects: the ConfigMap's peer and the mesh.
        let plain = Snapshot::from_objects(nodes.clone());
        let Desired {
            speaker: c,
            problems,
            peer_types,
        } = desired_speaker(&config, &base, &plain, &none);
        let addresses = |c: &caracal_bgp::config::SpeakerConfig| -> Vec<String> {
            c.peers.iter().map(|p| p.address.to_string()).collect()
        };
        assert_eq!(addresses(&c), ["192.0.2.254", "192.0.2.2"]);
        assert!(problems.is_empty());
        let kind = |types: &BTreeMap<IpAddr, PeerType>, a: &str| types[&a.parse::<IpAddr>().unwrap()];
        assert_eq!(kind(&peer_types, "192.0.2.254"), PeerType::Global);
        assert_eq!(kind(&peer_types, "192.0.2.2"), PeerType::Mesh);
        // With a BGPConfiguration turning the mesh off and a per-rack peer: only that peer.
        let mut objects = nodes.to_vec();
        objects.push(manifest(
            "{apiVersion: caracal.dev/v1alpha1, kind: BGPConfiguration, metadata: {name: default},              spec: {nodeToNodeMeshEnabled: false, asNumber: 64600, prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: ['64600:1']}]}}",
        ));
        objects.push(manifest(
            "{apiVersion: caracal.dev/v1alpha1, kind: BGPPeer, metadata: {name: tor-a},              spec: {peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\"}}",
        ));
        let Desired {
            speaker: c,
            problems,
            peer_types,
        } = desired_speaker(&config, &base, &Snapshot::from_objects(objects.clone()), &none);
        assert_eq!(addresses(&c), ["10.0.1.254"]);
        assert_eq!(
            kind(&peer_types, "10.0.1.254"),
            PeerType::Node,
            "a BGPPeer with a nodeSelector is this node's own"
        );
        assert_eq!(c.local_as, 64600, "the cluster AS from the BGPConfiguration");
        assert_eq!(
            c.router_id, base.router_id,
            "the ConfigMap's settings still apply"
        );
        assert_eq!(c.originate.len(), 1);
        assert_eq!(
            c.originate[0].prefix,
            "10.244.1.0/24".parse::<ipnet::IpNet>().unwrap()
        );
        assert_eq!(
            c.originate[0].communities,
            [caracal_bgp::wire::community::parse("64600:1").unwrap()],
            "the prefix advertisement's community"
        );
        assert_eq!(c.peers[0].graceful_restart_time, 120);
        assert!(problems.is_empty());
        c.validate().unwrap();
        // A BGPPeer alone: Calico's default mesh is on, plus the peer (rack b does not match).
        let Desired {
            speaker: c,
            peer_types,
            ..
        } = desired_speaker(
            &config,
            &base,
            &Snapshot::from_objects(objects[..2].iter().cloned().chain([objects[3].clone()])),
            &none,
        );
        assert_eq!(addresses(&c), ["10.0.1.254", "192.0.2.2"]);
        assert_eq!(
            kind(&peer_types, "192.0.2.2"),
            PeerType::Mesh,
            "Calico's mesh from the objects"
        );
        // A rejected object alone does not switch the ConfigMap off.
        let bad = manifest(
            "{apiVersion: caracal.dev/v1alpha1, kind: BGPPeer, metadata: {name: bad}, spec: {peerIP: nope, asNumber: 1}}",
        );
        let c = desired_speaker(
            &config,
            &base,
            &Snapshot::from_objects(nodes.iter().cloned().chain([bad])),
            &none,
        )
        .speaker;
        assert_eq!(addresses(&c), ["192.0.2.254", "192.0.2.2"]);
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
    fn service_routes_are_originated_and_their_ranges_kept_out_of_the_kernel() {
        let base = caracal_bgp::config::SpeakerConfig::parse(
            "{local_as: 64512, router_id: 192.0.2.1, originate: [10.244.1.0/24], no_install: [10.96.0.0/16]}",
        )
        .unwrap();
        let routes = ServiceRoutes {
            advertise: ["10.96.0.0/16", "10.96.0.10/32"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            ranges: vec!["10.96.0.0/16".parse().unwrap(), "192.0.2.0/24".parse().unwrap()],
        };
        let mut c = base.clone();
        with_service_routes(&mut c, &routes);
        let text = |v: &[ipnet::IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let originated: Vec<_> = c.originate.iter().map(|o| o.prefix).collect();
        assert_eq!(
            text(&originated),
            ["10.244.1.0/24", "10.96.0.0/16", "10.96.0.10/32"]
        );
        assert_eq!(text(&c.no_install), ["10.96.0.0/16", "192.0.2.0/24"]);
        assert_eq!(text(&c.no_transit), ["10.96.0.0/16", "192.0.2.0/24"]);
        c.validate().unwrap();
        let mut same = base.clone();
        with_service_routes(&mut same, &ServiceRoutes::default());
        assert_eq!(same, base, "nothing configured changes nothing");
    }
}
