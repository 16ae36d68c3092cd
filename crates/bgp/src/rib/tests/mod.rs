//! Unit tests of the RIB, by concern; the helpers build peers, sessions and UPDATEs.

use ipnet::Ipv4Net;

use super::tables::Paths;
use super::*;
use crate::config::Originate;
use crate::wire::{
    Action, AsPath, AsSegment, Family, LargeCommunity, Message, MpReach, MpUnreach, Origin, SegmentKind,
    SessionOptions, Update,
};

const R1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn rib() -> Rib {
    Rib::new(RibConfig {
        router_id: R1,
        local_as: 65001,
        cluster_id: None,
        multipath: true,
        track_changes: true,
    })
}

fn policy(addr: &str, remote_as: u32) -> PeerPolicy {
    PeerPolicy {
        address: addr.parse().unwrap(),
        remote_as,
        local_as: 65001,
        rr_client: false,
        next_hop_self: false,
        import: PrefixFilter::default(),
        export: PrefixFilter::default(),
        max_prefixes: None,
    }
}

fn session(id: u8) -> SessionInfo {
    SessionInfo {
        router_id: Ipv4Addr::new(192, 0, 2, id),
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        local_address: "10.0.0.1".parse().unwrap(),
        local_alt_address: None,
        graceful_restart: false,
        graceful_families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        preserved_families: vec![],
    }
}

/// Adds a peer and brings its session up.
fn up(rib: &mut Rib, addr: &str, remote_as: u32, id: u8) -> PeerIdx {
    let p = rib.add_peer(policy(addr, remote_as));
    rib.peer_up(p, session(id));
    p
}

fn seq(asns: &[u32]) -> AsPath {
    AsPath {
        segments: vec![AsSegment {
            kind: SegmentKind::Sequence,
            asns: asns.to_vec(),
        }],
    }
}

fn attrs(path: &[u32], next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(seq(path)),
        next_hop: Some(next_hop.parse().unwrap()),
        ..Default::default()
    }
}

fn announce(attributes: PathAttributes, prefixes: &[&str]) -> Update {
    Update {
        withdrawn: vec![],
        attributes,
        nlri: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

fn withdraw(prefixes: &[&str]) -> Update {
    Update {
        withdrawn: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        ..Default::default()
    }
}

/// Counters of a peer that sent only IPv4 unicast.
fn v4_counters(received: u64, accepted: u64, advertised: u64) -> PeerCounters {
    let family = FamilyCounters {
        received,
        accepted,
        advertised,
    };
    PeerCounters {
        received,
        accepted,
        advertised,
        families: [family, FamilyCounters::default()],
        ..Default::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn best_peer(rib: &Rib, prefix: &str) -> Option<PeerIdx> {
    rib.best(&net(prefix)).map(|b| b.peer)
}

/// What `peer` is sent, as the production path has it: the Adj-RIB-Out diff encoded by the
/// codec's packer into 4096-octet messages, then decoded again (each must be well-formed).
fn sent(rib: &mut Rib, peer: PeerIdx) -> Vec<Update> {
    let diff = rib.take_diff(peer, false);
    on_the_wire(rib, peer, &diff)
}

fn on_the_wire(rib: &Rib, peer: PeerIdx, diff: &AdjRibOutDiff) -> Vec<Update> {
    let opts = wire_options(rib, peer);
    let (msgs, errors) = diff.encode(&opts);
    assert_eq!(errors, vec![]);
    msgs.iter()
        .map(|m| {
            assert!(m.len() <= 4096, "{} octets", m.len());
            match Message::decode_with_outcome(m, &opts).expect("decodes") {
                (Message::Update(u), None) => u,
                other => panic!("not a well-formed UPDATE: {other:?}"),
            }
        })
        .collect()
}

/// The session options of a peer that supports what caracal does, without extended messages.
fn wire_options(rib: &Rib, peer: PeerIdx) -> SessionOptions {
    SessionOptions::modern(!rib.policy(peer).expect("peer exists").ibgp())
}

/// The RIB's rejected routes as (prefix, peer, reason).
fn reasons(rib: &Rib) -> Vec<(IpNet, PeerIdx, RejectReason)> {
    rib.rejected()
        .into_iter()
        .map(|r| (r.prefix, r.peer, r.reason))
        .collect()
}

fn nlri_count(updates: &[Update]) -> usize {
    updates
        .iter()
        .map(|u| u.nlri.len() + u.attributes.mp_reach.as_ref().map_or(0, |r| r.nlri.len()))
        .sum()
}

mod decision;
mod export;
mod import;
mod peers;

#[test]
fn single_path_entry_is_16_bytes_inline() {
    assert_eq!(std::mem::size_of::<Path>(), 16);
    assert_eq!(std::mem::size_of::<Paths>(), 16);
    assert_eq!(std::mem::size_of::<(Ipv4Net, Paths)>(), 24);
}
