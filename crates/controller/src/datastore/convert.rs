//! Kubernetes objects to model objects: pure functions shared by both datastores, so the API
//! server and a directory of manifests produce the same model for the same objects. Everything
//! policy reads goes through [`caracal_policy::k8s`], the converter `caracal policy explain` and
//! the conformance harness use too; Nodes (routing and BGP), the BGP objects and Secrets are
//! converted here.

use caracal_policy::k8s;
use ipnet::IpNet;
use k8s_openapi::{api::core::v1 as core, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::Value;

use super::model::{Node, NodeAddress, Object, Secret, SecretValue};
use crate::bgpapi;

pub use caracal_policy::k8s::{global_policy, implicit_namespace, namespace, network_policy, pod};
/// The label the API server puts on every namespace; the directory datastore adds it too.
pub use caracal_policy::model::NAMESPACE_NAME_LABEL;
/// Node annotation carrying the node's own BGP AS number, when it differs from the cluster's.
pub const NODE_ASN_ANNOTATION: &str = "caracal.dev/bgp-asn";
/// Node annotation making the node a BGP route reflector with this (IPv4-formatted) cluster ID.
pub const NODE_RR_CLUSTER_ID_ANNOTATION: &str = "caracal.dev/bgp-rr-cluster-id";

fn labels(meta: &ObjectMeta) -> std::collections::BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

pub fn node(n: &core::Node) -> Node {
    let spec = n.spec.as_ref();
    let cidrs = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    let mut addresses: Vec<NodeAddress> = n
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| {
            Some(NodeAddress {
                kind: a.type_.clone(),
                ip: a.address.parse().ok()?,
            })
        })
        .collect();
    addresses.dedup();
    let annotation = |key: &str| {
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim())
    };
    let asn = annotation(NODE_ASN_ANNOTATION).and_then(|v| v.parse::<u32>().ok());
    let rr_cluster_id = annotation(NODE_RR_CLUSTER_ID_ANNOTATION).and_then(|v| v.parse().ok());
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        pod_cidrs: cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect(),
        addresses,
        labels: labels(&n.metadata),
        asn,
        rr_cluster_id,
    }
}

/// An Opaque Secret's UTF-8 values (`data`, and `stringData` as a manifest may give it); `None`
/// for other types, which BGP passwords never are.
pub fn secret(s: &core::Secret) -> Option<Secret> {
    if s.type_.as_deref().is_some_and(|t| t != "Opaque") {
        return None;
    }
    let mut data = std::collections::BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        if let Ok(text) = std::str::from_utf8(&v.0) {
            data.insert(k.clone(), SecretValue::new(text));
        }
    }
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), SecretValue::new(v.clone()));
    }
    Some(Secret {
        name: s.metadata.name.clone().unwrap_or_default(),
        data,
    })
}

/// A BGPConfiguration from its JSON form, or why it is ignored.
pub fn bgp_configuration(value: &Value) -> Object {
    let (name, parsed) = bgpapi::configuration_from_json(value);
    Object::BgpConfiguration(name, parsed.map(|(spec, _)| Box::new(spec)))
}

/// A BGPPeer from its JSON form, or why it is ignored.
pub fn bgp_peer(value: &Value) -> Object {
    let (name, parsed) = bgpapi::peer_from_json(value);
    Object::BgpPeer(name, parsed.map(|(spec, _)| Box::new(spec)))
}

/// Converts any supported manifest; `None` for kinds the datastore does not read.
pub fn object(value: &Value) -> Option<Result<Object, String>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    match (api_version, kind) {
        ("v1", "Node") => {
            return Some(
                serde_json::from_value::<core::Node>(value.clone())
                    .map(|n| Object::Node(node(&n)))
                    .map_err(|e| e.to_string()),
            );
        }
        ("v1", "Secret") => {
            return match serde_json::from_value::<core::Secret>(value.clone()) {
                Ok(s) => secret(&s).map(|s| Ok(Object::Secret(s))),
                Err(e) => Some(Err(e.to_string())),
            };
        }
        ("caracal.dev/v1alpha1", "BGPConfiguration") => return Some(Ok(bgp_configuration(value))),
        ("caracal.dev/v1alpha1", "BGPPeer") => return Some(Ok(bgp_peer(value))),
        _ => {}
    }
    Some(k8s::object(value)?.map(|o| match o {
        k8s::Object::Namespace(ns) => Object::Namespace(ns),
        k8s::Object::Pod(p) => Object::Pod(p),
        k8s::Object::NetworkPolicy(key, np) => Object::NetworkPolicy(key, np),
        k8s::Object::GlobalPolicy(name, gp) => Object::GlobalPolicy(name, gp),
    }))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use serde_json::json;

    #[test]
    fn node_reads_cidrs_ip_addresses_and_asn_annotation() {
        let n = node(
            &serde_json::from_value(json!({
                "metadata": {"name": "n1", "labels": {"zone": "a"},
                             "annotations": {NODE_ASN_ANNOTATION: "64512"}},
                "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]},
                "status": {"addresses": [
                    {"type": "InternalIP", "address": "192.168.0.10"},
                    {"type": "Hostname", "address": "n1"}
                ]}
            }))
            .unwrap(),
        );
        assert_eq!(n.pod_cidrs.len(), 2);
        assert_eq!(
            n.internal_ips().collect::<Vec<_>>(),
            ["192.168.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(n.addresses.len(), 1);
        assert_eq!(n.asn, Some(64512));
        assert_eq!(n.labels["zone"], "a");
        let bad = node(
            &serde_json::from_value(json!({
                "metadata": {"name": "n2", "annotations": {NODE_ASN_ANNOTATION: "not-a-number"}},
                "spec": {"podCIDR": "10.244.2.0/24"}
            }))
            .unwrap(),
        );
        assert_eq!(bad.asn, None);
        assert_eq!(n.rr_cluster_id, None);
        assert_eq!(bad.pod_cidrs, ["10.244.2.0/24".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn node_reads_the_route_reflector_cluster_id_annotation() {
        let with = |value: &str| {
            node(
                &serde_json::from_value(json!({
                    "metadata": {"name": "rr", "annotations": {NODE_RR_CLUSTER_ID_ANNOTATION: value}}
                }))
                .unwrap(),
            )
            .rr_cluster_id
        };
        assert_eq!(with("244.0.0.1"), Some("244.0.0.1".parse().unwrap()));
        assert_eq!(with(" 244.0.0.1 "), Some("244.0.0.1".parse().unwrap()));
        assert_eq!(with("fd00::1"), None, "an IPv4-formatted ID");
        assert_eq!(with("rr-1"), None);
    }

    #[test]
    fn opaque_secrets_are_read_with_data_and_string_data_and_others_are_not() {
        let s = object(&json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bgp", "namespace": "kube-system"},
            "type": "Opaque", "data": {"a": "aHVudGVyMg=="}, "stringData": {"b": "plain"}
        }));
        let Some(Ok(Object::Secret(s))) = s else {
            panic!("{s:?}")
        };
        assert_eq!(s.name, "bgp");
        assert_eq!(s.data["a"].expose(), "hunter2");
        assert_eq!(s.data["b"].expose(), "plain");
        let token = object(&json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
            "type": "kubernetes.io/service-account-token"
        }));
        assert!(token.is_none());
    }

    #[test]
    fn bgp_objects_are_read_valid_or_with_their_reason() {
        let peer = object(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "tor"},
            "spec": {"peerIP": "10.0.0.1", "asNumber": 65000, "nodeSelector": "rack == 'a'"}
        }));
        assert!(matches!(peer, Some(Ok(Object::BgpPeer(n, Ok(_)))) if n == "tor"));
        let bad = object(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "bad"},
            "spec": {"peerIP": "10.0.0.1"}
        }));
        assert!(
            matches!(&bad, Some(Ok(Object::BgpPeer(_, Err(r)))) if r.starts_with("spec.asNumber")),
            "{bad:?}"
        );
        let config = object(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "BGPConfiguration",
            "metadata": {"name": "default"}, "spec": {"nodeToNodeMeshEnabled": false}
        }));
        assert!(
            matches!(config, Some(Ok(Object::BgpConfiguration(_, Ok(c)))) if !c.node_to_node_mesh_enabled)
        );
    }

    #[test]
    fn unknown_kinds_are_not_read_and_nodes_are() {
        assert!(object(&json!({"apiVersion": "v1", "kind": "Service"})).is_none());
        assert!(object(&json!({"kind": "Pod"})).is_none());
        assert!(matches!(
            object(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})),
            Some(Ok(Object::Node(n))) if n.name == "n1"
        ));
        assert!(matches!(
            object(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}})),
            Some(Ok(Object::Pod(p))) if p.name == "a"
        ));
    }
}
