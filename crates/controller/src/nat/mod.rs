//! Outgoing NAT (Calico's `natOutgoing`, `../shared/research/next-features.md` §3.1): traffic
//! from a pod of a pool with `nat_outgoing` to a destination outside every pod, pool and Service
//! range is masqueraded to the node's address; pod-to-pod and pod-to-Service traffic never is.
//!
//! - [`PodPool`]: the agent config's `pod_pools` entries;
//! - [`desired`]: the pure function from the pools, the nodes' pod CIDRs and the Service ranges
//!   to the [`NatProgram`] (two `hash:net` sets per family);
//! - [`render`]: the `ipset restore` and `iptables-restore` text of a program, the parser of what
//!   the kernel tools print back, and the plan that repairs the difference;
//! - the applier that runs the tools is [`crate::dataplane::nat`], the reconciler
//!   [`crate::agent::nat`].
//!
//! ```text
//! nat POSTROUTING  -I 1 -j CARACAL-POSTROUTING        (kube-proxy's KUBE-POSTROUTING stays)
//! CARACAL-POSTROUTING
//!   -m set --match-set caracal-masq-v4 src -m set ! --match-set caracal-all-v4 dst
//!   -j MASQUERADE --random-fully
//! ```
//!
//! The names are outside the policy dataplane's `cara-` namespace, whose applier removes every
//! `cara-` set it did not create.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use caracal_policy::program::Family;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::datastore::Node;

/// One pod address pool of the cluster (for the lab: its cluster CIDR).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodPool {
    pub cidr: IpNet,
    /// Masquerade this pool's traffic to destinations outside every pod, pool and Service range.
    #[serde(default)]
    pub nat_outgoing: bool,
}

/// Deserializes and checks `pod_pools` (the error names the entry).
pub fn deserialize_pools<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PodPool>, D::Error> {
    let pools = Vec::<PodPool>::deserialize(d)?;
    for (i, p) in pools.iter().enumerate() {
        if p.cidr.trunc() != p.cidr {
            return Err(serde::de::Error::custom(format!(
                "pod_pools[{i}].cidr: {} has host bits set (did you mean {}?)",
                p.cidr,
                p.cidr.trunc()
            )));
        }
        if let Some(j) = pools[..i].iter().position(|q| q.cidr == p.cidr) {
            return Err(serde::de::Error::custom(format!(
                "pod_pools[{i}].cidr: {} is already pod_pools[{j}]",
                p.cidr
            )));
        }
    }
    Ok(pools)
}

/// One family's sets: the sources to masquerade and every range that is not "outside".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatSets {
    pub masq: BTreeSet<IpNet>,
    pub all: BTreeSet<IpNet>,
}

/// What the node's nat table should hold: per family, the sets (the chain and hook follow), or
/// nothing of caracal's at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatProgram {
    pub families: BTreeMap<Family, NatSets>,
}

fn family(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

/// The program for the pools, every node's pod CIDRs and the Service ranges. A family is
/// present only while some pool of it has `nat_outgoing`.
pub fn desired<'a>(
    pools: &[PodPool],
    nodes: impl IntoIterator<Item = &'a Node>,
    service_ranges: &[IpNet],
) -> NatProgram {
    let mut families: BTreeMap<Family, NatSets> = BTreeMap::new();
    for p in pools.iter().filter(|p| p.nat_outgoing) {
        families
            .entry(family(&p.cidr))
            .or_default()
            .masq
            .insert(p.cidr.trunc());
    }
    let inside = pools
        .iter()
        .map(|p| p.cidr)
        .chain(nodes.into_iter().flat_map(|n| n.pod_cidrs.iter().copied()))
        .chain(service_ranges.iter().copied());
    for net in inside {
        if let Some(sets) = families.get_mut(&family(&net)) {
            sets.all.insert(net.trunc());
        }
    }
    NatProgram { families }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(text: &str) -> BTreeSet<IpNet> {
        text.split_whitespace().map(|n| n.parse().unwrap()).collect()
    }

    fn pools(text: &str) -> Vec<PodPool> {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn masquerade_sources_are_the_nat_pools_and_everything_inside_is_excluded() {
        let nodes = [
            Node {
                name: "n1".into(),
                pod_cidrs: vec![
                    "10.244.1.0/24".parse().unwrap(),
                    "fd00:244:1::/64".parse().unwrap(),
                ],
                ..Default::default()
            },
            Node {
                name: "n2".into(),
                // A node numbered outside every pool: its pods are still "inside".
                pod_cidrs: vec!["10.250.2.0/24".parse().unwrap()],
                ..Default::default()
            },
        ];
        let p = pools(
            "[{cidr: 10.244.0.0/16, nat_outgoing: true}, {cidr: 192.168.50.0/24}, {cidr: 'fd00:244::/48'}]",
        );
        let ranges: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap(), "198.18.1.0/24".parse().unwrap()];
        let prog = desired(&p, &nodes, &ranges);
        assert_eq!(prog.families.len(), 1, "no IPv6 pool has nat_outgoing: {prog:?}");
        let v4 = &prog.families[&Family::V4];
        assert_eq!(v4.masq, nets("10.244.0.0/16"));
        assert_eq!(
            v4.all,
            nets("10.244.0.0/16 192.168.50.0/24 10.244.1.0/24 10.250.2.0/24 10.96.0.0/16 198.18.1.0/24")
        );
        assert_eq!(desired(&[], &nodes, &ranges), NatProgram::default());
        let both =
            pools("[{cidr: 10.244.0.0/16, nat_outgoing: true}, {cidr: 'fd00:244::/48', nat_outgoing: true}]");
        let prog = desired(&both, &nodes, &[]);
        assert_eq!(
            prog.families[&Family::V6].all,
            nets("fd00:244::/48 fd00:244:1::/64")
        );
    }

    #[test]
    fn bad_pools_name_the_entry() {
        #[derive(Debug, Deserialize)]
        struct W {
            #[serde(deserialize_with = "deserialize_pools")]
            #[allow(dead_code)]
            pod_pools: Vec<PodPool>,
        }
        let e = serde_yaml::from_str::<W>("pod_pools: [{cidr: 10.244.0.1/16}]").unwrap_err();
        assert!(e.to_string().contains("pod_pools[0].cidr"), "{e}");
        let e = serde_yaml::from_str::<W>("pod_pools: [{cidr: 10.0.0.0/8}, {cidr: 10.0.0.0/8}]").unwrap_err();
        assert!(e.to_string().contains("pod_pools[1].cidr"), "{e}");
        let e = serde_yaml::from_str::<W>("pod_pools: [{cidr: 10.0.0.0/8, nat: true}]").unwrap_err();
        assert!(e.to_string().contains("nat"), "{e}");
    }
}
