//! The lab itself: BIRD, FRR, GoBGP and ExaBGP peer with each other in a namespace lab and every
//! daemon learns every other daemon's prefix, checked from each daemon's own CLI or API; and the
//! lab cleans up after itself, after a panic, after Ctrl-C and after its owner was killed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result};
use caracal::lab::{self, Lab, UpOptions};

fn topology(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/topologies")
        .join(name)
}

fn skip_unless_lab() -> bool {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return true;
    }
    false
}

fn namespaces() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn lab_namespaces(lab: &str) -> BTreeSet<String> {
    let prefix = format!("clab-{lab}-");
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

const PREFIXES: [&str; 4] = ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24", "10.4.0.0/24"];

/// Prefixes in BIRD's master table, from `birdc show route`.
fn bird_prefixes(lab: &Lab) -> Result<BTreeSet<String>> {
    let out = lab.cli("bird", &["show", "route"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.contains('/') && w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect())
}

/// Prefixes with a best path in FRR, from `show ip bgp json`.
fn frr_prefixes(lab: &Lab) -> Result<BTreeSet<String>> {
    let out = lab.cli("frr", &["show", "ip", "bgp", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("vtysh json")?;
    let routes = v["routes"].as_object().context("no routes object")?;
    Ok(routes
        .iter()
        .filter(|(_, paths)| {
            paths
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["bestpath"].as_bool() == Some(true)))
        })
        .map(|(k, _)| k.clone())
        .collect())
}

/// Prefixes in GoBGP's global RIB, from `gobgp global rib -j`.
fn gobgp_prefixes(lab: &Lab) -> Result<BTreeSet<String>> {
    let out = lab.cli("gobgp", &["global", "rib", "-j"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("gobgp json")?;
    Ok(v.as_object()
        .context("gobgp rib is not an object")?
        .keys()
        .cloned()
        .collect())
}

/// Prefixes ExaBGP received (and not since withdrawn), from its API process's JSON lines.
fn exabgp_prefixes(lab: &Lab) -> Result<BTreeSet<String>> {
    let file = lab.node_dir("exabgp")?.join("received.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut have = BTreeSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let update = &v["neighbor"]["message"]["update"];
        if let Some(by_nh) = update["announce"]["ipv4 unicast"].as_object() {
            for nlris in by_nh.values() {
                for n in nlris.as_array().into_iter().flatten() {
                    if let Some(p) = n["nlri"].as_str() {
                        have.insert(p.to_string());
                    }
                }
            }
        }
        for n in update["withdraw"]["ipv4 unicast"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(p) = n["nlri"].as_str() {
                have.remove(p);
            }
        }
    }
    // ExaBGP has no RIB of its own: its originated prefix is in its config, not in what it hears.
    have.insert("10.4.0.0/24".to_string());
    Ok(have)
}

fn has_all(set: &BTreeSet<String>) -> bool {
    PREFIXES.iter().all(|p| set.contains(*p))
}

#[test]
fn bird_frr_gobgp_and_exabgp_exchange_routes_in_a_full_mesh() {
    if skip_unless_lab() {
        return;
    }
    let lab = Lab::up(&topology("bgp-interop"), UpOptions::default()).expect("lab up");
    assert_eq!(lab_namespaces(lab.name()).len(), 4, "one namespace per node");

    type Reader = fn(&Lab) -> Result<BTreeSet<String>>;
    let readers: [(&str, Reader); 4] = [
        ("bird", bird_prefixes),
        ("frr", frr_prefixes),
        ("gobgp", gobgp_prefixes),
        ("exabgp", exabgp_prefixes),
    ];
    for (node, read) in readers {
        let r = lab.wait_for(
            &format!("{node} to learn all four prefixes"),
            Duration::from_secs(45),
            |l| Ok(has_all(&read(l)?)),
        );
        if let Err(e) = r {
            panic!(
                "{e:#}\n{node} has {:?}\n--- {node} log ---\n{}",
                read(&lab).ok(),
                lab.log(node)
            );
        }
    }

    // Routes learned over eBGP carry the originator's AS: GoBGP's path to BIRD's prefix starts
    // at 65001 and ends there when learned directly.
    let rib = lab
        .cli("gobgp", &["global", "rib", "-j", "10.1.0.0/24"])
        .expect("gobgp rib");
    assert!(
        rib.contains("65001"),
        "GoBGP's path to 10.1.0.0/24 lacks AS 65001: {rib}"
    );

    // A withdrawal propagates: GoBGP withdraws its prefix and BIRD and FRR lose it.
    lab.cli("gobgp", &["global", "rib", "del", "-a", "ipv4", "10.3.0.0/24"])
        .expect("gobgp del");
    lab.wait_for("BIRD and FRR to drop 10.3.0.0/24", Duration::from_secs(30), |l| {
        Ok(!bird_prefixes(l)?.contains("10.3.0.0/24") && !frr_prefixes(l)?.contains("10.3.0.0/24"))
    })
    .expect("withdrawal");

    let name = lab.name().to_string();
    lab.down().expect("lab down");
    assert!(lab_namespaces(&name).is_empty(), "namespaces left after down");
    assert!(
        !Path::new(lab::RUN_DIR).join(&name).exists(),
        "run folder left after down"
    );
}

#[test]
fn a_panicking_test_still_tears_its_lab_down() {
    if skip_unless_lab() {
        return;
    }
    let name = lab::unique_name("panic");
    let n2 = name.clone();
    let r = std::panic::catch_unwind(move || {
        let _lab = Lab::up(
            &topology("two-hosts"),
            UpOptions {
                name: Some(n2),
                detached: false,
            },
        )
        .expect("lab up");
        panic!("test failure inside a lab");
    });
    assert!(r.is_err());
    assert!(lab_namespaces(&name).is_empty(), "namespaces left after a panic");
}

#[test]
fn linux_hosts_reach_each_other_over_a_link_and_exec_reports_failures() {
    if skip_unless_lab() {
        return;
    }
    let lab = Lab::up(&topology("two-hosts"), UpOptions::default()).expect("lab up");
    let out = lab
        .exec_ok("h1", &["ping", "-c", "1", "-W", "2", "192.0.2.2"])
        .expect("h1 pings h2");
    assert!(out.contains("1 received"), "{out}");
    assert!(
        lab.exec_ok("h1", &["false"]).is_err(),
        "a failing command is an error"
    );
    assert!(lab.exec("nosuchnode", &["true"]).is_err());
}

fn caracal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caracal"))
}

#[test]
fn cli_lab_up_exec_and_down() {
    if skip_unless_lab() {
        return;
    }
    let name = lab::unique_name("cli");
    let topo = topology("two-hosts");
    let up = Command::new(caracal_bin())
        .args(["lab", "up", "--name", &name])
        .arg(&topo)
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Detached: it outlives the command, and a sweep leaves it alone.
    lab::sweep_stale();
    assert_eq!(lab_namespaces(&name).len(), 2);
    let ex = Command::new(caracal_bin())
        .args([
            "lab", "exec", &name, "h2", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth1",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ex.stdout).contains("192.0.2.2/24"),
        "{ex:?}"
    );
    let down = Command::new(caracal_bin())
        .args(["lab", "down", &name])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "lab down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(lab_namespaces(&name).is_empty());
    let again = Command::new(caracal_bin())
        .args(["lab", "down", &name])
        .output()
        .unwrap();
    assert!(!again.status.success(), "down of an unknown lab is an error");
}

/// Starts `caracal lab up --foreground` and waits until its namespaces exist.
fn foreground_lab(name: &str) -> std::process::Child {
    let mut child = Command::new(caracal_bin())
        .args(["lab", "up", "--foreground", "--name", name])
        .arg(topology("two-hosts"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if Path::new(lab::RUN_DIR).join(name).join("h2").exists() && lab_namespaces(name).len() == 2 {
            std::thread::sleep(Duration::from_millis(300));
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = lab::down(name);
    panic!("foreground lab {name} did not come up");
}

#[test]
fn ctrl_c_tears_a_foreground_lab_down() {
    if skip_unless_lab() {
        return;
    }
    let name = lab::unique_name("sigint");
    let mut child = foreground_lab(&name);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(lab_namespaces(&name).is_empty(), "namespaces left after Ctrl-C");
}

#[test]
fn a_later_run_removes_what_a_killed_run_left_behind() {
    if skip_unless_lab() {
        return;
    }
    let name = lab::unique_name("killed");
    let mut child = foreground_lab(&name);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert_eq!(lab_namespaces(&name).len(), 2, "SIGKILL leaves the namespaces");
    lab::sweep_stale();
    assert!(
        lab_namespaces(&name).is_empty(),
        "the sweep removes a dead owner's lab"
    );
    assert!(!Path::new(lab::RUN_DIR).join(&name).exists());
}
