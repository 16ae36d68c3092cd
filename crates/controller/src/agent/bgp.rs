//! The BGP reconciler: the speaker originating this node's pod CIDRs and Service routes (from
//! the services reconciler's channel), meshed with the other nodes, reloaded with only the
//! differences.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::{AgentConfig, health};
use crate::{
    datastore::{Node, Snapshot},
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
    let mut current = speaker_config(&config, &base, &snapshots.borrow_and_update().nodes);
    with_service_routes(&mut current, &services.borrow_and_update());
    let (handle, task) = caracal_bgp::speaker::start(current.clone(), None)
        .await
        .context("starting the BGP speaker")?;
    tracing::info!(originate = ?current.originate, peers = current.peers.len(), "BGP speaker started");
    let publish = |c: &caracal_bgp::config::SpeakerConfig| {
        metrics.publish(
            &handle,
            crate::metrics::bgp::peer_types(&base, c),
            c.originate.iter().map(|o| o.prefix).collect(),
        );
    };
    publish(&current);
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
        let mut next = speaker_config(&config, &base, &snapshots.borrow_and_update().nodes);
        with_service_routes(&mut next, &services.borrow_and_update());
        if next != current {
            tracing::info!(originate = ?next.originate, peers = next.peers.len(), "BGP config changed");
            if let Err(e) = handle.reload(next.clone()).await {
                tracing::error!("BGP reload: {e}");
                health.not_ready(format!("BGP reload failed: {e}"));
            } else {
                current = next;
                publish(&current);
                health.ready();
            }
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
