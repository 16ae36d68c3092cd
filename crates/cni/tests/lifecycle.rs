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
            let routes = node.ns.sh(&[
                "ip",
                "route",
                "show",
                "proto",
                &caracal_cni::dataplane::ROUTE_PROTOCOL.to_string(),
            ]);
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
fn ipv4_only_pods_get_no_ipv6_address_or_route_with_durable_ipam() {
    require_root!();
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.1.0", "10.69.0.0/24", None);
    net.conf["ipam"]["fsync"] = true.into();
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
    assert_eq!(net.held_addresses(), 1);
    assert!(net.del(&node.ns, &pod).ok());
    assert_eq!(net.held_addresses(), 0);
}

/// Runs a network configuration list as libcni does: ADD through the plugins in order, each
/// getting the previous result; CHECK in order and DEL in reverse order with the final result.
fn run_chain(
    node: &support::Netns,
    plugins: &[Value],
    command: &str,
    pod: &Pod,
    prev: Option<&Value>,
) -> support::Reply {
    let call = support::Call {
        command: command.into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME={}", pod.name),
        extra: vec![],
    };
    let order: Vec<&Value> = if command == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let mut prev = prev.cloned();
    let mut last = None;
    for p in order {
        let mut conf = p.clone();
        if let Some(r) = &prev {
            conf["prevResult"] = r.clone();
        }
        let bin = match p["type"].as_str().unwrap() {
            "caracal-cni" => support::OURS.to_string(),
            other => format!("{}/{other}", support::DEBIAN_CNI_DIR),
        };
        let r = support::exec_plugin(
            node,
            &bin,
            support::DEBIAN_CNI_DIR,
            &call,
            conf.to_string().as_bytes(),
        );
        if !r.ok() {
            return r;
        }
        if command == "ADD" {
            prev = Some(r.json());
        }
        last = Some(r);
    }
    last.expect("at least one plugin")
}

#[test]
fn chained_with_debian_tuning_the_result_and_prev_result_pass_through() {
    require_root!();
    if !support::have_debian_plugins() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "/usr/lib/cni/tuning missing (apt install containernetworking-plugins)",
        );
        return;
    }
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.64.0.0/24", None);
    let tuning = serde_json::json!({
        "cniVersion": "1.0.0", "name": net.name, "type": "tuning",
        "sysctl": { "net.core.somaxconn": "777" },
    });
    let plugins = vec![net.conf.clone(), tuning];
    let pod = Pod::new();
    let r = run_chain(&node.ns, &plugins, "ADD", &pod, None);
    assert!(r.ok(), "{r:?}");
    let fin = r.json();
    let ips = Pod::result_ips(&fin);
    assert_eq!(ips.len(), 1, "our addresses survive the chain: {fin}");
    assert_eq!(pod.ns().sh(&["sysctl", "-n", "net.core.somaxconn"]).trim(), "777");
    assert!(run_chain(&node.ns, &plugins, "CHECK", &pod, Some(&fin)).ok());
    assert!(run_chain(&node.ns, &plugins, "DEL", &pod, Some(&fin)).ok());
    assert!(node.pod_links().is_empty());
    assert_eq!(net.held_addresses(), 0);

    // Ours second in a chain: it keeps what came before and points its addresses at its own
    // interface entry.
    let mut conf = net.conf.clone();
    conf["prevResult"] = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "other0", "sandbox": pod.ns().path()}],
        "ips": [{"address": "192.0.2.99/32", "interface": 0}],
        "dns": {"nameservers": ["192.0.2.53"]},
    });
    let call = support::Call {
        command: "ADD".into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let r = net.call(&node.ns, &call, &conf);
    assert!(r.ok(), "{r:?}");
    let v = r.json();
    assert_eq!(v["interfaces"][0]["name"], "other0");
    assert_eq!(v["ips"][0]["address"], "192.0.2.99/32");
    assert_eq!(
        v["ips"][1]["interface"], 2,
        "index of our eth0 after other0 and the host veth: {v}"
    );
    assert_eq!(v["interfaces"][2]["name"], "eth0");
    assert_eq!(v["dns"]["nameservers"][0], "192.0.2.53");
    let del = support::Call {
        command: "DEL".into(),
        ..call
    };
    assert!(net.call(&node.ns, &del, &net.conf).ok());
    assert!(node.pod_links().is_empty());
}

#[test]
fn the_installed_conflist_drives_a_pod_through_add_check_del() {
    require_root!();
    let d = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(support::OURS)
        .args([
            "install",
            "--pod-cidr",
            "10.60.0.0/24",
            "--pod-cidr",
            "fd00:60::/120",
            "--mtu",
            "1400",
        ])
        .arg("--bin-dir")
        .arg(d.path().join("bin"))
        .arg("--conf-dir")
        .arg(d.path().join("net.d"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let installed = d.path().join("bin/caracal-cni");
    let list: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("net.d/10-caracal.conflist")).unwrap()).unwrap();
    // The plugin object as a runtime sends it, with the state directories moved into the test's.
    let mut conf = list["plugins"][0].clone();
    // A runtime with libcni >= 1.2 picks the highest version of `cniVersions` it knows.
    let picked = list["cniVersions"]
        .as_array()
        .and_then(|v| v.last())
        .unwrap()
        .clone();
    assert_eq!(picked, "1.1.0");
    assert_eq!(list["cniVersion"], "1.0.0", "older runtimes read 1.0.0");
    conf["cniVersion"] = picked;
    conf["name"] = list["name"].clone();
    conf["endpointsDir"] = d.path().join("endpoints").to_str().unwrap().into();
    conf["ipam"]["dataDir"] = d.path().join("ipam").to_str().unwrap().into();
    let node = Node::new();
    let pod = Pod::new();
    let call = support::Call {
        command: "ADD".into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let bin = installed.to_str().unwrap();
    let r = support::exec_plugin(&node.ns, bin, "", &call, conf.to_string().as_bytes());
    assert!(r.ok(), "{r:?}");
    let res = r.json();
    assert_eq!(
        Pod::result_ips(&res).len(),
        2,
        "dual-stack from the two pod CIDRs: {res}"
    );
    assert_eq!(res["interfaces"][1]["mtu"], 1400);
    conf["prevResult"] = res;
    let r = support::exec_plugin(
        &node.ns,
        bin,
        "",
        &support::Call {
            command: "CHECK".into(),
            ..call.clone()
        },
        conf.to_string().as_bytes(),
    );
    assert!(r.ok(), "{r:?}");
    let r = support::exec_plugin(
        &node.ns,
        bin,
        "",
        &support::Call {
            command: "DEL".into(),
            ..call
        },
        conf.to_string().as_bytes(),
    );
    assert!(r.ok(), "{r:?}");
    assert!(node.pod_links().is_empty());
}

#[test]
fn ipv6_only_pods_reach_each_other_through_the_host_link_local_gateway() {
    require_root!();
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.1.0", "10.59.0.0/24", None);
    net.conf["ipam"]["ranges"] = serde_json::json!([[{"subnet": "fd00:59::/120"}]]);
    let (a, b) = (Pod::new(), Pod::new());
    let ra = net.add(&node.ns, &a);
    let rb = net.add(&node.ns, &b);
    assert!(ra.ok() && rb.ok(), "{ra:?} {rb:?}");
    let ipb = Pod::result_ips(&rb.json());
    assert!(ipb.len() == 1 && ipb[0].is_ipv6(), "{}", rb.stdout);
    assert!(tcp_reachable(a.ns(), b.ns(), ipb[0]));
    assert!(!a.ns().routes(false).contains("default"), "no IPv4 default route");
    assert!(net.check(&node.ns, &a).ok());
    assert!(net.del(&node.ns, &a).ok());
    assert!(net.del(&node.ns, &b).ok());
    assert!(node.pod_links().is_empty());
    assert!(!node.ns.routes(true).contains("fd00:59"));
}
