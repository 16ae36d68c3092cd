//! The whole system in a lab: two caracal nodes behind a BIRD top-of-rack router, each running
//! `caracal agent` (CNI config, policy, BGP) with the lab's manifest folder as datastore, pods
//! plumbed by the real caracal-cni. Real packets: pods reach each other across nodes over routes
//! learned by BGP, and a NetworkPolicy written into the datastore drops them within moments.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use caracal::lab::{
    self, Lab, UpOptions,
    pod::{self, PodSpec},
};

fn topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/topologies/cluster")
}

/// A TCP server on port 80 in a pod, answering every connection with the pod's name; killed on
/// drop (the lab's teardown would kill it too).
struct Server(Child);

impl Server {
    fn start(lab: &Lab, pod: &str) -> Server {
        let netns = &lab.state().pods[pod].netns;
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',80))\ns.listen(64)\nwhile True:\n  c,_=s.accept()\n  c.sendall(b'{pod}')\n  c.close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "python3", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the server");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects from pod `from` to `ip:80`: the peer's answer, or "timeout" / the error.
fn connect(lab: &Lab, from: &str, ip: &str) -> String {
    let script = format!(
        "import socket\ntry:\n  s=socket.create_connection(('{ip}',80),timeout=1.5)\n  print(s.recv(64).decode())\n\
         except socket.timeout:\n  print('timeout')\nexcept OSError as e:\n  print('error', e)\n"
    );
    lab.exec_ok(from, &["python3", "-c", &script])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("{e:#}"))
}

fn expect_connect(lab: &Lab, from: &str, ip: &str, want: &str, what: &str) {
    let r = lab.wait_for(
        what,
        Duration::from_secs(10),
        |l| Ok(connect(l, from, ip) == want),
    );
    if let Err(e) = r {
        panic!(
            "{e:#}: last answer {:?}\n--- node1 ---\n{}\n--- node2 ---\n{}",
            connect(lab, from, ip),
            lab.log("node1"),
            lab.log("node2")
        );
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_over_bgp_and_policy_drops_them() {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return;
    }
    let mut lab = Lab::up(&topology(), UpOptions::default()).expect("lab up");
    let name = lab.name().to_string();
    for node in ["node1", "node2"] {
        let conflist = pod::node_conflist(lab.state(), node).unwrap();
        lab.wait_for(
            &format!("{node}'s agent to write its CNI config"),
            Duration::from_secs(20),
            |_| Ok(conflist.exists()),
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.log(node)));
    }

    let spec = |ns: &str, n: &str| PodSpec {
        namespace: ns.into(),
        name: n.into(),
        labels: [("pod".to_string(), n.to_string())].into(),
        ports: vec![(80, "TCP".into())],
    };
    let a = lab.add_pod("node1", &spec("x", "a")).expect("pod x/a");
    let b = lab.add_pod("node2", &spec("x", "b")).expect("pod x/b");
    let c = lab.add_pod("node1", &spec("x", "c")).expect("pod x/c");
    let ip = |p: &pod::PodState| p.ips[0].to_string();
    assert!(a.ips[0].to_string().starts_with("10.244.1."), "{:?}", a.ips);
    assert!(b.ips[0].to_string().starts_with("10.244.2."), "{:?}", b.ips);

    // The ToR learns both pod CIDRs; each node learns the other's and installs it.
    lab.wait_for("the ToR to learn both pod CIDRs", Duration::from_secs(30), |l| {
        let r = l.cli("tor", &["show", "route"])?;
        Ok(r.contains("10.244.1.0/24") && r.contains("10.244.2.0/24"))
    })
    .unwrap();
    lab.wait_for(
        "node1 to install node2's pod CIDR",
        Duration::from_secs(30),
        |l| {
            Ok(l.exec_ok("node1", &["ip", "route", "show", "proto", "201"])?
                .contains("10.244.2.0/24 via 10.0.1.1"))
        },
    )
    .unwrap();

    let _sb = Server::start(&lab, "x/b");
    let _sc = Server::start(&lab, "x/c");
    expect_connect(&lab, "x/a", &ip(&b), "x/b", "x/a to reach x/b across nodes");
    expect_connect(&lab, "x/a", &ip(&c), "x/c", "x/a to reach x/c on its own node");

    // A default-deny ingress policy for x/b, written into the datastore.
    let manifests = pod::manifests_dir(&name);
    std::fs::write(
        manifests.join("np-deny-b.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: deny-b}\n\
         spec:\n  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    expect_connect(
        &lab,
        "x/a",
        &ip(&b),
        "timeout",
        "the policy to drop x/a -> x/b (a drop times out)",
    );
    assert_eq!(
        connect(&lab, "x/a", &ip(&c)),
        "x/c",
        "x/c is not selected and stays open"
    );

    // An Admin GlobalPolicy denying egress from x/a to x/c wins over everything else.
    std::fs::write(
        manifests.join("gp-deny.yaml"),
        "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: a-not-to-c}\nspec:\n  priority: 10\n\
         \x20 subject: {podSelector: {matchLabels: {pod: a}}}\n  egress:\n    - action: Deny\n      to: [{podSelector: {matchLabels: {pod: c}}}]\n",
    )
    .unwrap();
    expect_connect(
        &lab,
        "x/a",
        &ip(&c),
        "timeout",
        "the GlobalPolicy to drop x/a -> x/c",
    );

    std::fs::remove_file(manifests.join("np-deny-b.yaml")).unwrap();
    std::fs::remove_file(manifests.join("gp-deny.yaml")).unwrap();
    expect_connect(
        &lab,
        "x/a",
        &ip(&b),
        "x/b",
        "x/a to reach x/b again once the policy is gone",
    );
    expect_connect(&lab, "x/a", &ip(&c), "x/c", "x/a to reach x/c again");

    // Removing a pod removes its veth, its /32 route and its endpoint record.
    let host_routes = |l: &Lab| l.exec_ok("node1", &["ip", "-4", "route"]).unwrap();
    assert!(host_routes(&lab).contains(&ip(&c)));
    lab.del_pod("x", "c").expect("pod del");
    assert!(
        !host_routes(&lab).contains(&ip(&c)),
        "the /32 of a deleted pod is gone"
    );
    let eps = caracal::agent::read_endpoints(&lab.node_dir("node1").unwrap().join("endpoints"));
    assert_eq!(eps.len(), 1, "one endpoint left on node1: {eps:?}");

    lab.down().expect("lab down");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&format!("clab-{name}-")),
        "namespaces left"
    );
}
