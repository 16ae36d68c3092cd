//! Kubernetes objects to model objects: pure functions shared by both datastores, so the API
//! server and a directory of manifests produce the same model for the same objects. Everything
//! policy reads goes through [`caracal_policy::k8s`], the converter `caracal policy explain` and
//! the conformance harness use too; only Nodes (routing and BGP) are converted here.

use caracal_policy::k8s;
use ipnet::IpNet;
use k8s_openapi::{api::core::v1 as core, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::Value;

use super::model::{Node, NodeAddress, Object};

pub use caracal_policy::k8s::{global_policy, implicit_namespace, namespace, network_policy, pod};
/// The label the API server puts on every namespace; the directory datastore adds it too.
pub use caracal_policy::model::NAMESPACE_NAME_LABEL;
/// Node annotation carrying the node's own BGP AS number, when it differs from the cluster's.
pub const NODE_ASN_ANNOTATION: &str = "caracal.dev/bgp-asn";

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
    let asn = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ASN_ANNOTATION))
        .and_then(|v| v.trim().parse::<u32>().ok());
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        pod_cidrs: cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect(),
        addresses,
        labels: labels(&n.metadata),
        asn,
    }
}

/// Converts any supported manifest; `None` for kinds the datastore does not read.
pub fn object(value: &Value) -> Option<Result<Object, String>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    if (api_version, kind) == ("v1", "Node") {
        return Some(
            serde_json::from_value::<core::Node>(value.clone())
                .map(|n| Object::Node(node(&n)))
                .map_err(|e| e.to_string()),
        );
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
        assert_eq!(bad.pod_cidrs, ["10.244.2.0/24".parse::<IpNet>().unwrap()]);
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
