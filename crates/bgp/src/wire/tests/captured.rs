//! OPENs and UPDATEs captured from the real daemons (BIRD 2, FRR 8.4 bgpd, GoBGP 3) with
//! `crates/bgp/tests/fixtures/capture-peers.sh`: each configured with a 4-octet AS,
//! IPv4 and IPv6 unicast, route refresh, graceful restart and extended messages where it
//! supports them, announcing a few prefixes to a minimal speaker in AS 65001.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::hex;
use crate::wire::*;

const BIRD: &str = include_str!("../../../tests/fixtures/open-bird.hex");
const FRR: &str = include_str!("../../../tests/fixtures/open-frr.hex");
const GOBGP: &str = include_str!("../../../tests/fixtures/open-gobgp.hex");
const BIRD_UPDATES: &str = include_str!("../../../tests/fixtures/updates-bird.hex");
const FRR_UPDATES: &str = include_str!("../../../tests/fixtures/updates-frr.hex");
const GOBGP_UPDATES: &str = include_str!("../../../tests/fixtures/updates-gobgp.hex");

fn decode_open(fixture: &str) -> (Vec<u8>, Open) {
    let bytes = hex(fixture);
    assert_eq!(
        frame_len(&bytes, &SessionOptions::default()),
        Ok(Some(bytes.len()))
    );
    match Message::decode(&bytes, &SessionOptions::default()) {
        Ok(Message::Open(o)) => (bytes, o),
        other => panic!("not an OPEN: {other:?}"),
    }
}

fn gr(restarting: bool, notification: bool) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        restarting,
        notification,
        restart_time: 120,
        families: vec![(Family::IPV4_UNICAST, false), (Family::IPV6_UNICAST, false)],
    })
}

fn unknown(code: u8, value: &str) -> Capability {
    Capability::Unknown {
        code,
        value: Bytes::from(hex(value)),
    }
}

#[test]
fn bird_open_decodes_to_its_capabilities() {
    let (bytes, o) = decode_open(BIRD);
    assert_eq!((o.version, o.my_as, o.hold_time), (4, AS_TRANS, 240));
    assert_eq!(o.router_id, Ipv4Addr::new(10, 255, 0, 2));
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
            gr(false, false),
            Capability::FourOctetAs(4_200_000_001),
            Capability::EnhancedRouteRefresh,
            unknown(71, ""), // long-lived graceful restart, no families
        ]
    );
    assert_eq!(o.asn(), 4_200_000_001);
    // BIRD packs all capabilities into one parameter, as caracal does.
    assert_eq!(
        Message::Open(o)
            .encode(&SessionOptions::default())
            .unwrap()
            .to_vec(),
        bytes
    );
}

#[test]
fn frr_open_decodes_to_its_capabilities() {
    let (bytes, o) = decode_open(FRR);
    assert_eq!((o.version, o.my_as, o.hold_time), (4, AS_TRANS, 180));
    assert_eq!(o.router_id, Ipv4Addr::new(10, 255, 0, 3));
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            unknown(128, ""), // pre-standard route refresh
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(4_200_000_002),
            Capability::ExtendedMessage,
            unknown(69, "0001 01 01 0002 01 01"), // ADD-PATH receive, IPv4 and IPv6
            unknown(73, "03 636170 00"),          // FQDN: hostname "cap"
            gr(true, true),                       // a freshly started bgpd sets R and N
            unknown(71, "0001 01 80 000000 0002 01 80 000000"), // long-lived GR
        ]
    );
    // FRR sends one capability per parameter; caracal's single parameter decodes the same.
    let again = Message::Open(o.clone())
        .encode(&SessionOptions::default())
        .unwrap();
    assert!(again.len() < bytes.len());
    assert_eq!(
        Message::decode(&again, &SessionOptions::default()).unwrap(),
        Message::Open(o)
    );
}

#[test]
fn gobgp_open_decodes_to_its_capabilities() {
    let (bytes, o) = decode_open(GOBGP);
    assert_eq!((o.version, o.my_as, o.hold_time), (4, AS_TRANS, 90));
    assert_eq!(o.router_id, Ipv4Addr::new(10, 255, 0, 4));
    let Capability::Unknown { code: 73, .. } = &o.capabilities[1] else {
        panic!("FQDN expected")
    };
    let mut caps = o.capabilities.clone();
    caps.remove(1); // FQDN carries the capturing machine's host name
    assert_eq!(
        caps,
        vec![
            Capability::RouteRefresh,
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::FourOctetAs(4_200_000_003),
            gr(false, false),
            unknown(5, "0001 0001 0002"), // extended next hop: IPv4 unicast over IPv6
        ]
    );
    assert_eq!(
        Message::Open(o)
            .encode(&SessionOptions::default())
            .unwrap()
            .to_vec(),
        bytes
    );
}

#[test]
fn captured_opens_negotiate_with_ours() {
    let ours = Open {
        version: 4,
        my_as: AS_TRANS,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 255, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::ExtendedMessage,
        ],
    };
    for (name, fixture, extended) in [("bird", BIRD, true), ("frr", FRR, true), ("gobgp", GOBGP, false)] {
        let (_, theirs) = decode_open(fixture);
        let o = SessionOptions::negotiate(&ours, &theirs, true);
        assert!(o.four_octet_as, "{name}");
        assert_eq!(o.extended_message, extended, "{name}");
        assert_eq!(
            o.families,
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            "{name}"
        );
    }
}

/// Decodes every captured UPDATE over the session the capture negotiated (4-octet AS, IPv4 and
/// IPv6, eBGP), requiring each to be clean, and re-encodes it to the same value.
fn decode_updates(fixture: &str) -> Vec<Update> {
    let opts = SessionOptions::modern(true);
    fixture
        .lines()
        .map(|line| {
            let bytes = hex(line);
            assert_eq!(frame_len(&bytes, &opts), Ok(Some(bytes.len())));
            let (Message::Update(u), None) = Message::decode_with_outcome(&bytes, &opts).unwrap() else {
                panic!("not a clean UPDATE: {line}")
            };
            let again = Message::Update(u.clone()).encode(&opts).unwrap();
            assert_eq!(
                Message::decode(&again, &opts).unwrap(),
                Message::Update(u.clone())
            );
            u
        })
        .collect()
}

fn v4(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn bird_updates_decode_with_end_of_rib_for_both_families() {
    let u = decode_updates(BIRD_UPDATES);
    assert_eq!(u.len(), 4);
    assert_eq!(u[0].nlri, vec![v4("198.51.100.0/25"), v4("192.0.2.0/24")]);
    let a = &u[0].attributes;
    assert_eq!(a.origin, Some(Origin::Igp));
    assert_eq!(a.as_path, Some(AsPath::sequence([4_200_000_001])));
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 255, 0, 2)));
    assert_eq!(u[1].end_of_rib(), Some(Family::IPV4_UNICAST));
    let reach = u[2].attributes.mp_reach.as_ref().unwrap();
    assert_eq!(reach.family, Family::IPV6_UNICAST);
    assert_eq!(reach.next_hops, vec![ip("2001:db8:ffff::2")]);
    assert_eq!(reach.nlri, vec![net("2001:db8:100::/48")]);
    assert_eq!(u[3].end_of_rib(), Some(Family::IPV6_UNICAST));
}

#[test]
fn frr_updates_decode_with_communities_and_large_communities() {
    let u = decode_updates(FRR_UPDATES);
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].nlri, vec![v4("192.0.2.0/24"), v4("203.0.113.0/26")]);
    for update in &u {
        let a = &update.attributes;
        assert_eq!(a.as_path, Some(AsPath::sequence([4_200_000_002])));
        assert_eq!(a.med, Some(0));
        assert_eq!(a.communities, vec![0xfde9_0001, 0xffff_ff01]);
        assert_eq!(
            a.large_communities,
            vec![LargeCommunity {
                global: 65001,
                local1: 1,
                local2: 2
            }]
        );
    }
    assert_eq!(u[0].attributes.next_hop, Some(Ipv4Addr::new(10, 255, 0, 3)));
    let reach = u[1].attributes.mp_reach.as_ref().unwrap();
    assert_eq!(reach.next_hops, vec![ip("2001:db8:ffff::3")]);
    assert_eq!(reach.nlri, vec![net("2001:db8:200::/48")]);
}

#[test]
fn gobgp_updates_decode_with_mp_reach_after_other_attributes() {
    let u = decode_updates(GOBGP_UPDATES);
    assert_eq!(u.len(), 2);
    let a = &u[0].attributes;
    assert_eq!(u[0].nlri, vec![v4("192.0.2.0/24")]);
    assert_eq!(a.origin, Some(Origin::Incomplete));
    assert_eq!(a.as_path, Some(AsPath::sequence([4_200_000_003])));
    assert_eq!((a.med, a.communities.clone()), (Some(20), vec![0xfde9_0007]));
    let reach = u[1].attributes.mp_reach.as_ref().unwrap();
    assert_eq!(reach.next_hops, vec![ip("2001:db8:ffff::4")]);
    assert_eq!(reach.nlri, vec![net("2001:db8:300::/48")]);
}
