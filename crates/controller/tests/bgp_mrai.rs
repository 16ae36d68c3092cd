//! The minimum route advertisement interval, per peer: caracal's speaker and two scripted eBGP
//! peers in a network namespace of the test's own, on addresses of a veth there (a loopback
//! next hop would not be announced at all).

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::BytesMut;
use caracal::dataplane::netns::{Netns, in_netns, run, tool, unique_suffix};
use caracal_bgp::config::SpeakerConfig;
use caracal_bgp::control::Status;
use caracal_bgp::speaker;
use caracal_bgp::wire::{self, Capability, Family, Message, Open, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A fake eBGP peer: completes the OPEN exchange, keeps the session alive, and reports each
/// UPDATE's announced prefixes with the time they arrived, until `limit` passes.
async fn recording_peer(listener: TcpListener, my_as: u16, limit: Duration) -> Vec<(Instant, Vec<String>)> {
    let (mut s, _) = listener.accept().await.unwrap();
    let open = Open {
        version: 4,
        my_as,
        hold_time: 9,
        router_id: Ipv4Addr::new(10, 0, 0, my_as as u8),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(my_as.into()),
        ],
    };
    let opts = SessionOptions::default();
    s.write_all(&Message::Open(open).encode(&opts).unwrap())
        .await
        .unwrap();
    s.write_all(&Message::Keepalive.encode(&opts).unwrap())
        .await
        .unwrap();
    let opts = SessionOptions::modern(true);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    let mut keepalive = tokio::time::interval(Duration::from_secs(2));
    loop {
        while let Ok(Some(len)) = wire::frame_len(&buf, &opts) {
            if buf.len() < len {
                break;
            }
            let frame = buf.split_to(len);
            if let Message::Update(u) = Message::decode(&frame, &opts).unwrap()
                && !u.nlri.is_empty()
            {
                out.push((Instant::now(), u.nlri.iter().map(ToString::to_string).collect()));
            }
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, s.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => return out,
            },
            _ = keepalive.tick() => {
                let _ = s.write_all(&Message::Keepalive.encode(&opts).unwrap()).await;
            }
        }
    }
}

fn config(originate: &str) -> SpeakerConfig {
    SpeakerConfig::parse(&format!(
        r#"
router_id: 10.0.0.1
local_as: 65001
listen_port: 0
mrai_ms: 0
originate: [{originate}]
peers:
  - address: 10.77.0.3
    remote_as: 65003
    source_address: 10.77.0.1
    hold_time: 9
    connect_retry_time: 1
    families: [ipv4_unicast]
    mrai_ms: 2000
  - address: 10.77.0.4
    remote_as: 65004
    source_address: 10.77.0.1
    hold_time: 9
    connect_retry_time: 1
    families: [ipv4_unicast]
"#
    ))
    .unwrap()
}

async fn scenario() {
    let slow = TcpListener::bind("10.77.0.3:179").await.unwrap();
    let fast = TcpListener::bind("10.77.0.4:179").await.unwrap();
    let limit = Duration::from_secs(6);
    let slow_peer = tokio::spawn(recording_peer(slow, 65003, limit));
    let fast_peer = tokio::spawn(recording_peer(fast, 65004, limit));
    let (a, _task) = speaker::start(config("10.1.0.0/24"), None).await.unwrap();
    let start = Instant::now();
    loop {
        let st: Status = a.status().await.unwrap();
        if st.peers.iter().all(|p| p.state == "Established") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "sessions: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first tables go out at once; then one more prefix.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed = Instant::now();
    a.reload(config("10.1.0.0/24, 10.9.0.0/24")).await.unwrap();
    let (slow_seen, fast_seen) = (slow_peer.await.unwrap(), fast_peer.await.unwrap());
    let arrival = |seen: &[(Instant, Vec<String>)], prefix: &str| {
        seen.iter()
            .find(|(_, p)| p.iter().any(|p| p == prefix))
            .map(|(t, _)| *t)
    };
    let first_slow = arrival(&slow_seen, "10.1.0.0/24").expect("the first table at the slow peer");
    let late_slow = arrival(&slow_seen, "10.9.0.0/24").expect("the new prefix at the slow peer");
    let late_fast = arrival(&fast_seen, "10.9.0.0/24").expect("the new prefix at the fast peer");
    assert!(
        late_fast.duration_since(changed) < Duration::from_millis(500),
        "the peer on the speaker's mrai_ms 0 got the change after {:?}",
        late_fast.duration_since(changed)
    );
    assert!(
        late_slow.duration_since(first_slow) >= Duration::from_millis(1900),
        "the peer with mrai_ms 2000 got the change {:?} after its first table",
        late_slow.duration_since(first_slow)
    );
    a.shutdown().await.unwrap();
}

/// A peer's own `mrai_ms` holds back a second round of announcements to it, while a peer on the
/// speaker's default (0) gets the change at once.
#[test]
fn a_peers_own_mrai_delays_its_announcements_and_not_the_others() {
    if !caracal_testkit::require::root() {
        return;
    }
    let ns = Netns::create(&format!("bgp-mrai-{}", unique_suffix())).unwrap();
    let ip = tool("ip").unwrap();
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        &["addr", "add", "10.77.0.1/24", "dev", "v0"],
        &["addr", "add", "10.77.0.3/24", "dev", "v0"],
        &["addr", "add", "10.77.0.4/24", "dev", "v0"],
        &["link", "set", "v0", "up"],
        &["link", "set", "v1", "up"],
    ] {
        run(Some(ns.name()), &ip, args, None).unwrap();
    }
    in_netns(Some(ns.name()), || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario())
    })
    .unwrap();
}
