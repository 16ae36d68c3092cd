//! The lab: containerlab-format topologies brought up as network namespaces on one machine.
//!
//! Every node is a network namespace named `clab-<lab>-<node>`; links are veth pairs created
//! straight into the two namespaces; router kinds run their daemon inside the node's namespace
//! with a configuration rendered from the topology folder. Nothing is reachable from outside
//! the lab's namespaces.
//!
//! Cleanup: a [`Lab`] tears itself down on drop (success, failure and panic alike). Its state is
//! written to `/run/caracal-lab/<lab>/state.json` before anything is created, naming the owning
//! process; a later [`Lab::up`] removes every lab whose owner is gone (a killed test run), and
//! `caracal lab down <lab>` removes a detached one. Teardown kills every process inside the
//! lab's namespaces, so nothing a test started there can outlive it.

pub mod image;
pub mod k8s;
pub mod pod;
pub mod topology;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use topology::{Kind, Topology};

/// Where lab state, rendered configurations, sockets and logs live.
pub const RUN_DIR: &str = "/run/caracal-lab";

/// How long a daemon may take to answer on its control channel.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Who owns a lab: a live process (removed when that process is gone) or nobody (a lab the
/// CLI brought up and left running until `caracal lab down`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    Process { pid: u32, start_time: u64 },
    Detached,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner::Process {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    fn is_alive(&self) -> bool {
        match self {
            Owner::Detached => true,
            Owner::Process { pid, start_time } => process_start_time(*pid) == Some(*start_time),
        }
    }
}

/// What is written to `state.json`: enough to tear the lab down from another process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub owner: Owner,
    pub topology_dir: PathBuf,
    /// Node name to namespace name, for every namespace that may exist.
    pub nodes: BTreeMap<String, NodeState>,
    /// Pods made with `caracal lab pod add`, by `namespace/name`.
    #[serde(default)]
    pub pods: BTreeMap<String, pod::PodState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    pub netns: String,
    pub kind: Kind,
    /// The node's own folder under the lab's run folder (rendered config, sockets, logs).
    pub dir: PathBuf,
}

/// A running lab. Dropping it tears it down.
pub struct Lab {
    state: State,
    dir: PathBuf,
    children: Vec<Child>,
    torn_down: bool,
}

/// Options for [`Lab::up`].
#[derive(Clone, Debug, Default)]
pub struct UpOptions {
    /// The lab's name; default: the topology's name with a per-run suffix (unique, so tests can
    /// run in parallel).
    pub name: Option<String>,
    /// Leave the lab running after this process exits (the CLI's `lab up`).
    pub detached: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<base>-<pid36><n>`.
pub fn unique_name(base: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let base: String = base.chars().take(12).collect();
    format!("{base}-{}{n}", radix36(pid))
}

fn radix36(mut v: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

impl Lab {
    /// Brings the topology in `path` (a file, or a folder holding `topology.yaml`) up.
    pub fn up(path: &Path, opts: UpOptions) -> Result<Lab> {
        require_root()?;
        let file = if path.is_dir() {
            path.join("topology.yaml")
        } else {
            path.to_path_buf()
        };
        let topo = Topology::load(&file)?;
        let topology_dir = file.parent().unwrap_or(Path::new(".")).canonicalize()?;
        sweep_stale();

        let name = match opts.name {
            Some(n) => n,
            None if opts.detached => topo.name.clone(),
            None => unique_name(&topo.name),
        };
        let dir = Path::new(RUN_DIR).join(&name);
        if dir.join("state.json").exists() {
            bail!("a lab named {name} is already up (caracal lab down {name})");
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

        let nodes = topo
            .topology
            .nodes
            .iter()
            .map(|(n, node)| {
                let ns = NodeState {
                    netns: netns_name(&name, n),
                    kind: node.kind,
                    dir: dir.join(n),
                };
                (n.clone(), ns)
            })
            .collect();
        let owner = if opts.detached {
            Owner::Detached
        } else {
            Owner::current()
        };
        let state = State {
            name: name.clone(),
            owner,
            topology_dir: topology_dir.clone(),
            nodes,
            pods: BTreeMap::new(),
        };
        // Written before anything is created, so that any later failure can be cleaned up.
        write_state(&dir, &state)?;
        let mut lab = Lab {
            state,
            dir,
            children: Vec::new(),
            torn_down: false,
        };
        lab.build(&topo)
            .with_context(|| format!("bringing lab {name} up"))?;
        Ok(lab)
    }

    fn build(&mut self, topo: &Topology) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("manifests"))?;
        for (node, ns) in &self.state.nodes {
            std::fs::create_dir_all(&ns.dir)?;
            for f in &topo.topology.nodes[node].files {
                self.render_config(node, ns, f)?;
            }
            run(Command::new("ip").args(["netns", "add", &ns.netns]))
                .with_context(|| format!("node {node}"))?;
            run(Command::new("ip").args(["-n", &ns.netns, "link", "set", "lo", "up"]))?;
        }
        for (a, b, mtu) in topo.links() {
            let na = &self.state.nodes[&a.node].netns;
            let nb = &self.state.nodes[&b.node].netns;
            let mut cmd = Command::new("ip");
            cmd.args(["link", "add", &a.iface, "netns", na]);
            if let Some(m) = mtu {
                cmd.args(["mtu", &m.to_string()]);
            }
            cmd.args(["type", "veth", "peer", "name", &b.iface, "netns", nb]);
            run(&mut cmd).with_context(|| format!("link {}:{} - {}:{}", a.node, a.iface, b.node, b.iface))?;
            run(Command::new("ip").args(["-n", na, "link", "set", &a.iface, "up"]))?;
            run(Command::new("ip").args(["-n", nb, "link", "set", &b.iface, "up"]))?;
        }
        for (name, node) in &topo.topology.nodes {
            let ns = self.state.nodes[name].clone();
            if let Some(child) = self.start_daemon(name, node, &ns)? {
                self.children.push(child);
            }
        }
        for (name, node) in &topo.topology.nodes {
            let ns = &self.state.nodes[name];
            wait_ready(name, ns)?;
            for cmd in &node.exec {
                let out = self.exec(name, &["sh", "-c", cmd])?;
                if !out.status.success() {
                    bail!(
                        "node {name}: exec {cmd:?} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        self.k8s_up(topo)
    }

    fn start_daemon(&self, name: &str, node: &topology::Node, ns: &NodeState) -> Result<Option<Child>> {
        let config = match &node.startup_config {
            None => return Ok(None),
            Some(c) => self.render_config(name, ns, c)?,
        };
        let d = &ns.dir;
        let Some(argv) = daemon_argv(ns.kind, &config, d, node.cmd.as_deref())? else {
            return Ok(None);
        };
        let log = std::fs::File::create(d.join("daemon.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.netns]).args(&argv);
        if ns.kind == Kind::Exabgp {
            // ExaBGP reads its settings from dotted environment variables.
            cmd.env("exabgp.daemon.user", "root")
                .env("exabgp.daemon.drop", "false")
                .env("exabgp.api.cli", "false")
                .env("exabgp.log.destination", "stdout")
                .env("exabgp.daemon.daemonize", "false");
        }
        cmd.envs(&node.env);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("node {name}: starting {}", argv[0]))?;
        tracing::debug!(lab = %self.state.name, node = name, pid = child.id(), "daemon started");
        Ok(Some(child))
    }

    /// Copies a node's config into its run folder, replacing `${LABDIR}` (the lab's run folder),
    /// `${NODEDIR}` (the node's), `${TOPODIR}` (the topology's folder) and `${NODE}`.
    fn render_config(&self, name: &str, ns: &NodeState, rel: &str) -> Result<PathBuf> {
        let src = self.state.topology_dir.join(rel);
        let text = std::fs::read_to_string(&src)
            .with_context(|| format!("node {name}: reading {}", src.display()))?;
        let text = text
            .replace("${LABDIR}", &self.dir.display().to_string())
            .replace("${NODEDIR}", &ns.dir.display().to_string())
            .replace("${TOPODIR}", &self.state.topology_dir.display().to_string())
            .replace("${NODE}", name);
        let file = Path::new(rel)
            .file_name()
            .context("startup-config has no file name")?;
        let dst = ns.dir.join(file);
        std::fs::write(&dst, text)?;
        Ok(dst)
    }

    /// Adds a pod on `node` (see [`pod::add`]) and records it in this lab's view.
    pub fn add_pod(&mut self, node: &str, spec: &pod::PodSpec) -> Result<pod::PodState> {
        let p = pod::add(&self.state.name, node, spec)?;
        self.state.pods = read_state(&self.dir)?.pods;
        Ok(p)
    }

    /// Removes a pod (see [`pod::del`]).
    pub fn del_pod(&mut self, namespace: &str, name: &str) -> Result<()> {
        pod::del(&self.state.name, namespace, name)?;
        self.state.pods = read_state(&self.dir)?.pods;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The network namespace of `node`.
    pub fn netns(&self, node: &str) -> Result<&str> {
        self.state
            .nodes
            .get(node)
            .map(|n| n.netns.as_str())
            .with_context(|| format!("no node {node}"))
    }

    /// The run folder of `node` (rendered config, control sockets, `daemon.log`).
    pub fn node_dir(&self, node: &str) -> Result<&Path> {
        self.state
            .nodes
            .get(node)
            .map(|n| n.dir.as_path())
            .with_context(|| format!("no node {node}"))
    }

    /// Runs `argv` in `node`'s namespace and returns its output.
    pub fn exec(&self, node: &str, argv: &[&str]) -> Result<Output> {
        exec_in(&self.state, node, argv)
    }

    /// Runs `argv` in `node`'s namespace and returns its stdout, failing on a non-zero exit.
    pub fn exec_ok(&self, node: &str, argv: &[&str]) -> Result<String> {
        let out = self.exec(node, argv)?;
        if !out.status.success() {
            bail!(
                "{node}: {:?} exited with {}: {}",
                argv,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The daemon's CLI on `node`: `birdc`, `vtysh -c`, or `gobgp`, with `args`.
    pub fn cli(&self, node: &str, args: &[&str]) -> Result<String> {
        let ns = self
            .state
            .nodes
            .get(node)
            .with_context(|| format!("no node {node}"))?;
        let argv = cli_argv(ns, args)?;
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.exec_ok(node, &refs)
    }

    /// Polls `check` every 250 ms until it returns `Ok(true)` or `timeout` passes; the error
    /// names what was awaited and the last error seen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Lab) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            match check(self) {
                Ok(true) => return Ok(()),
                Ok(false) => last.clear(),
                Err(e) => last = format!("{e:#}"),
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}{}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (last error: {last})")
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A node's daemon log, for test failure messages.
    pub fn log(&self, node: &str) -> String {
        self.node_dir(node)
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join("daemon.log")).ok())
            .unwrap_or_default()
    }

    /// Tears the lab down; also done on drop.
    pub fn down(mut self) -> Result<()> {
        self.teardown()
    }

    /// Hands the lab over to nobody: it stays up after this process exits.
    pub fn detach(mut self) -> Result<()> {
        self.state.owner = Owner::Detached;
        write_state(&self.dir, &self.state)?;
        self.torn_down = true;
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let r = teardown_state(&self.state, &self.dir);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        r
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("lab {}: teardown: {e:#}", self.state.name);
        }
    }
}

/// The command line that runs a node's daemon inside its namespace, with its control socket and
/// pid file in `node_dir`; `None` for kinds without a daemon. `cmd` is containerlab's `cmd` for a
/// `caracal` node (`${CONFIG}` is the config's path).
pub fn daemon_argv(
    kind: Kind,
    config: &Path,
    node_dir: &Path,
    cmd: Option<&str>,
) -> Result<Option<Vec<String>>> {
    let d = node_dir;
    let cfg = config.display().to_string();
    let argv: Vec<String> = match kind {
        Kind::Linux => return Ok(None),
        Kind::Bird => vec![
            "bird".into(),
            "-f".into(),
            "-c".into(),
            cfg,
            "-s".into(),
            d.join("bird.ctl").display().to_string(),
            "-P".into(),
            d.join("bird.pid").display().to_string(),
        ],
        Kind::Frr => vec![
            "/usr/lib/frr/bgpd".into(),
            "--no_zebra".into(),
            "--skip_runas".into(),
            "-f".into(),
            cfg,
            "-i".into(),
            d.join("bgpd.pid").display().to_string(),
            "--vty_socket".into(),
            d.display().to_string(),
            "-P".into(),
            "0".into(),
            "--log".into(),
            "stdout".into(),
        ],
        Kind::Gobgp => vec![
            "gobgpd".into(),
            "-f".into(),
            cfg,
            "-t".into(),
            "toml".into(),
            "--api-hosts".into(),
            "127.0.0.1:50051".into(),
            "--pprof-disable".into(),
        ],
        Kind::Exabgp => vec!["exabgp".into(), cfg],
        // The cluster's processes are started by `Lab::k8s_up` once the addresses are set.
        Kind::K8sControlPlane | Kind::K8sNode => return Ok(None),
        Kind::Caracal => {
            let exe = caracal_exe()?;
            let args = cmd.unwrap_or("bgp run --config ${CONFIG}");
            std::iter::once(exe.display().to_string())
                .chain(args.split_whitespace().map(|a| a.replace("${CONFIG}", &cfg)))
                .collect()
        }
    };
    Ok(Some(argv))
}

fn cli_argv(ns: &NodeState, args: &[&str]) -> Result<Vec<String>> {
    let d = &ns.dir;
    let mut argv: Vec<String> = match ns.kind {
        Kind::Bird => vec![
            "birdc".into(),
            "-s".into(),
            d.join("bird.ctl").display().to_string(),
        ],
        Kind::Frr => {
            let mut v = vec!["vtysh".into(), "--vty_socket".into(), d.display().to_string()];
            // vtysh takes one command per -c.
            v.push("-c".into());
            v.push(args.join(" "));
            return Ok(v);
        }
        Kind::Gobgp => vec![
            "gobgp".into(),
            "-u".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "50051".into(),
        ],
        Kind::Caracal => {
            let exe = caracal_exe()?;
            vec![
                exe.display().to_string(),
                "bgp".into(),
                "status".into(),
                "--socket".into(),
                d.join("caracal.sock").display().to_string(),
            ]
        }
        k => bail!("node kind {k:?} has no CLI"),
    };
    argv.extend(args.iter().map(|s| s.to_string()));
    Ok(argv)
}

fn wait_ready(name: &str, ns: &NodeState) -> Result<()> {
    let probe: &[&str] = match ns.kind {
        Kind::Linux | Kind::K8sControlPlane | Kind::K8sNode => return Ok(()),
        Kind::Bird => &["show", "status"],
        Kind::Frr => &["show", "version"],
        Kind::Gobgp => &["global"],
        // ExaBGP has no control channel here: wait until its process is up in the namespace.
        Kind::Exabgp => &[],
        Kind::Caracal => &["--json"],
    };
    let start = Instant::now();
    loop {
        let ok = if ns.kind == Kind::Exabgp {
            netns_pids(&ns.netns).map(|p| !p.is_empty()).unwrap_or(false)
        } else {
            let argv = cli_argv(ns, probe)?;
            Command::new("ip")
                .args(["netns", "exec", &ns.netns])
                .args(&argv)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if ok {
            return Ok(());
        }
        if start.elapsed() > READY_TIMEOUT {
            let log = std::fs::read_to_string(ns.dir.join("daemon.log")).unwrap_or_default();
            bail!(
                "node {name}: {:?} did not become ready in {READY_TIMEOUT:?}; its log:\n{log}",
                ns.kind
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `argv` in a node's namespace, or in a pod's when `node` is `namespace/name`.
fn exec_in(state: &State, node: &str, argv: &[&str]) -> Result<Output> {
    if state.nodes.get(node).is_some_and(|n| n.kind == Kind::K8sNode)
        && k8s::namespaces(&state.name, node).mnt.exists()
    {
        // A worker's own view: its mount namespace holds its CNI folders and pods' namespaces.
        return k8s::node_exec(&state.name, node, argv);
    }
    let netns = match (state.nodes.get(node), state.pods.get(node)) {
        (Some(n), _) => &n.netns,
        (None, Some(p)) => &p.netns,
        (None, None) => bail!("lab {} has no node or pod {node}", state.name),
    };
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {argv:?} in {node}"))
}

/// Tears down a lab from its state: kills every process in its namespaces, deletes them and
/// removes its run folder. Idempotent.
fn teardown_state(state: &State, dir: &Path) -> Result<()> {
    let mut errors = k8s::stop(state, dir);
    // Pods first: their namespaces hold the pod ends of veths whose host ends are in the nodes.
    let pod_ns = state.pods.values().map(|p| p.netns.clone());
    let mut all: Vec<String> = pod_ns
        .chain(state.nodes.values().map(|n| n.netns.clone()))
        .collect();
    // A pod namespace made by a process that died before recording it in the state: nothing of
    // a lab may outlive it. Only `clab-<lab>-pod-<10 hex>` matches, never another lab's names.
    let prefix = format!("clab-{}-pod-", state.name);
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let is_pod = n
                .strip_prefix(&prefix)
                .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if is_pod && !all.contains(&n) {
                all.push(n);
            }
        }
    }
    for netns in &all {
        if !Path::new("/run/netns").join(netns).exists() {
            continue;
        }
        kill_netns_processes(netns);
        if let Err(e) = run(Command::new("ip").args(["netns", "del", netns])) {
            errors.push(format!("{netns}: {e:#}"));
        }
    }
    k8s::release(state);
    let _ = std::fs::remove_dir_all(dir);
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("teardown left: {}", errors.join("; "))
    }
}

/// Kills every process in a network namespace; then, for those that ignore SIGTERM, harder.
fn kill_netns_processes(netns: &str) {
    for sig in ["TERM", "KILL"] {
        let pids = netns_pids(netns).unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !netns_pids(netns).unwrap_or_default().is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Tears down the lab called `name`, whoever owns it.
pub fn down(name: &str) -> Result<()> {
    let dir = Path::new(RUN_DIR).join(name);
    let state = read_state(&dir).with_context(|| format!("no lab named {name}"))?;
    teardown_state(&state, &dir)
}

/// Every lab with a state file.
pub fn list() -> Vec<State> {
    let Ok(rd) = std::fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    rd.filter_map(|e| read_state(&e.ok()?.path()).ok()).collect()
}

/// Runs `argv` in `node` of the lab called `name`.
pub fn exec_by_name(name: &str, node: &str, argv: &[&str]) -> Result<Output> {
    let state = read_state(&Path::new(RUN_DIR).join(name)).with_context(|| format!("no lab named {name}"))?;
    exec_in(&state, node, argv)
}

/// Removes every lab whose owning process is gone (a killed test run, a crashed `lab up`).
pub fn sweep_stale() {
    for state in list() {
        if !state.owner.is_alive() {
            tracing::info!(lab = %state.name, "removing a lab whose owner is gone");
            let dir = Path::new(RUN_DIR).join(&state.name);
            if let Err(e) = teardown_state(&state, &dir) {
                tracing::warn!(lab = %state.name, "sweep: {e:#}");
            }
        }
    }
}

fn write_state(dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, dir.join("state.json"))?;
    Ok(())
}

fn read_state(dir: &Path) -> Result<State> {
    Ok(serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?)
}

/// `clab-<lab>-<node>`, as containerlab names its containers.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("clab-{lab}-{node}")
}

fn netns_pids(netns: &str) -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22), so that a
/// reused PID is not mistaken for the original owner.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Fails with a clear message unless running as root (namespaces need it).
pub fn require_root() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the lab needs root (network namespaces, veth links)");
    }
    Ok(())
}

/// True when the lab can run here: root, and `ip` is installed.
pub fn available() -> bool {
    nix::unistd::Uid::effective().is_root()
        && Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The `caracal` binary for `caracal` nodes: `CARACAL_BIN`, else the running executable when it
/// is `caracal`, else `caracal` next to it (cargo's target folder, for integration tests).
pub fn caracal_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CARACAL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    if me.file_name().is_some_and(|n| n == "caracal") {
        return Ok(me);
    }
    let mut dir = me.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let cand = d.join("caracal");
        if cand.is_file() {
            return Ok(cand);
        }
        dir = d.parent().map(Path::to_path_buf);
        if dir.as_ref().is_some_and(|d| d.ends_with("target")) {
            break;
        }
    }
    bail!("cannot find the caracal binary; set CARACAL_BIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_within_a_process() {
        assert_ne!(unique_name("lab"), unique_name("lab"));
    }

    #[test]
    fn netns_names_follow_containerlab() {
        assert_eq!(netns_name("interop", "bird1"), "clab-interop-bird1");
    }

    #[test]
    fn own_process_is_alive_and_a_made_up_one_is_not() {
        assert!(Owner::current().is_alive());
        assert!(
            !Owner::Process {
                pid: u32::MAX - 1,
                start_time: 1
            }
            .is_alive()
        );
    }
}
