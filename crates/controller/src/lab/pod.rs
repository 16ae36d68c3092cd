//! Pods in a lab: a network namespace plumbed by the real CNI plugin running in a node's
//! namespace (as a container runtime would call it), and a Pod manifest written into the lab's
//! shared manifest folder, which the nodes' agents use as their datastore.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{RUN_DIR, State, read_state, run, write_state};

/// A pod the lab created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodState {
    pub node: String,
    pub netns: String,
    pub container_id: String,
    pub ips: Vec<std::net::IpAddr>,
}

/// What `caracal lab pod add` asks for.
#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// (port, protocol) pairs the pod declares as named container ports `serve-<port>-<proto>`.
    pub ports: Vec<(u16, String)>,
}

/// The lab's shared manifest folder (the agents' datastore in the lab).
pub fn manifests_dir(lab: &str) -> PathBuf {
    Path::new(RUN_DIR).join(lab).join("manifests")
}

/// The CNI configuration list the node's agent wrote.
pub fn node_conflist(state: &State, node: &str) -> Result<PathBuf> {
    let n = state
        .nodes
        .get(node)
        .with_context(|| format!("lab {} has no node {node}", state.name))?;
    Ok(n.dir.join("net.d/10-caracal.conflist"))
}

fn pod_key(spec: &PodSpec) -> String {
    format!("{}/{}", spec.namespace, spec.name)
}

fn short_hash(s: &str) -> String {
    let h = Sha256::digest(s.as_bytes());
    h.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Creates the pod on `node` of lab `lab` and returns its state. The pod's network namespace is
/// recorded in the lab's state first, so a failure part-way is cleaned up by `lab down`.
pub fn add(lab: &str, node: &str, spec: &PodSpec) -> Result<PodState> {
    let dir = Path::new(RUN_DIR).join(lab);
    let _lock = lock(&dir)?;
    let mut state = read_state(&dir).with_context(|| format!("no lab named {lab}"))?;
    let key = pod_key(spec);
    if state.pods.contains_key(&key) {
        bail!("pod {key} already exists in lab {lab}");
    }
    let node_ns = state
        .nodes
        .get(node)
        .with_context(|| format!("lab {lab} has no node {node}"))?
        .netns
        .clone();
    let id = short_hash(&format!("{lab}/{key}"));
    let pod = PodState {
        node: node.to_string(),
        netns: format!("clab-{lab}-pod-{id}"),
        container_id: format!("lab{id}"),
        ips: Vec::new(),
    };
    state.pods.insert(key.clone(), pod.clone());
    write_state(&dir, &state)?;

    run(Command::new("ip").args(["netns", "add", &pod.netns]))?;
    let conflist = node_conflist(&state, node)?;
    let result = cni(&node_ns, &conflist, "ADD", &pod, spec)
        .with_context(|| format!("CNI ADD for {key} on {node}"))?;
    let ips = result_ips(&result)?;
    let pod = PodState { ips, ..pod };
    state.pods.insert(key, pod.clone());
    write_state(&dir, &state)?;
    write_manifests(lab, node, spec, &pod)?;
    Ok(pod)
}

/// Removes a pod: CNI DEL, its namespace, its manifest.
pub fn del(lab: &str, namespace: &str, name: &str) -> Result<()> {
    let dir = Path::new(RUN_DIR).join(lab);
    let _lock = lock(&dir)?;
    let mut state = read_state(&dir).with_context(|| format!("no lab named {lab}"))?;
    let key = format!("{namespace}/{name}");
    let pod = state
        .pods
        .get(&key)
        .cloned()
        .with_context(|| format!("lab {lab} has no pod {key}"))?;
    let node_ns = state.nodes[&pod.node].netns.clone();
    let conflist = node_conflist(&state, &pod.node)?;
    let spec = PodSpec {
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    cni(&node_ns, &conflist, "DEL", &pod, &spec).with_context(|| format!("CNI DEL for {key}"))?;
    run(Command::new("ip").args(["netns", "del", &pod.netns]))?;
    let _ = std::fs::remove_file(manifests_dir(lab).join(format!("pod-{namespace}-{name}.yaml")));
    state.pods.remove(&key);
    write_state(&dir, &state)
}

/// Runs the CNI plugin in the node's namespace with the conflist's first plugin config, as a
/// runtime does: CNI_* in the environment, the network config on stdin, the result on stdout.
fn cni(
    node_ns: &str,
    conflist: &Path,
    command: &str,
    pod: &PodState,
    spec: &PodSpec,
) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(conflist).with_context(|| {
        format!(
            "reading {} (has the node's agent written it yet?)",
            conflist.display()
        )
    })?;
    let list: serde_json::Value = serde_json::from_str(&text)?;
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let plugin = cni_exe()?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(&plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/run/netns/{}", pod.netns))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_PATH",
            format!(
                "{}:/usr/lib/cni:/opt/cni/bin",
                plugin.parent().unwrap_or(Path::new("/")).display()
            ),
        )
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={}", spec.namespace, spec.name),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", plugin.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} {command} failed: {} {}",
            plugin.display(),
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout).with_context(|| format!("CNI result {stdout:?}"))
}

fn result_ips(result: &serde_json::Value) -> Result<Vec<std::net::IpAddr>> {
    let ips = result["ips"].as_array().context("CNI result has no ips")?;
    ips.iter()
        .map(|i| {
            let a = i["address"].as_str().context("ip without address")?;
            let net: ipnet::IpNet = a.parse().with_context(|| format!("address {a:?}"))?;
            Ok(net.addr())
        })
        .collect()
}

/// The Pod (and, if new, its Namespace) as manifests in the lab's datastore folder.
fn write_manifests(lab: &str, node: &str, spec: &PodSpec, pod: &PodState) -> Result<()> {
    let dir = manifests_dir(lab);
    std::fs::create_dir_all(&dir)?;
    let ns_file = dir.join(format!("ns-{}.yaml", spec.namespace));
    if !ns_file.exists() {
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": spec.namespace, "labels": {"kubernetes.io/metadata.name": spec.namespace}},
        });
        atomic_write(&ns_file, &serde_yaml::to_string(&ns)?)?;
    }
    let ports: Vec<_> = spec
        .ports
        .iter()
        .map(|(p, proto)| {
            serde_json::json!({"name": format!("serve-{p}-{}", proto.to_lowercase()), "containerPort": p, "protocol": proto.to_uppercase()})
        })
        .collect();
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": spec.namespace, "name": spec.name, "labels": spec.labels},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": ports}]},
        "status": {
            "podIP": pod.ips.first().map(|i| i.to_string()),
            "podIPs": pod.ips.iter().map(|i| serde_json::json!({"ip": i.to_string()})).collect::<Vec<_>>(),
        },
    });
    atomic_write(
        &dir.join(format!("pod-{}-{}.yaml", spec.namespace, spec.name)),
        &serde_yaml::to_string(&manifest)?,
    )
}

fn atomic_write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Serialises changes to one lab's state between processes.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("no lab at {}", dir.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking the lab: {e}"))
}

/// The `caracal-cni` binary: `CARACAL_CNI_BIN`, else next to the `caracal` binary.
pub fn cni_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CARACAL_CNI_BIN") {
        return Ok(PathBuf::from(p));
    }
    let caracal = super::caracal_exe()?;
    let cand = caracal.with_file_name("caracal-cni");
    if cand.is_file() {
        return Ok(cand);
    }
    bail!(
        "cannot find caracal-cni next to {}; set CARACAL_CNI_BIN",
        caracal.display()
    )
}
