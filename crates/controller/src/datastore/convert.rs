//! Kubernetes objects to model objects: pure functions shared by both datastores, so the API
//! server and a directory of manifests produce the same model for the same objects.

use std::{collections::BTreeMap, net::IpAddr};

use caracal_policy::{
    globalpolicy::GlobalPolicy,
    model::{Key, NamedPort, Namespace, Pod},
    program::Protocol,
};
use ipnet::IpNet;
use k8s_openapi::{
    api::{
        core::v1 as core,
        networking::v1::{NetworkPolicy, NetworkPolicySpec},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde_json::Value;

use super::model::{Node, NodeAddress, Object};

/// The label the API server puts on every namespace; the directory datastore adds it too.
pub use caracal_policy::model::NAMESPACE_NAME_LABEL;
/// Node annotation carrying the node's own BGP AS number, when it differs from the cluster's.
pub const NODE_ASN_ANNOTATION: &str = "caracal.dev/bgp-asn";

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn namespace_of(meta: &ObjectMeta) -> String {
    // kubectl puts objects without a namespace into "default"; so does the directory datastore.
    meta.namespace.clone().unwrap_or_else(|| "default".to_string())
}

pub fn namespace(ns: &core::Namespace) -> Namespace {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut labels = labels(&ns.metadata);
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| name.clone());
    Namespace { name, labels }
}

/// A namespace known only by name (referenced by a manifest but not declared in it).
pub fn implicit_namespace(name: &str) -> Namespace {
    Namespace {
        name: name.to_string(),
        labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
    }
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

pub fn pod(p: &core::Pod) -> Pod {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    // A finished pod's address may already belong to a new pod, and a host-network pod's
    // address is its node's: neither may stand for the pod in peer sets.
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut ips: Vec<IpAddr> = Vec::new();
    if !finished
        && !host_network
        && let Some(status) = status
    {
        let listed = status.pod_ips.iter().flatten().map(|i| i.ip.as_str());
        for ip in listed.chain(status.pod_ip.as_deref()) {
            if let Ok(ip) = ip.parse::<IpAddr>()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
    }
    let mut ports = Vec::new();
    if let Some(spec) = spec {
        // Sidecars are init containers and may expose named ports too.
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for port in containers.flat_map(|c| c.ports.iter().flatten()) {
            let (Some(name), Some(protocol), Ok(number)) = (
                port.name.as_ref(),
                protocol(port.protocol.as_deref()),
                u16::try_from(port.container_port),
            ) else {
                continue;
            };
            ports.push(NamedPort {
                name: name.clone(),
                protocol,
                port: number,
            });
        }
    }
    ports.sort();
    ports.dedup();
    Pod {
        namespace: namespace_of(&p.metadata),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: labels(&p.metadata),
        ips,
        node: spec.and_then(|s| s.node_name.clone()),
        ports,
    }
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

/// Only what policy needs, with the API server's defaults applied: the same NetworkPolicy read
/// back from the API server and from a manifest compare equal.
pub fn network_policy(np: &NetworkPolicy) -> (Key, NetworkPolicy) {
    let key = Key::new(
        namespace_of(&np.metadata),
        np.metadata.name.clone().unwrap_or_default(),
    );
    let mut spec = np.spec.clone().unwrap_or_default();
    default_network_policy_spec(&mut spec);
    let out = NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            labels: np.metadata.labels.clone().filter(|l| !l.is_empty()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
    };
    (key, out)
}

/// `pkg/apis/networking/v1/defaults.go`: policyTypes from the rules present, protocol TCP. Empty
/// lists are dropped because the API server omits them when it serializes.
fn default_network_policy_spec(spec: &mut NetworkPolicySpec) {
    if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push("Egress".to_string());
        }
        spec.policy_types = Some(types);
    }
    for rule in spec.ingress.iter_mut().flatten() {
        rule.from = rule.from.take().filter(|v| !v.is_empty());
        rule.ports = rule.ports.take().filter(|v| !v.is_empty());
    }
    for rule in spec.egress.iter_mut().flatten() {
        rule.to = rule.to.take().filter(|v| !v.is_empty());
        rule.ports = rule.ports.take().filter(|v| !v.is_empty());
    }
    for port in spec
        .ingress
        .iter_mut()
        .flatten()
        .flat_map(|r| r.ports.iter_mut().flatten())
        .chain(
            spec.egress
                .iter_mut()
                .flatten()
                .flat_map(|r| r.ports.iter_mut().flatten()),
        )
    {
        port.protocol.get_or_insert_with(|| "TCP".to_string());
    }
    spec.ingress = spec.ingress.take().filter(|v| !v.is_empty());
    spec.egress = spec.egress.take().filter(|v| !v.is_empty());
}

/// A GlobalPolicy from its JSON form (as listed by the API server or read from a manifest). An
/// object that does not parse is rejected whole, with the reason.
pub fn global_policy(value: &Value) -> (String, Result<GlobalPolicy, String>) {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Keep only what both datastores agree on: server-set metadata and the status this agent
    // writes itself must not make two equal policies differ.
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), Value::String(name.clone()));
    if let Some(labels) = value
        .pointer("/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        meta.insert("labels".into(), labels.clone());
    }
    let mut trimmed = serde_json::Map::new();
    for field in ["apiVersion", "kind", "spec"] {
        if let Some(v) = value.get(field) {
            trimmed.insert(field.into(), v.clone());
        }
    }
    trimmed.insert("metadata".into(), Value::Object(meta));
    let parsed = if name.is_empty() {
        Err("metadata.name is missing".to_string())
    } else {
        serde_json::from_value::<GlobalPolicy>(Value::Object(trimmed))
            .map_err(|e| e.to_string())
            .and_then(check_global_policy)
    };
    (name, parsed)
}

/// The policy crate's semantic checks (priority range, selectors, expressions, CIDRs, ports):
/// what the CRD schema cannot express, and all of it for a manifest read from a directory.
fn check_global_policy(gp: GlobalPolicy) -> Result<GlobalPolicy, String> {
    caracal_policy::validate::global_policy(&gp).map_err(|e| e.to_string())?;
    Ok(gp)
}

/// Converts any supported manifest; `None` for kinds the datastore does not read.
pub fn object(value: &Value) -> Option<Result<Object, String>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }
    Some(match (api_version, kind) {
        ("v1", "Namespace") => typed(value).map(|n| Object::Namespace(namespace(&n))),
        ("v1", "Pod") => typed(value).map(|p| Object::Pod(pod(&p))),
        ("v1", "Node") => typed(value).map(|n| Object::Node(node(&n))),
        ("networking.k8s.io/v1", "NetworkPolicy") => typed(value).map(|np| {
            let (key, np) = network_policy(&np);
            Object::NetworkPolicy(key, Box::new(np))
        }),
        ("caracal.dev/v1alpha1", "GlobalPolicy") => {
            let (name, gp) = global_policy(value);
            Ok(Object::GlobalPolicy(name, gp.map(Box::new)))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_from(v: Value) -> Pod {
        pod(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn pod_takes_all_pod_ips_and_falls_back_to_pod_ip() {
        let p = pod_from(json!({
            "metadata": {"name": "a", "namespace": "n", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                {"containerPort": 80}
            ]}]},
            "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        }));
        assert_eq!(
            p.ips,
            ["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]
        );
        assert_eq!(p.node.as_deref(), Some("n1"));
        // Only named ports can be referenced by name.
        assert_eq!(
            p.ports,
            [NamedPort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53
            }]
        );
        let p = pod_from(json!({"metadata": {"name": "b"}, "status": {"podIP": "10.0.0.2"}}));
        assert_eq!(p.namespace, "default");
        assert_eq!(p.ips, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn finished_and_host_network_pods_have_no_addresses() {
        let done = pod_from(json!({
            "metadata": {"name": "a", "namespace": "n"},
            "status": {"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.1"}]}
        }));
        assert!(done.ips.is_empty());
        let host = pod_from(json!({
            "metadata": {"name": "a", "namespace": "n"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"podIPs": [{"ip": "192.168.1.1"}]}
        }));
        assert!(host.ips.is_empty());
    }

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
    fn network_policy_keeps_only_name_labels_and_defaulted_spec() {
        let np: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "123", "resourceVersion": "9",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"podSelector": {}, "ingress": [{"from": [], "ports": [{"port": 80}]}]}
        }))
        .unwrap();
        let (key, out) = network_policy(&np);
        assert_eq!(key, Key::new("n", "p"));
        assert_eq!(out.metadata.uid, None);
        assert_eq!(out.metadata.annotations, None);
        let spec = out.spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        let rule = &spec.ingress.unwrap()[0];
        assert_eq!(rule.from, None);
        assert_eq!(rule.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn global_policy_without_name_is_rejected_with_reason() {
        let (name, parsed) = global_policy(&json!({
            "apiVersion": "caracal.dev/v1alpha1", "kind": "GlobalPolicy", "metadata": {}
        }));
        assert_eq!(name, "");
        assert!(parsed.unwrap_err().contains("metadata.name"));
    }

    #[test]
    fn global_policy_with_bad_priority_or_action_is_rejected_with_reason() {
        let gp = |spec: Value| {
            global_policy(&json!({
                "apiVersion": "caracal.dev/v1alpha1", "kind": "GlobalPolicy",
                "metadata": {"name": "g", "uid": "1", "resourceVersion": "5"}, "spec": spec
            }))
        };
        let (_, ok) = gp(json!({"priority": 10, "ingress": [{"action": "Deny"}]}));
        let ok = ok.unwrap();
        assert_eq!(ok.metadata.uid, None, "server-set metadata is dropped");
        assert_eq!(ok.spec.priority, 10);
        let (_, high) = gp(json!({"priority": 5000}));
        assert!(high.unwrap_err().contains("spec.priority: 5000"));
        let (_, expr) = gp(json!({"priority": 1, "subject": {"selector": "app == "}}));
        assert!(expr.unwrap_err().contains("spec.subject.selector"));
        let (_, action) = gp(json!({"priority": 1, "ingress": [{"action": "Allow"}]}));
        assert!(action.unwrap_err().contains("Allow"));
        let (_, missing) = gp(json!({"tier": "Admin"}));
        assert!(missing.unwrap_err().contains("priority"));
    }

    #[test]
    fn unknown_kinds_are_not_read() {
        assert!(object(&json!({"apiVersion": "v1", "kind": "Service"})).is_none());
        assert!(object(&json!({"kind": "Pod"})).is_none());
    }
}
