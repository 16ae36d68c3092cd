//! The path a pod-to-pod packet takes through the nodes' programs: one FORWARD pass when both
//! pods share a node; the source node's FORWARD out of the uplink, then the destination node's
//! FORWARD in from it, otherwise. Used by `caracal policy explain` and the offline conformance
//! prober.

use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    compile::iface_name,
    eval::{self, Packet},
    model::{Key, Pod},
    program::{CtState, Program, Protocol},
};

/// The node's uplink in the simulated path of cross-node traffic.
pub const UPLINK: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{src} and {dst} have no address of one family")]
    NoCommonFamily { src: Key, dst: Key },
    #[error("no program for node {0:?}")]
    NoProgram(String),
    #[error("node {node}: {source}")]
    Eval { node: String, source: eval::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn key(p: &Pod) -> Key {
    Key::new(p.namespace.clone(), p.name.clone())
}

/// The addresses a packet from `src` to `dst` would carry: IPv4 when both pods have one, else
/// IPv6 when both have one.
pub fn addresses(src: &Pod, dst: &Pod) -> Option<(IpAddr, IpAddr)> {
    let first = |p: &Pod, v4: bool| p.ips.iter().copied().find(|ip| ip.is_ipv4() == v4);
    [true, false]
        .into_iter()
        .find_map(|v4| Some((first(src, v4)?, first(dst, v4)?)))
}

/// Runs a NEW packet from `src` to `dst` along its path ([`addresses`] picks the family);
/// returns the verdict of each hop.
pub fn path_verdicts(
    programs: &BTreeMap<String, Program>,
    src: &Pod,
    dst: &Pod,
    protocol: Protocol,
    port: u16,
) -> Result<Vec<eval::Verdict>> {
    let (s, d) = addresses(src, dst).ok_or_else(|| Error::NoCommonFamily {
        src: key(src),
        dst: key(dst),
    })?;
    let src_node = src.node.clone().unwrap_or_default();
    let dst_node = dst.node.clone().unwrap_or_default();
    let src_if = iface_name(&key(src));
    let dst_if = iface_name(&key(dst));
    let packet = |in_iface: &str, out_iface: &str| Packet {
        src: s,
        dst: d,
        protocol,
        dport: port,
        in_iface: Some(in_iface.to_string()),
        out_iface: Some(out_iface.to_string()),
        ct: CtState::New,
    };
    let run = |node: &str, pkt: Packet| {
        let program = programs
            .get(node)
            .ok_or_else(|| Error::NoProgram(node.to_string()))?;
        eval::run(program, "FORWARD", &pkt).map_err(|source| Error::Eval {
            node: node.to_string(),
            source,
        })
    };
    if src_node == dst_node {
        Ok(vec![run(&src_node, packet(&src_if, &dst_if))?])
    } else {
        Ok(vec![
            run(&src_node, packet(&src_if, UPLINK))?,
            run(&dst_node, packet(UPLINK, &dst_if))?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile::compile, model::ClusterState};

    fn pod(name: &str, node: &str, ips: &[&str]) -> Pod {
        Pod {
            namespace: "x".into(),
            name: name.into(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            node: Some(node.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_family_is_ipv4_when_both_have_it_else_ipv6() {
        let dual = pod("a", "n1", &["10.0.0.1", "fd00::1"]);
        let v6 = pod("b", "n1", &["fd00::2"]);
        let v4 = pod("c", "n1", &["10.0.0.3"]);
        assert_eq!(
            addresses(&dual, &v4),
            Some(("10.0.0.1".parse().unwrap(), "10.0.0.3".parse().unwrap()))
        );
        assert_eq!(
            addresses(&dual, &v6),
            Some(("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()))
        );
        assert_eq!(addresses(&v4, &v6), None);
    }

    #[test]
    fn ipv6_only_pods_get_verdicts_on_both_hops() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}\n";
        let mut state = ClusterState::default();
        crate::manifests::load(&mut state, text).unwrap();
        let a = pod("a", "n1", &["fd00::1"]);
        let mut b = pod("b", "n2", &["fd00::2"]);
        b.labels.insert("app".into(), "b".into());
        let c = pod("c", "n2", &["fd00::3"]);
        let mut programs = BTreeMap::new();
        for p in [&a, &b, &c] {
            state.pods.insert(key(p), p.clone());
        }
        for node in ["n1", "n2"] {
            let eps: Vec<_> = state
                .pods
                .iter()
                .filter(|(_, p)| p.node.as_deref() == Some(node))
                .map(|(k, p)| crate::model::LocalEndpoint {
                    pod: k.clone(),
                    iface: iface_name(k),
                    ips: p.ips.clone(),
                })
                .collect();
            programs.insert(node.to_string(), compile(&state, &eps).program);
        }
        let to_b = path_verdicts(&programs, &a, &b, Protocol::Tcp, 80).unwrap();
        assert_eq!(to_b.len(), 2);
        assert!(to_b[0].accepted && !to_b[1].accepted, "b's ingress is denied");
        let to_c = path_verdicts(&programs, &a, &c, Protocol::Tcp, 80).unwrap();
        assert!(to_c.iter().all(|v| v.accepted));
        let v4 = pod("d", "n1", &["10.0.0.4"]);
        assert!(matches!(
            path_verdicts(&programs, &v4, &b, Protocol::Tcp, 80),
            Err(Error::NoCommonFamily { .. })
        ));
    }
}
