//! caracal on a real Kubernetes cluster, installed as a user installs it: the lab brings up
//! tests/topologies/k8s (etcd, kube-apiserver, controller-manager, scheduler; two workers with
//! containerd, kubelet and kube-proxy; a BIRD ToR), the nodes are NotReady, `kubectl apply -f
//! crds/ -f deploy/` installs caracal from its image, the nodes turn Ready, kubelet-created pods
//! on both nodes reach each other over BGP-learned routes, a NetworkPolicy applied with kubectl
//! is enforced (a named port too), and teardown leaves no process, mount, cgroup or namespace behind.
//!
//! Needs root, containerd and runc (scripts/install-deps.sh) and the Kubernetes binaries
//! (tests/kube/build.sh). Without them it says why and passes, unless `CARACAL_REQUIRE_K8S=1`
//! (CI sets it), which makes a missing part a failure.

mod k8s_support;

use caracal::lab;
use k8s_support::{Cluster, agnhost_pod, leftovers, repo, skip_or_fail};

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

    c.install_caracal();

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

    // kube-proxy's Services over caracal's routes: a pod reaches itself through its own
    // ClusterIP (hairpin), and the other node's pod through its ClusterIP.
    c.kubectl_ok(&["-n", "smoke", "expose", "pod", "a", "--port=8080", "--name=svc-a"]);
    let vip = c.kubectl_ok(&[
        "-n",
        "smoke",
        "get",
        "service",
        "svc-a",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    c.wait("a reaches itself through its ClusterIP", 30, |c| {
        Ok(c.connect("smoke", "a", &format!("{vip}:8080")) == "ok")
    });
    c.wait("b reaches a through its ClusterIP", 30, |c| {
        Ok(c.connect("smoke", "b", &format!("{vip}:8080")) == "ok")
    });

    // The agents' metrics, scraped as Prometheus would (node2's address, port 9091): the ToR
    // session is up, and node2's successful policy applies are counted.
    let scrape = |c: &Cluster| {
        let out = c.node_exec(
            "node1",
            &["curl", "-sS", "-m", "2", "http://10.0.0.12:9091/metrics"],
        );
        caracal::metrics::scrape::parse(&String::from_utf8_lossy(&out.stdout)).expect("OpenMetrics text")
    };
    c.wait("node2's metrics show the ToR session up", 30, |c| {
        Ok(scrape(c).get("caracal_bgp_session_up", &[("peer", "10.0.0.1")]) == Some(1.0))
    });
    let applied = |c: &Cluster| -> f64 {
        scrape(c)
            .matching("caracal_policy_applies_total", &[("result", "success")])
            .map(|s| s.value)
            .sum()
    };
    let applies_before = applied(&c);

    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b, namespace: smoke}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  policyTypes: [Ingress]\n",
    );
    c.wait("the policy drops a -> b", 30, |c| {
        Ok(c.connect("smoke", "a", &format!("{b}:8080")) != "ok")
    });
    c.wait("node2's metrics count the policy's apply", 30, |c| {
        Ok(applied(c) > applies_before)
    });
    // explain reads the same cluster through the agent's datastore and gives its verdict.
    let explain = std::process::Command::new(lab::caracal_exe().unwrap())
        .args([
            "policy",
            "explain",
            "smoke/a",
            "smoke/b",
            "8080/TCP",
            "--kubeconfig",
        ])
        .arg(&c.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&explain.stderr)
    );
    assert!(
        text.contains("smoke/a -> smoke/b 8080/TCP: DENIED")
            && text.contains("selected by 1 NetworkPolicies, none allows this"),
        "explain: {text}"
    );
    // Only b is isolated: b still reaches a.
    assert_eq!(c.connect("smoke", "b", &format!("{a}:8080")), "ok");

    // A named port, resolved from the pod's container ports into an ip,port set: allowing
    // ingress on `http` opens 8080 again (policies add up), and nothing else.
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-b-http, namespace: smoke}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  ingress: [{ports: [{port: http}]}]\n",
    );
    c.wait("the named port opens a -> b:8080", 30, |c| {
        Ok(c.connect("smoke", "a", &format!("{b}:8080")) == "ok")
    });
    // 8081 has no listener: refused if the policy let it through, a timeout if it dropped it.
    let other = c.connect("smoke", "a", &format!("{b}:8081"));
    assert!(
        other.contains("TIMEOUT") || other.contains("timeout"),
        "a -> b:8081 should be dropped by policy, got: {other}"
    );

    c.lab.take().unwrap().down().expect("teardown");
    let left = leftovers(&name);
    assert!(left.is_empty(), "teardown left: {left:#?}");
}

#[test]
fn the_lab_config_map_differs_from_the_shipped_one_only_in_the_tor_peer_and_its_ranges() {
    let read = |p: &str| -> serde_yaml::Value {
        let text = std::fs::read_to_string(repo().join(p)).unwrap();
        let cm: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        serde_yaml::from_str(cm["data"]["agent.yaml"].as_str().unwrap()).unwrap()
    };
    let mut shipped = read("deploy/agent-config.yaml");
    let lab = read("tests/topologies/k8s/caracal-config.yaml");
    assert_eq!(lab["bgp"]["peers"][0]["address"], "10.0.0.1");
    shipped["bgp"]["peers"] = lab["bgp"]["peers"].clone();
    assert_eq!(lab["services"]["cluster_ips"][0], "10.96.0.0/16");
    shipped["services"] = lab["services"].clone();
    assert_eq!(lab["pod_pools"][0]["cidr"], "10.244.0.0/16");
    shipped["pod_pools"] = lab["pod_pools"].clone();
    assert_eq!(shipped, lab);
}
