//! Proves the BGP interop harness with real daemons alone: the same peer topologies, configs
//! and checks as `bgp_interop.rs`, with BIRD standing in for the caracal speaker
//! (`tests/topologies/bgp-peer-*/topology-bird-dut.yaml`). When these pass and a caracal check
//! fails, the fault is in the speaker, not in the harness.

mod bgp_interop_support;

use bgp_interop_support::{
    lab_available, logs,
    parse::{self, Route},
    scenario::{self, Checks},
    topology,
};
use caracal::lab::{Kind, Lab, UpOptions};

fn stand_in(daemon: Kind, folder: &str) {
    if !lab_available(folder) {
        return;
    }
    let lab = Lab::up(
        &topology(folder).join("topology-bird-dut.yaml"),
        UpOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{folder}: lab up: {e:#}"));
    let checks = Checks {
        dut_restart: true,
        peer_sees_cease: true,
        // BIRD overwrites its last error when it reconnects.
        dut_reports_errors: false,
        gr_without_families: true,
    };
    if let Err(e) = scenario::run(&lab, daemon, Kind::Bird, checks) {
        panic!("{folder} with a BIRD dut: {e:#}\n{}", logs(&lab));
    }
}

#[test]
fn bird_stand_in_passes_every_check_against_bird() {
    stand_in(Kind::Bird, "bgp-peer-bird");
}

#[test]
fn bird_stand_in_passes_every_check_against_frr() {
    stand_in(Kind::Frr, "bgp-peer-frr");
}

#[test]
fn bird_stand_in_passes_every_check_against_gobgp() {
    stand_in(Kind::Gobgp, "bgp-peer-gobgp");
}

#[test]
fn bird_stand_in_passes_every_check_against_exabgp() {
    stand_in(Kind::Exabgp, "bgp-peer-exabgp");
}

#[test]
fn bird_route_text_parses_into_paths_with_next_hops_and_as_paths() {
    let text = [
        "BIRD 2.0.12 ready.",
        "Table master6:",
        "fd01::/48            unicast [dut6 12:11:54.712] * (100) [AS65001i]",
        "\tvia fd00:1::1 on eth1",
        "\tType: BGP univ",
        "\tBGP.origin: IGP",
        "\tBGP.as_path: 65001 4200000002",
        "\tBGP.next_hop: fd00:1::1 fe80::a0e9:bdff:feed:7469",
        "\tBGP.local_pref: 100",
        "                     unicast [other 12:11:54.712] (100) [AS65009i]",
        "\tvia fd00:9::1 on eth2",
        "\tType: BGP univ",
        "\tBGP.as_path: 65009",
        "fd02::/48            blackhole [origin6 12:11:50.723] * (200)",
        "\tType: static univ",
    ]
    .join("\n");
    let text = text.as_str();
    let r = parse::bird_routes(text).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        Route {
            prefix: "fd01::/48".parse().unwrap(),
            next_hops: vec![
                "fd00:1::1".parse().unwrap(),
                "fe80::a0e9:bdff:feed:7469".parse().unwrap()
            ],
            as_path: vec![65001, 4200000002],
            best: true,
            stale: false,
            learned: true,
            originator_id: None,
            cluster_list: Vec::new(),
        }
    );
    assert!(!r[1].best && r[1].learned && r[1].as_path == vec![65009]);
    assert!(!r[2].learned);
}

#[test]
fn exabgp_log_replays_announcements_and_withdrawals() {
    let log = r#"{"type":"state","neighbor":{"address":{"local":"10.0.1.2","peer":"10.0.1.1"},"state":"up"}}
{"type":"update","neighbor":{"address":{"local":"10.0.1.2","peer":"10.0.1.1"},"message":{"update":{"attribute":{"as-path":[65001]},"announce":{"ipv4 unicast":{"10.0.1.1":[{"nlri":"10.1.0.0/24"},{"nlri":"10.2.9.0/24"}]}}}}}}
{"type":"update","neighbor":{"address":{"local":"10.0.1.2","peer":"10.0.1.1"},"message":{"update":{"withdraw":{"ipv4 unicast":[{"nlri":"10.2.9.0/24"}]}}}}}
{"type":"notification","neighbor":{"address":{"local":"10.0.1.2","peer":"10.0.1.1"},"notification":{"code":6,"subcode":1}}}
"#;
    let (sessions, routes) = parse::exabgp_log(log);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].prefix.to_string(), "10.1.0.0/24");
    assert_eq!(
        routes[0].next_hops,
        vec!["10.0.1.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].established);
    assert_eq!(sessions[0].last_error, "6/1");
    assert_eq!(sessions[0].updates_received, Some(2));
}

#[test]
fn caracal_status_json_parses_sessions_and_routes() {
    let status = r#"{"peers":[{"address":"10.0.1.2","remote_as":4200000002,"state":"Established","uptime_secs":12,
        "capabilities":[],"prefixes_received":2,"prefixes_accepted":2,"prefixes_advertised":3,"last_error":null},
        {"address":"10.0.5.2","remote_as":65004,"state":"Idle","last_error":"sent Cease 6/1 (maximum prefixes)"}]}"#;
    let s = parse::caracal_sessions(status).unwrap();
    assert!(s[0].established && s[0].last_error.is_empty() && s[0].uptime_secs == Some(12));
    assert!(!s[1].established && s[1].last_error.contains("6/1"));
    let routes = r#"{"routes":[{"prefix":"fd02::/48","next_hops":["fd00:1::2","fe80::1"],"as_path":[4200000002],"peer":"fd00:1::2"},
        {"prefix":"10.1.0.0/24","next_hops":[],"as_path":[],"peer":"local"}]}"#;
    let r = parse::caracal_routes(routes).unwrap();
    assert_eq!(r[0].as_path, vec![4200000002]);
    assert_eq!(r[0].next_hops.len(), 2);
    assert!(r[0].learned && !r[1].learned);
}
