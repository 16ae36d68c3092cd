//! caracal on a real Kubernetes cluster, installed as a user installs it: the lab brings up
//! tests/topologies/k8s (etcd, kube-apiserver, controller-manager, scheduler; two workers with
//! containerd, kubelet and kube-proxy; a BIRD ToR), the nodes are NotReady, `kubectl apply -f
//! crds/ -f deploy/` installs caracal from its image, the nodes turn Ready, kubelet-created pods
//! on both nodes reach each other over BGP-learned routes, a NetworkPolicy applied with kubectl
//! is enforced, and teardown leaves no process, mount, cgroup or namespace behind.
//!
//! Needs root, containerd and runc (scripts/install-deps.sh) and the Kubernetes binaries
//! (tests/kube/build.sh). Without them it says why and passes, unless `CARACAL_REQUIRE_K8S=1`
//! (CI sets it), which makes a missing part a failure.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use caracal::lab::{self, Lab, UpOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the real cluster cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !lab::available() {
        return Some("the lab needs root and iproute2".into());
    }
    for tool in ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/bin/ctr"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing (scripts/install-deps.sh)"));
        }
    }
    if caracal::kubetest::bin_dir().is_none_or(|d| !d.join("kubelet").is_file()) {
        return Some("the Kubernetes binaries are not built (tests/kube/build.sh)".into());
    }
    None
}

fn skip_or_fail() -> bool {
    match missing() {
        None => false,
        Some(why) if std::env::var_os("CARACAL_REQUIRE_K8S").is_some_and(|v| v == "1") => {
            panic!("CARACAL_REQUIRE_K8S=1 but {why}")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            true
        }
    }
}

struct Cluster {
    lab: Option<Lab>,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn up() -> Cluster {
        let lab = Lab::up(&repo().join("tests/topologies/k8s"), UpOptions::default()).expect("lab up");
        let kubeconfig = lab.kubeconfig().expect("the lab wrote a kubeconfig");
        Cluster {
            lab: Some(lab),
            kubeconfig,
        }
    }

    fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("up")
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        lab::k8s::kubectl(&self.kubeconfig, args)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl(args)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnostics()))
    }

    fn apply(&self, yaml: &str) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", &f.path().display().to_string()]);
    }

    fn wait(&self, what: &str, secs: u64, mut ok: impl FnMut(&Cluster) -> anyhow::Result<bool>) {
        let r = self.lab().wait_for(what, Duration::from_secs(secs), |_| ok(self));
        if let Err(e) = r {
            panic!("{e:#}\n{}", self.diagnostics());
        }
    }

    /// Everything a failure message should show: nodes, pods, the agents' logs.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for args in [
            &["get", "nodes", "-o", "wide"][..],
            &["get", "pods", "-A", "-o", "wide"],
            &[
                "-n",
                "kube-system",
                "logs",
                "-l",
                "app.kubernetes.io/name=caracal",
                "--tail=40",
                "--all-containers",
            ],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"],
        ] {
            out.push_str(&format!("--- kubectl {}\n", args.join(" ")));
            out.push_str(&self.kubectl(args).unwrap_or_else(|e| format!("{e:#}")));
        }
        if let Some(l) = &self.lab {
            for n in ["node1", "node2"] {
                let d = l.node_dir(n).unwrap().to_path_buf();
                out.push_str(&format!(
                    "--- {n} kubelet.log\n{}\n",
                    lab::k8s::tail(&d.join("kubelet.log"))
                ));
            }
        }
        out
    }

    fn pod_ip(&self, ns: &str, pod: &str) -> String {
        self.kubectl_ok(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
    }

    /// `agnhost connect` from a pod: "ok" or what went wrong.
    fn connect(&self, ns: &str, from: &str, to: &str) -> String {
        match self.kubectl(&[
            "-n",
            ns,
            "exec",
            from,
            "--",
            "/agnhost",
            "connect",
            to,
            "--timeout=2s",
        ]) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{e:#}"),
        }
    }
}

fn agnhost_pod(ns: &str, name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers:
    - name: agnhost
      image: registry.k8s.io/e2e-test-images/agnhost:2.56
      imagePullPolicy: IfNotPresent
      args: ["netexec", "--http-port=8080"]
      ports: [{{containerPort: 8080, protocol: TCP}}]
"#
    )
}

/// Every mount, cgroup and namespace whose name carries the lab's.
fn leftovers(name: &str) -> Vec<String> {
    let mut left = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(name))
            .map(|l| format!("mount {l}")),
    );
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = h.path().join(format!("caracal-{name}-node1"));
        if cg.exists() {
            left.push(format!("cgroup {}", cg.display()));
        }
    }
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    left.extend(
        String::from_utf8_lossy(&netns.stdout)
            .lines()
            .filter(|l| l.contains(name))
            .map(|l| format!("netns {l}")),
    );
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&format!("caracal-lab/{name}"))
        {
            left.push(format!(
                "process {} {}",
                p.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    left
}

#[test]
fn caracal_installed_with_kubectl_connects_pods_across_nodes_and_enforces_policy() {
    if skip_or_fail() {
        return;
    }
    let mut c = Cluster::up();
    let name = c.lab().name().to_string();

    // No pod network yet: kubelet reports the runtime's network not ready.
    let ready = c.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert!(
        !ready.contains("True"),
        "nodes Ready before caracal is installed: {ready}"
    );

    let crds = repo().join("crds").display().to_string();
    let deploy = repo().join("deploy").display().to_string();
    c.kubectl_ok(&["apply", "-f", &crds, "-f", &deploy]);
    let config = repo()
        .join("tests/topologies/k8s/caracal-config.yaml")
        .display()
        .to_string();
    c.kubectl_ok(&["apply", "-f", &config]);
    c.wait("both nodes Ready", 180, |c| {
        let s = c.kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])?;
        Ok(s.split_whitespace().filter(|x| *x == "True").count() == 2)
    });
    c.wait("both agents Ready (readiness probe)", 120, |c| {
        let s = c.kubectl(&[
            "-n",
            "kube-system",
            "get",
            "daemonset",
            "caracal-node",
            "-o",
            "jsonpath={.status.numberReady}",
        ])?;
        Ok(s.trim() == "2")
    });

    c.kubectl_ok(&["create", "namespace", "smoke"]);
    c.apply(&(agnhost_pod("smoke", "a", "node1") + "---\n" + &agnhost_pod("smoke", "b", "node2")));
    c.wait("pods a and b Ready", 120, |c| {
        let s = c.kubectl(&[
            "-n",
            "smoke",
            "get",
            "pods",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])?;
        Ok(s.split_whitespace().filter(|x| *x == "True").count() == 2)
    });
    let a = c.pod_ip("smoke", "a");
    let b = c.pod_ip("smoke", "b");
    assert!(
        a.starts_with("10.244.") && b.starts_with("10.244."),
        "pod IPs from caracal-cni: {a} {b}"
    );

    // node1 reaches b's node CIDR through a route BGP installed (proto 201), not a static one.
    let routes = lab::exec_by_name(&name, "node1", &["ip", "route", "show", "proto", "201"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    let b_net: Vec<&str> = b.split('.').take(3).collect();
    assert!(
        routes.contains(&format!("{}.0/24 via 10.0.0.12", b_net.join("."))),
        "node1's BGP routes: {routes}"
    );
    c.wait("a reaches b across nodes", 30, |c| {
        Ok(c.connect("smoke", "a", &format!("{b}:8080")) == "ok")
    });
    c.wait("b reaches a across nodes", 30, |c| {
        Ok(c.connect("smoke", "b", &format!("{a}:8080")) == "ok")
    });

    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b, namespace: smoke}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  policyTypes: [Ingress]\n",
    );
    c.wait("the policy drops a -> b", 30, |c| {
        Ok(c.connect("smoke", "a", &format!("{b}:8080")) != "ok")
    });
    // Only b is isolated: b still reaches a.
    assert_eq!(c.connect("smoke", "b", &format!("{a}:8080")), "ok");

    c.lab.take().unwrap().down().expect("teardown");
    let left = leftovers(&name);
    assert!(left.is_empty(), "teardown left: {left:#?}");
}

#[test]
fn the_lab_config_map_differs_from_the_shipped_one_only_in_the_tor_peer() {
    let read = |p: &str| -> serde_yaml::Value {
        let text = std::fs::read_to_string(repo().join(p)).unwrap();
        let cm: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        serde_yaml::from_str(cm["data"]["agent.yaml"].as_str().unwrap()).unwrap()
    };
    let mut shipped = read("deploy/agent-config.yaml");
    let lab = read("tests/topologies/k8s/caracal-config.yaml");
    assert_eq!(lab["bgp"]["peers"][0]["address"], "10.0.0.1");
    shipped["bgp"]["peers"] = lab["bgp"]["peers"].clone();
    assert_eq!(shipped, lab);
}
