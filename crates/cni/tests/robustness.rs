//! Scale, concurrency, crashes, garbage collection and bad input, through the CNI exec protocol.
//! Needs root (namespaces).

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Call, Kind, Net, Node, Pod};

fn kinds() -> Vec<Kind> {
    if support::have_debian_plugins() {
        vec![Kind::Caracal, Kind::Ptp]
    } else {
        eprintln!("note: Debian ptp/host-local missing: comparing nothing");
        vec![Kind::Caracal]
    }
}

fn endpoint_files(net: &Net) -> usize {
    std::fs::read_dir(net.endpoints_dir())
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_hundred_fifty_pods_on_one_node_get_distinct_addresses_and_clean_up() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.71.0.0/23", None);
    let pods: Vec<Pod> = (0..250).map(|_| Pod::new()).collect();
    let mut ips = Vec::new();
    for p in &pods {
        let r = net.add(&node.ns, p);
        assert!(r.ok(), "{r:?}");
        ips.push(Pod::result_ips(&r.json())[0]);
    }
    assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 250);
    assert_eq!(node.pod_links().len(), 250);
    assert_eq!(net.held_addresses(), 250);
    assert_eq!(endpoint_files(&net), 250);
    let routes = node.ns.sh(&[
        "ip",
        "route",
        "show",
        "proto",
        &caracal_cni::dataplane::ROUTE_PROTOCOL.to_string(),
    ]);
    assert_eq!(routes.lines().count(), 250);
    // The first and the last pod still talk to each other with 250 neighbours around.
    assert!(support::tcp_reachable(pods[0].ns(), pods[249].ns(), ips[249]));
    assert!(net.check(&node.ns, &pods[137]).ok());
    for p in &pods {
        assert!(net.del(&node.ns, p).ok());
    }
    assert!(node.pod_links().is_empty());
    assert_eq!(net.held_addresses(), 0);
    assert_eq!(endpoint_files(&net), 0);
}

#[test]
fn fifty_concurrent_adds_get_fifty_distinct_addresses() {
    require_root!();
    for kind in kinds() {
        let node = Node::new();
        let net = Net::new(kind, "1.0.0", "10.72.0.0/24", None);
        let pods: Vec<Pod> = (0..50).map(|_| Pod::new()).collect();
        let replies: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = pods.iter().map(|p| s.spawn(|| net.add(&node.ns, p))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ips: BTreeSet<IpAddr> = replies
            .iter()
            .map(|r| {
                assert!(r.ok(), "{kind:?}: {r:?}");
                Pod::result_ips(&r.json())[0]
            })
            .collect();
        assert_eq!(ips.len(), 50, "{kind:?}: addresses must be distinct");
        assert_eq!(net.held_addresses(), 50, "{kind:?}");
        std::thread::scope(|s| {
            for p in &pods {
                let (net, node) = (&net, &node);
                s.spawn(move || assert!(net.del(&node.ns, p).ok()));
            }
        });
        assert_eq!(net.held_addresses(), 0, "{kind:?}");
        assert!(node.pod_links().is_empty(), "{kind:?}");
    }
}

/// Starts an ADD that pauses at `stage`, SIGKILLs it there, then cleans up with DEL (what a
/// runtime does when ADD fails) or, when `by_gc`, with a GC that no longer lists the attachment
/// (what happens when the runtime itself lost track of it).
fn kill_mid_add_then_clean_up(stage: &str, by_gc: bool) {
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.1.0", "10.73.0.0/24", None);
    let pod = Pod::new();
    let marker = net.dir.path().join("paused");
    let mut call = Call {
        command: "ADD".into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        args: format!("K8S_POD_NAMESPACE=test;K8S_POD_NAME={}", pod.name),
        extra: vec![(
            caracal_cni::plugin::TEST_PAUSE_ENV.into(),
            Some(format!("{stage}:{}", marker.display())),
        )],
    };
    let stdin = net.conf.to_string();
    // Spawn from inside the node namespace so we can kill it by pid.
    let child = node.ns.run_in(|| {
        let mut cmd = std::process::Command::new(support::OURS);
        cmd.env_clear()
            .env("CNI_COMMAND", &call.command)
            .env("CNI_CONTAINERID", &call.container_id)
            .env("CNI_NETNS", &call.netns)
            .env("CNI_IFNAME", &call.ifname)
            .env("CNI_ARGS", &call.args)
            .env("CNI_PATH", "/usr/lib/cni");
        for (k, v) in &call.extra {
            cmd.env(k, v.as_deref().unwrap());
        }
        let mut c = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c
    });
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "plugin never reached {stage}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Half-done: the address is held (and, after-veth, the veth exists).
    assert_eq!(net.held_addresses(), 1);
    if stage == "after-veth" {
        assert_eq!(node.pod_links().len(), 1);
    }
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    call.command = "DEL".into();
    call.extra.clear();
    let r = if by_gc {
        net.gc(&node.ns, &[])
    } else {
        net.call(&node.ns, &call, &net.conf)
    };
    assert!(r.ok(), "{r:?}");
    assert!(
        node.pod_links().is_empty(),
        "{stage}: veth left: {:?}",
        node.pod_links()
    );
    assert!(
        !pod.ns().links().contains(&"eth0".to_string()),
        "{stage}: pod interface left"
    );
    assert_eq!(net.held_addresses(), 0, "{stage}: address left");
    assert_eq!(endpoint_files(&net), 0);
    // And the store is not wedged: the lock died with the process.
    let p2 = Pod::new();
    assert!(net.add(&node.ns, &p2).ok());
    assert!(net.del(&node.ns, &p2).ok());
}

#[test]
fn plugin_killed_after_ipam_then_del_leaves_nothing_behind() {
    require_root!();
    kill_mid_add_then_clean_up("after-ipam", false);
}

#[test]
fn plugin_killed_after_veth_creation_then_del_leaves_nothing_behind() {
    require_root!();
    kill_mid_add_then_clean_up("after-veth", false);
}

#[test]
fn plugin_killed_after_veth_creation_then_gc_leaves_nothing_behind() {
    require_root!();
    kill_mid_add_then_clean_up("after-veth", true);
}

#[test]
fn a_store_locked_too_long_answers_try_again_later_and_changes_nothing() {
    require_root!();
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.0.0", "10.82.0.0/24", None);
    net.conf["ipam"]["lockTimeoutMs"] = 100.into();
    let dir = net.dir.path().join("ipam").join(&net.name);
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let pod = Pod::new();
    let r = net.add(&node.ns, &pod);
    assert_eq!(r.code(), Some(11), "{r:?}");
    assert!(node.pod_links().is_empty());
    drop(held);
    assert!(net.add(&node.ns, &pod).ok(), "works once the lock is free");
    assert!(net.del(&node.ns, &pod).ok());
}

#[test]
fn gc_frees_exactly_the_stale_allocations() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.1.0", "10.74.0.0/24", None);
    let pods: Vec<Pod> = (0..5).map(|_| Pod::new()).collect();
    let mut ips = Vec::new();
    for p in &pods {
        let r = net.add(&node.ns, p);
        assert!(r.ok(), "{r:?}");
        ips.push(Pod::result_ips(&r.json())[0]);
    }
    // The runtime still knows pods 0, 2, 4; 1 and 3 were lost (their DEL never came).
    let r = net.gc(&node.ns, &[&pods[0], &pods[2], &pods[4]]);
    assert!(r.ok(), "{r:?}");
    assert!(r.stdout.is_empty(), "GC prints nothing on success");
    assert_eq!(net.held_addresses(), 3);
    assert_eq!(endpoint_files(&net), 3);
    assert_eq!(node.pod_links().len(), 3);
    for (i, p) in pods.iter().enumerate() {
        let kept = i % 2 == 0;
        assert_eq!(net.check(&node.ns, p).ok(), kept, "pod {i}");
    }
    // Freed addresses are handed out again once the pool wraps; kept ones never.
    let state =
        std::fs::read_to_string(net.dir.path().join("ipam").join(&net.name).join("state.json")).unwrap();
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(
            state.contains(&format!("\"{ip}\"")),
            i % 2 == 0,
            "pod {i} {ip}: {state}"
        );
    }
    // GC before 1.1.0 is refused, and so is a GC without the list.
    let mut old = net.conf.clone();
    old["cniVersion"] = "1.0.0".into();
    let call = Call {
        command: "GC".into(),
        ..Default::default()
    };
    assert_eq!(net.call(&node.ns, &call, &old).code(), Some(1));
    assert_eq!(net.call(&node.ns, &call, &net.conf).code(), Some(7));
    for p in [&pods[0], &pods[2], &pods[4]] {
        assert!(net.del(&node.ns, p).ok());
    }
    assert_eq!(net.held_addresses(), 0);
}

#[test]
fn del_is_idempotent_and_succeeds_for_unknown_containers_and_vanished_namespaces() {
    require_root!();
    for kind in kinds() {
        let node = Node::new();
        let net = Net::new(kind, "1.0.0", "10.75.0.0/24", None);
        // Unknown container: never added.
        let ghost = Pod::new();
        let r = net.del(&node.ns, &ghost);
        assert!(r.ok(), "{kind:?} unknown: {r:?}");
        // Vanished namespace: added, then the sandbox disappeared before DEL.
        let mut pod = Pod::new();
        assert!(net.add(&node.ns, &pod).ok());
        let path = pod.ns().path();
        pod.ns.as_mut().unwrap().delete();
        let call = Call {
            command: "DEL".into(),
            container_id: pod.container_id.clone(),
            netns: path,
            ifname: "eth0".into(),
            args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME={}", pod.name),
            extra: vec![],
        };
        let r = net.call(&node.ns, &call, &net.conf);
        assert!(r.ok(), "{kind:?} vanished netns: {r:?}");
        assert_eq!(
            net.held_addresses(),
            0,
            "{kind:?}: address released although the netns is gone"
        );
        // No netns at all (the runtime lost it): still fine.
        let call = Call {
            netns: String::new(),
            ..call
        };
        assert!(
            net.call(&node.ns, &call, &net.conf).ok(),
            "{kind:?} empty CNI_NETNS"
        );
        if kind == Kind::Caracal {
            // Ours deletes the host veth itself, at once.
            assert!(node.pod_links().is_empty());
        } else {
            // ptp leaves it to the kernel, which frees the veth when it tears the namespace down.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !node.pod_links().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(node.pod_links().is_empty(), "{kind:?}");
        }
    }
}

#[test]
fn bad_input_gets_the_right_error_code_and_a_message_naming_the_problem() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.76.0.0/30", None); // two addresses
    let pod = Pod::new();
    let base = Call {
        command: "ADD".into(),
        container_id: pod.container_id.clone(),
        netns: pod.ns().path(),
        ifname: "eth0".into(),
        args: String::new(),
        extra: vec![],
    };
    let run = |call: &Call, stdin: &str| {
        support::exec_plugin(&node.ns, support::OURS, "/usr/lib/cni", call, stdin.as_bytes())
    };
    let conf = net.conf.to_string();

    let r = run(&base, "{\"cniVersion\": \"1.0.0\", ");
    assert_eq!((r.exit, r.code()), (6, Some(6)), "malformed JSON: {r:?}");

    let r = run(
        &Call {
            netns: String::new(),
            ..base.clone()
        },
        &conf,
    );
    assert_eq!(r.code(), Some(4), "{r:?}");
    assert!(r.msg().contains("CNI_NETNS"), "names the variable: {r:?}");

    let r = run(
        &Call {
            container_id: String::new(),
            ..base.clone()
        },
        &conf,
    );
    assert!(
        r.code() == Some(4) && r.msg().contains("CNI_CONTAINERID"),
        "{r:?}"
    );

    let r = run(
        &Call {
            command: "FROBNICATE".into(),
            ..base.clone()
        },
        &conf,
    );
    assert!(
        r.code() == Some(4) && r.msg().contains("FROBNICATE"),
        "unknown command: {r:?}"
    );

    let r = run(
        &Call {
            netns: "/run/netns/does-not-exist-cni-test".into(),
            ..base.clone()
        },
        &conf,
    );
    assert_eq!(r.code(), Some(3), "missing netns: {r:?}");
    assert!(r.msg().contains("does-not-exist-cni-test"), "{r:?}");

    let mut v = net.conf.clone();
    v["cniVersion"] = "0.2.0".into();
    let r = run(&base, &v.to_string());
    assert_eq!(r.code(), Some(1), "unsupported version: {r:?}");
    assert!(r.msg().contains("0.2.0"));

    let mut v = net.conf.clone();
    v["ipam"]["ranges"] = json!([[{"subnet": "10.76.0.0/33"}]]);
    let r = run(&base, &v.to_string());
    assert_eq!(r.code(), Some(7), "invalid config: {r:?}");
    assert!(r.msg().contains("10.76.0.0/33"), "{r:?}");

    // Exhausted pool: the /30 holds two pods; the third gets an error and leaves nothing.
    let (p1, p2, p3) = (Pod::new(), Pod::new(), Pod::new());
    assert!(net.add(&node.ns, &p1).ok());
    assert!(net.add(&node.ns, &p2).ok());
    let r = net.add(&node.ns, &p3);
    assert!(!r.ok() && r.msg().contains("no free address"), "{r:?}");
    assert_eq!(node.pod_links().len(), 2);
    assert!(!p3.ns().links().contains(&"eth0".to_string()));
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(net.del(&node.ns, &p1).ok());
    assert!(net.del(&node.ns, &p2).ok());
}

#[test]
fn a_failed_add_rolls_back_veth_routes_address_and_record() {
    require_root!();
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.0.0", "10.77.0.0/24", None);
    // The endpoint record is the last step; a path under a regular file makes it fail.
    let blocker = net.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    net.conf["endpointsDir"] = json!(blocker.join("endpoints"));
    let pod = Pod::new();
    let r = net.add(&node.ns, &pod);
    assert_eq!(r.code(), Some(5), "{r:?}");
    assert!(node.pod_links().is_empty(), "veth rolled back");
    assert!(!pod.ns().links().contains(&"eth0".to_string()));
    assert!(!node.ns.routes(false).contains("10.77."), "route rolled back");
    assert_eq!(net.held_addresses(), 0, "address released");
}

#[test]
fn add_twice_on_the_same_interface_fails_and_keeps_the_first() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.78.0.0/24", None);
    let pod = Pod::new();
    let r1 = net.add(&node.ns, &pod);
    assert!(r1.ok());
    let r2 = net.add_with(&node.ns, &pod, vec![]);
    assert!(!r2.ok() && r2.msg().contains("already exists"), "{r2:?}");
    assert!(net.check(&node.ns, &pod).ok(), "first attachment intact");
    assert_eq!(net.held_addresses(), 1);
    assert!(net.del(&node.ns, &pod).ok());
}

#[test]
fn a_new_sandbox_of_the_same_pod_survives_the_old_sandboxs_del() {
    require_root!();
    let node = Node::new();
    let net = Net::new(Kind::Caracal, "1.0.0", "10.79.0.0/24", None);
    let old = Pod::new();
    assert!(net.add(&node.ns, &old).ok());
    // Same pod name (same host veth name), new sandbox and container ID.
    let new = Pod {
        name: old.name.clone(),
        container_id: format!("{}-2", old.container_id),
        ifname: "eth0".into(),
        ns: Some(support::Netns::new("cnip")),
    };
    assert!(net.add(&node.ns, &new).ok());
    assert!(net.del(&node.ns, &old).ok());
    assert!(
        net.check(&node.ns, &new).ok(),
        "the old DEL must not remove the new veth"
    );
    assert!(net.del(&node.ns, &new).ok());
    assert!(node.pod_links().is_empty());
    assert_eq!(net.held_addresses(), 0);
}

#[test]
fn delegated_host_local_ipam_works_like_the_builtin() {
    require_root!();
    if !support::have_debian_plugins() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "/usr/lib/cni/host-local missing (apt install containernetworking-plugins)",
        );
        return;
    }
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.0.0", "10.80.0.0/24", None);
    let data = net.dir.path().join("host-local");
    net.conf["ipam"] =
        json!({"type": "host-local", "ranges": [[{"subnet": "10.80.0.0/24"}]], "dataDir": data});
    let (a, b) = (Pod::new(), Pod::new());
    let ra = net.add(&node.ns, &a);
    let rb = net.add(&node.ns, &b);
    assert!(ra.ok() && rb.ok(), "{ra:?} {rb:?}");
    let ipb = Pod::result_ips(&rb.json())[0];
    assert!(
        ra.stdout.contains("/32"),
        "ours narrows host-local's /24 to /32: {}",
        ra.stdout
    );
    assert!(support::tcp_reachable(a.ns(), b.ns(), ipb));
    assert!(net.check(&node.ns, &a).ok());
    let held = |d: &Path| {
        std::fs::read_dir(d.join(&net.name))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    assert!(held(&data) >= 2);
    assert!(net.del(&node.ns, &a).ok());
    assert!(net.del(&node.ns, &b).ok());
    let ips_left = std::fs::read_dir(data.join(&net.name))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .parse::<IpAddr>()
                .is_ok()
        })
        .count();
    assert_eq!(ips_left, 0, "host-local released both");
    assert!(node.pod_links().is_empty());
}

#[test]
fn status_is_50_until_the_agent_is_ready() {
    require_root!();
    let node = Node::new();
    let mut net = Net::new(Kind::Caracal, "1.1.0", "10.81.0.0/24", None);
    let ready = net.dir.path().join("ready");
    net.conf["readinessFile"] = json!(ready);
    let call = Call {
        command: "STATUS".into(),
        ..Default::default()
    };
    let r = net.call(&node.ns, &call, &net.conf);
    assert_eq!(r.code(), Some(50), "{r:?}");
    assert!(r.msg().contains("not ready"));
    std::fs::write(&ready, b"").unwrap();
    let r = net.call(&node.ns, &call, &net.conf);
    assert!(r.ok() && r.stdout.is_empty(), "{r:?}");
}
