//! Names of what the compiler creates (chains, sets, pod interfaces), within iptables' 28 and
//! ipset's 31 bytes, and the address-family helpers they depend on.

use super::*;

pub const CHAIN_FORWARD: &str = "cara-FORWARD";
pub const CHAIN_INPUT: &str = "cara-INPUT";
pub const CHAIN_OUTPUT: &str = "cara-OUTPUT";
pub const CHAIN_FW_DISPATCH: &str = "cara-fw-dispatch";
pub const CHAIN_TW_DISPATCH: &str = "cara-tw-dispatch";

/// `cara-fw-<iface>`: the pod's egress (traffic from the workload).
pub fn from_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}fw-{iface}")
}

/// `cara-tw-<iface>`: the pod's ingress (traffic to the workload).
pub fn to_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}tw-{iface}")
}

/// The chain of one policy for one direction: `cara-pi-<hash>` (ingress), `cara-po-<hash>`.
pub fn policy_chain(id: &crate::policy::PolicyId, dir: Direction) -> String {
    let tag = match dir {
        Direction::Ingress => "pi-",
        Direction::Egress => "po-",
    };
    hashed_name(&format!("{CHAIN_PREFIX}{tag}"), &id.to_string(), MAX_CHAIN_NAME)
}

/// `prefix` + hex of sha256(`key`), cut to `max` bytes (at most 20 hex characters: 80 bits).
pub fn hashed_name(prefix: &str, key: &str, max: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let n = max.saturating_sub(prefix.len()).min(20);
    let mut out = String::with_capacity(prefix.len() + n);
    out.push_str(prefix);
    for b in digest.iter().take(n.div_ceil(2)) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out.truncate(prefix.len() + n);
    out
}

/// The host-side interface name of a pod, as the CNI plugin names it
/// ([`caracal_contract::pod_veth_name`]).
pub fn iface_name(pod: &Key) -> String {
    caracal_contract::pod_veth_name(&pod.namespace, &pod.name)
}

pub(super) fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// Does endpoint `ep` get chains in `family`? Only when it has an address of that family (an
/// IPv4-only pod carries no IPv6 traffic, so it gets no IPv6 chains and its interface stays
/// unknown, dropped, in the IPv6 dispatch); an endpoint whose addresses are unknown gets both.
pub(super) fn has_family_or_unknown(ep: &LocalEndpoint, family: Family) -> bool {
    ep.ips.is_empty() || ep.ips.iter().any(|ip| family_of(ip) == family)
}

pub(super) fn net_family(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

pub(super) fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

pub(super) fn family_digit(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}
