//! One Kubernetes worker: containerd, kubelet and kube-proxy inside the lab node's network
//! namespace, sharing one private mount namespace and one UTS namespace of their own.
//!
//! The mount namespace is what makes a namespace a node: inside it the standard node paths a
//! DaemonSet mounts with `hostPath` (`/etc/cni/net.d`, `/opt/cni/bin`, `/var/lib/caracal`,
//! `/var/log/containers`) are this node's own folders, `/run` is a tmpfs of its own (containerd's
//! shim sockets, the pods' network namespaces, `/run/caracal`, the xtables lock), and the
//! kernel-wide sysctls kubelet insists on (`vm.overcommit_memory`, `kernel.panic`, ...) are files
//! already holding kubelet's values, so kubelet never writes the machine's. Every mount made
//! inside dies with the namespace: teardown unmounts nothing but the namespace files.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{ClusterSpec, NodeNamespaces};

/// Standard node paths bound to the node's own folders inside its mount namespace; each must
/// exist on the machine as a mount point (scripts/install-deps.sh makes them).
pub const NODE_PATHS: &[&str] = &[
    "/etc/cni/net.d",
    "/opt/cni/bin",
    "/var/lib/caracal",
    "/var/log/containers",
];

/// The kernel-wide sysctls kubelet sets at start unless they hold these values.
const KUBELET_SYSCTLS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// CNI plugins the node's OS provides: containerd runs `loopback` for every sandbox; `ptp`
/// and `host-local` are the reference the pod start-up benchmark compares caracal-cni with.
const OS_CNI_PLUGINS: &[&str] = &["loopback", "ptp", "host-local"];

/// Where a node's folder for `path` is: `<node dir>/root/<path with '/' as '-'>`.
pub fn own_dir(node_dir: &Path, path: &str) -> PathBuf {
    node_dir
        .join("root")
        .join(path.trim_start_matches('/').replace('/', "-"))
}

/// The shell script run by `unshare` inside the new mount and UTS namespaces. The node's own
/// `/run` is built on `stage` (a tmpfs holding the lab's folder, bound from this namespace's copy
/// of the machine's `/run`) and then moved over `/run`.
pub fn setup_script(lab: &str, node: &str, node_dir: &Path, stage: &Path) -> String {
    let lab_run = Path::new(crate::lab::RUN_DIR).join(lab);
    // The lab's folder as seen from the stage, which becomes /run.
    let in_stage = stage.join(lab_run.strip_prefix("/run").expect("the lab lives under /run"));
    let st = stage.display();
    let mut s = String::from("set -eu\n");
    s.push_str(&format!("hostname {node}\n"));
    s.push_str(&format!("mount -n -t tmpfs -o mode=0755 caracal-node-run {st}\n"));
    s.push_str(&format!(
        "mkdir -p {} {st}/netns {st}/caracal {st}/containerd\n",
        in_stage.display()
    ));
    s.push_str(&format!(
        "mount -n --rbind {} {}\n",
        lab_run.display(),
        in_stage.display()
    ));
    s.push_str(&format!("mount -n --move {st} /run\n"));
    for p in NODE_PATHS {
        s.push_str(&format!(
            "mount -n --bind {} {p}\n",
            own_dir(node_dir, p).display()
        ));
    }
    for (name, value) in KUBELET_SYSCTLS {
        let file = node_dir.join("sysctl").join(name.replace('/', "."));
        s.push_str(&format!(
            "printf '%s\\n' {value} > {0}\nmount -n --bind {0} /proc/sys/{name}\n",
            file.display()
        ));
    }
    s
}

/// Makes the node's folders, its OS's CNI plugins, and its namespaces (`unshare` keeps them
/// alive as bind mounts on the files in `ns`).
pub fn prepare(lab: &str, node: &str, node_dir: &Path, ns: &NodeNamespaces) -> Result<()> {
    for p in NODE_PATHS {
        if !Path::new(p).is_dir() {
            bail!(
                "{p} is missing on this machine: run scripts/install-deps.sh (it makes the standard node folders the lab binds over)"
            );
        }
        std::fs::create_dir_all(own_dir(node_dir, p))?;
    }
    std::fs::create_dir_all(node_dir.join("sysctl"))?;
    let bin = own_dir(node_dir, "/opt/cni/bin");
    for p in OS_CNI_PLUGINS {
        let src = Path::new("/usr/lib/cni").join(p);
        std::fs::copy(&src, bin.join(p))
            .with_context(|| format!("copying {} (Debian's containernetworking-plugins)", src.display()))?;
    }
    for f in [&ns.mnt, &ns.uts] {
        std::fs::write(f, b"")?;
    }
    std::fs::create_dir_all(&ns.stage)?;
    let script = setup_script(lab, node, node_dir, &ns.stage);
    let out = Command::new("unshare")
        .arg(format!("--mount={}", ns.mnt.display()))
        .arg(format!("--uts={}", ns.uts.display()))
        .args(["--propagation", "private", "sh", "-c", &script])
        .output()
        .context("running unshare")?;
    if !out.status.success() {
        bail!(
            "node {node}: making its mount namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Containerd's configuration: its own root, state, sockets and runc root under `dir`,
/// cgroupfs, the node's CNI folders, the lab's pause image, no OOM-score lowering (these
/// machines lack CAP_SYS_RESOURCE).
pub fn containerd_config(dir: &Path, pause_image: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
oom_score = 0
[grpc]
  address = "{d}/containerd/containerd.sock"
[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"#
    )
}

pub fn containerd_socket(dir: &Path) -> PathBuf {
    dir.join("containerd/containerd.sock")
}

/// Kubelet's configuration: API on the node's address, health on the node's own loopback,
/// cgroupfs under the node's cgroup root, eviction thresholds low enough for a shared disk.
pub fn kubelet_config(dir: &Path, ip: IpAddr, cgroup_root: &str, spec: &ClusterSpec, ca: &Path) -> String {
    let d = dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
imageServiceEndpoint: unix://{d}/containerd/containerd.sock
clusterDNS: [{dns}]
clusterDomain: cluster.local
resolvConf: {d}/resolv.conf
podLogsDir: {d}/pod-logs
serializeImagePulls: false
evictionHard: {{memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
maxPods: 110
protectKernelDefaults: false
"#,
        ca = ca.display(),
        dns = spec.dns_ip(),
    )
}

/// kube-proxy in iptables mode; conntrack sysctls (machine-wide) left alone.
pub fn kube_proxy_config(node: &str, kubeconfig: &Path, spec: &ClusterSpec) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {}}}
hostnameOverride: {node}
mode: iptables
clusterCIDR: {}
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
        kubeconfig.display(),
        spec.cluster_cidr
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_binds_every_node_path_and_masks_kubelet_sysctls() {
        let s = setup_script(
            "lab1",
            "n1",
            Path::new("/run/caracal-lab/lab1/n1"),
            Path::new("/st"),
        );
        assert!(s.contains("hostname n1\n"));
        assert!(s.contains(
            "mount -n --rbind /run/caracal-lab/lab1 /st/caracal-lab/lab1\nmount -n --move /st /run\n"
        ));
        for p in NODE_PATHS {
            assert!(
                s.contains(&format!(
                    "{} {p}\n",
                    own_dir(Path::new("/run/caracal-lab/lab1/n1"), p).display()
                )),
                "{p}"
            );
        }
        assert!(s.contains("mount -n --bind /run/caracal-lab/lab1/n1/sysctl/vm.overcommit_memory /proc/sys/vm/overcommit_memory"));
        // The node's /run is complete before it covers the machine's.
        assert!(s.find("tmpfs").unwrap() < s.find("--rbind").unwrap());
        assert!(s.find("--move").unwrap() < s.find("/etc/cni/net.d").unwrap());
    }

    #[test]
    fn node_folders_are_per_node() {
        assert_eq!(
            own_dir(Path::new("/x/n1"), "/etc/cni/net.d"),
            Path::new("/x/n1/root/etc-cni-net.d")
        );
    }
}
