//! The speaker against a scripted peer over loopback (no root needed): graceful restart as
//! receiving speaker (RFC 4724 §4.2) — the peer announces a route, drops the connection and
//! comes back, or not (the decisions themselves are tested event by event in `gr.rs`); what
//! the speaker sends (the RIB's Adj-RIB-Out diff through the codec's packer); and the reason
//! a rejected route shows in the routes status.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::BytesMut;
use caracal_bgp::config::SpeakerConfig;
use caracal_bgp::speaker::{self, SpeakerHandle};
use caracal_bgp::wire::{
    self, AsPath, Capability, Family, GracefulRestart, Message, Open, Origin, PathAttributes, SessionOptions,
    Update,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PREFIX: &str = "10.9.0.0/24";

fn opts() -> SessionOptions {
    SessionOptions {
        families: vec![Family::IPV4_UNICAST],
        ..SessionOptions::modern(true)
    }
}

/// The peer's OPEN: hold time 0 (no keepalives needed), and a graceful-restart capability
/// when `gr` is given.
fn open(gr: Option<GracefulRestart>) -> Open {
    let mut capabilities = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(65002),
    ];
    capabilities.extend(gr.map(Capability::GracefulRestart));
    Open {
        version: 4,
        my_as: 65002,
        hold_time: 0,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities,
    }
}

fn gr(restart_time: u16, restarting: bool) -> GracefulRestart {
    GracefulRestart {
        restarting,
        notification: false,
        restart_time,
        families: vec![(Family::IPV4_UNICAST, true)],
    }
}

fn announcement() -> Update {
    Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65002])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 9)),
            ..Default::default()
        },
        nlri: vec![PREFIX.parse().unwrap()],
    }
}

/// Accepts the speaker's connection and completes the OPEN exchange with `open`.
async fn accept(listener: &TcpListener, open: Open) -> TcpStream {
    accept_reading(listener, open).await.0
}

/// As [`accept`], also returning what was read beyond the speaker's OPEN and KEEPALIVE.
async fn accept_reading(listener: &TcpListener, open: Open) -> (TcpStream, BytesMut) {
    let (mut s, _) = listener.accept().await.unwrap();
    send(&mut s, Message::Open(open)).await;
    send(&mut s, Message::Keepalive).await;
    // The speaker's OPEN and KEEPALIVE.
    let mut buf = BytesMut::new();
    let mut seen = 0;
    while seen < 2 {
        while let Ok(Some(len)) = wire::frame_len(&buf, &opts()) {
            if buf.len() < len {
                break;
            }
            let _ = buf.split_to(len);
            seen += 1;
            if seen == 2 {
                break;
            }
        }
        if seen < 2 {
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "the speaker closed");
        }
    }
    (s, buf)
}

/// The UPDATE frames the speaker sends within `limit`, raw.
async fn updates_from(s: &mut TcpStream, mut buf: BytesMut, limit: Duration) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        while let Ok(Some(len)) = wire::frame_len(&buf, &opts()) {
            if buf.len() < len {
                break;
            }
            let frame = buf.split_to(len);
            if frame[18] == 2 {
                out.push(frame.to_vec());
            }
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return out,
        }
    }
}

async fn send(s: &mut TcpStream, m: Message) {
    s.write_all(&m.encode(&opts()).unwrap()).await.unwrap();
}

async fn speaker_for(listener: &TcpListener) -> SpeakerHandle {
    speaker_with(listener, "").await
}

/// A speaker peering with the scripted peer behind `listener`; `extra` is more top-level YAML.
async fn speaker_with(listener: &TcpListener, extra: &str) -> SpeakerHandle {
    let port = listener.local_addr().unwrap().port();
    let ip = listener.local_addr().unwrap().ip();
    let config = SpeakerConfig::parse(&format!(
        r#"
router_id: 10.0.0.1
local_as: 65001
listen_port: 0
peers:
  - address: {ip}
    port: {port}
    remote_as: 65002
    connect_retry_time: 1
    families: [ipv4_unicast]
{extra}
"#
    ))
    .unwrap();
    speaker::start(config, None).await.unwrap().0
}

async fn has_route(s: &SpeakerHandle) -> bool {
    let routes = s.routes().await.unwrap().routes;
    routes.iter().any(|r| r.prefix.to_string() == PREFIX)
}

async fn wait_until(what: &str, limit: Duration, s: &SpeakerHandle, want: bool) -> Duration {
    let start = tokio::time::Instant::now();
    while has_route(s).await != want {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_keeps_the_peers_routes_until_its_restart_time_ends() {
    let listener = TcpListener::bind("127.0.0.6:0").await.unwrap();
    let a = speaker_for(&listener).await;
    let mut peer = accept(&listener, open(Some(gr(2, false)))).await;
    send(&mut peer, Message::Update(announcement())).await;
    wait_until("the route", Duration::from_secs(10), &a, true).await;
    drop(peer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(has_route(&a).await, "kept, stale, while the peer restarts");
    let gone = wait_until("the stale route to go", Duration::from_secs(10), &a, false).await;
    assert!(
        gone >= Duration::from_millis(1000),
        "gone after {gone:?}, before the restart time"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_back_from_its_restart_replaces_its_stale_routes_at_end_of_rib() {
    let listener = TcpListener::bind("127.0.0.7:0").await.unwrap();
    let a = speaker_for(&listener).await;
    let mut peer = accept(&listener, open(Some(gr(60, false)))).await;
    send(&mut peer, Message::Update(announcement())).await;
    wait_until("the route", Duration::from_secs(10), &a, true).await;
    drop(peer);
    // Back with the R bit and the forwarding bit: the stale route stays until End-of-RIB,
    // which comes without it, so it goes then, long before the 60 s restart time.
    let mut peer = accept(&listener, open(Some(gr(60, true)))).await;
    assert!(has_route(&a).await, "kept across the re-establishment");
    send(
        &mut peer,
        Message::Update(Update::end_of_rib_for(Family::IPV4_UNICAST)),
    )
    .await;
    wait_until("End-of-RIB to purge it", Duration::from_secs(5), &a, false).await;
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_graceful_restart_a_dropped_connection_withdraws_at_once() {
    let listener = TcpListener::bind("127.0.0.8:0").await.unwrap();
    let a = speaker_for(&listener).await;
    let mut peer = accept(&listener, open(None)).await;
    send(&mut peer, Message::Update(announcement())).await;
    wait_until("the route", Duration::from_secs(10), &a, true).await;
    drop(peer);
    wait_until("the route to go", Duration::from_secs(2), &a, false).await;
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originated_prefixes_go_out_packed_with_their_communities() {
    let listener = TcpListener::bind("127.0.0.9:0").await.unwrap();
    let extra = r#"originate:
  - 10.1.0.0/24
  - 10.1.1.0/24
  - {prefix: 10.1.2.0/24, communities: ["65001:100"]}"#;
    let a = speaker_with(&listener, extra).await;
    let (mut peer, buf) = accept_reading(&listener, open(None)).await;
    let updates = updates_from(&mut peer, buf, Duration::from_secs(2)).await;
    let has = |u: &[u8], needle: &[u8]| u.windows(needle.len()).any(|w| w == needle);
    // The two prefixes that share their attributes travel in one UPDATE, the third in another,
    // carrying COMMUNITIES 65001:100.
    let both: Vec<&Vec<u8>> = updates
        .iter()
        .filter(|u| has(u, &[24, 10, 1, 0]) || has(u, &[24, 10, 1, 1]))
        .collect();
    assert_eq!(both.len(), 1, "{updates:02x?}");
    assert!(has(both[0], &[24, 10, 1, 0, 24, 10, 1, 1]), "{:02x?}", both[0]);
    let third: Vec<&Vec<u8>> = updates.iter().filter(|u| has(u, &[24, 10, 1, 2])).collect();
    assert_eq!(third.len(), 1, "{updates:02x?}");
    assert!(
        has(third[0], &[0xC0, 8, 4, 0xFD, 0xE9, 0, 100]),
        "{:02x?}",
        third[0]
    );
    assert!(!has(both[0], &[0xC0, 8]), "no communities on the plain ones");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_our_as_in_its_path_is_rejected_with_that_reason() {
    let listener = TcpListener::bind("127.0.0.10:0").await.unwrap();
    let a = speaker_for(&listener).await;
    let mut peer = accept(&listener, open(None)).await;
    let mut looped = announcement();
    looped.attributes.as_path = Some(AsPath::sequence([65002, 65001]));
    send(&mut peer, Message::Update(looped)).await;
    let start = tokio::time::Instant::now();
    let rejected = loop {
        let r = a.routes().await.unwrap();
        if !r.rejected.is_empty() {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no rejected route");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(rejected.routes.is_empty());
    let r = &rejected.rejected[0];
    assert_eq!(
        (r.prefix.to_string(), r.peer.as_str()),
        (PREFIX.to_string(), "127.0.0.10")
    );
    let json = serde_json::to_value(&rejected).unwrap();
    assert_eq!(json["rejected"][0]["reason"], "as_path_loop");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_records_events_that_replay_to_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let listener = TcpListener::bind("127.0.0.10:0").await.unwrap();
    let a = speaker_with(&listener, &format!("record_events: {}", path.display())).await;
    let mut peer = accept(&listener, open(Some(gr(60, false)))).await;
    send(&mut peer, Message::Update(announcement())).await;
    wait_until("the route", Duration::from_secs(10), &a, true).await;
    drop(peer);
    let mut peer = accept(&listener, open(Some(gr(60, true)))).await;
    send(
        &mut peer,
        Message::Update(Update::end_of_rib_for(Family::IPV4_UNICAST)),
    )
    .await;
    wait_until("End-of-RIB to purge it", Duration::from_secs(5), &a, false).await;
    a.shutdown().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    // How tests/fixtures/replay/graceful-restart.jsonl was made.
    if let Some(keep) = std::env::var_os("CARACAL_KEEP_RECORDING") {
        std::fs::write(keep, &text).unwrap();
    }
    let replayed = speaker::record::replay(text.as_bytes()).unwrap();
    assert!(replayed.inputs >= 5, "start, sessions, shutdown: {replayed:?}");
    assert!(text.contains("\"updates\""), "the UPDATE is in the recording");
    // The stale timer follows the restart time the peer sent: with another one recorded, the
    // replay's wake-up time differs where the session went down.
    let tampered = text.replace("\"restart_time\":60", "\"restart_time\":30");
    assert_ne!(tampered, text);
    match speaker::record::replay(tampered.as_bytes()) {
        Err(speaker::record::ReplayError::Diverged { what, .. }) => assert_eq!(what, "wake-up times"),
        other => panic!("{other:?}"),
    }
}

/// A recording kept in the tree: the speaker's decisions for it must not change unnoticed (a
/// change that means to alter them re-records it, as the test above says).
#[test]
fn the_recorded_graceful_restart_replays() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/replay/graceful-restart.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let replayed = speaker::record::replay(text.as_bytes()).unwrap();
    assert!(replayed.inputs >= 5 && replayed.outputs >= 5, "{replayed:?}");
}
