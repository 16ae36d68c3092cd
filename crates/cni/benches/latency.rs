//! ADD and DEL latency per pod, caracal-cni against Debian's `ptp` + `host-local`, in the same
//! run and under the same conditions: one node namespace per plugin, N pod namespaces each, the
//! plugins' invocations interleaved pod by pod so that machine noise hits them alike. A third
//! series runs ours with `ipam.fsync: true`.
//!
//! Run as root: `nice -n 10 cargo bench -p caracal-cni --bench latency` (`CNI_BENCH_PODS`
//! sets N, default 200). Times are from spawning the plugin to its exit, as a runtime sees them.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Kind, Net, Node, Pod};

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = ms(v[v.len() / 2]);
    let p99 = ms(v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (median, p99, mean)
}

// The interleaving walks three pod lists in lockstep by index.
#[allow(clippy::needless_range_loop)]
fn main() {
    if !support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    if !support::have_debian_plugins() {
        eprintln!(
            "skipped: /usr/lib/cni/ptp and host-local are needed (apt install containernetworking-plugins)"
        );
        return;
    }
    let n: usize = std::env::var("CNI_BENCH_PODS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // 0: ours (default), 1: ptp + host-local, 2: ours with every IPAM write fsynced.
    let nodes: Vec<Node> = (0..3).map(|_| Node::new()).collect();
    let mut durable = Net::new(Kind::Caracal, "1.0.0", "10.92.0.0/22", None);
    durable.conf["ipam"]["fsync"] = true.into();
    let nets = [
        Net::new(Kind::Caracal, "1.0.0", "10.90.0.0/22", None),
        Net::new(Kind::Ptp, "1.0.0", "10.91.0.0/22", None),
        durable,
    ];
    let pods: Vec<Vec<Pod>> = (0..3).map(|_| (0..n).map(|_| Pod::new()).collect()).collect();
    // Warm the page cache for the binaries.
    for (net, node) in nets.iter().zip(&nodes) {
        let w = Pod::new();
        assert!(net.add(&node.ns, &w).ok());
        assert!(net.del(&node.ns, &w).ok());
    }
    let mut add: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut del: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    // Interleaved pod by pod: machine noise hits all alike.
    for i in 0..n {
        for k in 0..3 {
            let r = nets[k].add(&nodes[k].ns, &pods[k][i]);
            assert!(r.ok(), "{:?} ADD: {r:?}", nets[k].kind);
            add[k].push(r.elapsed);
        }
    }
    for i in 0..n {
        for k in 0..3 {
            let r = nets[k].del(&nodes[k].ns, &pods[k][i]);
            assert!(r.ok(), "{:?} DEL: {r:?}", nets[k].kind);
            del[k].push(r.elapsed);
        }
    }
    // The kernel's own cost: the same veth pair made, brought up and deleted by `ip` (one exec
    // for the add and one for the delete are timed), in another node. Both plugins pay this
    // inside their ADD and DEL; it is the floor neither beats.
    let floor_node = Node::new();
    let floor_pods: Vec<Pod> = (0..n).map(|_| Pod::new()).collect();
    let (mut floor_add, mut floor_del) = (Vec::new(), Vec::new());
    for (i, p) in floor_pods.iter().enumerate() {
        let name = format!("cara{i:011}");
        let t = std::time::Instant::now();
        let o = std::process::Command::new("ip")
            .args([
                "-n",
                &floor_node.ns.name,
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &p.ns().name,
            ])
            .status()
            .unwrap();
        floor_add.push(t.elapsed());
        assert!(o.success());
        // Up on both ends, as the plugins leave them: deleting a running link costs more.
        for (ns, dev) in [(&floor_node.ns.name, name.as_str()), (&p.ns().name, "eth0")] {
            let o = std::process::Command::new("ip")
                .args(["-n", ns, "link", "set", dev, "up"])
                .status()
                .unwrap();
            assert!(o.success());
        }
    }
    for i in 0..n {
        let name = format!("cara{i:011}");
        let t = std::time::Instant::now();
        let o = std::process::Command::new("ip")
            .args(["-n", &floor_node.ns.name, "link", "del", &name])
            .status()
            .unwrap();
        floor_del.push(t.elapsed());
        assert!(o.success());
    }
    println!("CNI ADD/DEL latency, {n} pods per plugin, one node namespace each (ms)");
    println!("{:<24} {:>9} {:>9} {:>9}", "", "median", "p99", "mean");
    let names = [
        "caracal-cni ADD",
        "ptp+host-local ADD",
        "caracal-cni DEL",
        "ptp+host-local DEL",
        "floor: ip link add veth",
        "floor: ip link del veth",
        "caracal-cni ADD, fsync",
        "caracal-cni DEL, fsync",
    ];
    let all = [
        &add[0], &add[1], &del[0], &del[1], &floor_add, &floor_del, &add[2], &del[2],
    ];
    let s: Vec<_> = all.iter().map(|v| stats((*v).clone())).collect();
    for (name, (med, p99, mean)) in names.iter().zip(&s) {
        println!("{name:<24} {med:>9.2} {p99:>9.2} {mean:>9.2}");
    }
    println!(
        "ratio ours/theirs: ADD median {:.2}, p99 {:.2}; DEL median {:.2}, p99 {:.2} (goal <= 0.33)",
        s[0].0 / s[1].0,
        s[0].1 / s[1].1,
        s[2].0 / s[3].0,
        s[2].1 / s[3].1
    );
    println!(
        "above the kernel floor (median): ADD ours {:.2} vs theirs {:.2} ({:.2}); DEL ours {:.2} vs theirs {:.2} ({:.2})",
        s[0].0 - s[4].0,
        s[1].0 - s[4].0,
        (s[0].0 - s[4].0) / (s[1].0 - s[4].0),
        s[2].0 - s[5].0,
        s[3].0 - s[5].0,
        (s[2].0 - s[5].0) / (s[3].0 - s[5].0)
    );
}
