//! The interop scenario of `tests/topologies/bgp-peer-<daemon>`: the speaker under test ("dut",
//! AS 65001) against one daemon kind on four nodes - `ebgp` (AS 4200000002, IPv4 session with
//! graceful restart and IPv6 session), `ibgp` (AS 65001), `md5` (AS 65003, right and wrong
//! password) and `maxpfx` (AS 65004, 4 prefixes where 3 are allowed). The checks run in
//! sequence on one lab; each prints its name when it passes.

use anyhow::{Context, Result, bail};
use caracal::lab::{Kind, Lab};

use super::{Node, a, holds, kernel_route, wait};

/// Which checks to run (the BIRD stand-in for the dut cannot do all that caracal must).
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// The dut's own graceful restart (restarting-speaker role).
    pub dut_restart: bool,
    /// The peer daemon sees the dut's max-prefix Cease as NOTIFICATION 6/1.
    pub peer_sees_cease: bool,
    /// The dut's session status names the last error (hold timer expired, Cease 6/1).
    pub dut_reports_errors: bool,
    /// Check that the dut drops the routes of a peer that advertises the graceful-restart
    /// capability without preserving any family (BIRD's and FRR's defaults) when its hold timer
    /// expires and when it is killed.
    pub gr_without_families: bool,
}

fn ok(daemon: Kind, check: &str) {
    eprintln!("ok: {daemon:?}: {check}");
}

fn skipped(daemon: Kind, check: &str) {
    eprintln!(
        "skipped: {daemon:?}: {check}: the peer advertises graceful restart without families, \
         which this run does not check"
    );
}

fn config_name(kind: Kind, node: &str) -> String {
    match kind {
        Kind::Gobgp => format!("{node}.toml"),
        Kind::Caracal => "dut.yaml".into(),
        Kind::Bird if node == "dut" => "dut-bird.conf".into(),
        _ => format!("{node}.conf"),
    }
}

/// Commands that put back what a GoBGP node originates after a restart (its RIB lives in
/// memory, filled by the topology's exec lines).
fn reoriginate(lab: &Lab, node: Node<'_>, prefixes: &[&str]) -> Result<()> {
    if node.kind == Kind::Gobgp {
        for pfx in prefixes {
            let fam = if pfx.contains(':') { "ipv6" } else { "ipv4" };
            lab.cli(node.name, &["global", "rib", "add", "-a", fam, pfx])?;
        }
    }
    Ok(())
}

/// Makes the `ebgp` peer announce (or withdraw) 10.2.9.0/24 at run time.
fn set_extra(lab: &Lab, ebgp: Node<'_>, announce: bool) -> Result<()> {
    match ebgp.kind {
        Kind::Bird => {
            lab.cli(
                ebgp.name,
                &[if announce { "enable" } else { "disable" }, "extra4"],
            )?;
        }
        Kind::Frr => {
            let net = if announce {
                "network 10.2.9.0/24"
            } else {
                "no network 10.2.9.0/24"
            };
            ebgp.vtysh(
                lab,
                &[
                    "configure terminal",
                    "router bgp 4200000002",
                    "address-family ipv4 unicast",
                    net,
                ],
            )?;
        }
        Kind::Gobgp => {
            lab.cli(
                ebgp.name,
                &[
                    "global",
                    "rib",
                    if announce { "add" } else { "del" },
                    "-a",
                    "ipv4",
                    "10.2.9.0/24",
                ],
            )?;
        }
        Kind::Exabgp => {
            let verb = if announce { "announce" } else { "withdraw" };
            ebgp.exabgp_command(
                lab,
                &format!("neighbor 10.0.1.1 {verb} route 10.2.9.0/24 next-hop self"),
            )?;
        }
        k => bail!("no way to change what a {k:?} node announces"),
    }
    Ok(())
}

/// Makes the `ebgp` peer ask the dut to send its routes again (ROUTE-REFRESH, RFC 2918).
fn request_refresh(lab: &Lab, ebgp: Node<'_>) -> Result<()> {
    match ebgp.kind {
        Kind::Bird => {
            lab.cli(ebgp.name, &["reload", "in", "dut4"])?;
        }
        Kind::Frr => {
            lab.cli(ebgp.name, &["clear bgp ipv4 unicast 10.0.1.1 soft in"])?;
        }
        Kind::Gobgp => {
            lab.cli(ebgp.name, &["neighbor", "10.0.1.1", "softresetin"])?;
        }
        Kind::Exabgp => ebgp.exabgp_command(lab, "neighbor 10.0.1.1 announce route-refresh ipv4 unicast")?,
        k => bail!("no way to request a refresh from a {k:?} node"),
    }
    Ok(())
}

/// Runs every check against `daemon`, with the dut of kind `dut_kind` (caracal, or the BIRD
/// stand-in that proves the harness).
pub fn run(lab: &Lab, daemon: Kind, dut_kind: Kind, checks: Checks) -> Result<()> {
    let dut = Node {
        name: "dut",
        kind: dut_kind,
    };
    let ebgp = Node {
        name: "ebgp",
        kind: daemon,
    };
    let ibgp = Node {
        name: "ibgp",
        kind: daemon,
    };
    let md5 = Node {
        name: "md5",
        kind: daemon,
    };
    let maxpfx = Node {
        name: "maxpfx",
        kind: daemon,
    };
    let mut failures: Vec<String> = Vec::new();

    // Sessions: eBGP v4 and v6 to a 4-octet AS, iBGP, eBGP with the right MD5 password to a
    // 2-octet AS.
    wait(lab, "the dut's sessions to be established", 40, |l| {
        Ok(dut.established(l, "10.0.1.2")?
            && dut.established(l, "fd00:1::2")?
            && dut.established(l, "10.0.2.2")?
            && dut.established(l, "10.0.3.2")?)
    })?;
    wait(lab, "the peers' sessions to be established", 20, |l| {
        Ok(ebgp.established(l, "10.0.1.1")?
            && ebgp.established(l, "fd00:1::1")?
            && ibgp.established(l, "10.0.2.1")?
            && md5.established(l, "10.0.3.1")?)
    })?;
    ok(
        daemon,
        "eBGP (IPv4, IPv6, 4-octet AS), iBGP and MD5 (2-octet AS) sessions established",
    );

    // Routes in: the peers' prefixes reach the dut's RIB and its kernel.
    wait(lab, "the peers' routes in the dut's RIB", 20, |l| {
        Ok(
            dut.has_route(l, "10.2.0.0/24", Some("10.0.1.2"), Some(&[4200000002]))?
                && dut.has_route(l, "fd02::/48", None, Some(&[4200000002]))?
                && dut.has_route(l, "10.3.0.0/24", Some("10.0.2.2"), Some(&[]))?
                && dut.has_route(l, "10.4.0.0/24", Some("10.0.3.2"), Some(&[65003]))?,
        )
    })?;
    let v6 = dut.learned(lab, "fd02::/48")?;
    if !v6.iter().any(|r| r.next_hops.contains(&a("fd00:1::2"))) {
        bail!("the IPv6 route fd02::/48 lacks the global next hop fd00:1::2: {v6:?}");
    }
    ok(
        daemon,
        "routes received over IPv4 and IPv6 (IPv6 next hop), eBGP and iBGP",
    );
    wait(lab, "the learned routes in the dut's kernel", 15, |l| {
        Ok(
            kernel_route(l, "dut", "10.2.0.0/24")? == Some(vec![a("10.0.1.2")])
                && kernel_route(l, "dut", "10.3.0.0/24")? == Some(vec![a("10.0.2.2")])
                && kernel_route(l, "dut", "10.4.0.0/24")? == Some(vec![a("10.0.3.2")])
                && kernel_route(l, "dut", "fd02::/48")?.is_some_and(|g| !g.is_empty()),
        )
    })?;
    ok(daemon, "learned routes installed in the kernel (IPv4 and IPv6)");

    // Routes out: the dut's own prefixes, and eBGP-learned routes passed on to iBGP.
    wait(lab, "10.1.0.0/24 and fd01::/48 at the ebgp peer", 20, |l| {
        Ok(
            ebgp.has_route(l, "10.1.0.0/24", Some("10.0.1.1"), Some(&[65001]))?
                && ebgp.has_route(l, "fd01::/48", Some("fd00:1::1"), Some(&[65001]))?,
        )
    })?;
    wait(
        lab,
        "10.1.0.0/24 and 10.2.0.0/24 (eBGP-learned) at the iBGP peer",
        20,
        |l| {
            Ok(ibgp.has_route(l, "10.1.0.0/24", None, Some(&[]))?
                && ibgp.has_route(l, "10.2.0.0/24", None, Some(&[4200000002]))?)
        },
    )?;
    wait(lab, "10.1.0.0/24 at the md5 peer", 20, |l| {
        md5.has_route(l, "10.1.0.0/24", Some("10.0.3.1"), Some(&[65001]))
    })?;
    if matches!(daemon, Kind::Bird | Kind::Exabgp) {
        // BIRD's and ExaBGP's md5 sessions run without the 4-octet AS capability: the dut
        // sends 4200000002 as AS_TRANS with an AS4_PATH, from which the peer rebuilds the path.
        wait(
            lab,
            "the 4-octet AS path at the 2-octet-only md5 peer (AS_TRANS + AS4_PATH)",
            20,
            |l| md5.has_route(l, "10.2.0.0/24", Some("10.0.3.1"), Some(&[65001, 4200000002])),
        )?;
        ok(
            daemon,
            "2-octet-only peer: 4-octet AS path carried as AS_TRANS + AS4_PATH (RFC 6793)",
        );
    }
    ok(
        daemon,
        "routes sent over IPv4 and IPv6 (IPv6 next hop), eBGP and iBGP, eBGP-learned passed to iBGP",
    );

    // MD5 with the wrong password: never up, on either side.
    holds(
        lab,
        "the session with the wrong MD5 password stays down",
        2.0,
        |l| {
            // ExaBGP reports nothing about a session that never got past TCP.
            let peer_up = md5.session(l, "10.0.4.1").is_ok_and(|s| s.established);
            Ok(!dut.established(l, "10.0.4.2")? && !peer_up)
        },
    )?;
    ok(daemon, "MD5 with the wrong password never comes up");

    // Max prefixes: 4 prefixes where 3 are allowed.
    wait(lab, "the dut to report the max-prefix Cease", 20, |l| {
        let s = dut.session(l, "10.0.5.2")?;
        let e = s.last_error.to_lowercase();
        Ok(!s.established
            && (!checks.dut_reports_errors
                || e.contains("6/1")
                || e.contains("prefix")
                || e.contains("limit")))
    })?;
    if checks.peer_sees_cease {
        wait(lab, "the max-prefix peer to receive Cease 6/1", 20, |l| {
            let s = maxpfx.session(l, "10.0.5.1")?;
            Ok(match daemon {
                Kind::Frr | Kind::Exabgp => s.last_error.starts_with("6/1"),
                Kind::Gobgp => s.notifications_received.unwrap_or(0) >= 1,
                Kind::Bird => l.log("maxpfx").contains("Received: Maximum number of prefixes"),
                _ => !s.established,
            })
        })?;
    }
    if dut.has_route(lab, "10.5.3.0/24", None, None)? || kernel_route(lab, "dut", "10.5.3.0/24")?.is_some() {
        bail!("the dut kept routes from the max-prefix peer");
    }
    ok(daemon, "max-prefix exceeded: Cease 6/1, routes dropped");

    // Withdrawals, both ways: the ebgp peer announces then withdraws 10.2.9.0/24; the dut
    // installs and removes it and passes both on to its iBGP peer.
    set_extra(lab, ebgp, true)?;
    wait(
        lab,
        "10.2.9.0/24 at the dut, in its kernel and at the iBGP peer",
        15,
        |l| {
            Ok(dut.has_route(l, "10.2.9.0/24", Some("10.0.1.2"), None)?
                && kernel_route(l, "dut", "10.2.9.0/24")?.is_some()
                && ibgp.has_route(l, "10.2.9.0/24", None, None)?)
        },
    )?;
    set_extra(lab, ebgp, false)?;
    wait(
        lab,
        "10.2.9.0/24 withdrawn at the dut, its kernel and the iBGP peer",
        15,
        |l| {
            Ok(!dut.has_route(l, "10.2.9.0/24", None, None)?
                && kernel_route(l, "dut", "10.2.9.0/24")?.is_none()
                && !ibgp.has_route(l, "10.2.9.0/24", None, None)?)
        },
    )?;
    ok(
        daemon,
        "announcement and withdrawal propagate (peer -> dut -> kernel and iBGP peer)",
    );

    // Route refresh: the peer asks, the dut sends its routes again without a session reset.
    // GoBGP's CLI cannot send a ROUTE-REFRESH (softresetin re-reads its Adj-RIB-In): with it,
    // check that the dut offered the capability.
    if daemon == Kind::Gobgp {
        let n: serde_json::Value =
            serde_json::from_str(&lab.cli(ebgp.name, &["neighbor", "10.0.1.1", "-j"])?)?;
        let offered = n["state"]["remote_cap"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type_url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(".RouteRefreshCapability"))
            });
        if !offered {
            bail!(
                "the dut did not offer route refresh to GoBGP: {}",
                n["state"]["remote_cap"]
            );
        }
        ok(
            daemon,
            "route refresh capability negotiated (GoBGP cannot send ROUTE-REFRESH)",
        );
    } else {
        let before = ebgp.session(lab, "10.0.1.1")?;
        let before_updates = before.updates_received.context("the peer counts no updates")?;
        request_refresh(lab, ebgp)?;
        wait(lab, "the peer to receive the refreshed routes", 15, |l| {
            let s = ebgp.session(l, "10.0.1.1")?;
            Ok(s.updates_received.unwrap_or(0) > before_updates)
        })?;
        if !ebgp.established(lab, "10.0.1.1")?
            || !ebgp.has_route(lab, "10.1.0.0/24", Some("10.0.1.1"), None)?
        {
            bail!("route refresh disturbed the session or lost routes");
        }
        ok(daemon, "route refresh answered without a session reset");
    }

    // The peer goes silent: the dut's hold timer (6 s) expires, it sends NOTIFICATION 4/0 and
    // drops the peer's routes; when the peer wakes up the session comes back.
    let failed_before = failures.len();
    ibgp.freeze(lab)?;
    let silent = wait(
        lab,
        "the dut's hold timer to expire on the frozen iBGP peer",
        15,
        |l| {
            let s = dut.session(l, "10.0.2.2")?;
            let e = s.last_error.to_lowercase();
            Ok(!s.established && (!checks.dut_reports_errors || e.contains("4/0") || e.contains("hold")))
        },
    )
    .map(|()| {
        // A failure here is recorded and the scenario goes on, so that one bug does not hide
        // the results of the checks after it.
        if !checks.gr_without_families {
            skipped(daemon, "routes removed after hold timer expiry");
        } else if let Err(e) = wait(
            lab,
            "the frozen peer's route to leave the dut's kernel after its hold timer expired \
             (RFC 4724: no graceful restart after a NOTIFICATION, and only for the families in \
             the peer's graceful-restart capability)",
            10,
            |l| Ok(kernel_route(l, "dut", "10.3.0.0/24")?.is_none()),
        ) {
            failures.push(format!("{e:#}"));
        }
    });
    ibgp.thaw(lab)?;
    silent?;
    if matches!(daemon, Kind::Frr | Kind::Exabgp | Kind::Bird) {
        wait(lab, "the thawed peer to read NOTIFICATION 4/0", 20, |l| {
            Ok(match daemon {
                Kind::Bird => l.log("ibgp").contains("Received: Hold timer expired"),
                _ => ibgp.session(l, "10.0.2.1")?.last_error.starts_with("4/0"),
            })
        })
        .or_else(|e| {
            // The thawed peer may find its own hold timer expired first and close the
            // session before reading ours; that is not the dut's fault.
            let s = ibgp.session(lab, "10.0.2.1")?;
            if s.last_error.is_empty() { Err(e) } else { Ok(()) }
        })?;
    }
    wait(lab, "the iBGP session and its route to come back", 30, |l| {
        Ok(dut.established(l, "10.0.2.2")? && kernel_route(l, "dut", "10.3.0.0/24")?.is_some())
    })?;
    if failures.len() == failed_before {
        ok(
            daemon,
            "peer silent: hold timer expiry (4/0), routes removed, session restored",
        );
    }

    // The peer restarting (no graceful restart on this session): routes go, then come back.
    ibgp.kill(lab)?;
    wait(lab, "the dut to see the killed iBGP peer gone", 15, |l| {
        Ok(!dut.established(l, "10.0.2.2")?)
    })?;
    let failed_before = failures.len();
    if !checks.gr_without_families {
        skipped(daemon, "routes removed when the peer is killed");
    } else if let Err(e) = wait(
        lab,
        "the dut to drop the killed iBGP peer's route (the peer preserves no family in its \
         graceful-restart capability, RFC 4724 §4.2)",
        10,
        |l| Ok(kernel_route(l, "dut", "10.3.0.0/24")?.is_none()),
    ) {
        failures.push(format!("{e:#}"));
    }
    let _ibgp2 = ibgp.start(lab, &config_name(daemon, "ibgp"))?;
    reoriginate(lab, ibgp, &["10.3.0.0/24"])?;
    wait(lab, "the restarted iBGP peer's session and route", 30, |l| {
        Ok(dut.established(l, "10.0.2.2")?
            && dut.has_route(l, "10.3.0.0/24", Some("10.0.2.2"), None)?
            && kernel_route(l, "dut", "10.3.0.0/24")?.is_some())
    })?;
    if failures.len() == failed_before {
        ok(daemon, "peer restart: routes withdrawn and learned again");
    }

    // Graceful restart, dut as receiving speaker: the ebgp peer dies and comes back; its
    // IPv4 routes stay in the dut's kernel all along.
    ebgp.kill(lab)?;
    wait(lab, "the dut to see the ebgp peer gone", 15, |l| {
        Ok(!dut.established(l, "10.0.1.2")?)
    })?;
    holds(
        lab,
        "the restarting peer's route stays in the dut's kernel",
        3.0,
        |l| Ok(kernel_route(l, "dut", "10.2.0.0/24")? == Some(vec![a("10.0.1.2")])),
    )?;
    let _ebgp2 = ebgp.start(lab, &config_name(daemon, "ebgp"))?;
    reoriginate(lab, ebgp, &["10.2.0.0/24", "fd02::/48"])?;
    wait(lab, "the restarted ebgp peer's session", 30, |l| {
        dut.established(l, "10.0.1.2")
    })?;
    wait(
        lab,
        "the restarted peer's route, fresh, in the dut's RIB and kernel",
        20,
        |l| {
            let fresh = dut.learned(l, "10.2.0.0/24")?.iter().any(|r| !r.stale);
            Ok(fresh && kernel_route(l, "dut", "10.2.0.0/24")? == Some(vec![a("10.0.1.2")]))
        },
    )?;
    ok(
        daemon,
        "graceful restart (dut receiving): forwarding kept while the peer restarts",
    );

    if checks.dut_restart {
        // Graceful restart, dut as restarting speaker: the dut dies and comes back; the peer
        // keeps the dut's route meanwhile and the dut's kernel keeps the peer's.
        wait(lab, "the ebgp peer to have the dut's route again", 20, |l| {
            ebgp.has_route(l, "10.1.0.0/24", Some("10.0.1.1"), None)
        })?;
        dut.kill(lab)?;
        holds(
            lab,
            "the peer keeps the restarting dut's route and the dut's kernel its routes",
            3.0,
            |l| {
                Ok(
                    (daemon == Kind::Exabgp || ebgp.has_route(l, "10.1.0.0/24", Some("10.0.1.1"), None)?)
                        && kernel_route(l, "dut", "10.2.0.0/24")?.is_some(),
                )
            },
        )?;
        let _dut2 = dut.start(lab, &config_name(dut.kind, "dut"))?;
        wait(lab, "the restarted dut's session to the ebgp peer", 30, |l| {
            Ok(dut.established(l, "10.0.1.2")? && ebgp.established(l, "10.0.1.1")?)
        })?;
        wait(lab, "routes both ways after the dut's restart", 20, |l| {
            Ok(ebgp.has_route(l, "10.1.0.0/24", Some("10.0.1.1"), None)?
                && dut.has_route(l, "10.2.0.0/24", Some("10.0.1.2"), None)?
                && kernel_route(l, "dut", "10.2.0.0/24")?.is_some())
        })?;
        ok(
            daemon,
            "graceful restart (dut restarting): forwarding kept on both sides",
        );
    }
    if !failures.is_empty() {
        bail!("{} check(s) failed:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}
