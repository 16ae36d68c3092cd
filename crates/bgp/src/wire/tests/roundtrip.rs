//! Property tests: encode then decode gives back the value, for every message type, over
//! 2- and 4-octet AS sessions; and decoding arbitrary bytes never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::wire::*;

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(a, s)| Family::new(a, s)),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        Just(Capability::EnhancedRouteRefresh),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..0x1000,
            vec((family(), any::<bool>()), 0..8)
        )
            .prop_map(|(restarting, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families,
                })
            }),
        (any::<u8>(), vec(any::<u8>(), 0..40))
            .prop_filter("known codes decode to their own variants", |(c, _)| {
                !matches!(c, 1 | 2 | 6 | 64 | 65 | 70)
            })
            .prop_map(|(code, v)| Capability::Unknown {
                code,
                value: Bytes::from(v)
            }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (any::<u16>(), any::<u16>(), 1u32.., vec(capability(), 0..40)).prop_map(
        |(my_as, hold, id, capabilities)| Open {
            version: 4,
            my_as,
            hold_time: if hold == 1 || hold == 2 { 0 } else { hold },
            router_id: Ipv4Addr::from(id),
            capabilities,
        },
    )
}

fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn v6net() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

fn host_v4() -> impl Strategy<Value = Ipv4Addr> {
    // Next hops that are not martian.
    (1u8..=223, any::<[u8; 3]>()).prop_filter_map("not loopback", |(a, rest)| {
        (a != 127).then(|| Ipv4Addr::new(a, rest[0], rest[1], rest[2]))
    })
}

fn segment(four_octet_only: bool) -> impl Strategy<Value = AsSegment> {
    let asn = if four_octet_only {
        (1u32..).boxed()
    } else {
        prop_oneof![1u32..65536, 1u32..].boxed()
    };
    (
        prop_oneof![Just(SegmentKind::Sequence), Just(SegmentKind::Set)],
        vec(asn, 1..12),
    )
        .prop_map(|(kind, asns)| AsSegment { kind, asns })
}

/// AS paths as the decoder produces them: confederation segments only in front, and no two
/// AS_SEQUENCEs in a row (a 2-octet decoder rebuilding from AS4_PATH joins them).
fn as_path() -> impl Strategy<Value = AsPath> {
    (
        vec(segment(false), 0..5),
        proptest::option::of(vec(1u32..65536, 1..4)),
    )
        .prop_map(|(segs, confed)| {
            let mut segments: Vec<AsSegment> = Vec::new();
            if let Some(asns) = confed {
                segments.push(AsSegment {
                    kind: SegmentKind::ConfedSequence,
                    asns,
                });
            }
            for s in segs {
                match segments.last_mut() {
                    Some(last) if last.kind == SegmentKind::Sequence && s.kind == SegmentKind::Sequence => {
                        last.asns.extend(s.asns)
                    }
                    _ => segments.push(s),
                }
            }
            AsPath { segments }
        })
}

fn unknown_attrs() -> impl Strategy<Value = Vec<RawAttribute>> {
    proptest::collection::btree_map(
        (19u8..=254).prop_filter("recognised codes", |c| !matches!(c, 25 | 32 | 35)),
        vec(any::<u8>(), 0..300),
        0..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(type_code, v)| RawAttribute {
                flags: 0xe0,
                type_code,
                value: Bytes::from(v),
            })
            .collect()
    })
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (host_v4(), vec(v4net(), 1..20)).prop_map(|(nh, nlri)| MpReach {
            family: Family::IPV4_UNICAST,
            next_hops: vec![IpAddr::V4(nh)],
            nlri: nlri.into_iter().map(IpNet::V4).collect(),
        }),
        (
            any::<u128>(),
            proptest::option::of(any::<u128>()),
            vec(v6net(), 1..20)
        )
            .prop_map(|(g, ll, nlri)| {
                let mut next_hops = vec![IpAddr::V6(Ipv6Addr::from(g))];
                next_hops.extend(ll.map(|l| IpAddr::V6(Ipv6Addr::from(l))));
                MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hops,
                    nlri,
                }
            }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        vec(v4net(), 0..20).prop_map(|w| MpUnreach {
            family: Family::IPV4_UNICAST,
            withdrawn: w.into_iter().map(IpNet::V4).collect()
        }),
        vec(v6net(), 0..20).prop_map(|withdrawn| MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn
        }),
    ]
}

prop_compose! {
    fn attributes()(
        origin in proptest::option::of(prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)]),
        as_path in proptest::option::of(as_path()),
        next_hop in proptest::option::of(host_v4()),
        med in proptest::option::of(any::<u32>()),
        local_pref in proptest::option::of(any::<u32>()),
        atomic_aggregate in any::<bool>(),
        aggregator in proptest::option::of((prop_oneof![1u32..65536, 1u32..], any::<u32>())),
        communities in vec(any::<u32>(), 0..10),
        large in vec(any::<(u32, u32, u32)>(), 0..5),
        originator_id in proptest::option::of(any::<u32>()),
        cluster_list in vec(any::<u32>(), 0..5),
        mp_reach in proptest::option::of(mp_reach()),
        mp_unreach in proptest::option::of(mp_unreach()),
        unknown in unknown_attrs(),
    ) -> PathAttributes {
        PathAttributes {
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            atomic_aggregate,
            aggregator: aggregator.map(|(asn, a)| Aggregator { asn, address: Ipv4Addr::from(a) }),
            communities,
            large_communities: large.into_iter().map(|(global, local1, local2)| LargeCommunity { global, local1, local2 }).collect(),
            originator_id: originator_id.map(Ipv4Addr::from),
            cluster_list: cluster_list.into_iter().map(Ipv4Addr::from).collect(),
            mp_reach,
            mp_unreach,
            unknown,
        }
    }
}

fn update() -> impl Strategy<Value = Update> {
    (vec(v4net(), 0..30), attributes(), vec(v4net(), 0..30)).prop_map(|(withdrawn, mut attributes, nlri)| {
        // A well-formed UPDATE carries the mandatory attributes whenever it announces.
        let reach = !nlri.is_empty() || attributes.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
        if reach {
            attributes.origin.get_or_insert(Origin::Igp);
            attributes.as_path.get_or_insert_with(AsPath::default);
        }
        if !nlri.is_empty() {
            attributes.next_hop.get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
        }
        Update {
            withdrawn,
            attributes,
            nlri,
        }
    })
}

fn notification() -> impl Strategy<Value = Notification> {
    (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..200)).prop_map(|(code, subcode, d)| Notification {
        code,
        subcode,
        data: Bytes::from(d),
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update().prop_map(Message::Update),
        notification().prop_map(Message::Notification),
        Just(Message::Keepalive),
        (family(), any::<u8>())
            .prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]
}

/// An internal peer (LOCAL_PREF, confederation segments allowed) with every family and
/// extended messages, 2- or 4-octet AS numbers.
fn opts(four_octet_as: bool) -> SessionOptions {
    SessionOptions {
        four_octet_as,
        extended_message: true,
        ..SessionOptions::modern(false)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips_over_4_octet_sessions(m in message()) {
        let o = opts(true);
        let bytes = m.encode(&o).unwrap();
        prop_assert_eq!(frame_len(&bytes, &o), Ok(Some(bytes.len())));
        let (back, treatment) = Message::decode_with_outcome(&bytes, &o).unwrap();
        prop_assert_eq!(treatment, None);
        prop_assert_eq!(back, m);
    }

    #[test]
    fn every_message_round_trips_over_2_octet_sessions(m in message()) {
        let o = opts(false);
        let bytes = m.encode(&o).unwrap();
        let back = Message::decode(&bytes, &o).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn packed_updates_carry_every_prefix_once(
        attrs in attributes(),
        v4 in vec(v4net(), 0..600),
        v6 in vec(v6net(), 0..300),
        extended in any::<bool>(),
    ) {
        let o = SessionOptions { extended_message: extended, ..opts(true) };
        let mut attrs = attrs;
        attrs.origin.get_or_insert(Origin::Igp);
        attrs.as_path.get_or_insert_with(AsPath::default);
        attrs.next_hop.get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
        attrs.mp_reach = Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["2001:db8::1".parse().unwrap()],
            nlri: vec![],
        });
        attrs.mp_unreach = None;
        let prefixes: Vec<IpNet> = v4.into_iter().map(IpNet::V4).chain(v6).collect();
        let msgs = encode_updates(&attrs, &prefixes, &o).unwrap();
        let mut got = Vec::new();
        for m in &msgs {
            prop_assert!(m.len() <= o.max_message_len());
            let Message::Update(u) = Message::decode(m, &o).unwrap() else { panic!("not an UPDATE") };
            got.extend(u.announced_prefixes());
        }
        let mut want = prefixes.clone();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);

        let msgs = encode_withdrawals(&prefixes, &o).unwrap();
        let mut got = Vec::new();
        for m in &msgs {
            let Message::Update(u) = Message::decode(m, &o).unwrap() else { panic!("not an UPDATE") };
            got.extend(u.withdrawn_prefixes());
        }
        got.sort();
        let mut want = prefixes;
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(body in vec(any::<u8>(), 0..600), kind in 1u8..=5, four in any::<bool>(), ebgp in any::<bool>()) {
        let mut frame = vec![0xff; 16];
        frame.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        frame.push(kind);
        frame.extend_from_slice(&body);
        let o = SessionOptions { four_octet_as: four, ..SessionOptions::modern(ebgp) };
        let _ = Message::decode(&frame, &o);
        let _ = decode_update(&body, &o);
    }
}
