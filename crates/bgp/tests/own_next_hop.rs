//! A scripted peer on the wire sends a good UPDATE, then one whose NEXT_HOP is the speaker's own
//! session address (RFC 4271 §6.3): the route must be withdrawn, no NOTIFICATION sent and the
//! session kept. Loopback next hops are martian to the decoder, so both ends run inside a
//! network namespace the test creates (a veth pair with a documentation address at each end) and
//! removes on drop. The same session then gets an UPDATE RFC 7606 treats as withdraw. Needs
//! root.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use caracal_bgp::config::SpeakerConfig;
use caracal_bgp::speaker::{self, SpeakerHandle};
use caracal_bgp::wire::{
    self, AsPath, Capability, Family, Message, Open, Origin, PathAttributes, SessionOptions, Update,
};
use nix::sched::{CloneFlags, setns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;

const SPEAKER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("caracal-onh-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        for (a, dev) in [(SPEAKER, "v0"), (PEER, "v1")] {
            ip(&["-n", &ns.0, "addr", "add", &format!("{a}/24"), "dev", dev]);
            ip(&["-n", &ns.0, "link", "set", dev, "up"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_route(s: &SpeakerHandle, prefix: &str) -> bool {
    let prefix: ipnet::IpNet = prefix.parse().unwrap();
    s.routes()
        .await
        .unwrap()
        .routes
        .iter()
        .any(|r| r.prefix == prefix)
}

/// Everything the speaker sends until the connection closes or `limit` passes.
async fn read_all(mut rd: OwnedReadHalf, limit: Duration) -> Vec<Message> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let opts = SessionOptions::modern(true);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while let Ok(Some(len)) = wire::frame_len(&buf, &opts) {
            if buf.len() < len {
                break;
            }
            let frame = buf.split_to(len);
            out.push(Message::decode(&frame, &opts).unwrap());
        }
        match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return out,
        }
    }
}

fn announce(next_hop: Ipv4Addr) -> Message {
    Message::Update(Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65002])),
            next_hop: Some(next_hop),
            ..Default::default()
        },
        nlri: vec!["10.9.0.0/24".parse().unwrap()],
    })
}

async fn scenario() {
    let listener = TcpListener::bind(SocketAddr::new(PEER.into(), 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = SpeakerConfig::parse(&format!(
        r#"
router_id: 10.0.0.1
local_as: 65001
listen_port: 0
peers:
  - address: {PEER}
    port: {port}
    source_address: {SPEAKER}
    remote_as: 65002
    hold_time: 30
    connect_retry_time: 1
    families: [ipv4_unicast]
"#
    ))
    .unwrap();
    let (s, _task) = speaker::start(config, None).await.unwrap();

    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the speaker connects")
        .unwrap();
    let (rd, mut wr) = stream.into_split();
    let seen = tokio::spawn(read_all(rd, Duration::from_secs(20)));
    let open = Open {
        version: 4,
        my_as: 65002,
        hold_time: 30,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(65002),
        ],
    };
    let opts = SessionOptions::modern(true);
    wr.write_all(&Message::Open(open).encode(&SessionOptions::default()).unwrap())
        .await
        .unwrap();
    wr.write_all(&Message::Keepalive.encode(&opts).unwrap())
        .await
        .unwrap();
    wait_for("Established", Duration::from_secs(10), || async {
        s.status().await.unwrap().peers[0].state == "Established"
    })
    .await;

    wr.write_all(&announce(PEER).encode(&opts).unwrap())
        .await
        .unwrap();
    wait_for("the good route", Duration::from_secs(10), || {
        has_route(&s, "10.9.0.0/24")
    })
    .await;

    wr.write_all(&announce(SPEAKER).encode(&opts).unwrap())
        .await
        .unwrap();
    wait_for("the withdrawal", Duration::from_secs(10), || async {
        !has_route(&s, "10.9.0.0/24").await
    })
    .await;

    // RFC 7606 on the wire too: announce again, then the same UPDATE with an undefined ORIGIN
    // value, which is treated as withdraw.
    wr.write_all(&announce(PEER).encode(&opts).unwrap())
        .await
        .unwrap();
    wait_for("the route again", Duration::from_secs(10), || {
        has_route(&s, "10.9.0.0/24")
    })
    .await;
    let mut bad = announce(PEER).encode(&opts).unwrap().to_vec();
    assert_eq!(bad[23..27], [0x40, 1, 1, 0], "ORIGIN comes first");
    bad[26] = 7;
    wr.write_all(&bad).await.unwrap();
    wait_for("the treat-as-withdraw", Duration::from_secs(10), || async {
        !has_route(&s, "10.9.0.0/24").await
    })
    .await;

    let peer = s.status().await.unwrap().peers[0].clone();
    assert_eq!(peer.state, "Established");
    assert_eq!(peer.updates_own_next_hop, 1);
    assert_eq!(peer.updates_treated_as_withdraw, 1);
    assert_eq!(peer.last_error, None);
    // Nothing more comes from the peer: the session must stay up past a few keepalive rounds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.status().await.unwrap().peers[0].state, "Established");

    s.shutdown().await.unwrap();
    let seen = seen.await.unwrap();
    let notifications: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            Message::Notification(n) => Some((n.code, n.subcode)),
            _ => None,
        })
        .collect();
    // Shutting the speaker down sends Cease 6/2 (administrative shutdown); nothing before it.
    assert!(
        notifications.iter().all(|n| n.0 == 6),
        "only the shutdown's Cease may come: {notifications:?}"
    );
}

#[test]
fn update_with_our_own_address_as_next_hop_withdraws_the_route_and_keeps_the_session() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to create a network namespace");
        return;
    }
    let ns = Netns::create();
    let path = format!("/run/netns/{}", ns.0);
    // setns moves only the calling thread: run the whole scenario on one thread inside.
    std::thread::spawn(move || {
        let f = File::open(path).unwrap();
        setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario());
    })
    .join()
    .expect("scenario");
    drop(ns);
}
