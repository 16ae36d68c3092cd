//! `caracal conformance --mode kube`: the shared policy cases on a real cluster, through
//! kubectl. Each case gets its namespaces and agnhost pods (one container per port, each serving
//! that port on every protocol of the case, with the named ports the format requires), its
//! steps applied with `kubectl apply`/`delete`/label changes, and every cell of a truth table
//! probed for real with `kubectl exec ... /agnhost connect`, retried until it matches or the
//! format's 10 s pass. Pods are spread over the cluster's nodes as the case places them.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;

use caracal_policy::{
    model::{ClusterState, Key},
    program::Protocol,
};
use caracal_testkit::conformance::{Case, Error, Observation, Prober, Result, Table, case::port_name};

/// The format's bound on how long an expectation may take to hold.
const DEADLINE: Duration = Duration::from_secs(10);
/// Probes in flight at once (each is a `kubectl exec`).
const PARALLEL: usize = 6;
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.56";

pub struct KubeProber {
    kubeconfig: PathBuf,
    nodes: Vec<String>,
    running: Option<Running>,
}

struct Running {
    step: usize,
    /// Each pod's address in the cluster, and the one the case file gave it.
    ips: BTreeMap<Key, (String, String)>,
    global_policies: Vec<String>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Prober(e.to_string())
}

impl KubeProber {
    /// A prober for the cluster of `kubeconfig`; its schedulable nodes take the case's nodes.
    pub fn new(kubeconfig: &Path) -> Result<KubeProber> {
        let out = kubectl(
            kubeconfig,
            &["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"],
            None,
        )?;
        let mut nodes: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        nodes.sort();
        if nodes.is_empty() {
            return Err(err("the cluster has no nodes"));
        }
        Ok(KubeProber {
            kubeconfig: kubeconfig.to_path_buf(),
            nodes,
            running: None,
        })
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        kubectl(&self.kubeconfig, args, stdin)
    }

    fn pod_manifest(&self, case: &Case, state: &ClusterState, key: &Key) -> String {
        let pod = &state.pods[key];
        let node_index = case
            .nodes
            .iter()
            .position(|n| pod.node.as_deref() == Some(n.as_str()))
            .unwrap_or(0);
        let node = &self.nodes[node_index % self.nodes.len()];
        let labels: serde_json::Map<String, serde_json::Value> = pod
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        let containers: Vec<serde_json::Value> = case
            .ports
            .iter()
            .map(|&port| {
                let mut args = vec!["netexec".to_string(), format!("--http-port={port}")];
                let mut ports = vec![];
                for &proto in &case.protocols {
                    match proto {
                        Protocol::Udp => args.push(format!("--udp-port={port}")),
                        // Without the kernel module netexec cannot bind it and exits; the
                        // SCTP probes are then skipped (see `probe`).
                        Protocol::Sctp if sctp_available() => args.push(format!("--sctp-port={port}")),
                        _ => {}
                    }
                    ports.push(serde_json::json!({
                        "containerPort": port,
                        "protocol": proto.name().to_uppercase(),
                        "name": port_name(port, proto),
                    }));
                }
                if !case.protocols.contains(&Protocol::Udp) {
                    // netexec always binds UDP; keep it off the case's ports.
                    args.push("--udp-port=-1".into());
                }
                serde_json::json!({
                    "name": format!("c{port}"),
                    "image": AGNHOST,
                    "imagePullPolicy": "IfNotPresent",
                    "args": args,
                    "ports": ports,
                })
            })
            .collect();
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": key.name, "namespace": key.namespace, "labels": labels},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": containers},
        })
        .to_string()
    }

    fn namespace_manifest(name: &str, labels: &BTreeMap<String, String>) -> String {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
            .to_string()
    }

    fn start(&self, case: &Case) -> Result<Running> {
        let state = &case.initial;
        for (name, ns) in &state.namespaces {
            self.kubectl(
                &["apply", "-f", "-"],
                Some(&Self::namespace_manifest(name, &ns.labels)),
            )?;
        }
        for key in &case.pods {
            self.kubectl(&["apply", "-f", "-"], Some(&self.pod_manifest(case, state, key)))?;
        }
        // Only namespaces with pods: `kubectl wait --all` in an empty one is an error.
        let with_pods: std::collections::BTreeSet<&str> =
            case.pods.iter().map(|k| k.namespace.as_str()).collect();
        for ns in with_pods {
            self.kubectl(
                &[
                    "-n",
                    ns,
                    "wait",
                    "--for=condition=Ready",
                    "pod",
                    "--all",
                    "--timeout=180s",
                ],
                None,
            )?;
        }
        let mut ips = BTreeMap::new();
        for key in &case.pods {
            let ip = self.kubectl(
                &[
                    "-n",
                    &key.namespace,
                    "get",
                    "pod",
                    &key.name,
                    "-o",
                    "jsonpath={.status.podIP}",
                ],
                None,
            )?;
            let model = state.pods[key]
                .ips
                .iter()
                .find(|ip| ip.is_ipv4())
                .map(ToString::to_string)
                .unwrap_or_default();
            ips.insert(key.clone(), (ip.trim().to_string(), model));
        }
        Ok(Running {
            step: 0,
            ips,
            global_policies: Vec::new(),
        })
    }

    fn apply_step(&mut self, case: &Case, state: &ClusterState) -> Result<()> {
        let running = self.running.as_mut().expect("started");
        let step = &case.steps[running.step];
        if let Some(text) = &step.apply {
            // The case's manifests carry the addresses the case file gave its pods.
            let text = replace_addresses(text, &running.ips);
            let docs = documents(&text)?;
            running.global_policies.extend(global_policy_names(&docs));
            kubectl(
                &self.kubeconfig,
                &["apply", "-f", "-"],
                Some(&as_json_list(&docs)),
            )?;
        }
        for d in &step.delete {
            let kind = match d.kind.as_str() {
                "GlobalPolicy" => "globalpolicies.caracal.dev",
                other => other,
            };
            let mut args = vec!["delete", kind, d.name.as_str(), "--ignore-not-found"];
            if let Some(ns) = &d.namespace {
                args.extend(["-n", ns.as_str()]);
            }
            kubectl(&self.kubeconfig, &args, None)?;
        }
        for nl in &step.namespace_labels {
            let labels = &state.namespaces[&nl.namespace].labels;
            kubectl(
                &self.kubeconfig,
                &["apply", "-f", "-"],
                Some(&Self::namespace_manifest(&nl.namespace, labels)),
            )?;
        }
        for pl in &step.pod_labels {
            let key = Key {
                namespace: pl.namespace.clone(),
                name: pl.pod.clone(),
            };
            kubectl(
                &self.kubeconfig,
                &["apply", "-f", "-"],
                Some(&self.pod_manifest(case, state, &key)),
            )?;
        }
        Ok(())
    }
}

/// Replaces every address the case gave a pod with the pod's address in the cluster, only where
/// it stands alone (not inside a longer number).
pub fn replace_addresses(text: &str, ips: &BTreeMap<Key, (String, String)>) -> String {
    let mut out = text.to_string();
    for (real, model) in ips.values() {
        if model.is_empty() {
            continue;
        }
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(model.as_str()) {
            let before = rest[..i].chars().last();
            let after = rest[i + model.len()..].chars().next();
            let alone = !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
                && !after.is_some_and(|c| {
                    c.is_ascii_digit()
                        || (c == '.' && rest[i + model.len() + 1..].starts_with(|d: char| d.is_ascii_digit()))
                });
            result.push_str(&rest[..i]);
            result.push_str(if alone { real } else { model });
            rest = &rest[i + model.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The documents of a multi-document manifest, read the way the case format reads YAML: kubectl
/// reads YAML 1.1, where a bare `y` (a namespace name in many cases) is the boolean true and
/// the API server then refuses the object, so the prober hands kubectl JSON.
fn documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).map_err(err)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The documents as one JSON `List` for `kubectl apply`.
fn as_json_list(docs: &[serde_json::Value]) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()
}

/// The names of the GlobalPolicies among the documents: they are cluster-scoped, so deleting
/// the case's namespaces does not remove them, and the prober deletes them itself.
fn global_policy_names(docs: &[serde_json::Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| d["kind"] == "GlobalPolicy")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    super::kubectl_with_input(kubeconfig, args, stdin).map_err(|e| err(format!("{e:#}")))
}

/// What one `agnhost connect` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Connected,
    TimedOut,
    /// Neither: refused, or kubectl failed.
    Other,
}

fn connect(kubeconfig: &Path, from: &Key, to_ip: &str, port: u16, protocol: Protocol) -> Outcome {
    let dest = format!("{to_ip}:{port}");
    let proto = format!("--protocol={}", protocol.name().to_lowercase());
    let container = format!("c{port}");
    let r = kubectl(
        kubeconfig,
        &[
            "-n",
            &from.namespace,
            "exec",
            &from.name,
            "-c",
            &container,
            "--",
            "/agnhost",
            "connect",
            &dest,
            "--timeout=1s",
            &proto,
        ],
        None,
    );
    match r {
        Ok(_) => Outcome::Connected,
        Err(e) if e.to_string().contains("TIMEOUT") => Outcome::TimedOut,
        Err(_) => Outcome::Other,
    }
}

impl Prober for KubeProber {
    fn sync(&mut self, case: &Case, state: &ClusterState) -> Result<()> {
        match &mut self.running {
            Some(r) => r.step += 1,
            None => self.running = Some(self.start(case)?),
        }
        self.apply_step(case, state)
    }

    fn probe(
        &mut self,
        case: &Case,
        _state: &ClusterState,
        port: u16,
        protocol: Protocol,
        expected: &Table,
    ) -> Result<Observation> {
        let running = self.running.as_ref().ok_or_else(|| err("probe before sync"))?;
        if protocol == Protocol::Sctp && !sctp_available() {
            return Ok(Observation {
                table: expected.clone(),
                skipped: true,
            });
        }
        let mut table = Table {
            pods: case.pods.clone(),
            ..Default::default()
        };
        let mut pending: Vec<(Key, Key)> = Vec::new();
        for s in &case.pods {
            table.cells.insert((s.clone(), s.clone()), true);
            for d in &case.pods {
                if s != d {
                    pending.push((s.clone(), d.clone()));
                }
            }
        }
        let start = Instant::now();
        loop {
            let results = Mutex::new(Vec::new());
            let queue = Mutex::new(pending.clone());
            std::thread::scope(|scope| {
                for _ in 0..PARALLEL {
                    scope.spawn(|| {
                        while let Some((s, d)) = queue.lock().expect("not poisoned").pop() {
                            let ip = &running.ips[&d].0;
                            let o = connect(&self.kubeconfig, &s, ip, port, protocol);
                            results.lock().expect("not poisoned").push((s, d, o));
                        }
                    });
                }
            });
            pending.clear();
            for (s, d, o) in results.into_inner().expect("not poisoned") {
                let want = expected.get(&s, &d).unwrap_or(true);
                let seen = match o {
                    Outcome::Connected => true,
                    Outcome::TimedOut => false,
                    Outcome::Other => !want,
                };
                if seen != want {
                    pending.push((s.clone(), d.clone()));
                }
                table.cells.insert((s, d), seen);
            }
            if pending.is_empty() || start.elapsed() > DEADLINE {
                break;
            }
        }
        Ok(Observation {
            table,
            skipped: false,
        })
    }

    fn finish(&mut self, case: &Case) {
        // A case that failed before it was running still leaves its namespaces (and pods) to
        // delete, or the next case would find them.
        let global_policies = self.running.take().map(|r| r.global_policies).unwrap_or_default();
        for gp in &global_policies {
            let _ = self.kubectl(
                &["delete", "globalpolicies.caracal.dev", gp, "--ignore-not-found"],
                None,
            );
        }
        let namespaces: Vec<&str> = case.initial.namespaces.keys().map(String::as_str).collect();
        let mut args = vec![
            "delete",
            "namespace",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ];
        args.extend(namespaces);
        if let Err(e) = self.kubectl(&args, None) {
            tracing::warn!("case {}: deleting its namespaces: {e}", case.name);
        }
    }
}

/// SCTP needs the kernel's sctp module (this machine kind has no modules at all).
fn sctp_available() -> bool {
    std::fs::read_to_string("/proc/net/protocols").is_ok_and(|p| p.lines().any(|l| l.starts_with("SCTP")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_go_to_kubectl_as_json_with_bare_y_a_string() {
        let text =
            "kind: NetworkPolicy\nspec: {values: [y, n, on]}\n---\nkind: Namespace\nmetadata: {name: y}\n";
        let list: serde_json::Value = serde_json::from_str(&as_json_list(&documents(text).unwrap())).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(
            list["items"][0]["spec"]["values"],
            serde_json::json!(["y", "n", "on"])
        );
        assert_eq!(list["items"][1]["metadata"]["name"], "y");
    }

    #[test]
    fn global_policies_are_found_in_flow_and_block_style_metadata() {
        let text = "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: pass-example}\n---\n\
                    apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\n---\n\
                    kind: GlobalPolicy\nmetadata:\n  name: default\n  labels: {a: b}\n";
        assert_eq!(
            global_policy_names(&documents(text).unwrap()),
            ["pass-example", "default"]
        );
        assert!(documents("kind: [").is_err());
    }

    #[test]
    fn case_addresses_become_cluster_addresses_only_where_they_stand_alone() {
        let mut ips = BTreeMap::new();
        ips.insert(
            Key {
                namespace: "x".into(),
                name: "a".into(),
            },
            ("10.244.1.7".to_string(), "10.0.0.1".to_string()),
        );
        let text = "cidr: 10.0.0.1/32\nother: 10.0.0.12/32\nlast: 10.0.0.1";
        assert_eq!(
            replace_addresses(text, &ips),
            "cidr: 10.244.1.7/32\nother: 10.0.0.12/32\nlast: 10.244.1.7"
        );
    }
}
