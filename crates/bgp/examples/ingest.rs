//! In-process ingestion benchmark: decode a realistic full-table feed and apply it to the RIB.
//!
//! `cargo run --release -p caracal-bgp --example ingest [-- PREFIXES]`
//!
//! The feed mirrors the one in `/work/shared/research/anchors.md`: 1,000,000 IPv4 /24s in
//! UPDATEs of ~27 prefixes, each UPDATE with its own attribute set (varied AS paths), 20% with
//! communities. Prints the time to decode and apply everything (no sockets: the speaker's
//! per-prefix work) and the resident memory growth per route.

use std::net::Ipv4Addr;
use std::time::Instant;

use caracal_bgp::config::PrefixFilter;
use caracal_bgp::rib::{PeerPolicy, Rib, RibConfig, SessionInfo};
use caracal_bgp::wire::{
    AsPath, AsSegment, Family, Message, Origin, PathAttributes, SegmentKind, SessionOptions, Update,
};
use ipnet::Ipv4Net;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU seconds (user + system) used by this process so far, from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command name the fields start at number 3 (state); utime is 14, stime 15.
    let ticks = |n: usize| f.get(n - 3).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (ticks(14) + ticks(15)) as f64 / 100.0
}

fn main() {
    let total: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let opts = SessionOptions::modern(true);
    // Deterministic pseudo-random numbers (xorshift), so runs are comparable.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut frames = Vec::new();
    let mut n = 0u32;
    let mut updates = 0;
    while n < total {
        let count = (20 + rnd() % 16) as u32;
        let count = count.min(total - n);
        let len = 2 + (rnd() % 5) as usize;
        let mut asns = vec![65002];
        asns.extend((1..len).map(|_| 1 + (rnd() % 64_000) as u32));
        let communities = if rnd() % 5 == 0 {
            vec![(65002 << 16) | (rnd() % 1000) as u32]
        } else {
            vec![]
        };
        let attributes = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath {
                segments: vec![AsSegment {
                    kind: SegmentKind::Sequence,
                    asns,
                }],
            }),
            next_hop: Some(Ipv4Addr::new(10, 0, 12, 1)),
            med: (rnd() % 2 == 0).then(|| (rnd() % 100) as u32),
            communities,
            ..Default::default()
        };
        let nlri: Vec<Ipv4Net> = (n..n + count)
            .map(|i| Ipv4Net::new(Ipv4Addr::from((i + (1 << 24)) << 8), 24).expect("valid /24"))
            .collect();
        let u = Update {
            withdrawn: vec![],
            attributes,
            nlri,
        };
        frames.push(Message::Update(u).encode(&opts).expect("encodes"));
        n += count;
        updates += 1;
    }
    let wire_bytes: usize = frames.iter().map(|f| f.len()).sum();

    let mut rib = Rib::new(RibConfig {
        router_id: Ipv4Addr::new(10, 255, 0, 2),
        local_as: 65001,
        cluster_id: None,
        multipath: true,
        track_changes: false,
    });
    let peer = rib.add_peer(PeerPolicy {
        address: "10.0.12.1".parse().expect("address"),
        remote_as: 65002,
        local_as: 65001,
        rr_client: false,
        next_hop_self: false,
        import: PrefixFilter::default(),
        export: PrefixFilter::default(),
        max_prefixes: None,
    });
    rib.peer_up(
        peer,
        SessionInfo {
            router_id: Ipv4Addr::new(10, 255, 0, 1),
            families: vec![Family::IPV4_UNICAST],
            local_address: "10.0.12.2".parse().expect("address"),
            local_alt_address: None,
            graceful_restart: false,
            graceful_families: vec![],
            preserved_families: vec![],
        },
    );

    let t = Instant::now();
    for f in &frames {
        let Ok(Message::Update(_)) = Message::decode(f, &opts) else {
            panic!("decode")
        };
    }
    println!("decode only: {:.3} s", t.elapsed().as_secs_f64());
    let rss_before = rss_bytes();
    let cpu_before = cpu_secs();
    let start = Instant::now();
    for f in &frames {
        let Ok(Message::Update(u)) = Message::decode(f, &opts) else {
            panic!("decode")
        };
        rib.apply_update(peer, u, None);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_secs() - cpu_before;
    let rss_after = rss_bytes();
    assert_eq!(rib.len(), total as usize);
    drop(frames);
    println!(
        "ingest: {total} prefixes in {updates} UPDATEs ({:.1} MiB on the wire): {:.3} s wall, {:.2} s CPU, {:.2} M routes/s, {:.0} bytes/route (RSS growth)",
        wire_bytes as f64 / (1 << 20) as f64,
        elapsed.as_secs_f64(),
        cpu,
        total as f64 / elapsed.as_secs_f64() / 1e6,
        (rss_after.saturating_sub(rss_before)) as f64 / total as f64,
    );
}
