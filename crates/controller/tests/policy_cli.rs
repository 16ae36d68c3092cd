//! `caracal conformance` and `caracal policy explain` as a user runs them: output contract,
//! exit status.

use std::{path::PathBuf, process::Command};

fn caracal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caracal"))
}

const CASE: &str = "name: cli/deny-ingress
model: {namespaces: {x: {}, y: {}}, pods: [{namespace: x, name: a}, {namespace: y, name: a}], ports: [80], protocols: [TCP, UDP]}
steps:
  - apply: |
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: deny, namespace: x}
      spec: {podSelector: {}, policyTypes: [Ingress]}
    expect:
      - port: 80
        protocol: TCP
        table: |
          -\tx/a\ty/a
          x/a\t.\t.
          y/a\tX\t.
      - port: 80
        protocol: UDP
        table: |
          -\tx/a\ty/a
          x/a\t.\t.
          y/a\tWRONG
";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("caracal-policy-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn conformance_json_follows_the_contract_and_exit_status_reports_failures() {
    let dir = temp_dir("conf");
    let good = CASE.replace("          y/a\tWRONG\n", "          y/a\tX\t.\n");
    std::fs::write(dir.join("good.yaml"), &good).unwrap();
    let out = caracal()
        .args(["conformance", "--mode", "offline", "--json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], 2);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["skipped"], 0);
    let probe = &v["cases"][0]["probes"][0];
    for field in ["step", "port", "protocol", "passed", "skipped", "observed"] {
        assert!(!probe[field].is_null(), "probe lacks {field}: {probe}");
    }
    assert_eq!(v["cases"][0]["name"], "cli/deny-ingress");
    assert!(probe["observed"].as_str().unwrap().contains("y/a\tX\t."));

    // A wrong expectation: non-zero exit, readable report ending with the totals.
    let bad = good.replace(
        "          x/a\t.\t.\n          y/a\tX\t.\n      - port: 80\n        protocol: UDP",
        "          x/a\t.\t.\n          y/a\t.\t.\n      - port: 80\n        protocol: UDP",
    );
    std::fs::write(dir.join("good.yaml"), bad).unwrap();
    let out = caracal().arg("conformance").arg(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expected") && text.contains("observed"), "{text}");
    assert!(text.trim_end().ends_with("1 passed, 1 failed"), "{text}");
}

#[test]
fn conformance_reports_a_malformed_case_as_a_failure() {
    let dir = temp_dir("bad");
    std::fs::write(dir.join("bad.yaml"), CASE).unwrap();
    let out = caracal().arg("conformance").arg(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("truth table"), "{text}");
}

#[test]
fn explain_names_the_deciding_policy_and_rule() {
    let dir = temp_dir("explain");
    std::fs::write(
        dir.join("m.yaml"),
        "apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: db}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
status: {podIP: 10.1.0.2}
---
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: protect-db}
spec:
  priority: 1
  subject: {selector: \"app == 'db'\"}
  ingress: [{name: no-clients, action: Deny, from: [{podSelector: {matchLabels: {app: client}}}]}]
",
    )
    .unwrap();
    let out = caracal()
        .args(["policy", "explain", "x/a", "x/b", "5432/TCP", "--manifests"])
        .arg(&dir)
        .output()
        .unwrap();
    let allowed_back = caracal()
        .args(["policy", "explain", "x/b", "x/a", "80/UDP", "--manifests"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DENIED"), "{text}");
    assert!(
        text.contains("GlobalPolicy protect-db ingress rule 0 (no-clients): Deny"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&allowed_back.stdout);
    assert!(text.contains("ALLOWED"), "{text}");
}

fn explain(manifests: &str, args: &[&str]) -> std::process::Output {
    let dir = temp_dir(&format!("explain-{}", args.join("-").replace('/', "_")));
    std::fs::write(dir.join("m.yaml"), manifests).unwrap();
    let out = caracal()
        .args(["policy", "explain"])
        .args(args)
        .arg("--manifests")
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn explain_gives_ipv6_only_pods_a_verdict_on_both_hops() {
    let m = "apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIPs: [{ip: \"fd00::1\"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: db}}
spec: {nodeName: n2, containers: [{name: c, image: i}]}
status: {podIPs: [{ip: \"fd00::2\"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: x}
spec: {podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: 5432}]}]}
";
    let denied = explain(m, &["x/a", "x/b", "80/TCP"]);
    let allowed = explain(m, &["x/a", "x/b", "5432/TCP"]);
    let text = String::from_utf8_lossy(&denied.stdout);
    assert!(
        denied.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert!(text.contains("DENIED") && text.contains("entering x/b"), "{text}");
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success() && text.contains("ALLOWED"), "{text}");
}

#[test]
fn explain_refuses_pods_the_agent_does_not_police() {
    let m = "apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: x}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Succeeded, podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: x}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, image: i}]}
status: {podIP: 192.168.0.1}
";
    for (dst, why) in [("x/done", "has finished"), ("x/host", "uses the host network")] {
        let out = explain(m, &["x/a", dst, "80/TCP"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{dst}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains(why) && err.contains("does not police"),
            "{dst}: {err}"
        );
    }
}
