//! `caracal agent` as a process: it follows a manifest directory, and the real API server as
//! the node's ServiceAccount, logging each new model.

use std::{process::Stdio, time::Duration};

use caracal::testbed::kubetest::{self, KubeApi};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr, Command},
};

/// The agent process; killed on drop (also when the test fails).
struct Agent {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
    seen: Vec<String>,
}

impl Agent {
    fn spawn(args: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_caracal"))
            .arg("agent")
            // Only the datastore: these tests run in the root namespace, where the agent must
            // not program iptables or BGP.
            .arg("--no-dataplane")
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start caracal agent");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        Agent {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing every one of `parts`.
    async fn expect_line(&mut self, parts: &[&str]) -> String {
        let wait = async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                self.seen.push(line.clone());
                if parts.iter().all(|p| line.contains(p)) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(Some(line)) => line,
            _ => panic!(
                "no log line with {parts:?}; the agent logged:\n{}",
                self.seen.join("\n")
            ),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, image: example.invalid/web}]
status: {podIPs: [{ip: 10.244.1.5}]}
";

#[tokio::test]
async fn agent_follows_a_manifest_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pod.yaml"), POD).unwrap();
    let path = dir.path().to_str().unwrap();
    let mut agent = Agent::spawn(&["--manifests", path, "--node-name", "node-a"]);
    agent.expect_line(&["model", "pods=1", "local_pods=1"]).await;
    std::fs::write(
        dir.path().join("gp.yaml"),
        "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: g}\n\
         spec: {priority: 1, ingress: [{action: Deny}]}\n",
    )
    .unwrap();
    agent.expect_line(&["model", "globalpolicies=1"]).await;
}

#[tokio::test]
async fn agent_without_a_node_name_or_with_a_missing_directory_fails_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_caracal"))
        .args(["agent", "--manifests", "/nonexistent/caracal-manifests"])
        .env_remove("NODE_NAME")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--node-name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_caracal"))
        .args(["agent", "--manifests", "/nonexistent/caracal-manifests"])
        .args(["--node-name", "n"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/caracal-manifests"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_watches_the_api_server_as_the_node_serviceaccount() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.install_crds().await;
    api.install_rbac().await;
    api.kubectl_ok(&["create", "namespace", "shop"], "").await;
    api.kubectl_ok(&["apply", "-f", "-"], POD).await;
    let kubeconfig = api.kubeconfig();
    let mut agent = Agent::spawn(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        kubetest::NODE_AGENT,
        "--node-name",
        "node-a",
    ]);
    agent.expect_line(&["model", "local_pods=1"]).await;
    api.kubectl_ok(&["label", "pod", "web", "-n", "shop", "tier=front"], "")
        .await;
    api.kubectl_ok(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n",
    )
    .await;
    agent.expect_line(&["model", "netpols=1"]).await;
}
