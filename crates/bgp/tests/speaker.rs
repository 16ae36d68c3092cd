//! Two caracal speakers (and scripted fake peers) over loopback: session setup, OPEN errors,
//! hold timer, MD5 and error isolation. No root needed: 127.0.0.0/8 is local, so each speaker
//! uses its own loopback address. Route exchange needs next hops a peer accepts (loopback ones
//! are not), so it is tested in the lab (`crates/controller/tests/bgp_smoke.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use caracal_bgp::config::SpeakerConfig;
use caracal_bgp::control::Status;
use caracal_bgp::speaker::{self, SpeakerHandle};
use caracal_bgp::wire::{self, Capability, Family, Message, Open, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two speakers: `a` (127.0.0.1, AS 65001, listening) and `b` (127.0.0.2, AS 65002, connects).
fn pair_configs(port: u16, extra_a: &str, extra_b: &str) -> (SpeakerConfig, SpeakerConfig) {
    let a = format!(
        r#"
router_id: 10.0.0.1
local_as: 65001
listen_address: 127.0.0.1
listen_port: {port}
originate: [10.1.0.0/24]
peers:
  - address: 127.0.0.2
    remote_as: 65002
    passive: true
    hold_time: 9
    families: [ipv4_unicast]
{extra_a}
"#
    );
    let b = format!(
        r#"
router_id: 10.0.0.2
local_as: 65002
listen_port: 0
originate: [10.2.0.0/24]
peers:
  - address: 127.0.0.1
    port: {port}
    remote_as: 65001
    source_address: 127.0.0.2
    hold_time: 9
    connect_retry_time: 1
    families: [ipv4_unicast]
{extra_b}
"#
    );
    (
        SpeakerConfig::parse(&a).unwrap(),
        SpeakerConfig::parse(&b).unwrap(),
    )
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

async fn peer0(s: &SpeakerHandle) -> caracal_bgp::control::PeerStatus {
    let st: Status = s.status().await.unwrap();
    st.peers[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_remote_as_is_refused_with_2_2() {
    let port = free_port();
    let (mut ca, cb) = pair_configs(port, "", "");
    ca.peers[0].remote_as = 65099;
    let (a, _ta) = speaker::start(ca, None).await.unwrap();
    let (b, _tb) = speaker::start(cb, None).await.unwrap();
    wait_for("the OPEN error at b", Duration::from_secs(10), || async {
        peer0(&b).await.last_error.is_some_and(|e| e.contains("2/2"))
    })
    .await;
    assert_ne!(peer0(&a).await.state, "Established");
    // Both ends count the NOTIFICATION by code and subcode: a sent it, b received it.
    let bad_peer_as = |list: &[caracal_bgp::control::NotificationCount]| {
        list.iter().any(|n| (n.code, n.subcode) == (2, 2) && n.count >= 1)
    };
    let pb = peer0(&b).await;
    assert!(bad_peer_as(&pb.notifications_received), "{pb:?}");
    assert!(pb.notifications_sent.is_empty(), "{pb:?}");
    wait_for("a to count the 2/2 it sent", Duration::from_secs(5), || async {
        bad_peer_as(&peer0(&a).await.notifications_sent)
    })
    .await;
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_md5_passwords_establish_and_a_missing_one_does_not() {
    let port = free_port();
    let (ca, cb) = pair_configs(port, "    password: s3cret", "    password: s3cret");
    let (a, _ta) = speaker::start(ca.clone(), None).await.unwrap();
    let (b, _tb) = speaker::start(cb.clone(), None).await.unwrap();
    wait_for("Established with MD5", Duration::from_secs(10), || async {
        peer0(&a).await.state == "Established"
    })
    .await;
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();

    let port = free_port();
    let (ca, cb) = pair_configs(port, "    password: s3cret", "");
    let (a, _ta) = speaker::start(ca, None).await.unwrap();
    let (b, _tb) = speaker::start(cb, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(peer0(&a).await.state, "Established");
    assert_ne!(peer0(&b).await.state, "Established");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// A fake peer that completes the OPEN exchange and then says nothing.
async fn silent_peer(listener: TcpListener) -> Vec<Message> {
    let (mut s, _) = listener.accept().await.unwrap();
    let open = Open {
        version: 4,
        my_as: 65002,
        hold_time: 3,
        router_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(65002),
        ],
    };
    let opts = SessionOptions::default();
    s.write_all(&Message::Open(open).encode(&opts).unwrap())
        .await
        .unwrap();
    s.write_all(&Message::Keepalive.encode(&opts).unwrap())
        .await
        .unwrap();
    read_all(&mut s, Duration::from_secs(8)).await
}

async fn read_all(s: &mut TcpStream, limit: Duration) -> Vec<Message> {
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
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_gets_hold_timer_expired_notification_4_0() {
    let listener = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = tokio::spawn(silent_peer(listener));
    let config = SpeakerConfig::parse(&format!(
        r#"
router_id: 10.0.0.1
local_as: 65001
listen_port: 0
peers:
  - address: 127.0.0.3
    port: {port}
    remote_as: 65002
    hold_time: 3
    connect_retry_time: 1
    families: [ipv4_unicast]
"#
    ))
    .unwrap();
    let (a, _ta) = speaker::start(config, None).await.unwrap();
    let seen = fake.await.unwrap();
    let notification = seen.iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(notification, Some((4, 0)), "messages: {seen:?}");
    // Keepalives were sent at a third of the hold time before that.
    assert!(
        seen.iter().filter(|m| matches!(m, Message::Keepalive)).count() >= 2,
        "{seen:?}"
    );
    wait_for(
        "the hold timer error in status",
        Duration::from_secs(5),
        || async {
            peer0(&a)
                .await
                .last_error
                .is_some_and(|e| e.contains("hold timer expired"))
        },
    )
    .await;
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_peer_leaves_the_other_session_up() {
    let port = free_port();
    let (mut ca, cb) = pair_configs(port, "", "");
    ca.peers
        .push(serde_yaml::from_str("{address: 127.0.0.4, remote_as: 65004, passive: true}").unwrap());
    let (a, _ta) = speaker::start(ca, None).await.unwrap();
    let (b, _tb) = speaker::start(cb, None).await.unwrap();
    wait_for("Established", Duration::from_secs(10), || async {
        peer0(&a).await.state == "Established"
    })
    .await;
    // 127.0.0.4 connects and sends a header with a broken marker.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)), 0))
        .unwrap();
    let mut bad = sock
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
        .unwrap();
    bad.write_all(&[0u8; 19]).await.unwrap();
    let seen = read_all(&mut bad, Duration::from_secs(3)).await;
    let n = seen.iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(n, Some((1, 1)), "{seen:?}");
    let st = a.status().await.unwrap();
    let good = st
        .peers
        .iter()
        .find(|p| p.address.to_string() == "127.0.0.2")
        .unwrap();
    assert_eq!(good.state, "Established");
    assert_eq!(good.last_error, None);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
