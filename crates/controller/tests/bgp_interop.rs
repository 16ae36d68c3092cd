//! Interop of the caracal speaker with BIRD 2, FRR, GoBGP and ExaBGP in the lab
//! (`tests/topologies/bgp-peer-<daemon>`): eBGP and iBGP, 2- and 4-octet AS, IPv4 and IPv6 with
//! IPv6 next hops, routes both ways and into the kernel, withdrawals, route refresh, hold timer
//! expiry (4/0), peer restart, TCP MD5 right and wrong, max-prefix (Cease 6/1) and graceful
//! restart in both roles. `bgp_interop_harness.rs` runs the same checks with BIRD in the
//! speaker's place, which proves the harness.

mod bgp_interop_support;

use anyhow::{Result, bail};
use bgp_interop_support::{
    Node, a, kernel_route, lab_available, logs,
    scenario::{self, Checks},
    topology, wait,
};
use caracal::lab::{Kind, Lab, UpOptions};

fn against(daemon: Kind, folder: &str) {
    if !lab_available(folder) {
        return;
    }
    let lab = Lab::up(&topology(folder), UpOptions::default())
        .unwrap_or_else(|e| panic!("{folder}: lab up: {e:#}"));
    let checks = Checks {
        dut_restart: true,
        peer_sees_cease: true,
        dut_reports_errors: true,
        gr_without_families: true,
    };
    if let Err(e) = scenario::run(&lab, daemon, Kind::Caracal, checks) {
        panic!("{folder}: {e:#}\n{}", logs(&lab));
    }
}

#[test]
fn caracal_interoperates_with_bird() {
    against(Kind::Bird, "bgp-peer-bird");
}

#[test]
fn caracal_interoperates_with_frr() {
    against(Kind::Frr, "bgp-peer-frr");
}

#[test]
fn caracal_interoperates_with_gobgp() {
    against(Kind::Gobgp, "bgp-peer-gobgp");
}

#[test]
fn caracal_interoperates_with_exabgp() {
    against(Kind::Exabgp, "bgp-peer-exabgp");
}

/// RFC 4456 in `tests/topologies/bgp-rr`: the speaker reflects between BIRD, FRR and GoBGP
/// clients, and is itself a client of a BIRD reflector (whose other client is ExaBGP).
fn route_reflection(lab: &Lab) -> Result<()> {
    let dut = Node {
        name: "dut",
        kind: Kind::Caracal,
    };
    let cbird = Node {
        name: "cbird",
        kind: Kind::Bird,
    };
    let cfrr = Node {
        name: "cfrr",
        kind: Kind::Frr,
    };
    let cgobgp = Node {
        name: "cgobgp",
        kind: Kind::Gobgp,
    };
    let rr = Node {
        name: "rr",
        kind: Kind::Bird,
    };
    let exa = Node {
        name: "exa",
        kind: Kind::Exabgp,
    };
    wait(lab, "the dut's four iBGP sessions", 40, |l| {
        Ok(["10.0.11.2", "10.0.12.2", "10.0.13.2", "10.0.20.2"]
            .iter()
            .all(|n| dut.established(l, n).unwrap_or(false)))
    })?;
    // (client, its own prefix, its next hop, its router ID)
    let clients = [
        (cbird, "10.11.0.0/24", "10.0.11.2", "10.255.0.11"),
        (cfrr, "10.12.0.0/24", "10.0.12.2", "10.255.0.12"),
        (cgobgp, "10.13.0.0/24", "10.0.13.2", "10.255.0.13"),
    ];
    for (to, ..) in clients {
        for (from, prefix, nh, _) in clients {
            if from.name == to.name {
                continue;
            }
            // Reflected: next hop and (empty) AS path unchanged.
            wait(
                lab,
                &format!("{prefix} from {} reflected to {}", from.name, to.name),
                20,
                |l| to.has_route(l, prefix, Some(nh), Some(&[])),
            )?;
        }
        wait(
            lab,
            &format!("the dut's own prefix and exa's (via rr) at {}", to.name),
            20,
            |l| {
                Ok(to.has_route(l, "10.1.0.0/24", None, Some(&[]))?
                    && to.has_route(l, "10.21.0.0/24", Some("10.0.21.2"), Some(&[]))?)
            },
        )?;
    }
    eprintln!("ok: route reflector: every client learns the other clients' routes, next hops kept");
    // ORIGINATOR_ID and CLUSTER_LIST, as BIRD and GoBGP show them.
    for (to, from_prefix, originator, clusters) in [
        (cbird, "10.12.0.0/24", "10.255.0.12", vec!["10.255.0.1"]),
        (cgobgp, "10.11.0.0/24", "10.255.0.11", vec!["10.255.0.1"]),
        (
            cgobgp,
            "10.21.0.0/24",
            "10.255.0.21",
            vec!["10.255.0.1", "10.255.0.9"],
        ),
        (rr, "10.13.0.0/24", "10.255.0.13", vec!["10.255.0.1"]),
    ] {
        let routes = to.learned(lab, from_prefix)?;
        let want: Vec<std::net::Ipv4Addr> = clusters.iter().map(|c| c.parse().unwrap()).collect();
        if !routes
            .iter()
            .any(|r| r.originator_id == originator.parse().ok() && r.cluster_list == want)
        {
            bail!(
                "{} holds {from_prefix} without ORIGINATOR_ID {originator} and CLUSTER_LIST {clusters:?}: {routes:?}",
                to.name
            );
        }
    }
    eprintln!("ok: route reflector: ORIGINATOR_ID and CLUSTER_LIST set (RFC 4456 §8)");
    // Client of the BIRD reflector: learns exa's route, and its clients' routes reach exa.
    wait(lab, "exa's route at the dut via the BIRD reflector", 20, |l| {
        dut.has_route(l, "10.21.0.0/24", Some("10.0.21.2"), Some(&[]))
    })?;
    wait(
        lab,
        "the dut's and its clients' routes at exa via the BIRD reflector",
        20,
        |l| {
            Ok(["10.1.0.0/24", "10.11.0.0/24", "10.12.0.0/24", "10.13.0.0/24"]
                .iter()
                .all(|p| exa.has_route(l, p, None, Some(&[])).unwrap_or(false)))
        },
    )?;
    eprintln!("ok: route-reflector client of BIRD: routes pass both ways through it");
    wait(lab, "the clients' routes in the dut's kernel", 15, |l| {
        Ok(
            kernel_route(l, "dut", "10.11.0.0/24")? == Some(vec![a("10.0.11.2")])
                && kernel_route(l, "dut", "10.12.0.0/24")? == Some(vec![a("10.0.12.2")])
                && kernel_route(l, "dut", "10.13.0.0/24")? == Some(vec![a("10.0.13.2")]),
        )
    })?;
    eprintln!("ok: route reflector: client routes installed in the kernel");
    Ok(())
}

#[test]
fn caracal_reflects_for_bird_frr_gobgp_clients_and_is_a_client_of_bird() {
    if !lab_available("bgp-rr") {
        return;
    }
    let lab = Lab::up(&topology("bgp-rr"), UpOptions::default())
        .unwrap_or_else(|e| panic!("bgp-rr: lab up: {e:#}"));
    if let Err(e) = route_reflection(&lab) {
        panic!("bgp-rr: {e:#}\n{}", logs(&lab));
    }
}
