//! The core's decisions input by input, with made-up times: reload, graceful restart, MRAI;
//! and recordings that replay, or do not once a decision would differ.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Core, Input, Output, session_changed};
use super::record::{self, Recorder, ReplayError};
use crate::config::{PeerConfig, SpeakerConfig};
use crate::fsm::{DownReason, Negotiated, State};
use crate::rib::ChangeKind;
use crate::session::{FromSession, ReceivedUpdate, SessionEvent};
use crate::wire::{
    AsPath, CeaseSubcode, Family, GracefulRestart, Origin, PathAttributes, SessionOptions, Update,
};

const A: &str = "10.0.0.2";
const B: &str = "10.0.0.3";

fn config(extra: &str, peers: &str) -> SpeakerConfig {
    SpeakerConfig::parse(&format!(
        "router_id: 10.0.0.1\nlocal_as: 65000\nlisten_port: 0\ninstall_routes: true\n{extra}\npeers:\n{peers}"
    ))
    .unwrap()
}

/// Two external peers, A in AS 65002 and B in AS 65003, with `a`/`b` more YAML for each.
fn two_peers(extra: &str, a: &str, b: &str) -> SpeakerConfig {
    config(
        extra,
        &format!(
            "  - {{address: {A}, remote_as: 65002, families: [ipv4_unicast]{a}}}\n  \
               - {{address: {B}, remote_as: 65003, families: [ipv4_unicast]{b}}}\n"
        ),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn generations(out: &[Output]) -> Vec<(IpAddr, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Spawn(p) => Some((p.peer.address, p.generation)),
            _ => None,
        })
        .collect()
}

fn established(peer: &str, generation: u64, remote_as: u32, gr: Option<GracefulRestart>) -> FromSession {
    let families = vec![Family::IPV4_UNICAST];
    FromSession {
        peer: ip(peer),
        generation,
        event: SessionEvent::Established {
            negotiated: Negotiated {
                peer_as: remote_as,
                peer_id: peer.parse().unwrap(),
                hold_time: 90,
                keepalive: 30,
                four_octet_as: true,
                families: families.clone(),
                route_refresh: true,
                extended_message: false,
                peer_graceful_restart: gr,
                peer_capabilities: vec![],
            },
            local_address: ip("10.0.0.1"),
            local_alt_address: None,
            options: SessionOptions {
                families,
                ..SessionOptions::modern(true)
            },
        },
    }
}

fn announce(peer: &str, generation: u64, remote_as: u32, prefix: &str) -> FromSession {
    let update = Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([remote_as])),
            next_hop: Some(peer.parse().unwrap()),
            ..Default::default()
        },
        nlri: vec![prefix.parse().unwrap()],
    };
    updates(peer, generation, update)
}

fn withdraw(peer: &str, generation: u64, prefix: &str) -> FromSession {
    let update = Update {
        withdrawn: vec![prefix.parse().unwrap()],
        ..Default::default()
    };
    updates(peer, generation, update)
}

fn updates(peer: &str, generation: u64, update: Update) -> FromSession {
    FromSession {
        peer: ip(peer),
        generation,
        event: SessionEvent::Updates(vec![ReceivedUpdate {
            update,
            treatment: None,
        }]),
    }
}

fn down(peer: &str, generation: u64) -> FromSession {
    FromSession {
        peer: ip(peer),
        generation,
        event: SessionEvent::Down {
            reason: DownReason::ConnectionLost,
            was_established: true,
        },
    }
}

fn removed(out: &[Output]) -> Vec<(IpAddr, CeaseSubcode)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Remove { peer, subcode, .. } => Some((*peer, *subcode)),
            _ => None,
        })
        .collect()
}

fn sent_to(out: &[Output], peer: &str) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Send { peer: p, .. } if *p == ip(peer)))
        .count()
}

fn installed(out: &[Output], kind: ChangeKind) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Install(c) => Some(c),
            _ => None,
        })
        .flatten()
        .filter(|c| c.kind == kind)
        .map(|c| c.prefix.to_string())
        .collect()
}

#[test]
fn a_reload_resets_only_the_sessions_whose_session_fields_changed() {
    let t0 = Instant::now();
    let (mut core, out) = Core::start(two_peers("", "", ""), false, false, t0);
    assert_eq!(generations(&out), [(ip(A), 1), (ip(B), 2)]);

    // A: export policy only. B: hold time. C: new.
    let mut new = two_peers("", ", export: [{prefix: 10.0.0.0/8, le: 32}]", ", hold_time: 30");
    new.peers.push(PeerConfig {
        address: ip("10.0.0.4"),
        ..new.peers[0].clone()
    });
    let out = core.handle(Input::Reload(new.clone()), t0);
    assert_eq!(removed(&out), [(ip(B), CeaseSubcode::OtherConfigurationChange)]);
    assert_eq!(generations(&out), [(ip(B), 3), (ip("10.0.0.4"), 4)]);

    // An import change keeps the session and asks the peer for its routes again.
    let mut refreshed = new.clone();
    refreshed.peers[0].import = vec![serde_yaml::from_str("{prefix: 10.0.0.0/8, le: 24}").unwrap()];
    let out = core.handle(Input::Reload(refreshed.clone()), t0);
    assert!(matches!(
        out.as_slice(),
        [Output::Refresh { peer, family }] if *peer == ip(A) && *family == Family::IPV4_UNICAST
    ));

    // A peer left out is deconfigured; a new router id resets everyone else.
    refreshed.peers.remove(0);
    refreshed.router_id = Ipv4Addr::new(10, 0, 0, 9);
    let out = core.handle(Input::Reload(refreshed), t0);
    assert_eq!(
        removed(&out),
        [
            (ip(A), CeaseSubcode::PeerDeconfigured),
            (ip(B), CeaseSubcode::OtherConfigurationChange),
            (ip("10.0.0.4"), CeaseSubcode::OtherConfigurationChange),
        ]
    );
}

#[test]
fn every_session_field_resets_the_session_and_no_policy_field_does() {
    let base = two_peers("", "", "").peers[0].clone();
    let session: Vec<PeerConfig> = vec![
        PeerConfig {
            remote_as: 1,
            ..base.clone()
        },
        PeerConfig {
            local_as: Some(1),
            ..base.clone()
        },
        PeerConfig {
            port: 1790,
            ..base.clone()
        },
        PeerConfig {
            hold_time: 9,
            ..base.clone()
        },
        PeerConfig {
            passive: true,
            ..base.clone()
        },
        PeerConfig {
            source_address: Some(ip("10.0.0.1")),
            ..base.clone()
        },
        PeerConfig {
            ebgp_multihop: Some(2),
            ..base.clone()
        },
        PeerConfig {
            password: Some("x".into()),
            ..base.clone()
        },
        PeerConfig {
            graceful_restart_time: 60,
            ..base.clone()
        },
        PeerConfig {
            connect_retry_time: 7,
            ..base.clone()
        },
        PeerConfig {
            families: vec![],
            ..base.clone()
        },
    ];
    for p in &session {
        assert!(session_changed(&base, p), "{p:?}");
    }
    let policy: Vec<PeerConfig> = vec![
        PeerConfig {
            max_prefixes: Some(5),
            ..base.clone()
        },
        PeerConfig {
            import: vec![serde_yaml::from_str("{prefix: 10.0.0.0/8}").unwrap()],
            ..base.clone()
        },
        PeerConfig {
            export: vec![serde_yaml::from_str("{prefix: 10.0.0.0/8}").unwrap()],
            ..base.clone()
        },
        PeerConfig {
            next_hop_self: true,
            ..base.clone()
        },
        PeerConfig {
            route_reflector_client: true,
            ..base.clone()
        },
        PeerConfig {
            mrai_ms: Some(5),
            ..base.clone()
        },
    ];
    for p in &policy {
        assert!(!session_changed(&base, p), "{p:?}");
    }
}

/// A's announcements reach B as the MRAI allows; withdrawals go at once.
fn mrai_run(core: &mut Core, t0: Instant, mut step: impl FnMut(&mut Core, Input, Instant) -> Vec<Output>) {
    let ms = |n: u64| t0 + Duration::from_millis(n);
    // Established: B's Adj-RIB-Out is flushed (empty), which starts its MRAI.
    step(
        core,
        Input::Sessions(vec![
            established(A, 1, 65002, None),
            established(B, 2, 65003, None),
        ]),
        t0,
    );
    let out = step(
        core,
        Input::Sessions(vec![announce(A, 1, 65002, "192.0.2.0/24")]),
        ms(10),
    );
    assert_eq!(installed(&out, ChangeKind::Added), ["192.0.2.0/24"]);
    assert_eq!(sent_to(&out, B), 0, "held back by the MRAI");
    assert_eq!(
        core.next_wake(),
        Some(ms(1000)),
        "until a second after the last flush"
    );
    let out = step(core, Input::Timer, ms(1000));
    assert_eq!(
        sent_to(&out, B),
        1,
        "the held announcement goes when the MRAI ends"
    );
    assert_eq!(core.next_wake(), None);
    let out = step(
        core,
        Input::Sessions(vec![announce(A, 1, 65002, "198.51.100.0/24")]),
        ms(1100),
    );
    assert_eq!(sent_to(&out, B), 0);
    assert_eq!(core.next_wake(), Some(ms(2000)));
    let out = step(
        core,
        Input::Sessions(vec![withdraw(A, 1, "192.0.2.0/24")]),
        ms(1500),
    );
    assert_eq!(sent_to(&out, B), 1, "a withdrawal is never delayed");
    let out = step(core, Input::Timer, ms(2000));
    assert_eq!(sent_to(&out, B), 1);
}

#[test]
fn the_mrai_holds_announcements_back_and_never_withdrawals() {
    let t0 = Instant::now();
    let (mut core, _) = Core::start(two_peers("mrai_ms: 1000", "", ""), false, false, t0);
    mrai_run(&mut core, t0, |c, i, now| c.handle(i, now));

    // Without an MRAI both announcements go at once.
    let (mut core, _) = Core::start(two_peers("", "", ""), false, false, t0);
    core.handle(
        Input::Sessions(vec![
            established(A, 1, 65002, None),
            established(B, 2, 65003, None),
        ]),
        t0,
    );
    let out = core.handle(Input::Sessions(vec![announce(A, 1, 65002, "192.0.2.0/24")]), t0);
    assert_eq!(sent_to(&out, B), 1);
    let out = core.handle(
        Input::Sessions(vec![announce(A, 1, 65002, "198.51.100.0/24")]),
        t0,
    );
    assert_eq!(sent_to(&out, B), 1);
}

fn peer_gr(restart_time: u16) -> GracefulRestart {
    GracefulRestart {
        restarting: false,
        notification: false,
        restart_time,
        families: vec![(Family::IPV4_UNICAST, true)],
    }
}

#[test]
fn a_restarting_peers_routes_stay_until_its_restart_time_ends() {
    let t0 = Instant::now();
    let s = |n: u64| t0 + Duration::from_secs(n);
    let (mut core, _) = Core::start(two_peers("", "", ""), false, false, t0);
    core.handle(
        Input::Sessions(vec![established(A, 1, 65002, Some(peer_gr(60)))]),
        t0,
    );
    let out = core.handle(Input::Sessions(vec![announce(A, 1, 65002, "192.0.2.0/24")]), s(1));
    assert_eq!(installed(&out, ChangeKind::Added), ["192.0.2.0/24"]);

    let out = core.handle(Input::Sessions(vec![down(A, 1)]), s(2));
    assert!(
        installed(&out, ChangeKind::Withdrawn).is_empty(),
        "kept, stale: {out:?}"
    );
    assert_eq!(core.next_wake(), Some(s(62)), "for the peer's restart time");
    let out = core.handle(Input::Timer, s(62));
    assert_eq!(installed(&out, ChangeKind::Withdrawn), ["192.0.2.0/24"]);

    // Without the capability the route goes with the session.
    core.handle(Input::Sessions(vec![established(A, 1, 65002, None)]), s(70));
    core.handle(
        Input::Sessions(vec![announce(A, 1, 65002, "192.0.2.0/24")]),
        s(71),
    );
    let out = core.handle(Input::Sessions(vec![down(A, 1)]), s(72));
    assert_eq!(installed(&out, ChangeKind::Withdrawn), ["192.0.2.0/24"]);
}

#[test]
fn our_own_restart_keeps_our_kernel_routes_for_the_restart_time_then_purges_them() {
    let t0 = Instant::now();
    let cfg = two_peers("", ", graceful_restart_time: 120", "");
    let (core, out) = Core::start(cfg.clone(), true, false, t0);
    assert!(core.restarted());
    assert!(!out.iter().any(|o| matches!(o, Output::PurgeForeignRoutes)));
    assert_eq!(core.next_wake(), Some(t0 + Duration::from_secs(120)));
    let Some(Output::Spawn(p)) = out.first() else {
        panic!("{out:?}")
    };
    assert!(
        p.fsm.graceful_restart.as_ref().is_some_and(|g| g.restarting),
        "the R bit"
    );

    // Without graceful restart, leftovers go at once.
    let (core, out) = Core::start(two_peers("", "", ""), true, false, t0);
    assert!(!core.restarted());
    assert!(matches!(out.first(), Some(Output::PurgeForeignRoutes)));
}

#[test]
fn a_shutdown_stops_every_session_and_removes_our_routes_unless_we_restart_gracefully() {
    let t0 = Instant::now();
    let (mut core, _) = Core::start(two_peers("", "", ""), false, false, t0);
    let out = core.handle(Input::Shutdown, t0);
    assert!(matches!(
        out.as_slice(),
        [
            Output::Remove {
                subcode: CeaseSubcode::AdministrativeShutdown,
                ..
            },
            Output::Remove { .. },
            Output::Finish { remove_routes: true }
        ]
    ));
    let (mut core, _) = Core::start(
        two_peers("", ", graceful_restart_time: 120", ""),
        false,
        false,
        t0,
    );
    let out = core.handle(Input::Shutdown, t0);
    assert!(matches!(
        out.as_slice(),
        [
            Output::Abort { .. },
            Output::Abort { .. },
            Output::Finish { remove_routes: false }
        ]
    ));
}

/// Runs the MRAI scenario through a recorder and returns the recording.
fn recorded_mrai_run(dir: &std::path::Path) -> String {
    let path = dir.join("events.jsonl");
    let mut recorder = Recorder::create(&path).unwrap();
    let t0 = Instant::now();
    let cfg = two_peers("mrai_ms: 1000", "", "");
    let input = Input::Start {
        config: cfg.clone(),
        routes_found: false,
        report_changes: false,
    };
    let v = record::input_value(&input);
    let (mut core, out) = Core::start(cfg, false, false, t0);
    recorder.write(t0, v, &out, core.next_wake());
    mrai_run(&mut core, t0, |c, input, now| {
        let v = record::input_value(&input);
        let out = c.handle(input, now);
        recorder.write(now, v, &out, c.next_wake());
        out
    });
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_recording_replays_to_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let text = recorded_mrai_run(dir.path());
    let r = record::replay(text.as_bytes()).unwrap();
    assert_eq!(r.inputs, 7);
    assert!(r.outputs >= 8, "{r:?}");
}

#[test]
fn a_replay_finds_the_line_where_a_decision_differs() {
    let dir = tempfile::tempdir().unwrap();
    let text = recorded_mrai_run(dir.path());
    // Without the MRAI, the first announcement would have gone at once (line 3).
    let tampered = text.replacen("\"mrai_ms\":1000", "\"mrai_ms\":0", 1);
    assert_ne!(tampered, text);
    match record::replay(tampered.as_bytes()) {
        Err(ReplayError::Diverged {
            line: 3,
            what: "outputs",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A recording must start with the start input.
    let headless: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(matches!(
        record::replay(headless.as_bytes()),
        Err(ReplayError::NoStart)
    ));
    assert!(matches!(
        record::replay("{not json".as_bytes()),
        Err(ReplayError::Parse { line: 1, .. })
    ));
}

#[test]
fn replaced_sessions_are_ignored() {
    let t0 = Instant::now();
    let (mut core, _) = Core::start(two_peers("", "", ""), false, false, t0);
    // Generation 7 is no session of A's.
    core.handle(Input::Sessions(vec![established(A, 7, 65002, None)]), t0);
    assert_eq!(core.status(t0).peers[0].state, State::Idle.to_string());
}

#[test]
fn passwords_are_redacted_in_a_recording_that_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut recorder = Recorder::create(&path).unwrap();
    let t0 = Instant::now();
    let cfg = two_peers("", ", password: s3cret-one", ", password: s3cret-two");
    let v = record::input_value(&Input::Start {
        config: cfg.clone(),
        routes_found: false,
        report_changes: false,
    });
    let (mut core, out) = Core::start(cfg.clone(), false, false, t0);
    recorder.write(t0, v, &out, core.next_wake());
    // A new password for B resets its session; the recording must still show that.
    let mut changed = cfg;
    changed.peers[1].password = Some("s3cret-three".into());
    let input = Input::Reload(changed);
    let v = record::input_value(&input);
    let out = core.handle(input, t0);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Remove { peer, .. } if *peer == ip(B)))
    );
    recorder.write(t0, v, &out, core.next_wake());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("redacted-0") && text.contains("redacted-2"));
    assert_eq!(record::replay(text.as_bytes()).unwrap().inputs, 2);
}
