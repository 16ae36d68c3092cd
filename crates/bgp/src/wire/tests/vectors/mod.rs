//! Byte vectors for every message type and attribute, built from the RFC layouts, and
//! vectors re-derived from ExaBGP's `qa/` data (conf-ebgp.ci, decoding/ipv4-unicast-1).

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ipnet::IpNet;

use super::{hex, msg, update_msg};
use crate::wire::*;

mod update;

fn four(ebgp: bool) -> SessionOptions {
    SessionOptions::modern(ebgp)
}

fn two_octet() -> SessionOptions {
    SessionOptions {
        four_octet_as: false,
        ..SessionOptions::modern(true)
    }
}

fn notif_of(frame: &[u8], opts: &SessionOptions) -> (u8, u8, Vec<u8>) {
    let e = Message::decode(frame, opts).expect_err("must fail");
    let n = e.to_notification();
    (n.code, n.subcode, n.data.to_vec())
}

fn pfx(s: &str) -> IpNet {
    s.parse().unwrap()
}

// -- KEEPALIVE ------------------------------------------------------------------------------

#[test]
fn keepalive_is_a_bare_header() {
    let bytes = msg(4, &[]);
    assert_eq!(bytes, hex("ffffffffffffffffffffffffffffffff 0013 04"));
    assert_eq!(Message::decode(&bytes, &four(true)).unwrap(), Message::Keepalive);
    assert_eq!(Message::Keepalive.encode(&four(true)).unwrap().to_vec(), bytes);
}

#[test]
fn keepalive_with_a_body_is_notification_1_2_with_the_length() {
    assert_eq!(notif_of(&msg(4, &[0]), &four(true)), (1, 2, vec![0x00, 0x14]));
}

// -- Header ---------------------------------------------------------------------------------

#[test]
fn marker_not_all_ones_is_notification_1_1() {
    let mut bytes = msg(4, &[]);
    bytes[3] = 0xfe;
    assert_eq!(notif_of(&bytes, &four(true)), (1, 1, vec![]));
    assert_eq!(
        frame_len(&bytes, &four(true)),
        Err(Error::ConnectionNotSynchronized)
    );
}

#[test]
fn length_below_19_is_notification_1_2() {
    let mut bytes = msg(4, &[]);
    bytes[17] = 18;
    assert_eq!(
        frame_len(&bytes, &four(true)),
        Err(Error::BadMessageLength { length: 18 })
    );
    assert_eq!(
        Error::BadMessageLength { length: 18 }
            .to_notification()
            .data
            .to_vec(),
        vec![0, 18]
    );
}

#[test]
fn length_above_4096_needs_extended_messages() {
    let mut header = hex("ffffffffffffffffffffffffffffffff 1001 02");
    assert_eq!(
        frame_len(&header, &four(true)),
        Err(Error::BadMessageLength { length: 4097 })
    );
    let ext = SessionOptions {
        extended_message: true,
        ..four(true)
    };
    assert_eq!(frame_len(&header, &ext), Ok(Some(4097)));
    header.truncate(18);
    assert_eq!(
        frame_len(&header, &ext),
        Ok(None),
        "a partial header asks for more bytes"
    );
}

#[test]
fn unknown_type_is_notification_1_3_with_the_type() {
    assert_eq!(notif_of(&msg(9, &[]), &four(true)), (1, 3, vec![9]));
}

#[test]
fn frame_shorter_than_its_length_field_is_notification_1_2() {
    let bytes = msg(3, &[6, 2]);
    assert_eq!(notif_of(&bytes[..20], &four(true)), (1, 2, vec![0, 21]));
}

#[test]
fn each_type_has_its_minimum_length() {
    for (kind, body_len) in [(1u8, 9usize), (2, 3), (3, 1), (5, 3)] {
        let bytes = msg(kind, &vec![0; body_len]);
        let (code, sub, _) = notif_of(&bytes, &four(true));
        assert_eq!((code, sub), (1, 2), "type {kind} with a {body_len}-octet body");
    }
}

// -- OPEN -----------------------------------------------------------------------------------

/// OPEN, AS 65001, hold 180, id 1.1.1.1, capabilities MP IPv4 and IPv6 unicast, route
/// refresh, 4-octet AS 65001, graceful restart 120 s with IPv4 forwarding kept, extended
/// messages, all in one optional parameter.
const OPEN_HEX: &str = "04 fde9 00b4 01010101 20
    02 1e  010400010001 010400020001 0200 41040000fde9 4006 0078 00010180 0600";

fn open_value() -> Open {
    Open {
        version: 4,
        my_as: 65001,
        hold_time: 180,
        router_id: Ipv4Addr::new(1, 1, 1, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![(Family::IPV4_UNICAST, true)],
            }),
            Capability::ExtendedMessage,
        ],
    }
}

#[test]
fn open_with_capabilities_decodes_and_encodes() {
    let bytes = msg(1, &hex(OPEN_HEX));
    let m = Message::decode(&bytes, &SessionOptions::default()).unwrap();
    assert_eq!(m, Message::Open(open_value()));
    assert_eq!(m.encode(&SessionOptions::default()).unwrap().to_vec(), bytes);
    let Message::Open(o) = m else { unreachable!() };
    assert_eq!(o.asn(), 65001);
    assert_eq!(o.families(), vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
}

#[test]
fn open_graceful_restart_flags_decode() {
    // R and N set, restart time 0xfff, IPv6 without forwarding state.
    let body = hex("04 fde9 005a 0a000001 0a 02 08 4006 cfff 00020100");
    let Message::Open(o) = Message::decode(&msg(1, &body), &four(true)).unwrap() else {
        panic!()
    };
    let gr = o.graceful_restart().unwrap();
    assert!(gr.restarting && gr.notification);
    assert_eq!(gr.restart_time, 0xfff);
    assert_eq!(gr.families, vec![(Family::IPV6_UNICAST, false)]);
}

#[test]
fn open_with_rfc9072_extended_parameters_decodes() {
    // Opt Parm Len 255, type 255, 2-octet length 11; then one capabilities parameter with
    // a 2-octet length of 8.
    let body = hex("04 5ba0 00b4 01010101 ff ff 000b 02 0008 41040001d4c0 0200");
    let Message::Open(o) = Message::decode(&msg(1, &body), &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::FourOctetAs(120000), Capability::RouteRefresh]
    );
    assert_eq!(o.asn(), 120000);
    assert_eq!(o.my_as, AS_TRANS);
}

#[test]
fn open_with_many_capabilities_uses_extended_parameters_and_round_trips() {
    let mut open = open_value();
    for code in 100..170u8 {
        open.capabilities.push(Capability::Unknown {
            code,
            value: Bytes::from_static(b"abc"),
        });
    }
    let bytes = Message::Open(open.clone()).encode(&four(true)).unwrap();
    assert_eq!(
        &bytes[28..30],
        &[0xff, 0xff],
        "Opt Parm Len 255 and type 255 (RFC 9072)"
    );
    assert_eq!(Message::decode(&bytes, &four(true)).unwrap(), Message::Open(open));
}

#[test]
fn open_version_3_is_notification_2_1_naming_version_4() {
    let mut body = hex(OPEN_HEX);
    body[0] = 3;
    assert_eq!(notif_of(&msg(1, &body), &four(true)), (2, 1, vec![0, 4]));
}

#[test]
fn open_hold_time_2_is_notification_2_6() {
    let body = hex("04 fde9 0002 01010101 00");
    assert_eq!(notif_of(&msg(1, &body), &four(true)), (2, 6, vec![0, 2]));
}

#[test]
fn open_zero_identifier_is_notification_2_3() {
    let body = hex("04 fde9 00b4 00000000 00");
    assert_eq!(notif_of(&msg(1, &body), &four(true)).0, 2);
    assert_eq!(notif_of(&msg(1, &body), &four(true)).1, 3);
}

#[test]
fn open_authentication_parameter_is_notification_2_4() {
    let body = hex("04 fde9 00b4 01010101 03 01 01 00");
    assert_eq!(notif_of(&msg(1, &body), &four(true)), (2, 4, vec![1]));
}

#[test]
fn open_parameter_length_mismatch_is_notification_2_0() {
    let body = hex("04 fde9 00b4 01010101 05 02 02 0200");
    assert_eq!(notif_of(&msg(1, &body), &four(true)).0, 2);
    let body = hex("04 fde9 00b4 01010101 04 02 03 0200");
    assert_eq!(notif_of(&msg(1, &body), &four(true)), (2, 0, vec![]));
}

#[test]
fn open_unknown_capabilities_are_kept_not_refused() {
    let body = hex("04 fde9 00b4 01010101 0a 02 08 4502 0001 4900 8000");
    let Message::Open(o) = Message::decode(&msg(1, &body), &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Unknown {
                code: 0x45,
                value: Bytes::from_static(&[0, 1])
            },
            Capability::Unknown {
                code: 0x49,
                value: Bytes::new()
            },
            Capability::Unknown {
                code: 0x80,
                value: Bytes::new()
            },
        ]
    );
}

#[test]
fn open_malformed_four_octet_as_capability_is_notification_2_0() {
    let body = hex("04 fde9 00b4 01010101 05 02 03 4101 00");
    assert_eq!(notif_of(&msg(1, &body), &four(true)).0, 2);
}

#[test]
fn options_negotiate_takes_the_common_capabilities() {
    let mut theirs = open_value();
    theirs
        .capabilities
        .retain(|c| !matches!(c, Capability::Multiprotocol(f) if f.afi == Afi::Ipv6));
    theirs.capabilities.retain(|c| *c != Capability::ExtendedMessage);
    let o = SessionOptions::negotiate(&open_value(), &theirs, false);
    assert!(o.four_octet_as);
    assert!(!o.extended_message);
    assert_eq!(o.families, vec![Family::IPV4_UNICAST]);
    assert!(!o.ebgp);
}

// -- NOTIFICATION ---------------------------------------------------------------------------

#[test]
fn notification_with_shutdown_communication_round_trips() {
    let bytes = msg(3, &hex("06 02 0b 6d61696e74656e616e6365"));
    let m = Message::decode(&bytes, &four(true)).unwrap();
    let Message::Notification(n) = &m else { panic!() };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_communication(), Some("maintenance"));
    assert_eq!(n.to_string(), "Cease/Administrative Shutdown (6/2): maintenance");
    assert_eq!(*n, Notification::shutdown(false, "maintenance"));
    assert_eq!(m.encode(&four(true)).unwrap().to_vec(), bytes);
}

#[test]
fn administrative_reset_carries_shutdown_communication() {
    let n = Notification::shutdown(true, "bye");
    assert_eq!((n.code, n.subcode, n.data.to_vec()), (6, 4, hex("03 627965")));
    assert_eq!(n.shutdown_communication(), Some("bye"));
}

#[test]
fn malformed_shutdown_communication_reads_as_none() {
    let overrun = Notification {
        code: 6,
        subcode: 2,
        data: Bytes::from_static(&[5, b'a']),
    };
    assert_eq!(overrun.shutdown_communication(), None);
    let not_utf8 = Notification {
        code: 6,
        subcode: 4,
        data: Bytes::from_static(&[2, 0xc3, 0x28]),
    };
    assert_eq!(not_utf8.shutdown_communication(), None);
    let other = Notification {
        code: 6,
        subcode: 3,
        data: Bytes::from_static(&[1, b'a']),
    };
    assert_eq!(
        other.shutdown_communication(),
        None,
        "only subcodes 2 and 4 carry one"
    );
}

#[test]
fn shutdown_communication_longer_than_255_octets_is_refused() {
    // One rule for an over-long communication: cut to 255 octets.
    assert_eq!(Notification::shutdown(false, &"x".repeat(256)).data.len(), 256);
    assert_eq!(Notification::shutdown(false, &"x".repeat(255)).data.len(), 256);
    assert_eq!(Notification::shutdown(false, &"x".repeat(255)).data[0], 255);
}

#[test]
fn typed_codes_carry_the_iana_values_both_ways() {
    assert_eq!(u8::from(ErrorCode::Cease), 6);
    assert_eq!(u8::from(CeaseSubcode::HardReset), 9);
    assert_eq!(u8::from(OpenSubcode::UnsupportedCapability), 7);
    assert_eq!(u8::from(FsmSubcode::UnexpectedInEstablished), 3);
    for v in 0..=u8::MAX {
        if let Some(c) = ErrorCode::from_u8(v) {
            assert_eq!(u8::from(c), v);
        }
        if let Some(c) = CeaseSubcode::from_u8(v) {
            assert_eq!(u8::from(c), v);
        }
    }
    assert_eq!(ErrorCode::from_u8(8), None);
    let n = Notification::cease(CeaseSubcode::PeerDeconfigured);
    assert_eq!((n.code, n.subcode), (6, 3));
    assert_eq!(n.cease_subcode(), Some(CeaseSubcode::PeerDeconfigured));
    // A subcode means nothing without its code: 2 is Administrative Shutdown only under Cease.
    let open = Notification::open_error(OpenSubcode::BadPeerAs, Bytes::new());
    assert_eq!(
        (open.error_code(), open.cease_subcode()),
        (Some(ErrorCode::Open), None)
    );
    let fsm = Notification::fsm_error(FsmSubcode::UnexpectedInOpenSent);
    assert_eq!((fsm.code, fsm.subcode), (5, 1));
}

#[test]
fn hold_timer_expired_notification_round_trips() {
    let bytes = msg(3, &[4, 0]);
    let m = Message::Notification(Notification::hold_timer_expired());
    assert_eq!(Message::decode(&bytes, &four(true)).unwrap(), m);
    assert_eq!(m.encode(&four(true)).unwrap().to_vec(), bytes);
}

// -- ROUTE-REFRESH --------------------------------------------------------------------------

#[test]
fn route_refresh_round_trips() {
    let bytes = msg(5, &hex("0002 00 01"));
    let m = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV6_UNICAST,
        subtype: 0,
    });
    assert_eq!(Message::decode(&bytes, &four(true)).unwrap(), m);
    assert_eq!(m.encode(&four(true)).unwrap().to_vec(), bytes);
}

#[test]
fn enhanced_route_refresh_with_bad_length_is_notification_7_1_with_the_message() {
    let bytes = msg(5, &hex("0001 01 01 00"));
    assert_eq!(notif_of(&bytes, &four(true)), (7, 1, bytes.clone()));
    let plain = msg(5, &hex("0001 00 01 00"));
    assert_eq!(notif_of(&plain, &four(true)).0, 1);
}
