//! BGP configured with Kubernetes objects, in the lab (`tests/topologies/bgp-racks`): three
//! `caracal agent`s read BGPConfiguration, BGPPeers, a Secret and their Node objects from the
//! lab's manifest folder. Per-rack BIRD ToRs are selected by node label (one with an MD5 password
//! from the Secret), the mesh is off and node2 is a route reflector by its Node annotation; a
//! label change moves node1 to the other ToR, and bad objects are ignored with the field named.

use std::{collections::BTreeSet, path::Path, time::Duration};

use caracal::lab::{self, Lab, UpOptions, pod};

const NODES: &str = "
apiVersion: v1
kind: Node
metadata: {name: node1, labels: {rack: RACK1}}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata:
  name: node2
  labels: {rack: b, route-reflector: 'true'}
  annotations: {caracal.dev/bgp-rr-cluster-id: 244.0.0.1}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node3, labels: {rack: a}}
spec: {podCIDR: 10.244.3.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.13}]}
";

const BGP: &str = "
apiVersion: v1
kind: Secret
metadata: {name: bgp-passwords, namespace: kube-system}
type: Opaque
stringData: {rack-a: s3cret}
---
apiVersion: caracal.dev/v1alpha1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
---
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: rack-a-tor}
spec:
  peerIP: 10.0.0.1
  asNumber: 65001
  nodeSelector: rack == 'a'
  password: {secretKeyRef: {name: bgp-passwords, key: rack-a}}
---
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: rack-b-tor}
spec: {peerIP: 10.0.0.2, asNumber: 65002, nodeSelector: rack == 'b'}
---
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: peer-with-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
";

const BAD: &str = "
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: bad-ip}
spec: {peerIP: 10.0.0.300, asNumber: 65009}
---
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: bad-nodes}
spec: {peerIP: 10.0.0.9, asNumber: 65009, node: node1, nodeSelector: all()}
";

/// The ToR's BGP protocols (one per node) that are Established.
fn established(lab: &Lab, tor: &str) -> anyhow::Result<BTreeSet<String>> {
    let out = lab.cli(tor, &["show", "protocols"])?;
    Ok(out
        .lines()
        .filter(|l| l.contains("Established"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The addresses a node's speaker has sessions configured with.
fn peers(lab: &Lab, node: &str) -> anyhow::Result<BTreeSet<String>> {
    let status: serde_json::Value = serde_json::from_str(&lab.cli(node, &["--json"])?)?;
    Ok(status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["address"].as_str().map(str::to_string))
        .collect())
}

fn wait(lab: &Lab, what: &str, secs: u64, mut check: impl FnMut(&Lab) -> anyhow::Result<bool>) {
    if let Err(e) = lab.wait_for(what, Duration::from_secs(secs), |l| check(l)) {
        panic!(
            "{e:#}\n--- tor-a ---\n{}\n--- tor-b ---\n{}\n--- node1 ---\n{}\n--- node2 ---\n{}",
            lab.cli("tor-a", &["show", "protocols"]).unwrap_or_default(),
            lab.cli("tor-b", &["show", "protocols"]).unwrap_or_default(),
            lab.log("node1"),
            lab.log("node2"),
        );
    }
}

#[test]
fn racks_tors_route_reflector_and_password_come_from_the_bgp_objects() {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return;
    }
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/topologies/bgp-racks");
    let lab = Lab::up(&topology, UpOptions::default()).expect("lab up");
    let manifests = pod::manifests_dir(lab.name());
    std::fs::write(manifests.join("nodes.yaml"), NODES.replace("RACK1", "a")).unwrap();
    std::fs::write(manifests.join("bgp.yaml"), BGP).unwrap();

    // Rack a's ToR (with the password) gets node1 and node3, rack b's gets node2.
    wait(&lab, "tor-a to peer with node1 and node3 only", 30, |l| {
        Ok(established(l, "tor-a")? == set(&["node1", "node3"]))
    });
    wait(&lab, "tor-b to peer with node2 only", 30, |l| {
        Ok(established(l, "tor-b")? == set(&["node2"]))
    });
    // The mesh is off: node1 peers with its ToR and the reflector, not with node3.
    assert_eq!(peers(&lab, "node1").unwrap(), set(&["10.0.0.1", "10.0.0.12"]));
    assert_eq!(
        peers(&lab, "node2").unwrap(),
        set(&["10.0.0.2", "10.0.0.11", "10.0.0.13"])
    );
    // node3 learns node1's pods only through the reflector (tor-a's copy carries AS 64512 and is
    // a loop), with node1 as the next hop: the route was reflected, not re-originated.
    wait(
        &lab,
        "node3 to install node1's pod CIDR, reflected by node2",
        30,
        |l| {
            Ok(l.exec_ok("node3", &["ip", "route", "show", "proto", "201"])?
                .contains("10.244.1.0/24 via 10.0.0.11"))
        },
    );
    wait(&lab, "node1 to install node3's pod CIDR", 30, |l| {
        Ok(l.exec_ok("node1", &["ip", "route", "show", "proto", "201"])?
            .contains("10.244.3.0/24 via 10.0.0.13"))
    });

    // Bad objects are ignored whole, with the field named; nothing else changes.
    std::fs::write(manifests.join("bad.yaml"), BAD).unwrap();
    wait(
        &lab,
        "node1 to report the bad BGPPeers with their fields",
        15,
        |l| {
            let log = l.log("node1");
            Ok(
                log.contains("spec.peerIP: \\\"10.0.0.300\\\" is not an IP address")
                    || log.contains("spec.peerIP: \"10.0.0.300\" is not an IP address"),
            )
        },
    );
    assert!(
        lab.log("node1")
            .contains("node and nodeSelector are mutually exclusive"),
        "{}",
        lab.log("node1")
    );
    assert_eq!(peers(&lab, "node1").unwrap(), set(&["10.0.0.1", "10.0.0.12"]));

    // A label change moves node1 from rack a's ToR to rack b's within seconds.
    std::fs::write(manifests.join("nodes.yaml"), NODES.replace("RACK1", "b")).unwrap();
    wait(&lab, "node1 to leave tor-a", 15, |l| {
        Ok(established(l, "tor-a")? == set(&["node3"]))
    });
    wait(&lab, "node1 to join tor-b", 15, |l| {
        Ok(established(l, "tor-b")? == set(&["node1", "node2"]))
    });
    assert_eq!(peers(&lab, "node1").unwrap(), set(&["10.0.0.2", "10.0.0.12"]));
    // The reflector's sessions were not touched: node3 still has node1's route.
    assert!(
        lab.exec_ok("node3", &["ip", "route", "show", "proto", "201"])
            .unwrap()
            .contains("10.244.1.0/24 via 10.0.0.11")
    );

    lab.down().expect("lab down");
}
