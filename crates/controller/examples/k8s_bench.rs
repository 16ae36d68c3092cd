//! Real-cluster figures, in one run on the lab cluster (tests/topologies/k8s, caracal installed
//! with kubectl):
//!
//! 1. pod create -> Ready: `kubectl apply` of an agnhost pod until its Ready condition, for
//!    pods plumbed by caracal-cni and then, on the same nodes, by the reference ptp + host-local
//!    plugins (a config list that sorts first in each node's CNI folder), N pods each, one at a
//!    time; p50, p99 and the ratio.
//! 2. policy apply -> enforced on every node: `kubectl apply` of a NetworkPolicy isolating one
//!    pod on each node until neither answers a probe from the other node any more (probes every
//!    50 ms from both nodes); p50 and p99 over N policies.
//!
//!   cargo build -p caracal -p caracal-cni && \
//!   cargo run -p caracal --example k8s_bench [N, default 20]

#[path = "../tests/k8s_support/mod.rs"]
mod k8s_support;

use std::time::{Duration, Instant};

use k8s_support::{Cluster, agnhost_pod};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn pod_ready_times(c: &Cluster, ns: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let node = if i % 2 == 0 { "node1" } else { "node2" };
        let name = format!("p{i}");
        let start = Instant::now();
        c.apply(&agnhost_pod(ns, &name, node));
        c.kubectl_ok(&[
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=120s",
        ]);
        out.push(start.elapsed().as_secs_f64());
        c.kubectl_ok(&[
            "-n",
            ns,
            "delete",
            "pod",
            &name,
            "--grace-period=0",
            "--wait=true",
        ]);
    }
    out
}

fn ptp_conflist(subnet: &str, data_dir: &str) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "reference-ptp", "plugins": [{{"type": "ptp", "ipMasq": false, "mtu": 1500,
 "ipam": {{"type": "host-local", "dataDir": "{data_dir}", "ranges": [[{{"subnet": "{subnet}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}}]}}"#
    )
}

/// True when `ip:8080` answers from `node` within 100 ms.
fn answers(c: &Cluster, node: &str, ip: &str) -> bool {
    let url = format!("http://{ip}:8080/hostname");
    c.node_exec(node, &["curl", "-s", "-o", "/dev/null", "-m", "0.1", &url])
        .status
        .success()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    if let Some(why) = k8s_support::missing() {
        eprintln!("k8s_bench: cannot run here: {why}");
        std::process::exit(2);
    }
    let c = Cluster::up();
    c.install_caracal();
    c.kubectl_ok(&["create", "namespace", "bench"]);
    // Warm up: the first pod of a node pays for image unpacking.
    pod_ready_times(&c, "bench", 2);

    let mut caracal = pod_ready_times(&c, "bench", n);
    for (i, node) in ["node1", "node2"].iter().enumerate() {
        let dir = c.lab().node_dir(node).unwrap().join("root/etc-cni-net.d");
        let data = c.lab().node_dir(node).unwrap().join("ptp-ipam");
        std::fs::write(
            dir.join("00-reference-ptp.conflist"),
            ptp_conflist(&format!("10.250.{i}.0/24"), &data.display().to_string()),
        )
        .unwrap();
    }
    // containerd reloads its CNI folder on change; give it a moment.
    std::thread::sleep(Duration::from_secs(3));
    pod_ready_times(&c, "bench", 2);
    let mut reference = pod_ready_times(&c, "bench", n);
    for node in ["node1", "node2"] {
        let dir = c.lab().node_dir(node).unwrap().join("root/etc-cni-net.d");
        std::fs::remove_file(dir.join("00-reference-ptp.conflist")).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));

    c.run_pods(
        "bench",
        &(agnhost_pod("bench", "t1", "node1") + "---\n" + &agnhost_pod("bench", "t2", "node2")),
    );
    let t1 = c.pod_ip("bench", "t1");
    let t2 = c.pod_ip("bench", "t2");
    assert!(
        t1.starts_with("10.244.") && t2.starts_with("10.244."),
        "caracal addresses: {t1} {t2}"
    );
    let mut enforce = Vec::new();
    for i in 0..n {
        let policy = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: iso{i}, namespace: bench}}\nspec:\n  podSelector: {{matchExpressions: [{{key: app, operator: In, values: [t1, t2]}}]}}\n  policyTypes: [Ingress]\n"
        );
        let start = Instant::now();
        c.apply(&policy);
        let (mut d1, mut d2) = (None, None);
        while d1.is_none() || d2.is_none() {
            if d1.is_none() && !answers(&c, "node2", &t1) {
                d1 = Some(start.elapsed());
            }
            if d2.is_none() && !answers(&c, "node1", &t2) {
                d2 = Some(start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "policy {i} not enforced in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Enforced when both nodes drop; a dropped probe is only seen after its 100 ms timeout.
        let t = d1.unwrap().max(d2.unwrap()).as_secs_f64() - 0.1;
        enforce.push(t.max(0.0));
        c.kubectl_ok(&["-n", "bench", "delete", "networkpolicy", &format!("iso{i}")]);
        let back = Instant::now();
        while !(answers(&c, "node2", &t1) && answers(&c, "node1", &t2)) {
            assert!(back.elapsed() < Duration::from_secs(30), "policy {i} not lifted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let (c50, c99) = (percentile(&mut caracal, 0.5), percentile(&mut caracal, 0.99));
    let (r50, r99) = (percentile(&mut reference, 0.5), percentile(&mut reference, 0.99));
    println!("pod create -> Ready, {n} pods each, one at a time:");
    println!("  caracal-cni          p50 {:.2} s  p99 {:.2} s", c50, c99);
    println!("  ptp + host-local     p50 {:.2} s  p99 {:.2} s", r50, r99);
    println!(
        "  ratio caracal/ref    p50 {:.2}    p99 {:.2}",
        c50 / r50,
        c99 / r99
    );
    let (e50, e99) = (percentile(&mut enforce, 0.5), percentile(&mut enforce, 0.99));
    println!("policy kubectl apply -> enforced on both nodes, {n} policies:");
    println!("  p50 {:.0} ms  p99 {:.0} ms", e50 * 1000.0, e99 * 1000.0);
}
