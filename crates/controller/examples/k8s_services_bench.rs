//! Service advertisement figures on the lab cluster (tests/topologies/k8s, caracal installed
//! with kubectl, its ConfigMap advertising `198.18.0.0/24` external IPs), N tries each:
//!
//! 1. Service created -> route at the ToR: a ready endpoint on node1 first, then `kubectl
//!    apply` of an `externalTrafficPolicy: Local` Service with one external IP, until the ToR's
//!    BIRD holds that /32 (polled every 10 ms with `birdc show route`);
//! 2. last local endpoint deleted -> withdrawn at the ToR: `kubectl delete pod` of that
//!    endpoint until the ToR no longer holds the /32.
//!
//! p50 and p99 of each.
//!
//!   cargo build -p caracal -p caracal-cni && \
//!   cargo run -p caracal --example k8s_services_bench [N, default 20]

#[path = "../tests/k8s_support/mod.rs"]
mod k8s_support;

use std::time::{Duration, Instant};

use k8s_support::{Cluster, agnhost_pod};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Whether the ToR's BIRD holds a route for `prefix`.
fn tor_holds(c: &Cluster, prefix: &str) -> bool {
    c.lab().cli("tor", &["show", "route", prefix]).is_ok_and(|out| {
        out.lines()
            .any(|l| l.trim_start().starts_with("via ") || l.contains(" via "))
    })
}

/// Polls until `tor_holds(prefix) == want`; the time it took.
fn until(c: &Cluster, prefix: &str, want: bool, start: Instant) -> f64 {
    while tor_holds(c, prefix) != want {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{prefix}: the ToR still {} it after 30 s",
            if want { "lacks" } else { "holds" }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    if let Some(why) = k8s_support::missing() {
        eprintln!("k8s_services_bench: cannot run here: {why}");
        std::process::exit(2);
    }
    let c = Cluster::up();
    c.install_caracal();
    let ns = "svcbench";
    c.kubectl_ok(&["create", "namespace", ns]);
    let (mut create, mut withdraw) = (Vec::new(), Vec::new());
    for i in 0..n {
        let app = format!("web{i}");
        let ip = format!("198.18.0.{}", 10 + i);
        let prefix = format!("{ip}/32");
        c.apply(&agnhost_pod(ns, &app, "node1"));
        c.kubectl_ok(&[
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            &format!("pod/{app}"),
            "--timeout=120s",
        ]);
        let service = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {{app: {app}}}\n  externalIPs: [{ip}]\n  ports: [{{port: 8080, protocol: TCP}}]\n"
        );
        let start = Instant::now();
        c.apply(&service);
        create.push(until(&c, &prefix, true, start));
        let start = Instant::now();
        c.kubectl_ok(&["-n", ns, "delete", "pod", &app, "--wait=false"]);
        withdraw.push(until(&c, &prefix, false, start));
        c.kubectl_ok(&["-n", ns, "delete", "service", &app]);
    }
    let (c50, c99) = (percentile(&mut create, 0.5), percentile(&mut create, 0.99));
    let (w50, w99) = (percentile(&mut withdraw, 0.5), percentile(&mut withdraw, 0.99));
    println!("Service (externalTrafficPolicy: Local, external IP) created -> /32 at the ToR, {n} tries:");
    println!("  p50 {:.0} ms  p99 {:.0} ms", c50 * 1000.0, c99 * 1000.0);
    println!("last local endpoint deleted -> /32 withdrawn at the ToR, {n} tries:");
    println!("  p50 {:.0} ms  p99 {:.0} ms", w50 * 1000.0, w99 * 1000.0);
}
