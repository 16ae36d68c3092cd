//! A real Kubernetes cluster made of lab nodes: a `k8s-control-plane` node runs etcd,
//! kube-apiserver, kube-controller-manager (allocating node CIDRs) and kube-scheduler; each
//! `k8s-node` runs containerd, kubelet and kube-proxy (iptables mode). No pod network is
//! installed: the nodes stay NotReady until caracal is applied with kubectl.
//!
//! The machine reaches the cluster through one door, `caracal lab forward` on a loopback port
//! (see [`forward`]); the lab writes `<lab dir>/pki/admin.kubeconfig` pointing at it.
//!
//! Everything a cluster makes is named after its lab, so a later run can sweep a killed one
//! from the state file alone: the node namespaces' files in `<RUN_DIR>/<lab>.ns/`, the cgroup
//! roots `caracal-<lab>-<node>` in every hierarchy, the forwarder's `forward.pid`.

pub mod control_plane;
pub mod forward;
pub mod node;
pub mod pki;
pub mod prober;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde::Deserialize;

use super::{Kind, Lab, NodeState, State, Topology};

/// The cluster's ranges: the control plane's optional startup-config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default = "default_cluster_cidr")]
    pub cluster_cidr: IpNet,
    #[serde(default = "default_service_cidr")]
    pub service_cidr: IpNet,
    #[serde(default = "default_node_cidr_mask")]
    pub node_cidr_mask: u8,
}

fn default_cluster_cidr() -> IpNet {
    "10.244.0.0/16".parse().expect("valid")
}
fn default_service_cidr() -> IpNet {
    "10.96.0.0/16".parse().expect("valid")
}
fn default_node_cidr_mask() -> u8 {
    24
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            cluster_cidr: default_cluster_cidr(),
            service_cidr: default_service_cidr(),
            node_cidr_mask: default_node_cidr_mask(),
        }
    }
}

impl ClusterSpec {
    fn nth(&self, n: u32) -> IpAddr {
        match self.service_cidr.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + n).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + u128::from(n)).into()),
        }
    }
    /// The `kubernetes` Service's ClusterIP, the first of the range.
    pub fn api_service_ip(&self) -> IpAddr {
        self.nth(1)
    }
    /// The cluster DNS address pods are given (no DNS server runs in the lab).
    pub fn dns_ip(&self) -> IpAddr {
        self.nth(10)
    }
}

/// The files that keep a node's mount and UTS namespaces alive.
pub struct NodeNamespaces {
    pub mnt: PathBuf,
    pub uts: PathBuf,
    /// Where the node's own `/run` is assembled before it is moved over `/run`.
    pub stage: PathBuf,
}

/// `<RUN_DIR>/<lab>.ns`: outside the lab's folder, which each node's mount namespace binds
/// (a namespace file inside it would be bound into its own namespace).
fn ns_dir(lab: &str) -> PathBuf {
    Path::new(super::RUN_DIR).join(format!("{lab}.ns"))
}

pub fn namespaces(lab: &str, node: &str) -> NodeNamespaces {
    let d = ns_dir(lab);
    NodeNamespaces {
        mnt: d.join(format!("{node}.mnt")),
        uts: d.join(format!("{node}.uts")),
        stage: d.join(format!("{node}.run")),
    }
}

/// The node's cgroup root, made in every hierarchy before kubelet starts.
pub fn cgroup_root(lab: &str, node: &str) -> String {
    format!("caracal-{lab}-{node}")
}

/// The lab's admin kubeconfig (through the forwarder), once the cluster is up.
pub fn admin_kubeconfig(lab_dir: &Path) -> PathBuf {
    lab_dir.join("pki/admin.kubeconfig")
}

/// The directory holding the Kubernetes binaries (tests/kube/build.sh's cache).
fn kube_bin() -> Result<PathBuf> {
    crate::testbed::kubetest::bin_dir()
        .filter(|d| d.join("kubelet").is_file())
        .context("the Kubernetes binaries are not built: run tests/kube/build.sh (or set CARACAL_KUBE_BIN)")
}

/// The node's first global IPv4 address: its address in the cluster.
fn node_ip(netns: &str) -> Result<IpAddr> {
    let out = Command::new("ip")
        .args(["-n", netns, "-4", "-o", "addr", "show", "scope", "global"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("{netns} has no global IPv4 address (give it one with exec)"))
}

/// Cgroup hierarchies: each v1 controller (and the named ones), or the one v2 tree.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()];
    }
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    v.sort();
    v
}

fn make_cgroups(name: &str) -> Result<()> {
    for h in hierarchies() {
        let d = h.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("making {}", d.display()))?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                std::fs::write(d.join(f), v.trim())?;
            }
        }
    }
    Ok(())
}

/// Every folder of a cgroup tree, deepest first.
fn cgroup_dirs(top: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    let mut v = Vec::new();
    if top.is_dir() {
        walk(top, &mut v);
    }
    v
}

/// Kills every process in the node's cgroups (pods, whose network namespaces are not the
/// node's) until none is left, then removes the cgroups, deepest first.
fn remove_cgroups(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = Vec::new();
        for h in hierarchies() {
            for d in cgroup_dirs(&h.join(name)) {
                if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    pids.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                }
            }
        }
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            errors.push(format!("cgroup {name}: processes {pids:?} survive SIGKILL"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for h in hierarchies() {
        for d in cgroup_dirs(&h.join(name)) {
            // An emptied cgroup can take a moment to be released.
            let mut ok = false;
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !ok {
                errors.push(format!("cannot remove cgroup {}", d.display()));
            }
        }
    }
    errors
}

fn pid_file_kill(file: &Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let mut it = text.split_whitespace();
    let (Some(pid), Some(start)) = (
        it.next().and_then(|p| p.parse::<u32>().ok()),
        it.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return;
    };
    // Only the process this lab started: a reused PID has another start time.
    if super::process_start_time(pid) == Some(start) {
        let p = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(3);
        while super::process_start_time(pid) == Some(start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn umount(path: &Path) {
    if path.exists() {
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// First half of a cluster's teardown, before the lab's namespaces are emptied: the forwarder
/// and, once kubelet and containerd are gone with their namespaces, the pods in the cgroups.
pub(super) fn stop(state: &State, dir: &Path) -> Vec<String> {
    pid_file_kill(&dir.join("forward.pid"));
    let mut errors = Vec::new();
    for (name, n) in k8s_nodes(state) {
        // Kubelet first, so that it restarts nothing while the rest goes.
        super::kill_netns_processes(&n.netns);
        errors.extend(remove_cgroups(&cgroup_root(&state.name, name)));
    }
    errors
}

/// Second half, after the namespaces are gone: the namespace files (the node mount namespaces
/// and every mount inside them go with the last reference).
pub(super) fn release(state: &State) {
    let d = ns_dir(&state.name);
    for (name, _) in k8s_nodes(state) {
        let ns = namespaces(&state.name, name);
        umount(&ns.mnt);
        umount(&ns.uts);
    }
    umount(&d);
    let _ = std::fs::remove_dir_all(&d);
}

fn k8s_nodes(state: &State) -> impl Iterator<Item = (&String, &NodeState)> {
    state.nodes.iter().filter(|(_, n)| n.kind == Kind::K8sNode)
}

/// The OCI archives every node imports, with the reference each carries: the ones in
/// `$CARACAL_LAB_IMAGES` if set (made earlier with `caracal lab image build`), else built now
/// into the lab's folder.
fn lab_images(lab_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let Some(dir) = std::env::var_os("CARACAL_LAB_IMAGES").map(PathBuf::from) else {
        let built = super::image::build_all(&super::image::BuildOptions {
            out_dir: lab_dir.join("images"),
            only: Vec::new(),
            kube_bin: None,
            kube_src: None,
            caracal_bin: None,
            cni_bin: None,
        })?;
        return Ok(built.into_iter().map(|w| (w.reference, w.path)).collect());
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "tar") {
            out.push((archive_reference(&p)?, p));
        }
    }
    Ok(out)
}

/// The `io.containerd.image.name` an OCI archive's index.json gives its image.
fn archive_reference(tar: &Path) -> Result<String> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg("index.json")
        .output()?;
    let index: serde_json::Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{}: no index.json", tar.display()))?;
    index["manifests"][0]["annotations"]["io.containerd.image.name"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{}: index.json names no image", tar.display()))
}

impl Lab {
    fn control_plane(&self) -> Result<(&str, &NodeState)> {
        self.state
            .nodes
            .iter()
            .find(|(_, n)| n.kind == Kind::K8sControlPlane)
            .map(|(name, n)| (name.as_str(), n))
            .context("the lab has no k8s-control-plane node")
    }

    /// Stops the API server (a fault the tests inject): every kube-apiserver process of the
    /// control plane's namespace, killed.
    pub fn stop_apiserver(&self) -> Result<()> {
        let (_, cp) = self.control_plane()?;
        for pid in super::netns_pids(&cp.netns)? {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "kube-apiserver" {
                let pid = nix::unistd::Pid::from_raw(pid.parse()?);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
            }
        }
        Ok(())
    }

    /// Starts the API server again with the command line it was first started with.
    pub fn start_apiserver(&mut self) -> Result<()> {
        let (_, cp) = self.control_plane()?;
        let (netns, dir) = (cp.netns.clone(), cp.dir.clone());
        let argv: Vec<String> = serde_json::from_slice(&std::fs::read(dir.join("kube-apiserver.argv"))?)?;
        let c = self.spawn_k8s(&netns, None, &argv, &dir.join("kube-apiserver-restarted.log"))?;
        self.children.push(c);
        Ok(())
    }
}

/// `nsenter` into a node's network namespace (and, for workers, its mount and UTS ones).
fn nsenter(netns: &str, ns: Option<&NodeNamespaces>, argv: &[String]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}"));
    if let Some(ns) = ns {
        cmd.arg(format!("--mount={}", ns.mnt.display()));
        cmd.arg(format!("--uts={}", ns.uts.display()));
    }
    cmd.arg("--").args(argv);
    cmd
}

/// Runs a command in a worker's namespaces and waits for it.
pub fn node_exec(lab: &str, node: &str, argv: &[&str]) -> Result<std::process::Output> {
    let ns = namespaces(lab, node);
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    nsenter(&super::netns_name(lab, node), Some(&ns), &argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {argv:?} on {node}"))
}

impl Lab {
    fn spawn_k8s(
        &self,
        netns: &str,
        ns: Option<&NodeNamespaces>,
        argv: &[String],
        log: &Path,
    ) -> Result<Child> {
        let f = std::fs::File::create(log)?;
        let mut cmd = nsenter(netns, ns, argv);
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("starting {}", argv[0]))?;
        tracing::debug!(lab = %self.state.name, pid = child.id(), "started {}", argv[0]);
        Ok(child)
    }

    /// The admin kubeconfig of the lab's cluster, if it has one.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        let k = admin_kubeconfig(&self.dir);
        k.exists().then_some(k)
    }

    /// Brings the cluster up once the topology's nodes have their addresses.
    pub(super) fn k8s_up(&mut self, topo: &Topology) -> Result<()> {
        let nodes = &topo.topology.nodes;
        let Some((cp, cp_node)) = nodes.iter().find(|(_, n)| n.kind == Kind::K8sControlPlane) else {
            return Ok(());
        };
        let workers: Vec<String> = nodes
            .iter()
            .filter(|(_, n)| n.kind == Kind::K8sNode)
            .map(|(n, _)| n.clone())
            .collect();
        let bin = kube_bin()?;
        let spec: ClusterSpec = match &cp_node.startup_config {
            Some(rel) => {
                let p = self.state.topology_dir.join(rel);
                serde_yaml::from_str(&std::fs::read_to_string(&p)?)
                    .with_context(|| format!("{}", p.display()))?
            }
            None => ClusterSpec::default(),
        };
        let cp_ns = self.state.nodes[cp].netns.clone();
        let cp_dir = self.state.nodes[cp].dir.clone();
        let cp_ip = node_ip(&cp_ns)?;

        let pki_dir = self.dir.join("pki");
        pki::make(&pki_dir, &[cp_ip, spec.api_service_ip()])?;
        let creds = pki::Credentials::issue(&pki_dir, &pki::identities(&workers))?;
        let local = format!("https://127.0.0.1:{}", control_plane::API_PORT);
        let remote = format!("https://{cp_ip}:{}", control_plane::API_PORT);

        let c = self.spawn_k8s(
            &cp_ns,
            None,
            &control_plane::etcd(&bin, &cp_dir.join("etcd")),
            &cp_dir.join("etcd.log"),
        )?;
        self.children.push(c);
        let argv = control_plane::apiserver(&bin, &pki_dir, cp_ip, &spec);
        std::fs::write(cp_dir.join("kube-apiserver.argv"), serde_json::to_vec(&argv)?)?;
        let c = self.spawn_k8s(&cp_ns, None, &argv, &cp_dir.join("kube-apiserver.log"))?;
        self.children.push(c);

        let port = self.start_forwarder(&cp_ns)?;
        let admin = creds.kubeconfig("admin", &format!("https://127.0.0.1:{port}"))?;
        self.wait_for("the API server's /readyz", Duration::from_secs(90), |_| {
            Ok(kubectl(&admin, &["get", "--raw", "/readyz"]).is_ok())
        })
        .map_err(|e| e.context(tail(&cp_dir.join("kube-apiserver.log"))))?;

        let kcm = creds.kubeconfig("kube-controller-manager", &local)?;
        let argv = control_plane::controller_manager(&bin, &pki_dir, &kcm, &spec);
        let c = self.spawn_k8s(&cp_ns, None, &argv, &cp_dir.join("kube-controller-manager.log"))?;
        self.children.push(c);
        let sched = creds.kubeconfig("kube-scheduler", &local)?;
        let c = self.spawn_k8s(
            &cp_ns,
            None,
            &control_plane::scheduler(&bin, &sched),
            &cp_dir.join("kube-scheduler.log"),
        )?;
        self.children.push(c);

        let images = lab_images(&self.dir)?;
        let proxy_kc = creds.kubeconfig("kube-proxy", &remote)?;
        for w in &workers {
            let kc = creds.kubeconfig(&format!("node-{w}"), &remote)?;
            self.start_worker(w, &bin, &spec, &kc, &proxy_kc, &pki_dir.join("ca.crt"), &images)?;
        }
        self.wait_for("every node registered", Duration::from_secs(90), |_| {
            let out = kubectl(&admin, &["get", "nodes", "-o", "name"])?;
            Ok(workers
                .iter()
                .all(|w| out.lines().any(|l| l == format!("node/{w}"))))
        })?;
        // The e2e framework and most tests need the default ServiceAccount.
        self.wait_for("the default ServiceAccount", Duration::from_secs(60), |_| {
            Ok(kubectl(&admin, &["get", "serviceaccount", "default"]).is_ok())
        })?;
        Ok(())
    }

    /// Starts `caracal lab forward` for the control plane's API port; returns the loopback
    /// port it listens on.
    fn start_forwarder(&mut self, cp_ns: &str) -> Result<u16> {
        let port_file = self.dir.join("forward.port");
        let exe = super::caracal_exe()?;
        let log = std::fs::File::create(self.dir.join("forward.log"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["lab", "forward", "--netns"])
            .arg(format!("/run/netns/{cp_ns}"))
            .arg("--to")
            .arg(format!("127.0.0.1:{}", control_plane::API_PORT))
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().context("starting the forwarder")?;
        let pid = child.id();
        std::fs::write(
            self.dir.join("forward.pid"),
            format!("{pid} {}\n", super::process_start_time(pid).unwrap_or(0)),
        )?;
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!(
                    "the forwarder wrote no port; its log:\n{}",
                    tail(&self.dir.join("forward.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_worker(
        &mut self,
        name: &str,
        bin: &Path,
        spec: &ClusterSpec,
        kubeconfig: &Path,
        proxy_kubeconfig: &Path,
        ca: &Path,
        images: &[(String, PathBuf)],
    ) -> Result<()> {
        let st = self.state.nodes[name].clone();
        let d = &st.dir;
        let ip = node_ip(&st.netns)?;
        let ns = namespaces(&self.state.name, name);
        std::fs::create_dir_all(ns_dir(&self.state.name))?;
        ensure_private_mount(&ns_dir(&self.state.name))?;
        node::prepare(&self.state.name, name, d, &ns)?;
        let cg = cgroup_root(&self.state.name, name);
        make_cgroups(&cg)?;

        std::fs::create_dir_all(d.join("containerd"))?;
        std::fs::create_dir_all(d.join("pod-logs"))?;
        std::fs::write(d.join("resolv.conf"), format!("nameserver {}\n", spec.dns_ip()))?;
        let pause = images
            .iter()
            .find(|(r, _)| r.contains("/pause:"))
            .map(|(r, _)| r.clone())
            .context("no pause image")?;
        std::fs::write(
            d.join("containerd/config.toml"),
            node::containerd_config(d, &pause),
        )?;
        let argv = vec![
            "/usr/bin/containerd".to_string(),
            "--config".into(),
            d.join("containerd/config.toml").display().to_string(),
        ];
        let c = self.spawn_k8s(&st.netns, Some(&ns), &argv, &d.join("containerd.log"))?;
        self.children.push(c);
        let sock = node::containerd_socket(d);
        self.wait_for(&format!("containerd on {name}"), Duration::from_secs(30), |_| {
            Ok(sock.exists())
        })?;
        for (reference, tar) in images {
            let out = Command::new("ctr")
                .arg("-a")
                .arg(&sock)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(tar)
                .output()?;
            if !out.status.success() {
                bail!(
                    "{name}: importing {reference}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }

        std::fs::write(
            d.join("kubelet-config.yaml"),
            node::kubelet_config(d, ip, &cg, spec, ca),
        )?;
        let argv = vec![
            bin.join("kubelet").display().to_string(),
            "--config".into(),
            d.join("kubelet-config.yaml").display().to_string(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--root-dir".into(),
            d.join("kubelet").display().to_string(),
            "--hostname-override".into(),
            name.into(),
            "--node-ip".into(),
            ip.to_string(),
            "--v=2".into(),
        ];
        let c = self.spawn_k8s(&st.netns, Some(&ns), &argv, &d.join("kubelet.log"))?;
        self.children.push(c);

        std::fs::write(
            d.join("kube-proxy-config.yaml"),
            node::kube_proxy_config(name, proxy_kubeconfig, spec),
        )?;
        let argv = vec![
            bin.join("kube-proxy").display().to_string(),
            "--config".into(),
            d.join("kube-proxy-config.yaml").display().to_string(),
            "--v=2".into(),
        ];
        let c = self.spawn_k8s(&st.netns, Some(&ns), &argv, &d.join("kube-proxy.log"))?;
        self.children.push(c);
        Ok(())
    }
}

/// Binds `dir` on itself with private propagation, so namespace files bound inside it stay
/// out of every other mount namespace (as `ip netns` does for /run/netns).
fn ensure_private_mount(dir: &Path) -> Result<()> {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&dir.display().to_string()));
    if !mounted {
        nix::mount::mount(
            Some(dir),
            dir,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {}", dir.display()))?;
    }
    nix::mount::mount(
        None::<&str>,
        dir,
        None::<&str>,
        nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .with_context(|| format!("making {} private", dir.display()))?;
    Ok(())
}

/// `kubectl --kubeconfig K args...`, its stdout, or an error with its stderr.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    kubectl_with_input(kubeconfig, args, None)
}

/// [`kubectl`] with `stdin` fed to it (`kubectl apply -f -`).
pub fn kubectl_with_input(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let kubeconfig = kubeconfig.to_string_lossy();
    let mut all = vec!["--kubeconfig", kubeconfig.as_ref()];
    all.extend_from_slice(args);
    let kubectl = crate::testbed::kubetest::kubectl_path();
    Ok(crate::dataplane::netns::run(None, &kubectl, &all, stdin)?)
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_spec_defaults_and_service_addresses() {
        let s: ClusterSpec = serde_yaml::from_str("service_cidr: 10.100.0.0/16").unwrap();
        assert_eq!(s.cluster_cidr, default_cluster_cidr());
        assert_eq!(s.api_service_ip().to_string(), "10.100.0.1");
        assert_eq!(s.dns_ip().to_string(), "10.100.0.10");
        assert!(serde_yaml::from_str::<ClusterSpec>("pod_cidr: 10.0.0.0/8").is_err());
    }

    #[test]
    fn names_derive_from_the_lab_so_a_sweep_finds_them() {
        let ns = namespaces("k8s-ab1", "node1");
        assert_eq!(ns.mnt, Path::new("/run/caracal-lab/k8s-ab1.ns/node1.mnt"));
        assert_eq!(cgroup_root("k8s-ab1", "node1"), "caracal-k8s-ab1-node1");
    }
}
