//! Kubernetes manifests (Namespaces, Pods, NetworkPolicies, GlobalPolicies; multi-document
//! YAML, or `List` objects) as a [`ClusterState`], for `caracal policy explain` and other offline
//! tools. Pods take their addresses from `status.podIPs`/`status.podIP` and their node from
//! `spec.nodeName`; named ports from their containers.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use serde::Deserialize;

use crate::{
    conformance::case::apply_object,
    model::{ClusterState, Key, NAMESPACE_NAME_LABEL, NamedPort, Namespace, Pod},
    program::Protocol,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Yaml(String),
    #[error("{kind} {name}: {reason}")]
    Object {
        kind: String,
        name: String,
        reason: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds every object of a multi-document YAML text to `state`. Unknown kinds are skipped and
/// named in the returned list.
pub fn load(state: &mut ClusterState, text: &str) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Yaml(e.to_string()))?;
        if !value.is_null() {
            load_value(state, value, &mut skipped)?;
        }
    }
    Ok(skipped)
}

fn load_value(state: &mut ClusterState, value: serde_yaml::Value, skipped: &mut Vec<String>) -> Result<()> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let err = |reason: String| Error::Object {
        kind: kind.clone(),
        name: name.clone(),
        reason,
    };
    match kind.as_str() {
        "List" => {
            if let Some(items) = value.get("items").and_then(|i| i.as_sequence()) {
                for item in items.clone() {
                    load_value(state, item, skipped)?;
                }
            }
        }
        "Namespace" => {
            let ns: K8sNamespace = serde_yaml::from_value(value).map_err(|e| err(e.to_string()))?;
            let mut labels = ns.metadata.labels.unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            state.namespaces.insert(name.clone(), Namespace { name, labels });
        }
        "Pod" => {
            let pod: K8sPod = serde_yaml::from_value(value).map_err(|e| err(e.to_string()))?;
            let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let status = pod.status.unwrap_or_default();
            let mut ips: Vec<IpAddr> = Vec::new();
            for ip in status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref())
            {
                let ip: IpAddr = ip.parse().map_err(|_| err(format!("bad pod IP {ip:?}")))?;
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            let spec = pod.spec.unwrap_or_default();
            let mut ports = Vec::new();
            for c in &spec.containers {
                for p in c.ports.iter().flatten() {
                    let Some(pname) = &p.name else { continue };
                    let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        "SCTP" => Protocol::Sctp,
                        other => return Err(err(format!("container port {pname}: protocol {other:?}"))),
                    };
                    let port = u16::try_from(p.container_port)
                        .map_err(|_| err(format!("container port {pname}: {}", p.container_port)))?;
                    ports.push(NamedPort {
                        name: pname.clone(),
                        protocol,
                        port,
                    });
                }
            }
            state
                .namespaces
                .entry(namespace.clone())
                .or_insert_with(|| Namespace {
                    name: namespace.clone(),
                    labels: [(NAMESPACE_NAME_LABEL.to_string(), namespace.clone())].into(),
                });
            state.pods.insert(
                Key::new(namespace.clone(), name.clone()),
                Pod {
                    namespace,
                    name,
                    labels: pod.metadata.labels.unwrap_or_default(),
                    ips,
                    node: spec.node_name,
                    ports,
                },
            );
        }
        "NetworkPolicy" | "GlobalPolicy" => {
            apply_object(state, value).map_err(|e| err(e.to_string()))?;
        }
        _ => skipped.push(format!("{kind} {name}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pods_with_addresses_nodes_and_named_ports() {
        let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]}
---
apiVersion: v1
kind: Service
metadata: {name: s}
"#;
        let mut state = ClusterState::default();
        let skipped = load(&mut state, text).unwrap();
        assert_eq!(skipped, vec!["Service s".to_string()]);
        let pod = &state.pods[&Key::new("x", "a")];
        assert_eq!(pod.ips.len(), 2);
        assert_eq!(pod.node.as_deref(), Some("n1"));
        assert_eq!(pod.ports[0].port, 8080);
        assert_eq!(state.namespaces["x"].labels[NAMESPACE_NAME_LABEL], "x");
        assert_eq!(state.namespaces["x"].labels["team"], "a");
    }

    #[test]
    fn a_bad_pod_address_is_an_error_naming_the_pod() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: nonsense}\n";
        let e = load(&mut ClusterState::default(), text).unwrap_err();
        assert!(e.to_string().contains("Pod a"), "{e}");
    }
}
