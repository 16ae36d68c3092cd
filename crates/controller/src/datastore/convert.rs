//! Kubernetes objects to model objects: pure functions shared by both datastores, so the API
//! server and a directory of manifests produce the same model for the same objects. Everything
//! policy reads goes through [`caracal_policy::k8s`], the converter `caracal policy explain` and
//! the conformance harness use too; Nodes (routing and BGP), Services and EndpointSlices
//! (service IP advertisement), the BGP objects and Secrets are converted here.

use std::net::IpAddr;

use caracal_policy::k8s;
use ipnet::IpNet;
use k8s_openapi::{
    api::{core::v1 as core, discovery::v1 as discovery},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde_json::Value;

use super::model::{
    Endpoint, EndpointSlice, Node, NodeAddress, Object, Secret, SecretValue, Service, ServiceType,
};
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

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn ips<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    texts.into_iter().filter_map(|t| t.parse().ok()).collect()
}

pub fn service(s: &core::Service) -> Service {
    let spec = s.spec.clone().unwrap_or_default();
    // `clusterIPs` supersedes `clusterIP`; "None" (headless) and "" parse to nothing.
    let mut cluster_ips = ips(spec.cluster_ips.iter().flatten());
    if cluster_ips.is_empty() {
        cluster_ips = ips(spec.cluster_ip.iter());
    }
    let mut ip_families = spec.ip_families.clone().unwrap_or_default();
    if ip_families.is_empty() {
        ip_families = cluster_ips
            .iter()
            .map(|ip| if ip.is_ipv4() { "IPv4" } else { "IPv6" }.to_string())
            .collect();
    }
    let type_ = match spec.type_.as_deref() {
        None | Some("" | "ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(_) => ServiceType::Other,
    };
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    Service {
        namespace: s.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: s.metadata.name.clone().unwrap_or_default(),
        type_,
        cluster_ips,
        external_ips: ips(spec.external_ips.iter().flatten()),
        load_balancer_ip: spec.load_balancer_ip.as_deref().and_then(|ip| ip.parse().ok()),
        ingress_ips: ips(ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref())),
        external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        ip_families,
        load_balancer_class: spec.load_balancer_class,
    }
}

pub fn endpoint_slice(s: &discovery::EndpointSlice) -> EndpointSlice {
    EndpointSlice {
        namespace: s.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: s.metadata.name.clone().unwrap_or_default(),
        service: s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned(),
        address_type: s.address_type.clone(),
        endpoints: s
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                node_name: e.node_name.clone(),
            })
            .collect(),
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    value: &Value,
    f: impl FnOnce(&T) -> Object,
) -> Result<Object, String> {
    serde_json::from_value::<T>(value.clone())
        .map(|t| f(&t))
        .map_err(|e| e.to_string())
}

/// Converts any supported manifest; `None` for kinds the datastore does not read.
pub fn object(value: &Value) -> Option<Result<Object, String>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    match (api_version, kind) {
        ("v1", "Node") => return Some(typed(value, |n| Object::Node(node(n)))),
        ("v1", "Service") => return Some(typed(value, |s| Object::Service(service(s)))),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            return Some(typed(value, |s| Object::EndpointSlice(endpoint_slice(s))));
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
    fn service_reads_ips_policy_and_families_and_headless_has_no_cluster_ip() {
        let s = service(
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "type": "LoadBalancer", "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                    "externalIPs": ["192.0.2.10", "not-an-ip"],
                    "loadBalancerIP": "198.51.100.7", "loadBalancerClass": "caracal.dev/lb",
                    "externalTrafficPolicy": "Local", "ipFamilies": ["IPv4", "IPv6"]
                },
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"hostname": "lb.example"}]}}
            }))
            .unwrap(),
        );
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(s.type_, ServiceType::LoadBalancer);
        assert_eq!(s.cluster_ips, [ip("10.96.0.10"), ip("fd00:96::10")]);
        assert_eq!(s.external_ips, [ip("192.0.2.10")]);
        assert_eq!(s.load_balancer_ip, Some(ip("198.51.100.7")));
        assert_eq!(s.ingress_ips, [ip("198.51.100.7")]);
        assert!(s.external_traffic_local);
        assert_eq!(s.ip_families, ["IPv4", "IPv6"]);
        assert_eq!(s.load_balancer_class.as_deref(), Some("caracal.dev/lb"));
        let headless = service(
            &serde_json::from_value(json!({
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
            }))
            .unwrap(),
        );
        assert_eq!(headless.type_, ServiceType::ClusterIP);
        assert!(headless.cluster_ips.is_empty() && headless.ip_families.is_empty());
        assert!(!headless.external_traffic_local);
        // A manifest without ipFamilies (no API server defaulting): the cluster IPs' families.
        let plain = service(
            &serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "fd00:96::1"}}))
                .unwrap(),
        );
        assert_eq!(plain.ip_families, ["IPv6"]);
        assert_eq!(plain.namespace, "default");
    }

    #[test]
    fn endpoint_slice_reads_service_label_and_ready_with_absent_meaning_ready() {
        let s = endpoint_slice(
            &serde_json::from_value(json!({
                "metadata": {"name": "web-abc", "namespace": "shop",
                             "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.244.1.5"], "nodeName": "n1", "conditions": {"ready": true}},
                    {"addresses": ["10.244.2.5"], "nodeName": "n2", "conditions": {"ready": false, "terminating": true}},
                    {"addresses": ["10.244.2.6"], "nodeName": "n2", "conditions": {}},
                    {"addresses": ["10.244.3.6"]}
                ]
            }))
            .unwrap(),
        );
        assert_eq!(s.service.as_deref(), Some("web"));
        assert_eq!(s.address_type, "IPv4");
        let eps: Vec<(bool, Option<&str>)> = s
            .endpoints
            .iter()
            .map(|e| (e.ready, e.node_name.as_deref()))
            .collect();
        assert_eq!(
            eps,
            [
                (true, Some("n1")),
                (false, Some("n2")),
                (true, Some("n2")),
                (true, None)
            ]
        );
    }

    #[test]
    fn unknown_kinds_are_not_read_and_nodes_are() {
        assert!(object(&json!({"apiVersion": "v1", "kind": "ConfigMap"})).is_none());
        assert!(matches!(
            object(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}})),
            Some(Ok(Object::Service(s))) if s.name == "s"
        ));
        assert!(matches!(
            object(&json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "s-1"}, "addressType": "IPv4", "endpoints": []})),
            Some(Ok(Object::EndpointSlice(s))) if s.name == "s-1"
        ));
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
