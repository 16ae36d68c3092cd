//! The host-side veth name: a fixed prefix and a hash of the pod identity, so that the compiler,
//! which knows only the pod, computes the name the plugin gave the interface, and a restart
//! changes nothing.

use sha2::{Digest, Sha256};

/// Prefix of every pod's host-side veth; `cara+` in iptables matches them all.
pub const IFACE_PREFIX: &str = "cara";

/// The kernel's limit on an interface name (IFNAMSIZ - 1).
pub const MAX_IFACE_NAME: usize = 15;

/// The host-side veth of the attachment (`pod`, `container_id`, `ifname`): `cara` + 11 hex
/// digits of sha256 of the identity, 15 bytes. A pod's primary interface (`eth0`) is named from
/// the pod alone ([`pod_veth_name`]), as the compiler expects; a pod-less attachment from its
/// container.
pub fn host_veth_name(pod: Option<(&str, &str)>, container_id: &str, ifname: &str) -> String {
    let identity = match pod {
        Some((ns, name)) if ifname == "eth0" => format!("{ns}/{name}"),
        Some((ns, name)) => format!("{ns}/{name}/{ifname}"),
        None => format!("{container_id}/{ifname}"),
    };
    hashed(&identity)
}

/// The host-side veth of pod `namespace/name`'s primary interface.
pub fn pod_veth_name(namespace: &str, name: &str) -> String {
    hashed(&format!("{namespace}/{name}"))
}

fn hashed(identity: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(MAX_IFACE_NAME);
    out.push_str(IFACE_PREFIX);
    for b in Sha256::digest(identity.as_bytes()) {
        for nibble in [b >> 4, b & 0xf] {
            if out.len() == MAX_IFACE_NAME {
                return out;
            }
            out.push(char::from(HEX[usize::from(nibble)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = host_veth_name(Some(("default", "web-0")), "c1", "eth0");
        assert_eq!(
            a,
            host_veth_name(Some(("default", "web-0")), "other-container", "eth0")
        );
        assert_eq!(a.len(), MAX_IFACE_NAME);
        assert!(a.starts_with(IFACE_PREFIX));
        assert_ne!(a, host_veth_name(Some(("default", "web-1")), "c1", "eth0"));
        assert_ne!(a, host_veth_name(Some(("default", "web-0")), "c1", "net1"));
        assert_ne!(
            host_veth_name(None, "c1", "eth0"),
            host_veth_name(None, "c2", "eth0")
        );
        // Pinned: existing nodes keep their interface names across an upgrade.
        assert_eq!(a, format!("cara{}", &sha_hex("default/web-0")[..11]));
    }

    #[test]
    fn a_pods_primary_interface_is_named_from_the_pod_alone() {
        assert_eq!(
            pod_veth_name("default", "web-0"),
            host_veth_name(Some(("default", "web-0")), "any", "eth0")
        );
    }
}
