//! Kubernetes objects to the policy model: the one converter. The agent's API watchers and its
//! manifest-directory datastore, `caracal policy explain` ([`crate::manifests`]) and the
//! conformance harness all go through these functions, so explain never gives a verdict for a
//! model the agent would not build from the same objects.
//!
//! It lives in the policy crate rather than in the agent because everything it needs is already
//! here (the model holds k8s-openapi's `NetworkPolicy`, the validator checks GlobalPolicies) and
//! its users sit on both sides of the agent: the conformance harness and the offline tools must
//! not depend on the agent's crate. Nodes (pod CIDRs, addresses, AS numbers) are the agent's
//! concern, not policy's, and are converted in the agent's datastore.

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::{
    api::{
        core::v1 as core,
        networking::v1::{NetworkPolicy, NetworkPolicySpec},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    globalpolicy::GlobalPolicy,
    model::{ClusterState, Key, NAMESPACE_NAME_LABEL, NamedPort, Namespace, Pod},
    program::Protocol,
};

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn namespace_of(meta: &ObjectMeta) -> String {
    // kubectl puts objects without a namespace into "default".
    meta.namespace.clone().unwrap_or_else(|| "default".to_string())
}

/// A Namespace, with the name label the API server always sets to the namespace's name.
pub fn namespace(ns: &core::Namespace) -> Namespace {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut labels = labels(&ns.metadata);
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
    Namespace { name, labels }
}

/// A namespace known only by name (referenced by a manifest but not declared in it).
pub fn implicit_namespace(name: &str) -> Namespace {
    Namespace {
        name: name.to_string(),
        labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
    }
}

/// Adds the namespaces that pods and policies live in but that no object declared, with only
/// their name label, as they exist in any cluster.
pub fn add_implicit_namespaces(state: &mut ClusterState) {
    let used: Vec<String> = state
        .pods
        .keys()
        .chain(state.network_policies.keys())
        .map(|k| k.namespace.clone())
        .collect();
    for ns in used {
        state
            .namespaces
            .entry(ns.clone())
            .or_insert_with(|| implicit_namespace(&ns));
    }
}

/// Why a pod takes no part in policy, if it does not: a finished pod's address may already belong
/// to a new pod, and a host-network pod's address is its node's, so neither may stand for the pod
/// in peer sets, and caracal has no interface of theirs to police.
pub fn unpoliced(p: &core::Pod) -> Option<&'static str> {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return Some("has finished (phase Succeeded)"),
        Some("Failed") => return Some("has finished (phase Failed)"),
        _ => {}
    }
    p.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
        .then_some("uses the host network")
}

/// What [`pod`] left out of a pod because it could not read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodProblem {
    /// An entry of `status.podIPs` or `status.podIP` that is not an address.
    Address(String),
    /// A named container port with an unknown protocol or a number out of range.
    Port(String),
}

impl std::fmt::Display for PodProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodProblem::Address(ip) => write!(f, "bad pod IP {ip:?}"),
            PodProblem::Port(p) => write!(f, "container port {p} ignored"),
        }
    }
}

/// A Pod: its addresses (`status.podIPs`, else `status.podIP`; none when [`unpoliced`]), its node
/// and the named ports of its containers and init containers (sidecars are init containers and
/// may expose named ports too). What cannot be read is left out and listed by [`pod_problems`].
pub fn pod(p: &core::Pod) -> Pod {
    convert_pod(p).0
}

/// What [`pod`] leaves out of `p`.
pub fn pod_problems(p: &core::Pod) -> Vec<PodProblem> {
    convert_pod(p).1
}

fn convert_pod(p: &core::Pod) -> (Pod, Vec<PodProblem>) {
    let spec = p.spec.as_ref();
    let mut problems = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    if unpoliced(p).is_none()
        && let Some(status) = &p.status
    {
        let listed = status.pod_ips.iter().flatten().map(|i| i.ip.as_str());
        for ip in listed.chain(status.pod_ip.as_deref()) {
            match ip.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => problems.push(PodProblem::Address(ip.to_string())),
            }
        }
    }
    let mut ports = Vec::new();
    if let Some(spec) = spec {
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for port in containers.flat_map(|c| c.ports.iter().flatten()) {
            // Only named ports can be referenced by name.
            let Some(name) = port.name.as_ref() else {
                continue;
            };
            let protocol = Protocol::from_k8s(port.protocol.as_deref());
            match (protocol, u16::try_from(port.container_port)) {
                (Some(protocol), Ok(number)) => ports.push(NamedPort {
                    name: name.clone(),
                    protocol,
                    port: number,
                }),
                _ => problems.push(PodProblem::Port(format!(
                    "{name} ({}/{})",
                    port.container_port,
                    port.protocol.as_deref().unwrap_or("TCP")
                ))),
            }
        }
    }
    ports.sort();
    ports.dedup();
    let pod = Pod {
        namespace: namespace_of(&p.metadata),
        name: p.metadata.name.clone().unwrap_or_default(),
        labels: labels(&p.metadata),
        ips,
        node: spec.and_then(|s| s.node_name.clone()),
        ports,
    };
    (pod, problems)
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
/// object that does not parse or fails the semantic checks (priority range, selectors,
/// expressions, CIDRs, ports: what the CRD schema cannot express) is rejected whole, with the
/// reason.
pub fn global_policy(value: &Value) -> (String, Result<GlobalPolicy, String>) {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Keep only what every source agrees on: server-set metadata and the status the agent
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
            .and_then(|gp| {
                crate::validate::global_policy(&gp).map_err(|e| e.to_string())?;
                Ok(gp)
            })
    };
    (name, parsed)
}

/// One object of a kind policy reads, converted.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    NetworkPolicy(Key, Box<NetworkPolicy>),
    /// A GlobalPolicy, or the reason it is ignored.
    GlobalPolicy(String, Result<Box<GlobalPolicy>, String>),
}

/// Converts a Namespace, Pod, NetworkPolicy or GlobalPolicy manifest; `None` for other kinds.
pub fn object(value: &Value) -> Option<Result<Object, String>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }
    Some(match (api_version, kind) {
        ("v1", "Namespace") => typed(value).map(|n| Object::Namespace(namespace(&n))),
        ("v1", "Pod") => typed(value).map(|p| Object::Pod(pod(&p))),
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

/// Splits a multi-document YAML (or JSON) text into documents, flattening `kind: List` and
/// `*List` objects the way kubectl does; empty documents are skipped.
pub fn parse_manifests(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc)?;
        flatten(value, &mut out);
    }
    Ok(out)
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    match value {
        Value::Null => {}
        Value::Object(mut map) if is_list => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    flatten(item, out);
                }
            }
        }
        other => out.push(other),
    }
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
        for (v, why) in [
            (
                json!({"metadata": {"name": "a"}, "status": {"phase": "Succeeded", "podIPs": [{"ip": "10.0.0.1"}]}}),
                "has finished (phase Succeeded)",
            ),
            (
                json!({"metadata": {"name": "a"}, "status": {"phase": "Failed", "podIP": "10.0.0.1"}}),
                "has finished (phase Failed)",
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"hostNetwork": true, "containers": []},
                       "status": {"podIPs": [{"ip": "192.168.1.1"}]}}),
                "uses the host network",
            ),
        ] {
            let k: core::Pod = serde_json::from_value(v).unwrap();
            assert!(pod(&k).ips.is_empty(), "{why}");
            assert_eq!(unpoliced(&k), Some(why));
        }
        let running: core::Pod = serde_json::from_value(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}),
        )
        .unwrap();
        assert_eq!(unpoliced(&running), None);
    }

    #[test]
    fn init_container_ports_count_and_unreadable_ports_and_addresses_are_listed() {
        let k: core::Pod = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "spec": {
                "initContainers": [{"name": "side", "ports": [{"name": "metrics", "containerPort": 9090}]}],
                "containers": [{"name": "c", "ports": [
                    {"name": "weird", "containerPort": 7, "protocol": "ICMP"},
                    {"name": "huge", "containerPort": 70000}
                ]}]
            },
            "status": {"podIPs": [{"ip": "nonsense"}, {"ip": "10.0.0.3"}]}
        }))
        .unwrap();
        let p = pod(&k);
        assert_eq!(
            p.ports,
            [NamedPort {
                name: "metrics".into(),
                protocol: Protocol::Tcp,
                port: 9090
            }]
        );
        assert_eq!(p.ips, ["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            pod_problems(&k),
            [
                PodProblem::Address("nonsense".into()),
                PodProblem::Port("weird (7/ICMP)".into()),
                PodProblem::Port("huge (70000/TCP)".into()),
            ]
        );
    }

    #[test]
    fn a_namespace_always_carries_its_own_name_label() {
        let ns: core::Namespace = serde_json::from_value(
            json!({"metadata": {"name": "x", "labels": {"team": "a", NAMESPACE_NAME_LABEL: "y"}}}),
        )
        .unwrap();
        let ns = namespace(&ns);
        assert_eq!(ns.labels[NAMESPACE_NAME_LABEL], "x");
        assert_eq!(ns.labels["team"], "a");
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
    fn lists_are_flattened_and_unknown_kinds_are_not_read() {
        let docs = parse_manifests(
            "kind: PodList\nitems: [{apiVersion: v1, kind: Pod, metadata: {name: a}}]\n---\n---\napiVersion: v1\nkind: Service\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert!(matches!(object(&docs[0]), Some(Ok(Object::Pod(_)))));
        assert!(object(&docs[1]).is_none());
        assert!(object(&json!({"kind": "Pod"})).is_none());
    }
}
