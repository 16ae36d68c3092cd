//! The real cluster for tests: bring-up of tests/topologies/k8s, caracal installed with kubectl,
//! kubectl helpers, agnhost pods, and the check that teardown left nothing behind.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use caracal::lab::{self, Lab, UpOptions};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the real cluster cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if !lab::available() {
        return Some("the lab needs root and iproute2".into());
    }
    for tool in ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/bin/ctr"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing (scripts/install-deps.sh)"));
        }
    }
    if caracal::testbed::kubetest::bin_dir().is_none_or(|d| !d.join("kubelet").is_file()) {
        return Some("the Kubernetes binaries are not built (tests/kube/build.sh)".into());
    }
    None
}

pub fn skip_or_fail() -> bool {
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

pub struct Cluster {
    pub lab: Option<Lab>,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub fn up() -> Cluster {
        let lab = Lab::up(&repo().join("tests/topologies/k8s"), UpOptions::default()).expect("lab up");
        let kubeconfig = lab.kubeconfig().expect("the lab wrote a kubeconfig");
        Cluster {
            lab: Some(lab),
            kubeconfig,
        }
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("up")
    }

    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        lab::k8s::kubectl(&self.kubeconfig, args)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl(args)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.diagnostics()))
    }

    pub fn apply(&self, yaml: &str) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", &f.path().display().to_string()]);
    }

    pub fn wait(&self, what: &str, secs: u64, mut ok: impl FnMut(&Cluster) -> anyhow::Result<bool>) {
        let r = self.lab().wait_for(what, Duration::from_secs(secs), |_| ok(self));
        if let Err(e) = r {
            panic!("{e:#}\n{}", self.diagnostics());
        }
    }

    /// Everything a failure message should show: nodes, pods, the agents' logs.
    pub fn diagnostics(&self) -> String {
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

    pub fn pod_ip(&self, ns: &str, pod: &str) -> String {
        self.kubectl_ok(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
    }

    /// `agnhost connect` from a pod: "ok" or what went wrong.
    pub fn connect(&self, ns: &str, from: &str, to: &str) -> String {
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

pub fn agnhost_pod(ns: &str, name: &str, node: &str) -> String {
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
      ports: [{{name: http, containerPort: 8080, protocol: TCP}}]
"#
    )
}

/// Every mount, cgroup and namespace whose name carries the lab's.
pub fn leftovers(name: &str) -> Vec<String> {
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

impl Cluster {
    /// `kubectl apply -f crds/ -f deploy/` and the lab's ConfigMap (the agents restarted to read
    /// it), then waits for both nodes and both agents to be Ready.
    pub fn install_caracal(&self) {
        let crds = repo().join("crds").display().to_string();
        let deploy = repo().join("deploy").display().to_string();
        self.kubectl_ok(&["apply", "-f", &crds, "-f", &deploy]);
        let config = repo()
            .join("tests/topologies/k8s/caracal-config.yaml")
            .display()
            .to_string();
        self.kubectl_ok(&["apply", "-f", &config]);
        // The agents read their ConfigMap when they start, and the first ones may have started
        // with the shipped one: restart them, as a user does after editing it.
        self.kubectl_ok(&[
            "-n",
            "kube-system",
            "rollout",
            "restart",
            "daemonset/caracal-node",
        ]);
        self.kubectl_ok(&[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "daemonset/caracal-node",
            "--timeout=180s",
        ]);
        self.wait("both nodes Ready", 180, |c| {
            let s = c.kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok(s.split_whitespace().filter(|x| *x == "True").count() == 2)
        });
        self.wait_agents_ready();
    }

    pub fn wait_agents_ready(&self) {
        self.wait("both agents Ready (readiness probe)", 120, |c| {
            let s = c.kubectl(&[
                "-n",
                "kube-system",
                "get",
                "daemonset",
                "caracal-node",
                "-o",
                "jsonpath={.status.numberReady}/{.status.updatedNumberScheduled}",
            ])?;
            Ok(s.trim() == "2/2")
        });
    }

    /// Applies pods and waits until all of `ns` are Ready.
    pub fn run_pods(&self, ns: &str, manifests: &str) {
        self.apply(manifests);
        self.kubectl_ok(&[
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            "pod",
            "--all",
            "--timeout=120s",
        ]);
    }

    /// The agent pod on `node`.
    pub fn agent_pod(&self, node: &str) -> String {
        self.kubectl_ok(&[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=caracal",
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
    }

    /// Runs `argv` in a worker's namespaces (its own mount namespace: its pods' netns files).
    pub fn node_exec(&self, node: &str, argv: &[&str]) -> std::process::Output {
        lab::exec_by_name(self.lab().name(), node, argv).expect("exec on the node")
    }

    /// An HTTP GET from a worker's own namespace to `ip:8080` (agnhost netexec), without the API
    /// server: "ok" or why not.
    pub fn node_get(&self, node: &str, ip: &str) -> String {
        let url = format!("http://{ip}:8080/hostname");
        let out = self.node_exec(node, &["curl", "-sS", "-m", "2", &url]);
        if out.status.success() {
            "ok".into()
        } else {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}
