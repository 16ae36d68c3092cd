use super::*;

#[test]
fn ebgp_route_with_our_as_in_path_is_rejected() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(
        a,
        announce(attrs(&[65002, 65001, 65009], "10.0.0.2"), &["10.9.0.0/24"]),
        None,
    );
    assert!(rib.is_empty());
    assert_eq!(rib.counters(a), v4_counters(1, 0, 0));
    assert_eq!(
        reasons(&rib),
        vec![(net("10.9.0.0/24"), a, RejectReason::AsPathLoop)]
    );
}

#[test]
fn reflected_route_with_our_originator_id_or_cluster_id_is_rejected() {
    let mut rib = Rib::new(RibConfig {
        cluster_id: Some(Ipv4Addr::new(9, 9, 9, 9)),
        ..rib().config().clone()
    });
    let a = up(&mut rib, "10.0.0.2", 65001, 2);
    let mut x = attrs(&[], "10.0.0.2");
    x.originator_id = Some(R1);
    rib.apply_update(a, announce(x, &["10.9.0.0/24"]), None);
    let mut y = attrs(&[], "10.0.0.2");
    y.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9)];
    rib.apply_update(a, announce(y, &["10.8.0.0/24"]), None);
    assert!(rib.is_empty());
    assert_eq!(
        reasons(&rib),
        vec![
            (net("10.8.0.0/24"), a, RejectReason::ClusterListLoop),
            (net("10.9.0.0/24"), a, RejectReason::OriginatorIdLoop),
        ]
    );
}

#[test]
fn import_filter_rejects_and_a_later_rejection_withdraws() {
    let mut rib = rib();
    let mut pol = policy("10.0.0.2", 65002);
    pol.import = PrefixFilter::new(&[crate::config::PrefixRule {
        prefix: net("10.0.0.0/8"),
        ge: Some(24),
        le: Some(24),
        action: crate::config::FilterAction::Accept,
    }]);
    let a = rib.add_peer(pol);
    rib.peer_up(a, session(2));
    rib.apply_update(
        a,
        announce(
            attrs(&[65002], "10.0.0.2"),
            &["10.9.0.0/24", "10.9.0.0/16", "192.168.0.0/24"],
        ),
        None,
    );
    assert_eq!(rib.len(), 1);
    assert_eq!(rib.counters(a), v4_counters(3, 1, 0));
    assert_eq!(
        reasons(&rib),
        vec![
            (net("10.9.0.0/16"), a, RejectReason::ImportFilter),
            (net("192.168.0.0/24"), a, RejectReason::ImportFilter),
        ]
    );
}

#[test]
fn a_rejected_route_keeps_its_latest_reason_until_accepted_or_withdrawn() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(
        a,
        announce(attrs(&[65002, 65001], "10.0.0.2"), &["10.9.0.0/24"]),
        None,
    );
    rib.apply_update(
        b,
        announce(attrs(&[65003, 65001], "10.0.0.3"), &["10.9.0.0/24"]),
        None,
    );
    assert_eq!(
        reasons(&rib),
        vec![
            (net("10.9.0.0/24"), a, RejectReason::AsPathLoop),
            (net("10.9.0.0/24"), b, RejectReason::AsPathLoop),
        ]
    );
    let mut no_hop = attrs(&[65002], "10.0.0.2");
    no_hop.next_hop = None;
    rib.apply_update(a, announce(no_hop, &["10.9.0.0/24"]), None);
    assert_eq!(reasons(&rib)[0], (net("10.9.0.0/24"), a, RejectReason::NoNextHop));
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(a));
    assert_eq!(
        reasons(&rib),
        vec![(net("10.9.0.0/24"), b, RejectReason::AsPathLoop)]
    );
    // Withdrawing a rejected route forgets it: it is no longer received.
    rib.apply_update(b, withdraw(&["10.9.0.0/24"]), None);
    assert_eq!(reasons(&rib), vec![]);
    assert_eq!(rib.counters(b).received, 0);
}

#[test]
fn max_prefixes_exceeded_is_reported() {
    let mut rib = rib();
    let mut pol = policy("10.0.0.2", 65002);
    pol.max_prefixes = Some(2);
    let a = rib.add_peer(pol);
    rib.peer_up(a, session(2));
    let o = rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24", "10.9.1.0/24"]),
        None,
    );
    assert!(!o.max_prefixes_exceeded);
    let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.2.0/24"]), None);
    assert!(o.max_prefixes_exceeded);
}

#[test]
fn treat_as_withdraw_removes_the_peers_earlier_route() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]),
        Some(Action::TreatAsWithdraw),
    );
    assert!(rib.is_empty());
    assert_eq!(rib.counters(a).received, 0);
}

/// RFC 7606 §2 and RFC 4724 §2: an UPDATE treated as withdraw is never an End-of-RIB, even
/// when it named no prefix and every attribute it had was malformed (so it decodes as an
/// empty UPDATE).
#[test]
fn treat_as_withdraw_update_naming_no_prefix_keeps_a_restarting_peers_stale_routes() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.peer_down(a, true);
    let gr = SessionInfo {
        graceful_restart: true,
        preserved_families: vec![Family::IPV4_UNICAST],
        ..session(2)
    };
    rib.peer_up(a, gr);
    assert!(rib.has_stale(a));

    // Header, no withdrawn routes, one ORIGIN attribute with the undefined value 7, no NLRI.
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&[0, 27, 2, 0, 0, 0, 4, 0x40, 1, 1, 7]);
    let opts = crate::wire::SessionOptions::default();
    let (m, treatment) = crate::wire::Message::decode_with_outcome(&frame, &opts).unwrap();
    let crate::wire::Message::Update(u) = m else {
        panic!("not an UPDATE: {m:?}")
    };
    assert_eq!(u, Update::default(), "decodes as the End-of-RIB shape");
    assert_eq!(treatment.map(|t| t.action), Some(Action::TreatAsWithdraw));

    let o = rib.apply_update(a, u, Some(Action::TreatAsWithdraw));
    assert_eq!(o.end_of_rib, None);
    assert!(rib.has_stale(a), "stale routes must wait for the real End-of-RIB");
    assert!(rib.best(&net("10.9.0.0/24")).is_some());
    assert_eq!(rib.counters(a).treated_as_withdraw, 1);
    assert_eq!(rib.counters(a).attribute_discards, 0);
}

#[test]
fn route_with_our_own_address_as_next_hop_is_ignored_and_withdraws_the_earlier_one() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert_eq!(o.own_next_hop, None);
    assert!(rib.best(&net("10.9.0.0/24")).is_some());
    // session(2) puts us at 10.0.0.1.
    let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.1"), &["10.9.0.0/24"]), None);
    assert_eq!(o.own_next_hop, Some("10.0.0.1".parse().unwrap()));
    assert!(rib.best(&net("10.9.0.0/24")).is_none());
    assert_eq!(rib.counters(a).own_next_hop, 1);
    assert_eq!(
        rib.counters(a).received,
        0,
        "an ignored route is not counted as rejected"
    );

    let v6 = |nh: &str| Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(seq(&[65002])),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hops: vec![nh.parse().unwrap()],
                nlri: vec![net("2001:db8:9::/48")],
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = session(2);
    s.local_alt_address = Some("2001:db8::1".parse().unwrap());
    rib.peer_up(a, s);
    rib.apply_update(a, v6("2001:db8::2"), None);
    assert!(rib.best(&net("2001:db8:9::/48")).is_some());
    let o = rib.apply_update(a, v6("2001:db8::1"), None);
    assert_eq!(o.own_next_hop, Some("2001:db8::1".parse().unwrap()));
    assert!(rib.best(&net("2001:db8:9::/48")).is_none());
    assert_eq!(rib.counters(a).own_next_hop, 2);
}

#[test]
fn ipv6_routes_from_mp_reach_keep_global_and_link_local_next_hops() {
    let mut rib = rib();
    let a = up(&mut rib, "fd00::2", 65002, 2);
    let mut x = attrs(&[65002], "0.0.0.0");
    x.next_hop = None;
    x.mp_reach = Some(MpReach {
        family: Family::IPV6_UNICAST,
        next_hops: vec!["fd00::2".parse().unwrap(), "fe80::2".parse().unwrap()],
        nlri: vec![net("fd00:9::/64")],
    });
    rib.apply_update(
        a,
        Update {
            attributes: x,
            ..Default::default()
        },
        None,
    );
    let best = rib.best(&net("fd00:9::/64")).unwrap();
    assert_eq!(best.next_hops, vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    assert_eq!(best.attrs.link_local, Some("fe80::2".parse().unwrap()));
    let mp_withdraw = Update {
        attributes: PathAttributes {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn: vec![net("fd00:9::/64")],
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    rib.apply_update(a, mp_withdraw, None);
    assert!(rib.is_empty());
}

#[test]
fn prefix_counters_are_kept_per_family() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let mut x = attrs(&[65002], "10.0.0.2");
    x.mp_reach = Some(MpReach {
        family: Family::IPV6_UNICAST,
        next_hops: vec!["fd00::2".parse().unwrap()],
        nlri: vec![net("fd00:9::/64"), net("fd00:8::/64")],
    });
    rib.apply_update(a, announce(x, &["10.2.0.0/24"]), None);
    let c = rib.counters(a);
    assert_eq!((c.received, c.accepted), (3, 3));
    assert_eq!(PeerCounters::FAMILIES[1], Family::IPV6_UNICAST);
    assert_eq!((c.families[0].received, c.families[0].accepted), (1, 1));
    assert_eq!((c.families[1].received, c.families[1].accepted), (2, 2));
    rib.apply_update(a, withdraw(&["10.2.0.0/24"]), None);
    let c = rib.counters(a);
    assert_eq!((c.families[0].accepted, c.families[1].accepted), (0, 2));
}
