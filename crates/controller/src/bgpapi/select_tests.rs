//! Table tests of peer selection: each case is a cluster (nodes, objects) and the sessions one
//! node gets, written as `Kind address:port AS [rr] [pw]`.

use std::collections::BTreeMap;

use super::*;
use crate::{
    bgpapi::{types::BgpPeerSpec, validate},
    datastore::model::NodeAddress,
};

const DEFAULTS: Defaults = Defaults {
    local_as: 64512,
    listen_port: 179,
    restart_time: 120,
};

/// `name ip labels [asn] [rr-cluster-id]`, e.g. `n1 192.0.2.1 rack=a asn=65001 rr=244.0.0.1`.
fn node(spec: &str) -> Node {
    let mut words = spec.split_whitespace();
    let name = words.next().unwrap().to_string();
    let ip = words.next().unwrap().parse().unwrap();
    let mut n = Node {
        name,
        addresses: vec![NodeAddress {
            kind: "InternalIP".into(),
            ip,
        }],
        ..Default::default()
    };
    for w in words {
        let (k, v) = w.split_once('=').unwrap();
        match k {
            "asn" => n.asn = Some(v.parse().unwrap()),
            "rr" => n.rr_cluster_id = Some(v.parse().unwrap()),
            _ => {
                n.labels.insert(k.into(), v.into());
            }
        }
    }
    n
}

fn nodes(specs: &[&str]) -> BTreeMap<String, Node> {
    specs
        .iter()
        .map(|s| node(s))
        .map(|n| (n.name.clone(), n))
        .collect()
}

fn peer(name: &str, yaml: &str) -> Peer {
    let spec: BgpPeerSpec = serde_yaml::from_str(yaml).unwrap();
    validate::peer(name, &spec).unwrap()
}

fn config(yaml: &str) -> ClusterBgp {
    validate::configuration(&serde_yaml::from_str(yaml).unwrap()).unwrap()
}

fn passwords() -> BTreeMap<SecretKeyRef, String> {
    [(
        SecretKeyRef {
            name: "bgp".into(),
            key: "tor".into(),
        },
        "s3cret".to_string(),
    )]
    .into()
}

fn run(node: &str, config: Option<&ClusterBgp>, peers: &[Peer], nodes: &BTreeMap<String, Node>) -> NodeBgp {
    select(&Inputs {
        node,
        config,
        peers,
        nodes,
        passwords: &passwords(),
        defaults: DEFAULTS,
    })
}

fn show(s: &Session) -> String {
    let kind = format!("{:?}", s.kind);
    let mut out = match s.address {
        IpAddr::V6(a) => format!("{kind} [{a}]:{} {}", s.port, s.remote_as),
        a => format!("{kind} {a}:{} {}", s.port, s.remote_as),
    };
    if s.route_reflector_client {
        out += " rr";
    }
    if s.password.is_some() {
        out += " pw";
    }
    out
}

fn sessions(b: &NodeBgp) -> Vec<String> {
    let mut v: Vec<String> = b.sessions.iter().map(show).collect();
    v.sort();
    v
}

const THREE: [&str; 3] = [
    "n1 192.0.2.1 rack=a",
    "n2 192.0.2.2 rack=a",
    "n3 192.0.2.3 rack=b",
];

struct Case {
    name: &'static str,
    nodes: &'static [&'static str],
    config: Option<&'static str>,
    peers: &'static [(&'static str, &'static str)],
    node: &'static str,
    want: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "no objects: the mesh, to every other node",
        nodes: &THREE,
        config: None,
        peers: &[],
        node: "n1",
        want: &["Mesh 192.0.2.2:179 64512", "Mesh 192.0.2.3:179 64512"],
    },
    Case {
        name: "mesh off: nothing",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[],
        node: "n1",
        want: &[],
    },
    Case {
        name: "the cluster AS and a node's own AS (eBGP mesh session), listen port",
        nodes: &["n1 192.0.2.1", "n2 192.0.2.2 asn=65002", "n3 192.0.2.3"],
        config: Some("{asNumber: 64600, listenPort: 1179}"),
        peers: &[],
        node: "n1",
        want: &["Mesh 192.0.2.2:1179 65002", "Mesh 192.0.2.3:1179 64600"],
    },
    Case {
        name: "a global peer for every node, with the mesh",
        nodes: &THREE,
        config: None,
        peers: &[("tor", "{peerIP: 10.0.0.254, asNumber: 65000}")],
        node: "n3",
        want: &[
            "Global 10.0.0.254:179 65000",
            "Mesh 192.0.2.1:179 64512",
            "Mesh 192.0.2.2:179 64512",
        ],
    },
    Case {
        name: "per-rack ToRs by nodeSelector, mesh off: rack a",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[
            (
                "tor-a",
                "{peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\"}",
            ),
            (
                "tor-b",
                "{peerIP: 10.0.2.254, asNumber: 65002, nodeSelector: \"rack == 'b'\"}",
            ),
        ],
        node: "n2",
        want: &["Node 10.0.1.254:179 65001"],
    },
    Case {
        name: "per-rack ToRs by nodeSelector, mesh off: rack b",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[
            (
                "tor-a",
                "{peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\"}",
            ),
            (
                "tor-b",
                "{peerIP: 10.0.2.254, asNumber: 65002, nodeSelector: \"rack == 'b'\"}",
            ),
        ],
        node: "n3",
        want: &["Node 10.0.2.254:179 65002"],
    },
    Case {
        name: "a label change moves a node to the other ToR",
        nodes: &[
            "n1 192.0.2.1 rack=b",
            "n2 192.0.2.2 rack=a",
            "n3 192.0.2.3 rack=b",
        ],
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[
            (
                "tor-a",
                "{peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\"}",
            ),
            (
                "tor-b",
                "{peerIP: 10.0.2.254, asNumber: 65002, nodeSelector: \"rack == 'b'\"}",
            ),
        ],
        node: "n1",
        want: &["Node 10.0.2.254:179 65002"],
    },
    Case {
        name: "one node by name, with a password and a port",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[(
            "edge",
            "{peerIP: '10.9.9.9:1179', asNumber: 65009, node: n1, password: {secretKeyRef: {name: bgp, key: tor}}}",
        )],
        node: "n1",
        want: &["Node 10.9.9.9:1179 65009 pw"],
    },
    Case {
        name: "an IP:port peered twice is one session: the global one wins",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[
            (
                "rack",
                "{peerIP: 10.0.0.254, asNumber: 65111, nodeSelector: \"rack == 'a'\"}",
            ),
            ("all", "{peerIP: 10.0.0.254, asNumber: 65000}"),
            ("again", "{peerIP: '10.0.0.254:179', asNumber: 65222}"),
        ],
        node: "n1",
        want: &["Global 10.0.0.254:179 65000"],
    },
    Case {
        name: "explicit peers win over the mesh",
        nodes: &THREE,
        config: None,
        peers: &[(
            "to-n2",
            "{peerIP: 192.0.2.2, asNumber: 64512, node: n1, password: {secretKeyRef: {name: bgp, key: tor}}}",
        )],
        node: "n1",
        want: &["Mesh 192.0.2.3:179 64512", "Node 192.0.2.2:179 64512 pw"],
    },
    Case {
        name: "a peer at the node's own IP is skipped, and that node peers back (reverse)",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[("hub", "{peerIP: 192.0.2.1, asNumber: 64512}")],
        node: "n1",
        want: &["Node 192.0.2.2:179 64512", "Node 192.0.2.3:179 64512"],
    },
    Case {
        name: "... and the other nodes peer with it",
        nodes: &THREE,
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[("hub", "{peerIP: 192.0.2.1, asNumber: 64512}")],
        node: "n2",
        want: &["Global 192.0.2.1:179 64512"],
    },
    Case {
        name: "route reflector: a client peers with the reflector only",
        nodes: &[
            "n1 192.0.2.1",
            "n2 192.0.2.2",
            "rr 192.0.2.9 route-reflector=true rr=244.0.0.1",
        ],
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[(
            "to-rr",
            "{nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}",
        )],
        node: "n1",
        want: &["Node 192.0.2.9:179 64512"],
    },
    Case {
        name: "route reflector: the reflector peers back with every client, as its clients",
        nodes: &[
            "n1 192.0.2.1",
            "n2 192.0.2.2 asn=65002",
            "rr 192.0.2.9 route-reflector=true rr=244.0.0.1",
        ],
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[(
            "to-rr",
            "{nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}",
        )],
        node: "rr",
        // n2 is in another AS: eBGP, not a client.
        want: &["Node 192.0.2.1:179 64512 rr", "Node 192.0.2.2:179 65002"],
    },
    Case {
        name: "route reflector with the mesh on: it leaves the mesh, the others keep theirs",
        nodes: &[
            "n1 192.0.2.1",
            "n2 192.0.2.2",
            "rr 192.0.2.9 route-reflector=true rr=244.0.0.1",
        ],
        config: None,
        peers: &[("to-rr", "{peerSelector: \"route-reflector == 'true'\"}")],
        node: "n1",
        want: &["Global 192.0.2.9:179 64512", "Mesh 192.0.2.2:179 64512"],
    },
    Case {
        name: "route reflector with the mesh on: no mesh sessions on it",
        nodes: &[
            "n1 192.0.2.1",
            "n2 192.0.2.2",
            "rr 192.0.2.9 route-reflector=true rr=244.0.0.1",
        ],
        config: None,
        peers: &[("to-rr", "{peerSelector: \"route-reflector == 'true'\"}")],
        node: "rr",
        want: &["Node 192.0.2.1:179 64512 rr", "Node 192.0.2.2:179 64512 rr"],
    },
    Case {
        name: "two reflectors of one cluster ID peer as plain iBGP; an external iBGP peer is a client",
        nodes: &[
            "n1 192.0.2.1",
            "rr1 192.0.2.8 route-reflector=true rr=244.0.0.1",
            "rr2 192.0.2.9 route-reflector=true rr=244.0.0.1",
        ],
        config: Some("{nodeToNodeMeshEnabled: false}"),
        peers: &[
            (
                "to-rr",
                "{nodeSelector: all(), peerSelector: \"route-reflector == 'true'\"}",
            ),
            (
                "ext",
                "{peerIP: 10.0.0.7, asNumber: 64512, nodeSelector: has(route-reflector)}",
            ),
        ],
        node: "rr1",
        want: &[
            "Node 10.0.0.7:179 64512 rr",
            "Node 192.0.2.1:179 64512 rr",
            "Node 192.0.2.9:179 64512",
        ],
    },
    Case {
        name: "IPv6 peers",
        nodes: &["n1 fd00::1", "n2 fd00::2"],
        config: None,
        peers: &[("v6", "{peerIP: '[fd00::fe]:1179', asNumber: 65000}")],
        node: "n1",
        want: &["Global [fd00::fe]:1179 65000", "Mesh [fd00::2]:179 64512"],
    },
];

#[test]
fn sessions_follow_calicos_rules() {
    let mut failures = Vec::new();
    for case in CASES {
        let nodes = nodes(case.nodes);
        let config = case.config.map(config);
        let peers: Vec<Peer> = case.peers.iter().map(|(n, y)| peer(n, y)).collect();
        let got = run(case.node, config.as_ref(), &peers, &nodes);
        let got = sessions(&got);
        if got != case.want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {:?}", case.name, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reflector_sets_the_speakers_cluster_id_and_clients() {
    let nodes = nodes(&["n1 192.0.2.1", "rr 192.0.2.9 route-reflector=true rr=244.0.0.1"]);
    let peers = [peer("to-rr", "{peerSelector: \"route-reflector == 'true'\"}")];
    let b = run("rr", None, &peers, &nodes);
    assert_eq!(b.cluster_id, Some("244.0.0.1".parse().unwrap()));
    let base = SpeakerConfig::parse("{local_as: 1, router_id: 192.0.2.9, listen_port: 0}").unwrap();
    let c = b.apply_to(&base);
    assert_eq!(c.cluster_id, b.cluster_id);
    assert_eq!(c.local_as, 64512);
    assert_eq!(c.listen_port, 0, "no listenPort: the agent's own");
    let cfg = config("{listenPort: 1179}");
    assert_eq!(
        run("rr", Some(&cfg), &peers, &nodes).apply_to(&base).listen_port,
        1179
    );
    assert!(c.peers[0].route_reflector_client);
    c.validate().unwrap();
    assert_eq!(run("n1", None, &peers, &nodes).cluster_id, None);
}

#[test]
fn missing_password_leaves_the_session_out_and_the_mesh_does_not_take_it() {
    let nodes = nodes(&THREE);
    let peers = [peer(
        "to-n2",
        "{peerIP: 192.0.2.2, asNumber: 64512, password: {secretKeyRef: {name: bgp, key: missing}}}",
    )];
    let b = run("n1", None, &peers, &nodes);
    assert_eq!(sessions(&b), ["Mesh 192.0.2.3:179 64512"]);
    assert_eq!(b.problems.len(), 1);
    assert!(
        b.problems[0].contains("BGPPeer to-n2") && b.problems[0].contains("\"missing\""),
        "{:?}",
        b.problems
    );
    let cfg = config("{nodeMeshPassword: {secretKeyRef: {name: bgp, key: tor}}}");
    let b = run("n1", Some(&cfg), &[], &nodes);
    assert!(b.sessions.iter().all(|s| s.password.as_deref() == Some("s3cret")));
}

#[test]
fn a_second_port_to_one_address_is_reported_not_configured() {
    let nodes = nodes(&THREE);
    let peers = [
        peer("a", "{peerIP: 10.0.0.1, asNumber: 65000}"),
        peer("b", "{peerIP: '10.0.0.1:1179', asNumber: 65000}"),
    ];
    let b = run(
        "n1",
        Some(&config("{nodeToNodeMeshEnabled: false}")),
        &peers,
        &nodes,
    );
    assert_eq!(sessions(&b), ["Global 10.0.0.1:179 65000"]);
    assert!(
        b.problems[0].starts_with("b: 10.0.0.1 port 1179 left out"),
        "{:?}",
        b.problems
    );
}

#[test]
fn unknown_node_has_no_sessions_and_says_why() {
    let b = run("ghost", None, &[], &nodes(&THREE));
    assert!(b.sessions.is_empty());
    assert!(b.problems[0].contains("ghost"));
}

#[test]
fn session_carries_the_peers_settings_into_the_speaker_config() {
    let nodes = nodes(&THREE);
    let peers = [peer(
        "tor",
        "{peerIP: 10.0.0.254, asNumber: 65000, localASNumber: 64999, maxRestartTime: 30s, ebgpMultihop: 2, \
         maxPrefixes: 1000, password: {secretKeyRef: {name: bgp, key: tor}}, \
         exportFilter: [{cidr: 10.244.0.0/16, action: Accept}]}",
    )];
    let b = run(
        "n1",
        Some(&config("{nodeToNodeMeshEnabled: false}")),
        &peers,
        &nodes,
    );
    let s = &b.sessions[0];
    assert_eq!(s.name(), "Global_10_0_0_254");
    let p = s.peer_config();
    assert_eq!(p.address, "10.0.0.254".parse::<IpAddr>().unwrap());
    assert_eq!((p.remote_as, p.local_as, p.port), (65000, Some(64999), 179));
    assert_eq!(p.graceful_restart_time, 30);
    assert_eq!(p.ebgp_multihop, Some(2));
    assert_eq!(p.max_prefixes, Some(1000));
    assert_eq!(p.password.as_deref(), Some("s3cret"));
    assert_eq!(p.source_address, Some("192.0.2.1".parse().unwrap()), "UseNodeIP");
    assert_eq!(p.export.len(), 3);
    assert_eq!(p.hold_time, 90, "the speaker's default");
    let none = peer(
        "tor",
        "{peerIP: 10.0.0.254, asNumber: 65000, sourceAddress: None}",
    );
    let b = run("n1", None, &[none], &nodes);
    assert_eq!(b.sessions[0].source_address, None);
    assert_eq!(
        b.sessions[0].graceful_restart_time, 120,
        "the default restart time"
    );
    let mesh = b.sessions.iter().find(|s| s.kind == SessionKind::Mesh).unwrap();
    assert_eq!(mesh.name(), "Mesh_192_0_2_2");
}
