//! OPENs captured from the real daemons (BIRD 2, FRR 8.4 bgpd, GoBGP 3) with
//! `crates/bgp/tests/fixtures/capture-opens.sh`: each configured with a 4-octet AS,
//! IPv4 and IPv6 unicast, route refresh, graceful restart and extended messages where it
//! supports them.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::hex;
use crate::wire::*;

const BIRD: &str = include_str!("../../../tests/fixtures/open-bird.hex");
const FRR: &str = include_str!("../../../tests/fixtures/open-frr.hex");
const GOBGP: &str = include_str!("../../../tests/fixtures/open-gobgp.hex");

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
