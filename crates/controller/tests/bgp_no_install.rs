//! The speaker's `no_install` in a two-speaker lab (tests/topologies/bgp-caracal-pair): a
//! learned route covered by it stays in the Loc-RIB but leaves the kernel when a reload adds it,
//! comes back when a reload removes it, and the other learned routes stay installed throughout.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result};
use caracal::lab::{self, Lab, UpOptions};

fn has_route(lab: &Lab, node: &str, prefix: &str) -> Result<bool> {
    let out = lab.cli(node, &["--json", "--routes"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["routes"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["prefix"] == prefix)))
}

fn kernel(lab: &Lab) -> Result<String> {
    lab.exec_ok("a", &["ip", "route", "show", "proto", "201"])
}

/// Rewrites `node`'s config with `edit` and sends the speaker SIGHUP.
fn reload(lab: &Lab, node: &str, edit: impl Fn(&str) -> String) -> Result<()> {
    let path = lab.node_dir(node)?.join(format!("{node}.yaml"));
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, edit(&text))?;
    let pids = Command::new("ip")
        .args(["netns", "pids", lab.netns(node)?])
        .output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).to_string();
    let pid = pids.split_whitespace().next().context("speaker pid")?;
    Command::new("kill").args(["-HUP", pid]).status()?;
    Ok(())
}

#[test]
fn no_install_keeps_learned_routes_out_of_the_kernel_but_in_the_rib() -> Result<()> {
    if !lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the lab needs root and iproute2",
        );
        return Ok(());
    }
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/topologies/bgp-caracal-pair");
    let lab = Lab::up(&topology, UpOptions::default())?;
    // b also announces a Service-like /32.
    reload(&lab, "b", |t| {
        t.replace(
            "originate: [10.2.0.0/24]",
            "originate: [10.2.0.0/24, 10.96.0.10/32]",
        )
    })?;
    lab.wait_for("both prefixes in a's kernel", Duration::from_secs(30), |lab| {
        let k = kernel(lab)?;
        Ok(k.contains("10.2.0.0/24 via 10.0.12.2") && k.contains("10.96.0.10 via 10.0.12.2"))
    })
    .with_context(|| format!("a:\n{}\nb:\n{}", lab.log("a"), lab.log("b")))?;

    reload(&lab, "a", |t| {
        format!("{}\nno_install: [10.96.0.0/16]\n", t.trim_end())
    })?;
    lab.wait_for("the /32 out of a's kernel", Duration::from_secs(10), |lab| {
        Ok(!kernel(lab)?.contains("10.96.0.10"))
    })?;
    assert!(has_route(&lab, "a", "10.96.0.10/32")?, "still in the Loc-RIB");
    assert!(kernel(&lab)?.contains("10.2.0.0/24 via 10.0.12.2"));

    reload(&lab, "a", |t| t.replace("no_install: [10.96.0.0/16]\n", ""))?;
    lab.wait_for("the /32 back in a's kernel", Duration::from_secs(10), |lab| {
        Ok(kernel(lab)?.contains("10.96.0.10 via 10.0.12.2"))
    })?;
    lab.down()
}
