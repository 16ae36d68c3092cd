//! The host-side veth name: a fixed prefix and a hash of the pod identity, so that the agent,
//! which knows only the pod, computes the same name, and a restart changes nothing.

use sha2::{Digest, Sha256};

/// Same value as `caracal_policy::program::IFACE_PREFIX`: the policy dispatch chains match
/// `cara+`. Kept as a copy so that the plugin binary does not link the policy crate.
pub const IFACE_PREFIX: &str = "cara";

/// `cara` + 11 hex digits = 15 bytes, the kernel's limit (IFNAMSIZ - 1).
pub fn host_veth_name(pod: Option<(&str, &str)>, container_id: &str, ifname: &str) -> String {
    let identity = match pod {
        // The pod's primary interface is named from the pod alone, as the agent expects.
        Some((ns, name)) if ifname == "eth0" => format!("{ns}/{name}"),
        Some((ns, name)) => format!("{ns}/{name}/{ifname}"),
        None => format!("{container_id}/{ifname}"),
    };
    let digest = Sha256::digest(identity.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{IFACE_PREFIX}{}", &hex[..15 - IFACE_PREFIX.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = host_veth_name(Some(("default", "web-0")), "c1", "eth0");
        assert_eq!(
            a,
            host_veth_name(Some(("default", "web-0")), "other-container", "eth0")
        );
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("cara"));
        assert_ne!(a, host_veth_name(Some(("default", "web-1")), "c1", "eth0"));
        assert_ne!(a, host_veth_name(Some(("default", "web-0")), "c1", "net1"));
        assert_ne!(
            host_veth_name(None, "c1", "eth0"),
            host_veth_name(None, "c2", "eth0")
        );
        // Pinned: the agent derives the same name independently.
        assert_eq!(a, format!("cara{}", &sha_hex("default/web-0")[..11]));
    }

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
