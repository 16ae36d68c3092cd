//! Outgoing NAT against the real kernel, in three namespaces this test creates and removes:
//!
//! ```text
//!  pod 10.244.1.5 ── eth0 | vpod 10.244.1.1  node  vout 10.0.0.11 | eth0 10.0.0.1  out
//!                                                                        + 10.245.0.9 (a pod range)
//! ```
//!
//! A connection from the pod to `out`'s address leaves the cluster's ranges: `out` sees the
//! node's address. One to 10.245.0.9, inside another pod range, keeps the pod's address. A hook
//! deleted behind the applier's back is put back by the next apply, and the empty program
//! removes everything.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use caracal::{
    dataplane::{
        backend,
        nat::NatApplier,
        netns::{Netns, in_netns, run, tool, unique_suffix},
    },
    nat::{NatProgram, NatSets},
};
use caracal_policy::program::Family;
use ipnet::IpNet;

fn ip(ns: &str, args: &[&str]) {
    let mut argv = vec!["-n", ns];
    argv.extend_from_slice(args);
    run(None, &tool("ip").unwrap(), &argv, None).unwrap_or_else(|e| panic!("ip {argv:?}: {e}"));
}

/// The source address `out` sees for a connection from the pod to `dst`.
fn seen_from(pod: &str, out: &str, dst: &str) -> IpAddr {
    let listener = in_netns(Some(out), || TcpListener::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let to: SocketAddr = format!("{dst}:{port}").parse().unwrap();
    let client = in_netns(Some(pod), move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(3))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("pod -> {to}: {e}"));
    let (_conn, peer) = listener.accept().unwrap();
    drop(client);
    peer.ip()
}

fn nets(text: &str) -> BTreeSet<IpNet> {
    text.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn outgoing_nat_masquerades_only_traffic_leaving_every_range_and_repairs_itself() {
    if !caracal_testkit::require::root() {
        return;
    }
    let id = unique_suffix();
    let pod = Netns::create(&format!("cnat-pod-{id}")).unwrap();
    let node = Netns::create(&format!("cnat-node-{id}")).unwrap();
    let out = Netns::create(&format!("cnat-out-{id}")).unwrap();
    let (p, n, o) = (pod.name(), node.name(), out.name());
    ip(
        n,
        &[
            "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", p,
        ],
    );
    ip(
        n,
        &[
            "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", o,
        ],
    );
    ip(p, &["addr", "add", "10.244.1.5/24", "dev", "eth0"]);
    ip(n, &["addr", "add", "10.244.1.1/24", "dev", "vpod"]);
    ip(n, &["addr", "add", "10.0.0.11/24", "dev", "vout"]);
    ip(o, &["addr", "add", "10.0.0.1/24", "dev", "eth0"]);
    ip(o, &["addr", "add", "10.245.0.9/32", "dev", "lo"]);
    for (ns, dev) in [(p, "eth0"), (n, "vpod"), (n, "vout"), (o, "eth0")] {
        ip(ns, &["link", "set", dev, "up"]);
    }
    ip(p, &["route", "add", "default", "via", "10.244.1.1"]);
    ip(n, &["route", "add", "10.245.0.9/32", "via", "10.0.0.1"]);
    ip(o, &["route", "add", "10.244.0.0/16", "via", "10.0.0.11"]);
    in_netns(Some(n), || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
        .unwrap()
        .unwrap();

    let pod_ip: IpAddr = "10.244.1.5".parse().unwrap();
    let node_ip: IpAddr = "10.0.0.11".parse().unwrap();
    assert_eq!(seen_from(p, o, "10.0.0.1"), pod_ip, "no NAT before the apply");

    let program = NatProgram {
        families: [(
            Family::V4,
            NatSets {
                masq: nets("10.244.0.0/16"),
                all: nets("10.244.0.0/16 10.245.0.0/16 10.96.0.0/16"),
            },
        )]
        .into(),
    };
    let mut applier = NatApplier::new(Some(n), None).unwrap();
    let first = applier.apply(&program).unwrap();
    assert_eq!((first.restores, first.ipset_calls), (1, 1), "{first:?}");
    assert_eq!(seen_from(p, o, "10.0.0.1"), node_ip, "outside: masqueraded");
    assert_eq!(
        seen_from(p, o, "10.245.0.9"),
        pod_ip,
        "another pod range: not masqueraded"
    );
    assert_eq!(
        applier.apply(&program).unwrap(),
        Default::default(),
        "in sync: nothing written"
    );

    // The hook removed behind the applier's back: put back.
    let tools = backend::tools(backend::detect(Some(n)).unwrap(), Family::V4).unwrap();
    run(
        Some(n),
        &tools.restore,
        &["--noflush"],
        Some("*nat\n-D POSTROUTING -j CARACAL-POSTROUTING\nCOMMIT\n"),
    )
    .unwrap();
    assert_eq!(seen_from(p, o, "10.0.0.1"), pod_ip, "the hook is gone");
    assert_eq!(applier.apply(&program).unwrap().restores, 1);
    assert_eq!(seen_from(p, o, "10.0.0.1"), node_ip, "repaired");

    // Nothing wanted: chain, hook and sets go.
    applier.apply(&NatProgram::default()).unwrap();
    let save = run(Some(n), &tools.save, &["-t", "nat"], None).unwrap();
    assert!(!save.contains("CARACAL"), "{save}");
    let sets = run(Some(n), &tool("ipset").unwrap(), &["list", "-n"], None).unwrap();
    assert!(!sets.contains("caracal-"), "{sets}");
    assert_eq!(seen_from(p, o, "10.0.0.1"), pod_ip);
}
