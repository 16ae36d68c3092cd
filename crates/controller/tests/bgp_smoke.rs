//! caracal's BGP speaker against BIRD 2 in a two-node lab: an eBGP session carrying IPv4 and
//! IPv6, routes both ways, learned routes in the kernel, withdrawals, and a clean shutdown
//! (Cease 6/2 to the peer, our kernel routes removed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use caracal::lab::{self, Lab, UpOptions};

fn topology(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/topologies")
        .join(name)
}

fn caracal_json(lab: &Lab, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = lab.cli("caracal", &all)?;
    serde_json::from_str(&out).with_context(|| format!("status output: {out}"))
}

/// Best routes in caracal's Loc-RIB: prefix → next hops.
fn caracal_routes(lab: &Lab) -> Result<Vec<(String, Vec<String>)>> {
    let v = caracal_json(lab, &["--routes"])?;
    let routes = v["routes"].as_array().context("routes array")?;
    Ok(routes
        .iter()
        .map(|r| {
            let hops = r["next_hops"]
                .as_array()
                .map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            (r["prefix"].as_str().unwrap_or_default().to_string(), hops)
        })
        .collect())
}

fn kernel_routes(lab: &Lab, v6: bool) -> Result<String> {
    let family = if v6 { "-6" } else { "-4" };
    lab.exec_ok("caracal", &["ip", family, "route", "show", "proto", "201"])
}

#[test]
fn caracal_and_bird_exchange_ipv4_and_ipv6_routes_and_withdrawals() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-smoke"), UpOptions::default())?;
    let established = |lab: &Lab| -> Result<bool> {
        let v = caracal_json(lab, &[])?;
        Ok(v["peers"][0]["state"] == "Established")
    };
    lab.wait_for("the session to BIRD", Duration::from_secs(30), established)
        .with_context(|| {
            format!(
                "caracal log:\n{}\nbird log:\n{}",
                lab.log("caracal"),
                lab.log("bird")
            )
        })?;

    // BIRD's routes reach caracal's Loc-RIB with BIRD as next hop, and its kernel.
    lab.wait_for("BIRD's prefixes at caracal", Duration::from_secs(15), |lab| {
        let r = caracal_routes(lab)?;
        let has = |p: &str, nh: &str| r.iter().any(|(x, h)| x == p && h.iter().any(|n| n == nh));
        Ok(has("10.1.0.0/24", "10.0.12.1")
            && has("10.1.1.0/24", "10.0.12.1")
            && has("fd00:1::/64", "fd00:12::1"))
    })?;
    lab.wait_for(
        "BIRD's prefixes in caracal's kernel",
        Duration::from_secs(10),
        |lab| {
            Ok(kernel_routes(lab, false)?.contains("10.1.0.0/24 via 10.0.12.1")
                && kernel_routes(lab, true)?.contains("fd00:1::/64 via fd00:12::1"))
        },
    )?;
    let status = caracal_json(&lab, &[])?;
    let peer = &status["peers"][0];
    assert_eq!(peer["remote_as"], 65001);
    assert_eq!(peer["prefixes_accepted"], 3);
    assert_eq!(peer["prefixes_advertised"], 2);
    let caps = peer["capabilities"].to_string();
    assert!(
        caps.contains("four_octet_as") && caps.contains("ipv6_unicast"),
        "{caps}"
    );

    // caracal's originated prefixes reach BIRD with caracal's addresses as next hops.
    lab.wait_for("caracal's prefixes at BIRD", Duration::from_secs(15), |lab| {
        let v4 = lab.cli("bird", &["show", "route", "10.2.0.0/24", "all"])?;
        let v6 = lab.cli("bird", &["show", "route", "fd00:2::/64", "all"])?;
        Ok(v4.contains("via 10.0.12.2") && v4.contains("AS65002") && v6.contains("via fd00:12::2"))
    })?;

    // A withdrawal at BIRD leaves caracal's RIB and kernel.
    lab.cli("bird", &["disable", "origin4"])?;
    lab.wait_for("the withdrawal at caracal", Duration::from_secs(15), |lab| {
        let r = caracal_routes(lab)?;
        Ok(!r.iter().any(|(p, _)| p == "10.1.0.0/24") && !kernel_routes(lab, false)?.contains("10.1.0.0/24"))
    })?;
    lab.cli("bird", &["enable", "origin4"])?;
    lab.wait_for("the re-announcement at caracal", Duration::from_secs(15), |lab| {
        Ok(kernel_routes(lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"))
    })?;

    // SIGTERM: Cease 6/2 with a shutdown communication, kernel routes removed, process gone.
    let pids = Command::new("ip")
        .args(["netns", "pids", lab.netns("caracal")?])
        .output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).to_string();
    let pid = pids.split_whitespace().next().context("caracal's pid")?;
    Command::new("kill").args(["-TERM", pid]).status()?;
    lab.wait_for(
        "BIRD to see the administrative shutdown",
        Duration::from_secs(10),
        |lab| Ok(lab.log("bird").contains("Administrative shutdown")),
    )?;
    lab.wait_for("caracal's kernel routes to go", Duration::from_secs(10), |lab| {
        Ok(kernel_routes(lab, false)?.trim().is_empty() && kernel_routes(lab, true)?.trim().is_empty())
    })?;
    lab.wait_for("BIRD to drop caracal's prefix", Duration::from_secs(10), |lab| {
        Ok(!lab.cli("bird", &["show", "route"])?.contains("10.2.0.0/24"))
    })?;
    lab.down()
}

fn peer0(lab: &Lab, node: &str) -> Result<serde_json::Value> {
    let out = lab.cli(node, &["--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["peers"][0].clone())
}

fn has_route(lab: &Lab, node: &str, prefix: &str) -> Result<bool> {
    let out = lab.cli(node, &["--json", "--routes"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["routes"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["prefix"] == prefix)))
}

/// Rewrites `node`'s config (its `originate:` line) and sends the speaker SIGHUP.
fn reload_with_originate(lab: &Lab, node: &str, originate: &str) -> Result<()> {
    let path = lab.node_dir(node)?.join(format!("{node}.yaml"));
    let text = std::fs::read_to_string(&path)?;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("originate:") {
                format!("originate: {originate}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text + "\n")?;
    let pids = Command::new("ip")
        .args(["netns", "pids", lab.netns(node)?])
        .output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).to_string();
    let pid = pids.split_whitespace().next().context("speaker pid")?;
    Command::new("kill").args(["-HUP", pid]).status()?;
    Ok(())
}

#[test]
fn two_caracal_speakers_exchange_routes_reload_without_reset_and_enforce_max_prefixes() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-caracal-pair"), UpOptions::default())?;
    lab.wait_for("the session", Duration::from_secs(30), |lab| {
        Ok(peer0(lab, "a")?["state"] == "Established")
    })
    .with_context(|| format!("a:\n{}\nb:\n{}", lab.log("a"), lab.log("b")))?;
    lab.wait_for("routes both ways", Duration::from_secs(10), |lab| {
        Ok(has_route(lab, "a", "10.2.0.0/24")? && has_route(lab, "b", "10.1.0.0/24")?)
    })?;
    lab.wait_for("b's prefix in a's kernel", Duration::from_secs(10), |lab| {
        Ok(lab
            .exec_ok("a", &["ip", "route", "show", "proto", "201"])?
            .contains("10.2.0.0/24 via 10.0.12.2"))
    })?;

    // SIGHUP with a new originate list: the change propagates, the session stays up.
    reload_with_originate(&lab, "b", "[10.3.0.0/24]")?;
    lab.wait_for("the reload at a", Duration::from_secs(10), |lab| {
        Ok(has_route(lab, "a", "10.3.0.0/24")? && !has_route(lab, "a", "10.2.0.0/24")?)
    })?;
    lab.wait_for("the withdrawal in a's kernel", Duration::from_secs(10), |lab| {
        let k = lab.exec_ok("a", &["ip", "route", "show", "proto", "201"])?;
        Ok(k.contains("10.3.0.0/24") && !k.contains("10.2.0.0/24"))
    })?;
    let p = peer0(&lab, "a")?;
    assert_eq!(p["last_error"], serde_json::Value::Null, "{p}");
    assert_eq!(p["prefixes_accepted"], 1);

    // Four prefixes against a's max_prefixes of 3: a closes the session with Cease 6/1.
    reload_with_originate(&lab, "b", "[10.3.0.0/24, 10.4.0.0/24, 10.5.0.0/24, 10.6.0.0/24]")?;
    lab.wait_for("Cease 6/1 at b", Duration::from_secs(10), |lab| {
        Ok(peer0(lab, "b")?["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("6/1")))
    })?;
    lab.down()
}

#[test]
fn equal_paths_from_two_bird_peers_become_one_ecmp_kernel_route() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-ecmp"), UpOptions::default())?;
    let route = |lab: &Lab| lab.exec_ok("caracal", &["ip", "route", "show", "10.9.0.0/24", "proto", "201"]);
    lab.wait_for("an ECMP route via both BIRDs", Duration::from_secs(30), |lab| {
        let r = route(lab)?;
        Ok(r.contains("nexthop via 10.0.1.1") && r.contains("nexthop via 10.0.2.1"))
    })
    .with_context(|| format!("caracal log:\n{}", lab.log("caracal")))?;
    let routes = caracal_routes(&lab)?;
    let (_, hops) = routes
        .iter()
        .find(|(p, _)| p == "10.9.0.0/24")
        .context("10.9.0.0/24")?;
    assert_eq!(hops, &vec!["10.0.1.1".to_string(), "10.0.2.1".to_string()]);

    // One BIRD withdraws: the route narrows to the other next hop.
    lab.cli("bird1", &["disable", "origin4"])?;
    lab.wait_for("a single-path route via bird2", Duration::from_secs(15), |lab| {
        let r = route(lab)?;
        Ok(r.contains("via 10.0.2.1") && !r.contains("10.0.1.1"))
    })?;
    lab.down()
}

#[test]
fn bird_graceful_restart_keeps_its_routes_in_caracals_kernel_until_it_is_back() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-gr"), UpOptions::default())?;
    let state = |lab: &Lab| -> Result<String> {
        Ok(caracal_json(lab, &[])?["peers"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    lab.wait_for("the session", Duration::from_secs(30), |lab| {
        Ok(state(lab)? == "Established")
    })?;
    lab.wait_for("BIRD's routes in the kernel", Duration::from_secs(10), |lab| {
        Ok(kernel_routes(lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"))
    })?;

    // BIRD shuts down for a graceful restart: the session drops, forwarding stays.
    lab.cli("bird", &["graceful", "restart"])?;
    lab.wait_for("the session to drop", Duration::from_secs(10), |lab| {
        Ok(state(lab)? != "Established")
    })?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(kernel_routes(&lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"));
    assert!(caracal_routes(&lab)?.iter().any(|(p, _)| p == "10.1.0.0/24"));

    // BIRD comes back (-R: recovering from a graceful restart) and re-announces.
    let dir = lab.node_dir("bird")?.to_path_buf();
    let path = |f: &str| dir.join(f).display().to_string();
    let (cfg, ctl, pid) = (path("bird.conf"), path("bird.ctl"), path("bird.pid"));
    lab.exec_ok("bird", &["bird", "-R", "-c", &cfg, "-s", &ctl, "-P", &pid])?;
    lab.wait_for("the session again", Duration::from_secs(30), |lab| {
        Ok(state(lab)? == "Established")
    })?;
    lab.wait_for("fresh routes", Duration::from_secs(10), |lab| {
        Ok(caracal_json(lab, &[])?["peers"][0]["prefixes_accepted"] == 3)
    })?;
    assert!(kernel_routes(&lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"));
    lab.down()
}

#[test]
fn caracal_carries_routes_between_frr_and_gobgp_and_drops_looped_ones() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-transit"), UpOptions::default())?;
    lab.wait_for("both sessions", Duration::from_secs(30), |lab| {
        let v = caracal_json(lab, &[])?;
        let peers = v["peers"].as_array().context("peers")?;
        Ok(peers.len() == 2 && peers.iter().all(|p| p["state"] == "Established"))
    })
    .with_context(|| format!("caracal log:\n{}", lab.log("caracal")))?;
    lab.wait_for(
        "FRR's prefix at GoBGP through caracal",
        Duration::from_secs(20),
        |lab| {
            let rib = lab.cli("gobgp", &["global", "rib"])?;
            Ok(rib
                .lines()
                .any(|l| l.contains("10.1.0.0/24") && l.contains("10.0.13.2") && l.contains("65002 65001")))
        },
    )?;
    lab.wait_for(
        "GoBGP's prefix at FRR through caracal",
        Duration::from_secs(20),
        |lab| {
            let rib = lab.cli("frr", &["show ip bgp"])?;
            Ok(rib
                .lines()
                .any(|l| l.contains("10.3.0.0/24") && l.contains("10.0.12.2") && l.contains("65002 65003")))
        },
    )?;
    // FRR echoes caracal's own and GoBGP's routes back with AS 65002 in the path: received,
    // not accepted (loop detection).
    lab.wait_for("FRR's echoes to be counted", Duration::from_secs(10), |lab| {
        let v = caracal_json(lab, &[])?;
        let frr = v["peers"]
            .as_array()
            .context("peers")?
            .iter()
            .find(|p| p["address"] == "10.0.12.1")
            .cloned();
        Ok(frr.is_some_and(|p| p["prefixes_received"] == 3 && p["prefixes_accepted"] == 1))
    })?;
    lab.down()
}

#[test]
fn caracal_graceful_restart_keeps_forwarding_on_both_sides() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-gr-self"), UpOptions::default())?;
    let state = |lab: &Lab| -> Result<String> {
        Ok(caracal_json(lab, &[])?["peers"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let bird_has_ours = |lab: &Lab| -> Result<bool> {
        Ok(lab
            .cli("bird", &["show", "route", "10.2.0.0/24"])?
            .contains("10.2.0.0/24"))
    };
    lab.wait_for("the session", Duration::from_secs(30), |lab| {
        Ok(state(lab)? == "Established")
    })?;
    lab.wait_for("routes both ways", Duration::from_secs(10), |lab| {
        Ok(kernel_routes(lab, false)?.contains("10.1.0.0/24 via 10.0.12.1") && bird_has_ours(lab)?)
    })?;

    // SIGTERM with graceful restart configured: no NOTIFICATION, kernel routes stay.
    let pids = Command::new("ip")
        .args(["netns", "pids", lab.netns("caracal")?])
        .output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).to_string();
    let pid = pids
        .split_whitespace()
        .next()
        .context("caracal's pid")?
        .to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    // Gone, or a zombie until the lab reaps it.
    lab.wait_for("caracal to exit", Duration::from_secs(10), |_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        Ok(stat
            .rsplit(')')
            .next()
            .is_none_or(|rest| rest.trim_start().starts_with(['Z', 'X']))
            || stat.is_empty())
    })?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        kernel_routes(&lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"),
        "forwarding kept"
    );
    assert!(bird_has_ours(&lab)?, "BIRD keeps caracal's routes as stale");

    // Start it again: it re-establishes, relearns, and nothing was lost.
    let dir = lab.node_dir("caracal")?.to_path_buf();
    let exe = lab::caracal_exe()?;
    let cmd = format!(
        "{} bgp run --config {} >> {} 2>&1 &",
        exe.display(),
        dir.join("caracal.yaml").display(),
        dir.join("daemon-restarted.log").display()
    );
    lab.exec_ok("caracal", &["sh", "-c", &cmd])?;
    lab.wait_for("the session after the restart", Duration::from_secs(30), |lab| {
        Ok(state(lab)? == "Established")
    })?;
    lab.wait_for("BIRD's routes relearned", Duration::from_secs(10), |lab| {
        Ok(caracal_json(lab, &[])?["peers"][0]["prefixes_accepted"] == 2)
    })?;
    assert!(kernel_routes(&lab, false)?.contains("10.1.0.0/24 via 10.0.12.1"));
    assert!(bird_has_ours(&lab)?);
    lab.down()
}

/// Sends SIGHUP to the caracal speaker of `node`, found among the processes of that node's
/// namespace only (never another lab's).
fn reload_caracal(lab: &Lab, node: &str) -> Result<()> {
    let netns = lab.netns(node)?;
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", netns])
        .output()?;
    let mut sent = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "caracal" {
            std::process::Command::new("kill").args(["-HUP", pid]).status()?;
            sent += 1;
        }
    }
    anyhow::ensure!(sent > 0, "no caracal process in {netns}");
    Ok(())
}

/// RFC 8538: with the graceful-restart N bit exchanged, a NOTIFICATION no longer clears the
/// peer's routes by itself; dropping GoBGP from caracal's configuration therefore sends a Hard
/// Reset (Cease 6/9 carrying 6/3), and GoBGP removes caracal's route at once instead of keeping
/// it as stale for the 120 s restart time.
#[test]
fn a_deconfigured_peer_gets_a_hard_reset_and_drops_caracals_routes_at_once() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let lab = Lab::up(&topology("bgp-hard-reset"), UpOptions::default())?;
    lab.wait_for("the session", Duration::from_secs(30), |lab| {
        Ok(caracal_json(lab, &[])?["peers"][0]["state"] == "Established")
    })
    .with_context(|| format!("caracal log:\n{}", lab.log("caracal")))?;
    let at_gobgp =
        |lab: &Lab| -> Result<bool> { Ok(lab.cli("gobgp", &["global", "rib"])?.contains("10.2.0.0/24")) };
    lab.wait_for("caracal's prefix at GoBGP", Duration::from_secs(20), at_gobgp)?;

    let cfg = lab.node_dir("caracal")?.join("caracal.yaml");
    let text = std::fs::read_to_string(&cfg)?;
    let cut = text.find("peers:").context("the rendered config has peers")?;
    std::fs::write(&cfg, format!("{}peers: []\n", &text[..cut]))?;
    reload_caracal(&lab, "caracal")?;
    lab.wait_for("caracal to drop the peer", Duration::from_secs(10), |lab| {
        Ok(caracal_json(lab, &[])?["peers"]
            .as_array()
            .is_some_and(|p| p.is_empty()))
    })?;
    lab.wait_for(
        "GoBGP to remove caracal's route at once, not keep it stale",
        Duration::from_secs(5),
        |lab| Ok(!at_gobgp(lab)?),
    )
    .with_context(|| format!("GoBGP's log:\n{}", lab.log("gobgp")))?;
    lab.down()
}
