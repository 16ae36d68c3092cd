//! BGP configured with Kubernetes objects: the BGPConfiguration and BGPPeer CRDs ([`types`]),
//! their semantic checks ([`validate`]) and peer selection ([`select`]), a pure function from the
//! objects, the nodes and the passwords to one node's sessions. Like Calico, a node's own AS and
//! route-reflector cluster ID come from its Node object (`caracal.dev/bgp-asn`,
//! `caracal.dev/bgp-rr-cluster-id`).
//!
//! When a BGPConfiguration `default` or any BGPPeer exists, they decide the node's AS, listen
//! port, cluster ID and sessions; the agent ConfigMap's `bgp.peers` and `bgp_node_mesh` are then
//! ignored, while its other settings (router ID, listen address, timers) still apply.

pub mod communities;
pub mod select;
pub mod types;
pub mod validate;

use std::collections::BTreeMap;

use serde_json::Value;

use self::{
    communities::Communities,
    select::{Defaults, Inputs, NodeBgp},
    types::{
        BGPConfiguration, BGPPeer, BgpConfigurationSpec, BgpPeerSpec, DEFAULT_CONFIGURATION, SecretKeyRef,
    },
    validate::{ClusterBgp, Peer},
};
use crate::datastore::Snapshot;

/// An object read from JSON: its name, and its spec with what is accepted but not applied, or
/// why it is refused.
pub type Parsed<T> = (String, Result<(T, Vec<String>), String>);

/// Keeps only what every source agrees on (no server-set metadata, no status the agent
/// writes itself), so equal objects from the API server and from a file compare equal.
fn trimmed(value: &Value) -> (String, Value) {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut out = serde_json::Map::new();
    for field in ["apiVersion", "kind", "spec"] {
        if let Some(v) = value.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    out.insert("metadata".into(), serde_json::json!({ "name": name }));
    (name, Value::Object(out))
}

/// A BGPConfiguration from its JSON form. Only `default` is read; any other name is refused,
/// so its status says so.
pub fn configuration_from_json(value: &Value) -> Parsed<BgpConfigurationSpec> {
    let (name, value) = trimmed(value);
    let parsed = if name.is_empty() {
        Err("metadata.name is missing".to_string())
    } else if name != DEFAULT_CONFIGURATION {
        Err(format!(
            "metadata.name: only the BGPConfiguration named {DEFAULT_CONFIGURATION:?} is read (per-node overrides are not supported)"
        ))
    } else {
        serde_json::from_value::<BGPConfiguration>(value)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let valid = validate::configuration(&c.spec).map_err(|e| e.to_string())?;
                Ok((c.spec, valid.not_applied))
            })
    };
    (name, parsed)
}

/// A BGPPeer from its JSON form.
pub fn peer_from_json(value: &Value) -> Parsed<BgpPeerSpec> {
    let (name, value) = trimmed(value);
    let parsed = if name.is_empty() {
        Err("metadata.name is missing".to_string())
    } else {
        serde_json::from_value::<BGPPeer>(value)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                validate::peer(&name, &p.spec).map_err(|e| e.to_string())?;
                Ok((p.spec, Vec::new()))
            })
    };
    (name, parsed)
}

/// The valid BGP objects of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub config: Option<ClusterBgp>,
    /// By name.
    pub peers: Vec<Peer>,
    /// The `default` configuration's communities for originated prefixes.
    pub communities: Communities,
}

impl Objects {
    /// The objects in a snapshot, or `None` when there are none (then the ConfigMap decides).
    /// The datastore only keeps valid specs, so nothing fails here; a spec that did would be
    /// left out.
    pub fn of(snapshot: &Snapshot) -> Option<Objects> {
        if snapshot.bgp_configurations.is_empty() && snapshot.bgp_peers.is_empty() {
            return None;
        }
        let spec = snapshot.bgp_configurations.get(DEFAULT_CONFIGURATION);
        let config = spec.and_then(|c| validate::configuration(c).ok());
        let communities = spec
            .filter(|_| config.is_some())
            .map(Communities::of)
            .unwrap_or_default();
        let peers = snapshot
            .bgp_peers
            .iter()
            .filter_map(|(name, spec)| validate::peer(name, spec).ok())
            .collect();
        Some(Objects {
            config,
            peers,
            communities,
        })
    }

    /// The passwords the objects refer to, from the Secrets in the snapshot.
    pub fn passwords(&self, snapshot: &Snapshot) -> BTreeMap<SecretKeyRef, String> {
        let refs = self
            .config
            .iter()
            .filter_map(|c| c.mesh_password.as_ref())
            .chain(self.peers.iter().filter_map(|p| p.password.as_ref()));
        refs.filter_map(|r| {
            let value = snapshot.secrets.get(&r.name)?.data.get(&r.key)?;
            Some((r.clone(), value.expose().to_string()))
        })
        .collect()
    }

    /// This node's BGP from the objects.
    pub fn node_bgp(&self, snapshot: &Snapshot, node: &str, defaults: Defaults) -> NodeBgp {
        let passwords = self.passwords(snapshot);
        select::select(&Inputs {
            node,
            config: self.config.as_ref(),
            peers: &self.peers,
            nodes: &snapshot.nodes,
            passwords: &passwords,
            defaults,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_default_configuration_is_read() {
        let (name, parsed) = configuration_from_json(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPConfiguration",
            "metadata": {"name": "node.n1"}, "spec": {}
        }));
        assert_eq!(name, "node.n1");
        assert!(parsed.unwrap_err().starts_with("metadata.name: only"));
        let (_, parsed) = configuration_from_json(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPConfiguration",
            "metadata": {"name": "default", "resourceVersion": "7"},
            "spec": {"asNumber": 64512, "logSeverityScreen": "Debug"},
            "status": {"conditions": []}
        }));
        let (spec, notes) = parsed.unwrap();
        assert_eq!(spec.as_number, Some(64512));
        assert!(notes.is_empty(), "logSeverityScreen is applied: {notes:?}");
        assert_eq!(spec.log_severity_screen.map(|l| l.level()), Some("debug"));
    }

    #[test]
    fn a_bad_peer_is_refused_with_the_field() {
        let (name, parsed) = peer_from_json(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor"}, "spec": {"peerIP": "10.0.0.300", "asNumber": 65000}
        }));
        assert_eq!(name, "tor");
        assert_eq!(
            parsed.unwrap_err(),
            "spec.peerIP: \"10.0.0.300\" is not an IP address (ip, ip:port or [ipv6]:port)"
        );
        let (_, parsed) = peer_from_json(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor"}, "spec": {"peerIP": "10.0.0.1", "asNumber": "many"}
        }));
        assert!(parsed.unwrap_err().contains("invalid type"));
    }
}
