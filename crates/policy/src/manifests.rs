//! Kubernetes manifests (Namespaces, Pods, NetworkPolicies, GlobalPolicies; multi-document
//! YAML, or `List` objects) as a [`ClusterState`], for `caracal policy explain` and other offline
//! tools. Every object goes through [`crate::k8s`], the converter the agent's datastores use, so
//! the model is the one the agent would build from the same objects.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    k8s::{self, Object, PodProblem},
    model::{ClusterState, Key},
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
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What loading manifests found besides the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Objects of kinds policy does not read, as `Kind name`.
    pub skipped: Vec<String>,
    /// GlobalPolicies the agent would ignore, by name, with the reason.
    pub rejected: BTreeMap<String, String>,
    /// Pods that take no part in policy ([`k8s::unpoliced`]), with the reason.
    pub unpoliced: BTreeMap<Key, &'static str>,
    /// What was left out of an object (a named port the agent cannot use), as text.
    pub notes: Vec<String>,
}

/// Adds every object of a multi-document YAML text to `state`. Unknown kinds are skipped and
/// named in the returned list.
pub fn load(state: &mut ClusterState, text: &str) -> Result<Vec<String>> {
    let mut loaded = Loaded::default();
    load_into(state, &mut loaded, text)?;
    Ok(loaded.skipped)
}

/// Adds every object of a multi-document YAML text to `state`, and what it found to `loaded`.
/// A pod address that does not parse is an error (the agent would drop it: explain refuses
/// rather than guess); namespaces that objects use but nobody declares are added.
pub fn load_into(state: &mut ClusterState, loaded: &mut Loaded, text: &str) -> Result<()> {
    let docs = k8s::parse_manifests(text).map_err(|e| Error::Yaml(e.to_string()))?;
    for doc in &docs {
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let name = doc
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let err = |reason: String| Error::Object {
            kind: kind.to_string(),
            name: name.to_string(),
            reason,
        };
        let Some(object) = k8s::object(doc) else {
            loaded.skipped.push(format!("{kind} {name}"));
            continue;
        };
        match object.map_err(err)? {
            Object::Namespace(ns) => {
                state.namespaces.insert(ns.name.clone(), ns);
            }
            Object::Pod(p) => {
                let k8s_pod = serde_json::from_value(doc.clone()).map_err(|e| err(e.to_string()))?;
                for problem in k8s::pod_problems(&k8s_pod) {
                    match problem {
                        PodProblem::Address(_) => return Err(err(problem.to_string())),
                        PodProblem::Port(_) => loaded.notes.push(format!("Pod {name}: {problem}")),
                    }
                }
                let key = Key::new(p.namespace.clone(), p.name.clone());
                match k8s::unpoliced(&k8s_pod) {
                    Some(why) => loaded.unpoliced.insert(key.clone(), why),
                    None => loaded.unpoliced.remove(&key),
                };
                state.pods.insert(key, p);
            }
            Object::NetworkPolicy(key, np) => {
                state.network_policies.insert(key, *np);
            }
            Object::GlobalPolicy(name, Ok(gp)) => {
                loaded.rejected.remove(&name);
                state.global_policies.insert(name, *gp);
            }
            Object::GlobalPolicy(name, Err(reason)) => {
                state.global_policies.remove(&name);
                loaded.rejected.insert(name, reason);
            }
        }
    }
    k8s::add_implicit_namespaces(state);
    Ok(())
}

/// The manifest files under `paths`: a file as given, a folder searched recursively for
/// `*.yaml` / `*.yml`, in name order.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, out)?;
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NAMESPACE_NAME_LABEL;

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

    #[test]
    fn unpoliced_pods_rejected_global_policies_and_dropped_ports_are_reported() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: x}
status: {phase: Succeeded, podIP: 10.0.0.6}
---
apiVersion: v1
kind: Pod
metadata: {name: odd, namespace: x}
spec: {containers: [{name: c, ports: [{name: p, containerPort: 1, protocol: ICMP}]}]}
---
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: g}
spec: {priority: 5000}
"#;
        let mut state = ClusterState::default();
        let mut loaded = Loaded::default();
        load_into(&mut state, &mut loaded, text).unwrap();
        assert_eq!(
            loaded.unpoliced,
            BTreeMap::from([(Key::new("x", "done"), "has finished (phase Succeeded)")])
        );
        assert!(state.pods[&Key::new("x", "done")].ips.is_empty());
        assert_eq!(loaded.notes, ["Pod odd: container port p (1/ICMP) ignored"]);
        assert!(loaded.rejected["g"].contains("priority"), "{:?}", loaded.rejected);
        assert!(state.global_policies.is_empty());
        assert!(state.namespaces.contains_key("x"), "implicit namespace");
    }
}
