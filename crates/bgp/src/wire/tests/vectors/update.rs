//! UPDATE byte vectors: attributes, 2-octet AS sessions (RFC 6793), packing many prefixes.

use super::*;

// -- UPDATE ---------------------------------------------------------------------------------

/// ExaBGP qa/encoding/conf-ebgp.ci: `announce route 10.0.0.0/24 next-hop 10.0.1.254 origin
/// igp as-path [65533]` over a 4-octet session.
#[test]
fn exabgp_conf_ebgp_update_decodes_and_encodes_byte_for_byte() {
    let bytes = hex(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF 002F 02 0000 0014 40010100 40020602010000FFFD 4003040A0001FE 180A0000",
    );
    let want = Update {
        withdrawn: vec![],
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65533])),
            next_hop: Some(Ipv4Addr::new(10, 0, 1, 254)),
            ..Default::default()
        },
        nlri: vec!["10.0.0.0/24".parse().unwrap()],
    };
    assert_eq!(
        Message::decode(&bytes, &four(true)).unwrap(),
        Message::Update(want.clone())
    );
    assert_eq!(Message::Update(want).encode(&four(true)).unwrap().to_vec(), bytes);
}

/// ExaBGP qa/decoding/ipv4-unicast-1: MED 200, LOCAL_PREF 100, an empty AS_PATH, and four
/// zero-length /0 NLRI before 1.1.1.1/32.
#[test]
fn exabgp_ipv4_unicast_1_decodes() {
    let bytes = hex(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF 003C 02 0000 001C 40010100 400200 40030465016501
         800404000000C8 40050400000064 00000000 2001010101",
    );
    let Message::Update(u) = Message::decode(&bytes, &four(false)).unwrap() else {
        panic!()
    };
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(u.attributes.as_path, Some(AsPath::default()));
    assert_eq!(u.attributes.next_hop, Some(Ipv4Addr::new(101, 1, 101, 1)));
    assert_eq!(u.attributes.med, Some(200));
    assert_eq!(u.attributes.local_pref, Some(100));
    let zero = "0.0.0.0/0".parse().unwrap();
    assert_eq!(
        u.nlri,
        vec![zero, zero, zero, zero, "1.1.1.1/32".parse().unwrap()]
    );
}

#[test]
fn local_pref_from_external_peer_is_discarded() {
    let bytes = hex(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF 003C 02 0000 001C 40010100 400200 40030465016501
         800404000000C8 40050400000064 00000000 2001010101",
    );
    let body = &bytes[19..];
    let UpdateOutcome::AttributeDiscard { update, discarded } = decode_update(body, &four(true)) else {
        panic!("expected attribute discard")
    };
    assert_eq!(update.attributes.local_pref, None);
    assert_eq!(update.nlri.len(), 5);
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0].type_code, attr_type::LOCAL_PREF);
}

#[test]
fn empty_update_is_ipv4_end_of_rib() {
    let bytes = hex("ffffffffffffffffffffffffffffffff 0017 02 0000 0000");
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(u.end_of_rib(), Some(Family::IPV4_UNICAST));
    assert_eq!(
        encode_end_of_rib(Family::IPV4_UNICAST, &four(true))
            .unwrap()
            .to_vec(),
        bytes
    );
}

#[test]
fn empty_mp_unreach_is_ipv6_end_of_rib() {
    let bytes = hex("ffffffffffffffffffffffffffffffff 001d 02 0000 0006 800f03 000201");
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(u.end_of_rib(), Some(Family::IPV6_UNICAST));
    assert_eq!(
        encode_end_of_rib(Family::IPV6_UNICAST, &four(true))
            .unwrap()
            .to_vec(),
        bytes
    );
}

#[test]
fn update_with_prefixes_is_not_end_of_rib() {
    let u = Update {
        withdrawn: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    };
    assert_eq!(u.end_of_rib(), None);
}

/// MP_REACH_NLRI for IPv6 with a global and a link-local next hop (RFC 2545 §3).
const MP_REACH_V6: &str =
    "800e2c 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00
    30 20010db80001";

#[test]
fn ipv6_mp_reach_with_link_local_next_hop_round_trips() {
    let attrs = hex(&format!("{MP_REACH_V6} 40010100 40020602010000fde9"));
    let bytes = update_msg(&[], &attrs, &[]);
    let want = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65001])),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hops: vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()],
                nlri: vec![pfx("2001:db8:1::/48")],
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        Message::decode(&bytes, &four(true)).unwrap(),
        Message::Update(want.clone())
    );
    assert_eq!(Message::Update(want).encode(&four(true)).unwrap().to_vec(), bytes);
}

#[test]
fn ipv6_mp_unreach_round_trips() {
    let bytes = update_msg(&[], &hex("800f0c 0002 01 40 20010db800000001"), &[]);
    let want = Update {
        attributes: PathAttributes {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn: vec![pfx("2001:db8:0:1::/64")],
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        Message::decode(&bytes, &four(true)).unwrap(),
        Message::Update(want.clone())
    );
    assert_eq!(Message::Update(want).encode(&four(true)).unwrap().to_vec(), bytes);
}

#[test]
fn mp_reach_of_a_family_not_negotiated_is_ignored() {
    let attrs = hex(&format!("{MP_REACH_V6} 40010100 40020602010000fde9"));
    let bytes = update_msg(&[], &attrs, &[]);
    let v4_only = SessionOptions {
        families: vec![Family::IPV4_UNICAST],
        ..four(true)
    };
    let Message::Update(u) = Message::decode(&bytes, &v4_only).unwrap() else {
        panic!()
    };
    assert_eq!(u.attributes.mp_reach, None);
}

#[test]
fn withdrawn_routes_decode() {
    let bytes = update_msg(&hex("18 0a0100 10 ac10"), &[], &[]);
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    let want: Vec<ipnet::Ipv4Net> = vec!["10.1.0.0/24".parse().unwrap(), "172.16.0.0/16".parse().unwrap()];
    assert_eq!(u.withdrawn, want);
    assert_eq!(Message::Update(u).encode(&four(true)).unwrap().to_vec(), bytes);
}

/// Every other attribute, in type-code order, over a 4-octet iBGP session.
#[test]
fn every_attribute_round_trips_byte_for_byte() {
    let attrs = hex("40010102                     # ORIGIN incomplete
         4002 10 02020000fde90000fdea 0101000003e8 # AS_PATH seq(65001 65002) set(1000)
         400304 0a000001              # NEXT_HOP 10.0.0.1
         800404 00000064              # MED 100
         400504 000000c8              # LOCAL_PREF 200
         400600                       # ATOMIC_AGGREGATE
         c00708 0000fde9 0a000002     # AGGREGATOR 65001 10.0.0.2
         c00808 fde90001 ffffff01     # COMMUNITIES 65001:1 NO_EXPORT
         800904 0a000003              # ORIGINATOR_ID 10.0.0.3
         800a08 0a000004 0a000005     # CLUSTER_LIST
         c01008 0002fde900000001      # EXTENDED_COMMUNITIES (kept verbatim)
         c0200c 0000fde9 00000001 00000002 # LARGE_COMMUNITIES 65001:1:2
         e0fe04 deadbeef              # unknown optional transitive, Partial");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    let Message::Update(u) = Message::decode(&bytes, &four(false)).unwrap() else {
        panic!()
    };
    let a = &u.attributes;
    assert_eq!(a.origin, Some(Origin::Incomplete));
    assert_eq!(
        a.as_path.as_ref().unwrap().segments,
        vec![
            AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![65001, 65002]
            },
            AsSegment {
                kind: SegmentKind::Set,
                asns: vec![1000]
            },
        ]
    );
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(a.med, Some(100));
    assert_eq!(a.local_pref, Some(200));
    assert!(a.atomic_aggregate);
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 65001,
            address: Ipv4Addr::new(10, 0, 0, 2)
        })
    );
    assert_eq!(a.communities, vec![0xfde9_0001, 0xffff_ff01]);
    assert_eq!(a.originator_id, Some(Ipv4Addr::new(10, 0, 0, 3)));
    assert_eq!(
        a.cluster_list,
        vec![Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 5)]
    );
    assert_eq!(
        a.large_communities,
        vec![LargeCommunity {
            global: 65001,
            local1: 1,
            local2: 2
        }]
    );
    assert_eq!(a.unknown.len(), 2);
    assert_eq!(a.unknown[0].type_code, attr_type::EXTENDED_COMMUNITIES);
    assert_eq!(
        a.unknown[0].flags, 0xc0,
        "a recognised attribute travels without Partial"
    );
    assert_eq!(a.unknown[1].flags, 0xe0);
    assert_eq!(Message::Update(u).encode(&four(false)).unwrap().to_vec(), bytes);
}

#[test]
fn unknown_optional_transitive_attribute_is_passed_on_with_partial() {
    let attrs = hex("40010100 40020602010000fde9 4003040a000001 c0fe04deadbeef");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 0xfe,
            value: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])
        }]
    );
    let out = Message::Update(u).encode(&four(true)).unwrap();
    assert!(
        out.windows(7).any(|w| w == hex("e0fe04deadbeef")),
        "re-encoded with the Partial bit"
    );
}

#[test]
fn unknown_optional_non_transitive_attribute_is_dropped() {
    let attrs = hex("40010100 40020602010000fde9 4003040a000001 80fd04deadbeef");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    let outcome = decode_update(&bytes[19..], &four(true));
    let UpdateOutcome::Ok(u) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(u.attributes.unknown.is_empty());
}

#[test]
fn unknown_well_known_attribute_is_notification_3_2_with_the_attribute() {
    let attrs = hex("40010100 40020602010000fde9 4003040a000001 40fe02abcd");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    assert_eq!(notif_of(&bytes, &four(true)), (3, 2, hex("40fe02abcd")));
}

#[test]
fn attribute_with_extended_length_decodes() {
    // COMMUNITIES with the Extended Length bit and a 2-octet length of 4.
    let attrs = hex("40010100 40020602010000fde9 4003040a000001 d0080004fde90001");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(u.attributes.communities, vec![0xfde9_0001]);
}

// -- 2-octet AS sessions (RFC 6793) ---------------------------------------------------------

#[test]
fn two_octet_session_sends_as_trans_and_as4_path() {
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65001, 4_200_000_000])),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            aggregator: Some(Aggregator {
                asn: 4_200_000_000,
                address: Ipv4Addr::new(10, 0, 0, 9),
            }),
            ..Default::default()
        },
        nlri: vec!["10.1.0.0/24".parse().unwrap()],
        ..Default::default()
    };
    let bytes = Message::Update(u.clone()).encode(&two_octet()).unwrap();
    let attrs = hex("40010100
         400206 0202 fde9 5ba0          # AS_PATH with AS_TRANS
         4003040a000001
         c00706 5ba0 0a000009           # AGGREGATOR with AS_TRANS
         c0110a 0202 0000fde9 fa56ea00  # AS4_PATH
         c01208 fa56ea00 0a000009       # AS4_AGGREGATOR");
    assert_eq!(bytes.to_vec(), update_msg(&[], &attrs, &hex("18 0a0100")));
    // And the 2-octet decoder merges them back.
    assert_eq!(Message::decode(&bytes, &two_octet()).unwrap(), Message::Update(u));
}

#[test]
fn two_octet_session_without_large_ases_sends_no_as4_path() {
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([65001, 65002])),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..Default::default()
        },
        nlri: vec!["10.1.0.0/24".parse().unwrap()],
        ..Default::default()
    };
    let bytes = Message::Update(u).encode(&two_octet()).unwrap();
    let attrs = hex("40010100 400206 0202 fde9 fdea 4003040a000001");
    assert_eq!(bytes.to_vec(), update_msg(&[], &attrs, &hex("18 0a0100")));
}

#[test]
fn as4_path_from_a_four_octet_peer_is_ignored() {
    let attrs = hex("40010100 40020602010000fde9 4003040a000001 c0110602010001d4c0");
    let bytes = update_msg(&[], &attrs, &hex("18 0a0100"));
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    assert_eq!(u.attributes.as_path, Some(AsPath::sequence([65001])));
    assert!(u.attributes.unknown.is_empty());
}

// -- Packing many prefixes ------------------------------------------------------------------

fn shared_attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence([65001, 65002, 65003])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        med: Some(10),
        communities: vec![0xfde9_0001],
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()],
            nlri: vec![],
        }),
        ..Default::default()
    }
}

fn decode_all(msgs: &[Bytes], opts: &SessionOptions) -> (Vec<IpNet>, Vec<IpNet>) {
    let (mut announced, mut withdrawn) = (Vec::new(), Vec::new());
    for m in msgs {
        assert!(m.len() <= opts.max_message_len(), "message of {} octets", m.len());
        assert_eq!(frame_len(m, opts), Ok(Some(m.len())));
        let (Message::Update(u), None) = Message::decode_with_outcome(m, opts).unwrap() else {
            panic!("not a clean UPDATE")
        };
        announced.extend(u.announced_prefixes());
        withdrawn.extend(u.withdrawn_prefixes());
    }
    (announced, withdrawn)
}

fn v4_prefixes(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()))
        .collect()
}

fn v6_prefixes(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            let a = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64));
            IpNet::V6(ipnet::Ipv6Net::new(a, 64).unwrap())
        })
        .collect()
}

#[test]
fn encode_updates_packs_ipv4_prefixes_into_few_full_messages() {
    let opts = four(true);
    let prefixes = v4_prefixes(10_000);
    let msgs = encode_updates(&shared_attrs(), &prefixes, &opts).unwrap();
    let (announced, _) = decode_all(&msgs, &opts);
    assert_eq!(announced, prefixes);
    // 4 octets per /24 and about 60 octets of attributes: ten full messages.
    assert_eq!(msgs.len(), 10);
    // Every message but the last is within one prefix of full.
    for m in &msgs[..msgs.len() - 1] {
        assert!(m.len() > 4096 - 4, "message of {} octets is not full", m.len());
    }
}

#[test]
fn encode_updates_with_extended_messages_uses_bigger_messages() {
    let opts = SessionOptions {
        extended_message: true,
        ..four(true)
    };
    let prefixes = v4_prefixes(40_000);
    let msgs = encode_updates(&shared_attrs(), &prefixes, &opts).unwrap();
    assert!(msgs.len() <= 3, "{} messages", msgs.len());
    assert!(msgs[0].len() > 60_000);
    assert_eq!(decode_all(&msgs, &opts).0, prefixes);
}

#[test]
fn encode_updates_packs_ipv6_into_mp_reach() {
    let opts = four(true);
    let mut prefixes = v6_prefixes(3_000);
    prefixes.extend(v4_prefixes(100));
    let msgs = encode_updates(&shared_attrs(), &prefixes, &opts).unwrap();
    let (announced, _) = decode_all(&msgs, &opts);
    assert_eq!(announced.len(), prefixes.len());
    assert!(announced.iter().all(|p| prefixes.contains(p)));
    for m in &msgs {
        let Message::Update(u) = Message::decode(m, &opts).unwrap() else {
            panic!()
        };
        if let Some(r) = &u.attributes.mp_reach {
            let want: Vec<IpAddr> = vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()];
            assert_eq!(r.next_hops, want);
            assert_eq!(u.attributes.next_hop, None, "no NEXT_HOP in MP-only UPDATEs");
            assert_eq!(u.attributes.communities, vec![0xfde9_0001]);
        }
    }
    // 9 octets per /64: about 450 per message.
    assert!(msgs.len() <= 3_000 / 440 + 2, "{} messages", msgs.len());
}

#[test]
fn encode_withdrawals_packs_both_families() {
    let opts = four(true);
    let mut prefixes = v4_prefixes(5_000);
    prefixes.extend(v6_prefixes(2_000));
    let msgs = encode_withdrawals(&prefixes, &opts).unwrap();
    let (announced, withdrawn) = decode_all(&msgs, &opts);
    assert!(announced.is_empty());
    assert_eq!(withdrawn, prefixes);
    assert!(
        msgs.len() <= 5_000 * 4 / 4070 + 2_000 * 9 / 4060 + 2,
        "{} messages",
        msgs.len()
    );
}

#[test]
fn encode_updates_without_a_next_hop_is_an_error() {
    let attrs = PathAttributes {
        next_hop: None,
        mp_reach: None,
        ..shared_attrs()
    };
    assert_eq!(
        encode_updates(&attrs, &v4_prefixes(1), &four(true)),
        Err(EncodeError::MissingNextHop {
            family: Family::IPV4_UNICAST
        })
    );
    assert_eq!(
        encode_updates(&attrs, &v6_prefixes(1), &four(true)),
        Err(EncodeError::MissingNextHop {
            family: Family::IPV6_UNICAST
        })
    );
}

#[test]
fn encode_updates_with_no_prefixes_sends_nothing() {
    assert!(
        encode_updates(&shared_attrs(), &[], &four(true))
            .unwrap()
            .is_empty()
    );
    assert!(encode_withdrawals(&[], &four(true)).unwrap().is_empty());
}

#[test]
fn oversized_update_is_an_encode_error_not_a_corrupt_message() {
    let u = Update {
        nlri: v4_prefixes(2_000)
            .into_iter()
            .map(|p| match p {
                IpNet::V4(p) => p,
                IpNet::V6(_) => unreachable!(),
            })
            .collect(),
        ..Default::default()
    };
    assert!(matches!(
        Message::Update(u).encode(&four(true)),
        Err(EncodeError::TooLarge { .. })
    ));
}

#[test]
fn unknown_attributes_are_kept_in_type_code_order() {
    // Found by fuzzing: a peer sending 0x7f before 0x2c re-encoded in the other order, so
    // decode(encode(x)) differed from x.
    let attrs = hex("e07f00 e02c00");
    let bytes = update_msg(&[], &attrs, &[]);
    let Message::Update(u) = Message::decode(&bytes, &four(true)).unwrap() else {
        panic!()
    };
    let codes: Vec<u8> = u.attributes.unknown.iter().map(|a| a.type_code).collect();
    assert_eq!(codes, vec![0x2c, 0x7f]);
}

/// holo-bgp tests/packet/update.rs UPDATE2: every classic field and attribute at once, over a
/// 4-octet iBGP session, with Extended Length set on several short attributes.
#[test]
fn holo_update2_with_every_field_decodes() {
    let bytes = hex("ffffffffffffffffffffffffffffffff 0129 02
         0008 180a0001 180a0002   # withdrawn
         0100                     # attribute length
         900e0047 0002 01 20 30000000000000000000000000000001
                  fe800000000000004207bd19111c8411 00
                  80 20010db8000100000000000000000001 80 20010db8000100000000000000000002
         900f0025 0002 01 80 20010db8000200000000000000000001 80 20010db8000200000000000000000002
         40010100
         5002000e 0203 00000001 00000002 00000003
         40030401010101
         800404000001f4
         400504000001f4
         400600
         c00708000003e802020202
         d008000c 00000001 00000002 00000003
         80090401010101
         900a000403030303
         d01000080000000100000001
         d0190014 20010db8000000000000000000000001 00000001
         d020000c 000000010000000000000001
         200a00ff01 200a00ff02    # NLRI");
    let opts = four(false);
    let Message::Update(u) = Message::decode(&bytes, &opts).unwrap() else {
        panic!()
    };
    let v4 = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    assert_eq!(u.withdrawn, vec![v4("10.0.1.0/24"), v4("10.0.2.0/24")]);
    assert_eq!(u.nlri, vec![v4("10.0.255.1/32"), v4("10.0.255.2/32")]);
    let a = &u.attributes;
    let reach = a.mp_reach.as_ref().unwrap();
    let hops: Vec<IpAddr> = vec![
        "3000::1".parse().unwrap(),
        "fe80::4207:bd19:111c:8411".parse().unwrap(),
    ];
    assert_eq!(reach.next_hops, hops);
    assert_eq!(
        reach.nlri,
        vec![pfx("2001:db8:1::1/128"), pfx("2001:db8:1::2/128")]
    );
    let unreach = a.mp_unreach.as_ref().unwrap();
    assert_eq!(
        unreach.withdrawn,
        vec![pfx("2001:db8:2::1/128"), pfx("2001:db8:2::2/128")]
    );
    assert_eq!(a.as_path, Some(AsPath::sequence([1, 2, 3])));
    assert_eq!((a.med, a.local_pref), (Some(500), Some(500)));
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 1000,
            address: Ipv4Addr::new(2, 2, 2, 2)
        })
    );
    assert_eq!(a.communities, vec![1, 2, 3]);
    assert_eq!(a.originator_id, Some(Ipv4Addr::new(1, 1, 1, 1)));
    assert_eq!(a.cluster_list, vec![Ipv4Addr::new(3, 3, 3, 3)]);
    assert_eq!(
        a.large_communities,
        vec![LargeCommunity {
            global: 1,
            local1: 0,
            local2: 1
        }]
    );
    let codes: Vec<(u8, u8)> = a.unknown.iter().map(|r| (r.type_code, r.flags)).collect();
    assert_eq!(codes, vec![(16, 0xc0), (25, 0xc0)]);
    let again = Message::Update(u.clone()).encode(&opts).unwrap();
    assert!(
        again.len() < bytes.len(),
        "short attributes lose their Extended Length"
    );
    assert_eq!(Message::decode(&again, &opts).unwrap(), Message::Update(u));
}

/// Decodes `raw` (ExaBGP's `N:raw:` line, colons allowed) and checks that encoding the decoded
/// value gives the same bytes.
fn exabgp_round_trip(raw: &str, opts: &SessionOptions) -> Update {
    let bytes = hex(raw);
    let Message::Update(u) = Message::decode(&bytes, opts).unwrap() else {
        panic!()
    };
    assert_eq!(
        Message::Update(u.clone()).encode(opts).unwrap().to_vec(),
        bytes,
        "{raw}"
    );
    u
}

/// ExaBGP qa/encoding/conf-largecommunity.ci (iBGP, 4-octet AS).
#[test]
fn exabgp_large_community_update_round_trips_byte_for_byte() {
    let u = exabgp_round_trip(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:004C:02:0000003040010100400200400304C000020140050400000064
         C0201800000B62000000000000029A00000B6200000CF80000007B200808080A",
        &four(false),
    );
    assert_eq!(u.attributes.local_pref, Some(100));
    assert_eq!(
        u.attributes.large_communities,
        vec![
            LargeCommunity {
                global: 2914,
                local1: 0,
                local2: 666
            },
            LargeCommunity {
                global: 2914,
                local1: 3320,
                local2: 123
            },
        ]
    );
    assert_eq!(u.nlri, vec!["8.8.8.10/32".parse().unwrap()]);
}

/// ExaBGP qa/encoding/conf-no-asn4.ci: a 2-octet AS session (AS_PATH [100]).
#[test]
fn exabgp_two_octet_update_round_trips_byte_for_byte() {
    let u = exabgp_round_trip(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:0034:02:0000001940010100400204020100644003040A00FFFE4005040000
         0064180A0001",
        &SessionOptions {
            four_octet_as: false,
            ..four(false)
        },
    );
    assert_eq!(u.attributes.as_path, Some(AsPath::sequence([100])));
    assert_eq!(u.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 255, 254)));
}

/// ExaBGP qa/encoding/conf-new-v6.ci: IPv6 unicast in MP_REACH_NLRI (first, RFC 7606 §5.1),
/// with LOCAL_PREF and communities; and ExaBGP's IPv6 End-of-RIB, which sets Extended Length.
#[test]
fn exabgp_ipv6_update_round_trips_byte_for_byte() {
    let u = exabgp_round_trip(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:0059:02:00000042800E26000201102A020B80000000020000000000000001
         00802A020B8000000001000000000000000140010100400200400504000000C8C008087814000078147814",
        &four(false),
    );
    let reach = u.attributes.mp_reach.as_ref().unwrap();
    assert_eq!(
        reach.next_hops,
        vec!["2a02:b80:0:2::1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(reach.nlri, vec![pfx("2a02:b80:0:1::1/128")]);
    assert_eq!(u.attributes.communities, vec![0x7814_0000, 0x7814_7814]);
    let eor = hex("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:001E:02:00000007900F0003000201");
    let Message::Update(e) = Message::decode(&eor, &four(false)).unwrap() else {
        panic!()
    };
    assert_eq!(e.end_of_rib(), Some(Family::IPV6_UNICAST));
}

#[test]
fn a_peer_without_multiprotocol_capabilities_gets_ipv4_unicast_only() {
    let old = Open {
        capabilities: vec![Capability::RouteRefresh],
        ..open_value()
    };
    let o = SessionOptions::negotiate(&open_value(), &old, true);
    assert_eq!(o.families, vec![Family::IPV4_UNICAST], "RFC 4760 §8");
    assert!(!o.four_octet_as, "a 2-octet peer");
    assert_eq!(o.max_message_len(), 4096);
}
