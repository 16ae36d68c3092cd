//! The case format (`shared/conformance/FORMAT.md`): parsing, model defaults, pod placement and
//! addresses, `${ip:NS/POD}` substitution, and applying a step's changes to the cluster.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use super::{Error, Result, table::Table};
use caracal_policy::{
    compile::iface_name,
    k8s,
    model::{ClusterState, Key, LocalEndpoint, NAMESPACE_NAME_LABEL, NamedPort, Namespace, Pod},
    program::Protocol,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawModel {
    nodes: Option<usize>,
    namespaces: Option<BTreeMap<String, Option<BTreeMap<String, String>>>>,
    pods: Option<Vec<RawPod>>,
    ports: Option<Vec<u16>>,
    protocols: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPod {
    namespace: String,
    name: String,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStep {
    apply: Option<String>,
    #[serde(default)]
    delete: Vec<DeleteRef>,
    #[serde(default)]
    namespace_labels: Vec<NamespaceLabels>,
    #[serde(default)]
    pod_labels: Vec<PodLabels>,
    #[serde(default)]
    expect: Vec<RawExpect>,
}

/// An object to delete.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceLabels {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    port: u16,
    protocol: String,
    table: String,
}

/// One probe expectation of a step.
#[derive(Clone, Debug)]
pub struct Expect {
    pub port: u16,
    pub protocol: Protocol,
    pub table: Table,
}

/// One step: changes in the order apply, delete, namespaceLabels, podLabels; then expectations.
#[derive(Clone, Debug)]
pub struct Step {
    /// Manifests with `${ip:...}` already substituted.
    pub apply: Option<String>,
    pub delete: Vec<DeleteRef>,
    pub namespace_labels: Vec<NamespaceLabels>,
    pub pod_labels: Vec<PodLabels>,
    pub expect: Vec<Expect>,
}

/// A parsed case with its model resolved: pods placed and addressed.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub description: Option<String>,
    pub nodes: Vec<String>,
    pub ports: Vec<u16>,
    pub protocols: Vec<Protocol>,
    /// The initial cluster: namespaces and pods, no policies.
    pub initial: ClusterState,
    /// Pods in the order the case lists them.
    pub pods: Vec<Key>,
    pub steps: Vec<Step>,
}

/// `serve-80-tcp`.
pub fn port_name(port: u16, proto: Protocol) -> String {
    format!("serve-{port}-{}", proto.name())
}

/// The IPv4 address of the `index`-th pod on node `node` (10.244.<node>.<index+10>; 240 pods a
/// node at most, far above what a case holds).
pub fn pod_ipv4(node: usize, index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node as u8, (index + 10) as u8)
}

/// The IPv6 address of the same pod (fd00:10:244:<node>::<index+10>).
pub fn pod_ipv6(node: usize, index: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0x244, node as u16, 0, 0, 0, (index + 10) as u16)
}

impl Case {
    pub fn parse(text: &str) -> Result<Case> {
        let raw: RawCase = serde_yaml::from_str(text).map_err(|e| Error::Case(e.to_string()))?;
        let nodes = raw.model.nodes.unwrap_or(2);
        if nodes == 0 || nodes > 200 {
            return Err(Error::Case(format!("model.nodes {nodes} is not in 1..200")));
        }
        let namespaces: BTreeMap<String, BTreeMap<String, String>> = match raw.model.namespaces {
            Some(ns) => ns.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
            None => ["x", "y", "z"]
                .iter()
                .map(|n| (n.to_string(), BTreeMap::new()))
                .collect(),
        };
        let raw_pods = match raw.model.pods {
            Some(p) => p,
            None => namespaces
                .keys()
                .flat_map(|ns| {
                    ["a", "b", "c"].iter().map(move |n| RawPod {
                        namespace: ns.clone(),
                        name: n.to_string(),
                        labels: None,
                    })
                })
                .collect(),
        };
        let ports = raw.model.ports.unwrap_or_else(|| vec![80, 81]);
        let protocols = raw
            .model
            .protocols
            .unwrap_or_else(|| vec!["TCP".into(), "UDP".into()])
            .iter()
            .map(|p| {
                Protocol::from_k8s(Some(p))
                    .ok_or_else(|| Error::Case(format!("model.protocols: unknown protocol {p:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let node_names: Vec<String> = (0..nodes).map(|i| format!("node-{i}")).collect();

        let mut initial = ClusterState::default();
        for (name, labels) in &namespaces {
            let mut labels = labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            initial.namespaces.insert(
                name.clone(),
                Namespace {
                    name: name.clone(),
                    labels,
                },
            );
        }
        let mut per_node = vec![0usize; nodes];
        let mut pods = Vec::new();
        for (i, rp) in raw_pods.into_iter().enumerate() {
            if !initial.namespaces.contains_key(&rp.namespace) {
                return Err(Error::Case(format!(
                    "pod {}/{}: namespace not in the model",
                    rp.namespace, rp.name
                )));
            }
            let node = i % nodes;
            let index = per_node[node];
            per_node[node] += 1;
            if index >= 240 {
                return Err(Error::Case("more than 240 pods on one node".into()));
            }
            let key = Key::new(rp.namespace.clone(), rp.name.clone());
            let labels = rp
                .labels
                .unwrap_or_else(|| [("pod".to_string(), rp.name.clone())].into());
            let named = protocols
                .iter()
                .flat_map(|&proto| {
                    ports.iter().map(move |&port| NamedPort {
                        name: port_name(port, proto),
                        protocol: proto,
                        port,
                    })
                })
                .collect();
            let pod = Pod {
                namespace: rp.namespace,
                name: rp.name,
                labels,
                ips: vec![
                    IpAddr::V4(pod_ipv4(node, index)),
                    IpAddr::V6(pod_ipv6(node, index)),
                ],
                node: Some(node_names[node].clone()),
                ports: named,
            };
            if initial.pods.insert(key.clone(), pod).is_some() {
                return Err(Error::Case(format!("pod {key} listed twice")));
            }
            pods.push(key);
        }

        let ipv4 = |key: &str| -> Option<String> {
            let (ns, name) = key.split_once('/')?;
            let pod = initial.pods.get(&Key::new(ns, name))?;
            pod.ips.iter().find(|ip| ip.is_ipv4()).map(|ip| ip.to_string())
        };
        let mut steps = Vec::new();
        for (si, rs) in raw.steps.into_iter().enumerate() {
            let apply = match rs.apply {
                Some(text) => Some(
                    substitute(&text, &ipv4).map_err(|e| Error::Case(format!("steps[{si}].apply: {e}")))?,
                ),
                None => None,
            };
            let mut expect = Vec::new();
            for (ei, e) in rs.expect.into_iter().enumerate() {
                let field = format!("steps[{si}].expect[{ei}]");
                let protocol = Protocol::from_k8s(Some(&e.protocol))
                    .filter(|p| protocols.contains(p))
                    .ok_or_else(|| {
                        Error::Case(format!("{field}: protocol {} is not in the model", e.protocol))
                    })?;
                if !ports.contains(&e.port) {
                    return Err(Error::Case(format!(
                        "{field}: port {} is not in the model",
                        e.port
                    )));
                }
                let table =
                    Table::parse(&e.table, &pods).map_err(|err| Error::Case(format!("{field}: {err}")))?;
                expect.push(Expect {
                    port: e.port,
                    protocol,
                    table,
                });
            }
            steps.push(Step {
                apply,
                delete: rs.delete,
                namespace_labels: rs.namespace_labels,
                pod_labels: rs.pod_labels,
                expect,
            });
        }
        Ok(Case {
            name: raw.name,
            description: raw.description,
            nodes: node_names,
            ports,
            protocols,
            initial,
            pods,
            steps,
        })
    }

    /// This node's endpoints: its pods, each on a veth named after the pod.
    pub fn endpoints(&self, state: &ClusterState, node: &str) -> Vec<LocalEndpoint> {
        state
            .pods
            .values()
            .filter(|p| p.node.as_deref() == Some(node))
            .map(|p| {
                let key = Key::new(p.namespace.clone(), p.name.clone());
                LocalEndpoint {
                    iface: iface_name(&key),
                    pod: key,
                    ips: p.ips.clone(),
                }
            })
            .collect()
    }
}

/// Replaces `${ip:NS/POD}` with the pod's IPv4 address.
fn substitute(text: &str, ip: &dyn Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${ip:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let end = after.find('}').ok_or("unterminated ${ip:...}")?;
        let key = &after[..end];
        out.push_str(&ip(key).ok_or_else(|| format!("${{ip:{key}}}: no such pod"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Applies one step's changes to `state`, in the format's order.
pub fn apply_step(state: &mut ClusterState, step: &Step) -> Result<()> {
    if let Some(text) = &step.apply {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Manifest(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            apply_object(state, value)?;
        }
    }
    for d in &step.delete {
        let removed = match d.kind.as_str() {
            "NetworkPolicy" => state
                .network_policies
                .remove(&Key::new(
                    d.namespace.clone().unwrap_or_else(|| "default".into()),
                    d.name.clone(),
                ))
                .is_some(),
            "GlobalPolicy" => state.global_policies.remove(&d.name).is_some(),
            other => return Err(Error::Manifest(format!("delete: unknown kind {other:?}"))),
        };
        if !removed {
            return Err(Error::Manifest(format!(
                "delete: {} {} does not exist",
                d.kind, d.name
            )));
        }
    }
    for nl in &step.namespace_labels {
        let ns = state
            .namespaces
            .get_mut(&nl.namespace)
            .ok_or_else(|| Error::Manifest(format!("namespaceLabels: no namespace {}", nl.namespace)))?;
        ns.labels = nl.labels.clone();
        ns.labels
            .insert(NAMESPACE_NAME_LABEL.into(), nl.namespace.clone());
    }
    for pl in &step.pod_labels {
        let pod = state
            .pods
            .get_mut(&Key::new(pl.namespace.clone(), pl.pod.clone()))
            .ok_or_else(|| Error::Manifest(format!("podLabels: no pod {}/{}", pl.namespace, pl.pod)))?;
        pod.labels = pl.labels.clone();
    }
    Ok(())
}

/// Applies one manifest (replacing an object of the same name whole, as `kubectl apply` does),
/// through the agent's converter ([`caracal_policy::k8s`]). A GlobalPolicy the agent would reject fails
/// the step: a case states what the agent enforces.
pub fn apply_object(state: &mut ClusterState, value: serde_yaml::Value) -> Result<()> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "NetworkPolicy" => {
            let np: NetworkPolicy =
                serde_yaml::from_value(value).map_err(|e| Error::Manifest(format!("NetworkPolicy: {e}")))?;
            let (key, np) = k8s::network_policy(&np);
            state.network_policies.insert(key, np);
        }
        "GlobalPolicy" => {
            let json =
                serde_json::to_value(value).map_err(|e| Error::Manifest(format!("GlobalPolicy: {e}")))?;
            let (name, gp) = k8s::global_policy(&json);
            let gp = gp.map_err(|e| Error::Manifest(format!("GlobalPolicy {name}: {e}")))?;
            state.global_policies.insert(name, gp);
        }
        other => return Err(Error::Manifest(format!("unsupported kind {other:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_nine_pods_on_two_nodes_with_named_ports() {
        let case = Case::parse("name: t\nsteps: []").unwrap();
        assert_eq!(case.pods.len(), 9);
        assert_eq!(case.nodes.len(), 2);
        assert_eq!(case.ports, vec![80, 81]);
        let xa = &case.initial.pods[&Key::new("x", "a")];
        assert_eq!(xa.labels.get("pod").map(String::as_str), Some("a"));
        assert_eq!(xa.node.as_deref(), Some("node-0"));
        assert_eq!(
            case.initial.pods[&Key::new("x", "b")].node.as_deref(),
            Some("node-1")
        );
        assert!(xa.ports.iter().any(|p| p.name == "serve-81-udp" && p.port == 81));
        assert_eq!(case.initial.namespaces["y"].labels[NAMESPACE_NAME_LABEL], "y");
    }

    #[test]
    fn ip_placeholders_are_substituted() {
        let text = "name: t\nmodel: {namespaces: {x: {}}, pods: [{namespace: x, name: a}]}\nsteps:\n  - apply: 'cidr: ${ip:x/a}/32'\n";
        let case = Case::parse(text).unwrap();
        assert_eq!(case.steps[0].apply.as_deref(), Some("cidr: 10.244.0.10/32"));
        let bad = "name: t\nmodel: {namespaces: {x: {}}, pods: [{namespace: x, name: a}]}\nsteps:\n  - apply: 'cidr: ${ip:x/zz}/32'\n";
        assert!(Case::parse(bad).unwrap_err().to_string().contains("x/zz"));
    }

    #[test]
    fn unknown_fields_and_kinds_are_errors() {
        assert!(Case::parse("name: t\nstepz: []").is_err());
        let mut state = ClusterState::default();
        let v: serde_yaml::Value = serde_yaml::from_str("kind: Pod\nmetadata: {name: a}").unwrap();
        assert!(apply_object(&mut state, v).is_err());
    }
}
