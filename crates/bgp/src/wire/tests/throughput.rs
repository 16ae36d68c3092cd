//! Decode throughput, a measurement rather than a test: run with
//! `cargo test -p caracal-bgp --release --lib wire_decode_throughput -- --ignored --nocapture`.
//! It prints prefixes per second for a 1,000,000-prefix IPv4 feed, packed (many prefixes per
//! UPDATE, as BIRD and FRR send a table) and unpacked (one UPDATE per prefix, every prefix with
//! its own attributes), and checks every prefix came out.

use std::net::Ipv4Addr;
use std::time::Instant;

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net};

use crate::wire::*;

const PREFIXES: u32 = 1_000_000;

fn attrs(i: u32) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence([65001, 64512 + (i % 500), 3356, 174 + (i % 7)])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
        med: Some(i % 100),
        communities: vec![0xfde9_0000 | (i % 50), 0xfde9_1000],
        ..Default::default()
    }
}

fn prefix(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from((i + (1 << 24)) << 8), 24).unwrap())
}

fn decode_feed(msgs: &[Bytes], opts: &SessionOptions) -> (usize, f64) {
    let start = Instant::now();
    let mut n = 0;
    for m in msgs {
        let len = frame_len(m, opts).unwrap().unwrap();
        match Message::decode(&m[..len], opts) {
            Ok(Message::Update(u)) => n += u.nlri.len(),
            other => panic!("{other:?}"),
        }
    }
    (n, start.elapsed().as_secs_f64())
}

#[test]
#[ignore = "a measurement; run in release with --ignored --nocapture"]
fn wire_decode_throughput() {
    let opts = SessionOptions::modern(true);

    let all: Vec<IpNet> = (0..PREFIXES).map(prefix).collect();
    let packed = encode_updates(&attrs(0), &all, &opts).unwrap();
    let (n, secs) = decode_feed(&packed, &opts);
    assert_eq!(n, PREFIXES as usize);
    println!(
        "packed:   {} prefixes in {} UPDATEs decoded in {:.3} s ({:.1} M prefixes/s)",
        n,
        packed.len(),
        secs,
        n as f64 / secs / 1e6
    );

    let single: Vec<Bytes> = (0..PREFIXES)
        .map(|i| encode_updates(&attrs(i), &[prefix(i)], &opts).unwrap().remove(0))
        .collect();
    let (n, secs) = decode_feed(&single, &opts);
    assert_eq!(n, PREFIXES as usize);
    println!(
        "unpacked: {} prefixes in {} UPDATEs decoded in {:.3} s ({:.1} M prefixes/s)",
        n,
        single.len(),
        secs,
        n as f64 / secs / 1e6
    );
}
