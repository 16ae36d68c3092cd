//! `caracal policy explain` and the agent build the same model from the same objects: the
//! manifests are fed to the agent's directory datastore and to explain's loader, and the two
//! models must be equal, including the cases where the two converters used to differ. No root.

use caracal_policy::{
    manifests::{self, Loaded},
    model::{ClusterState, Key, NamedPort},
    program::Protocol,
};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: running, namespace: x, labels: {app: web}}
spec:
  nodeName: n1
  initContainers: [{name: sidecar, image: i, ports: [{name: metrics, containerPort: 9090}]}]
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}, {name: odd, containerPort: 7, protocol: ICMP}]}]
status: {phase: Running, podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: x}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Succeeded, podIP: 10.0.0.6}
---
apiVersion: v1
kind: Pod
metadata: {name: failed, namespace: y}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Failed, podIP: 10.0.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: x}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, image: i}]}
status: {podIP: 192.168.0.10}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: http}]}]
---
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: bad}
spec: {priority: 5000}
---
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: good}
spec: {priority: 10, ingress: [{action: Deny}]}
"#;

#[test]
fn explain_and_the_directory_datastore_build_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), MANIFESTS).unwrap();
    let agent = caracal::datastore::load_dir(dir.path()).unwrap();

    let mut explain = ClusterState::default();
    let mut loaded = Loaded::default();
    manifests::load_into(&mut explain, &mut loaded, MANIFESTS).unwrap();

    assert_eq!(explain, agent.cluster);
    assert_eq!(
        loaded.rejected.keys().collect::<Vec<_>>(),
        agent.rejected.keys().collect::<Vec<_>>()
    );

    // The four cases the converters disagreed on.
    let pod = |ns: &str, name: &str| &agent.cluster.pods[&Key::new(ns, name)];
    assert!(pod("x", "done").ips.is_empty(), "Succeeded pods have no address");
    assert!(pod("y", "failed").ips.is_empty(), "Failed pods have no address");
    assert!(
        pod("x", "host").ips.is_empty(),
        "host-network pods have no address"
    );
    assert_eq!(
        pod("x", "running").ports,
        [
            NamedPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080
            },
            NamedPort {
                name: "metrics".into(),
                protocol: Protocol::Tcp,
                port: 9090
            },
        ],
        "init-container ports count, a port with an unknown protocol does not"
    );
    assert_eq!(loaded.notes, ["Pod running: container port odd (7/ICMP) ignored"]);
    assert_eq!(
        loaded.unpoliced.keys().cloned().collect::<Vec<_>>(),
        [
            Key::new("x", "done"),
            Key::new("x", "host"),
            Key::new("y", "failed")
        ]
    );
    assert!(agent.cluster.global_policies.contains_key("good"));
    assert!(agent.rejected.contains_key("bad"));
    assert!(agent.cluster.namespaces.contains_key("y"), "implicit namespace");
}
