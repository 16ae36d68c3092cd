//! ADD / CHECK / DEL / GC through the CNI exec protocol, for caracal-cni and, where the two
//! overlap, for Debian's `ptp` + `host-local` in the same test. Needs root (namespaces).

mod support;

use std::net::IpAddr;

use serde_json::Value;
use support::{Kind, Net, Node, Pod, tcp_reachable};

/// The plugins to compare; Debian's are skipped (with a note) when not installed.
fn kinds() -> Vec<Kind> {
    if support::have_debian_plugins() {
        vec![Kind::Caracal, Kind::Ptp]
    } else {
        eprintln!(
            "note: /usr/lib/cni/ptp or host-local missing (apt install containernetworking-plugins): comparing nothing"
        );
        vec![Kind::Caracal]
    }
}

fn assert_clean(net: &Net, node: &Node) {
    assert_eq!(
        node.pod_links(),
        Vec::<String>::new(),
        "{:?}: host veths left",
        net.kind
    );
    assert_eq!(net.held_addresses(), 0, "{:?}: addresses still held", net.kind);
    let routes = node.ns.routes(false);
    assert!(!routes.contains("10."), "{:?}: routes left: {routes}", net.kind);
    if net.kind == Kind::Caracal {
        let eps = std::fs::read_dir(net.endpoints_dir())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(eps, 0, "endpoint records left");
    }
}

#[test]
fn add_check_del_cycle_in_every_version_converts_the_result() {
    require_root!();
    for kind in kinds() {
        for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let node = Node::new();
            let net = Net::new(kind, version, "10.61.0.0/24", None);
            let pod = Pod::new();
            let r = net.add(&node.ns, &pod);
            if kind == Kind::Ptp && version == "1.1.0" {
                // Debian's plugins (1.1.1) stop at spec 1.0.0 and say so with code 1.
                assert_eq!(r.code(), Some(1), "ptp 1.1.0: {r:?}");
                continue;
            }
            assert!(r.ok(), "{kind:?} {version} ADD: {r:?}");
            let res = r.json();
            assert_eq!(res["cniVersion"], version);
            let ips = Pod::result_ips(&res);
            assert_eq!(ips.len(), 1, "{res}");
            let ip0 = &res["ips"][0];
            if version.starts_with("0.") {
                assert_eq!(ip0["version"], "4", "{kind:?} {version}: {res}");
            } else {
                assert!(ip0.get("version").is_none(), "{kind:?} {version}: {res}");
            }
            // The container interface is the one ips[].interface points at, inside the sandbox.
            let idx = ip0["interface"].as_u64().unwrap() as usize;
            assert_eq!(res["interfaces"][idx]["name"], "eth0");
            assert_eq!(res["interfaces"][idx]["sandbox"], pod.ns().path());
            let addrs = pod.ns().sh(&["ip", "-o", "addr", "show", "dev", "eth0"]);
            assert!(addrs.contains(&ips[0].to_string()), "{addrs}");
            if kind == Kind::Caracal {
                assert!(addrs.contains(&format!("{}/32", ips[0])), "ours is /32: {addrs}");
                assert!(node.pod_links()[0].starts_with("cara"));
                assert_eq!(res["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
            }
            let c = net.check(&node.ns, &pod);
            if version == "0.3.1" {
                assert_eq!(
                    c.code(),
                    Some(1),
                    "{kind:?}: CHECK before 0.4.0 is refused: {c:?}"
                );
                assert!(c.msg().contains("does not allow CHECK"), "{c:?}");
            } else {
                assert!(c.ok(), "{kind:?} {version} CHECK: {c:?}");
            }
            let d = net.del(&node.ns, &pod);
            assert!(d.ok(), "{kind:?} {version} DEL: {d:?}");
            assert!(!pod.ns().links().contains(&"eth0".to_string()));
            assert_clean(&net, &node);
            // DEL again: idempotent.
            let d = net.del(&node.ns, &pod);
            assert!(d.ok(), "{kind:?} {version} second DEL: {d:?}");
        }
    }
}

#[test]
fn version_command_lists_supported_versions() {
    require_root!();
    let node = Node::new();
    for kind in kinds() {
        let net = Net::new(kind, "1.0.0", "10.62.0.0/24", None);
        let call = support::Call {
            command: "VERSION".into(),
            ..Default::default()
        };
        let r = net.call(&node.ns, &call, &serde_json::json!({"cniVersion": "1.0.0"}));
        assert!(r.ok(), "{r:?}");
        let v = r.json();
        assert_eq!(v["cniVersion"], "1.0.0");
        let sup: Vec<&str> = v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for want in ["0.3.1", "0.4.0", "1.0.0"] {
            assert!(sup.contains(&want), "{kind:?}: {sup:?}");
        }
        if kind == Kind::Caracal {
            assert!(sup.contains(&"1.1.0"));
        }
    }
}

#[test]
fn two_pods_on_one_node_reach_each_other_over_tcp() {
    require_root!();
    for kind in kinds() {
        let node = Node::new();
        let net = Net::new(kind, "1.0.0", "10.63.0.0/24", None);
        let (a, b) = (Pod::new(), Pod::new());
        let ra = net.add(&node.ns, &a);
        let rb = net.add(&node.ns, &b);
        assert!(ra.ok() && rb.ok(), "{ra:?} {rb:?}");
        let ipa = Pod::result_ips(&ra.json())[0];
        let ipb = Pod::result_ips(&rb.json())[0];
        assert_ne!(ipa, ipb);
        assert!(tcp_reachable(a.ns(), b.ns(), ipb), "{kind:?}: a -> b {ipb}");
        assert!(tcp_reachable(b.ns(), a.ns(), ipa), "{kind:?}: b -> a {ipa}");
        // The node reaches its pods too (kubelet probes).
        assert!(tcp_reachable(&node.ns, a.ns(), ipa), "{kind:?}: node -> a");
        if kind == Kind::Caracal {
            // Without the static neighbour entry the pod must still find its gateway: proxy ARP.
            a.ns().sh(&["ip", "neigh", "flush", "dev", "eth0"]);
            a.ns().sh(&["ip", "neigh", "del", "169.254.1.1", "dev", "eth0"]);
            assert!(tcp_reachable(a.ns(), b.ns(), ipb), "a -> b through proxy ARP");
            let neigh = a.ns().sh(&["ip", "neigh", "show", "169.254.1.1"]);
            assert!(
                neigh.contains("ee:ee:ee:ee:ee:ee"),
                "gateway resolved by proxy ARP: {neigh}"
            );
            let routes = node.ns.sh(&["ip", "route", "show", "proto", "91"]);
            assert_eq!(
                routes.lines().count(),
                2,
                "host routes tagged with protocol 91: {routes}"
            );
        }
        assert!(net.del(&node.ns, &a).ok());
        assert!(net.del(&node.ns, &b).ok());
        assert_clean(&net, &node);
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_through_node_routes() {
    require_root!();
    for kind in kinds() {
        let n1 = Node::new();
        let n2 = Node::new();
        // The "wire" between the nodes: a veth with a /30, and a route to each other's pod CIDR.
        let l1 = support::unique("cnl");
        let l1 = format!("l{}", &l1[l1.len().saturating_sub(12)..]);
        n1.ns.sh(&[
            "ip",
            "link",
            "add",
            &l1,
            "type",
            "veth",
            "peer",
            "name",
            "wire0",
            "netns",
            &n2.ns.name,
        ]);
        n1.ns.sh(&["ip", "link", "set", &l1, "name", "wire0"]);
        n1.ns
            .sh(&["ip", "addr", "add", "192.168.77.1/30", "dev", "wire0"]);
        n2.ns
            .sh(&["ip", "addr", "add", "192.168.77.2/30", "dev", "wire0"]);
        n1.ns.sh(&["ip", "link", "set", "wire0", "up"]);
        n2.ns.sh(&["ip", "link", "set", "wire0", "up"]);
        n1.ns
            .sh(&["ip", "route", "add", "10.65.2.0/24", "via", "192.168.77.2"]);
        n2.ns
            .sh(&["ip", "route", "add", "10.65.1.0/24", "via", "192.168.77.1"]);
        let net1 = Net::new(kind, "1.0.0", "10.65.1.0/24", None);
        let net2 = Net::new(kind, "1.0.0", "10.65.2.0/24", None);
        let (a, b) = (Pod::new(), Pod::new());
        let ra = net1.add(&n1.ns, &a);
        let rb = net2.add(&n2.ns, &b);
        assert!(ra.ok() && rb.ok(), "{ra:?} {rb:?}");
        let ipa = Pod::result_ips(&ra.json())[0];
        let ipb = Pod::result_ips(&rb.json())[0];
        assert!(
            tcp_reachable(a.ns(), b.ns(), ipb),
            "{kind:?}: node1 pod -> node2 pod"
        );
        assert!(
            tcp_reachable(b.ns(), a.ns(), ipa),
            "{kind:?}: node2 pod -> node1 pod"
        );
        assert!(net1.del(&n1.ns, &a).ok());
        assert!(net2.del(&n2.ns, &b).ok());
        assert_eq!(n1.pod_links(), Vec::<String>::new());
        assert_eq!(n2.pod_links(), Vec::<String>::new());
    }
}

#[test]
fn check_reports_a_removed_route_and_a_changed_address() {
    require_root!();
    for kind in kinds() {
        let node = Node::new();
        let net = Net::new(kind, "1.0.0", "10.66.0.0/24", None);
        // Tampering 1: the pod's default route disappears.
        let pod = Pod::new();
        assert!(net.add(&node.ns, &pod).ok());
        assert!(net.check(&node.ns, &pod).ok());
        pod.ns().sh(&["ip", "route", "del", "default"]);
        let c = net.check(&node.ns, &pod);
        assert!(!c.ok(), "{kind:?}: CHECK must notice the missing default route");
        assert!(net.del(&node.ns, &pod).ok());
        // Tampering 2: the pod's address is replaced by another.
        let pod = Pod::new();
        let r = net.add(&node.ns, &pod);
        let ip = Pod::result_ips(&r.json())[0];
        let addrs = pod.ns().sh(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
        let cidr = addrs
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(cidr.starts_with(&ip.to_string()));
        pod.ns().sh(&["ip", "addr", "del", &cidr, "dev", "eth0"]);
        pod.ns()
            .sh(&["ip", "addr", "add", "10.66.0.250/32", "dev", "eth0"]);
        let c = net.check(&node.ns, &pod);
        assert!(!c.ok(), "{kind:?}: CHECK must notice the changed address");
        if kind == Kind::Caracal {
            assert!(
                c.msg().contains(&ip.to_string()),
                "names the missing address: {c:?}"
            );
        }
        assert!(net.del(&node.ns, &pod).ok());
        if kind == Kind::Caracal {
            // Tampering 3 (ours only: ptp's CHECK does not look at the host side): the host
            // route to the pod disappears.
            let pod = Pod::new();
            let r = net.add(&node.ns, &pod);
            let ip = Pod::result_ips(&r.json())[0].to_string();
            node.ns.sh(&["ip", "route", "del", &ip]);
            let c = net.check(&node.ns, &pod);
            assert!(!c.ok() && c.msg().contains("host route"), "{c:?}");
            assert!(net.del(&node.ns, &pod).ok());
        }
        assert_clean(&net, &node);
    }
}

#[test]
fn check_without_prev_result_is_an_error() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.67.0.0/24", None);
    let pod = Pod::new();
    assert!(net.add(&node.ns, &pod).ok());
    let call = support::Call {
        command: "CHECK".into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let c = net.call(&node.ns, &call, &net.conf);
    assert_eq!(c.code(), Some(7), "{c:?}");
    assert!(c.msg().contains("prevResult"));
    assert!(net.del(&node.ns, &pod).ok());
}

#[test]
fn dual_stack_pods_reach_each_other_over_ipv4_and_ipv6() {
    require_root!();
    for kind in kinds() {
        let node = Node::new();
        let net = Net::new(kind, "1.0.0", "10.68.0.0/24", Some("fd00:68::/120"));
        let (a, b) = (Pod::new(), Pod::new());
        let ra = net.add(&node.ns, &a);
        let rb = net.add(&node.ns, &b);
        assert!(ra.ok() && rb.ok(), "{kind:?}: {ra:?} {rb:?}");
        let ipsb = Pod::result_ips(&rb.json());
        assert_eq!(ipsb.len(), 2, "{kind:?}: {}", rb.stdout);
        for ip in &ipsb {
            assert!(tcp_reachable(a.ns(), b.ns(), *ip), "{kind:?}: a -> b {ip}");
        }
        if kind == Kind::Caracal {
            let v6 = ipsb.iter().find(|i| i.is_ipv6()).unwrap();
            let addrs = b.ns().sh(&["ip", "-o", "-6", "addr", "show", "dev", "eth0"]);
            assert!(addrs.contains(&format!("{v6}/128")), "{addrs}");
            let routes = b.ns().routes(true);
            assert!(
                routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
                "{routes}"
            );
            let h = node.pod_links()[0].clone();
            let ndp = node
                .ns
                .sh(&["sysctl", "-n", &format!("net.ipv6.conf.{h}.proxy_ndp")]);
            assert_eq!(ndp.trim(), "1");
            assert!(net.check(&node.ns, &a).ok());
        }
        assert!(net.del(&node.ns, &a).ok());
        assert!(net.del(&node.ns, &b).ok());
        assert_clean(&net, &node);
        assert!(
            !node.ns.routes(true).contains("fd00:68"),
            "{kind:?}: v6 routes left"
        );
    }
}

#[test]
fn ipv4_only_pods_get_no_ipv6_address_or_route() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.1.0", "10.69.0.0/24", None);
    let pod = Pod::new();
    let r = net.add(&node.ns, &pod);
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        r.json()["interfaces"][1]["mtu"],
        1500,
        "1.1.0 results carry the MTU"
    );
    assert!(Pod::result_ips(&r.json()).iter().all(IpAddr::is_ipv4));
    let v6 = pod
        .ns()
        .sh(&["ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(v6.trim().is_empty(), "{v6}");
    assert!(!pod.ns().routes(true).contains("default"));
    assert!(net.del(&node.ns, &pod).ok());
}
