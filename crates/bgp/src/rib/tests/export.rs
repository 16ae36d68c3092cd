use super::*;

#[test]
fn ebgp_export_prepends_our_as_sets_next_hop_self_and_strips_local_pref_and_med() {
    let mut rib = rib();
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    sent(&mut rib, e);
    let mut x = attrs(&[65009], "10.0.0.9");
    x.local_pref = Some(300);
    x.med = Some(7);
    rib.apply_update(i, announce(x, &["10.9.0.0/24"]), None);
    let u = sent(&mut rib, e);
    assert_eq!(u.len(), 1);
    let a = &u[0].attributes;
    assert_eq!(a.as_path, Some(seq(&[65001, 65009])));
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(a.local_pref, None);
    assert_eq!(a.med, None);
    assert_eq!(rib.counters(e).advertised, 1);
    // Nothing goes back to the peer the route came from, and iBGP is not re-advertised to iBGP.
    assert_eq!(nlri_count(&sent(&mut rib, i)), 0);
}

#[test]
fn ibgp_export_keeps_next_hop_unless_next_hop_self() {
    let mut rib = rib();
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    sent(&mut rib, i);
    rib.apply_update(e, announce(attrs(&[65003], "10.0.0.3"), &["10.9.0.0/24"]), None);
    let u = sent(&mut rib, i);
    assert_eq!(u[0].attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 3)));
    assert_eq!(u[0].attributes.local_pref, Some(100));
    assert_eq!(u[0].attributes.as_path, Some(seq(&[65003])));
    let mut pol = policy("10.0.0.2", 65001);
    pol.next_hop_self = true;
    rib.set_policy(i, pol);
    let u = sent(&mut rib, i);
    assert_eq!(u[0].attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn originated_prefix_goes_to_ebgp_with_our_as_and_to_ibgp_with_empty_path() {
    let mut rib = rib();
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    rib.originate(&net("10.244.1.0/24").into());
    rib.originate(&net("fd00:244::/64").into());
    assert_eq!(rib.originated().len(), 2);
    let u = sent(&mut rib, e);
    assert_eq!(nlri_count(&u), 2);
    let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
    assert_eq!(v4.attributes.as_path, Some(seq(&[65001])));
    assert_eq!(v4.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    let v6 = u.iter().find(|u| u.attributes.mp_reach.is_some()).unwrap();
    // An IPv4 session carries IPv6 routes with an IPv4-mapped next hop.
    let nh: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(v6.attributes.mp_reach.as_ref().unwrap().next_hops, vec![nh]);
    let u = sent(&mut rib, i);
    let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
    assert_eq!(v4.attributes.as_path, Some(AsPath::default()));
    assert_eq!(v4.attributes.local_pref, Some(100));
    // Local routes are not reported for the kernel.
    assert!(rib.take_changes().iter().all(|c| c.next_hops.is_empty()));
    rib.withdraw_local(net("10.244.1.0/24"));
    let u = sent(&mut rib, e);
    assert_eq!(u[0].withdrawn, vec!["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]);
}

#[test]
fn originated_prefix_carries_its_communities_in_the_encoded_update() {
    let mut rib = rib();
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let route = Originate {
        prefix: net("10.244.1.0/24"),
        communities: vec![65001 << 16 | 100],
        large_communities: vec![LargeCommunity {
            global: 65001,
            local1: 1,
            local2: 2,
        }],
        peers: vec![],
    };
    rib.originate(&route);
    let diff = rib.take_diff(e, false);
    let (msgs, errors) = diff.encode(&wire_options(&rib, e));
    assert_eq!((msgs.len(), errors), (1, vec![]));
    let has = |needle: &[u8]| msgs[0].windows(needle.len()).any(|w| w == needle);
    // COMMUNITIES (optional transitive, type 8): 65001:100.
    assert!(has(&[0xC0, 8, 4, 0xFD, 0xE9, 0, 100]), "{:02x?}", &msgs[0][..]);
    // LARGE_COMMUNITY (optional transitive, type 32): 65001:1:2.
    assert!(
        has(&[0xC0, 32, 12, 0, 0, 0xFD, 0xE9, 0, 0, 0, 1, 0, 0, 0, 2]),
        "{:02x?}",
        &msgs[0][..]
    );
    let u = on_the_wire(&rib, e, &diff);
    assert_eq!(u[0].attributes.communities, route.communities);
    assert_eq!(u[0].attributes.large_communities, route.large_communities);

    // Other communities for the same prefix replace the route; NO_EXPORT keeps it in the AS.
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    sent(&mut rib, i);
    rib.originate(&Originate {
        communities: vec![NO_EXPORT],
        large_communities: vec![],
        ..route.clone()
    });
    assert_eq!(rib.originated(), vec![net("10.244.1.0/24")]);
    assert_eq!(
        sent(&mut rib, e)[0].withdrawn,
        vec!["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(sent(&mut rib, i)[0].attributes.communities, vec![NO_EXPORT]);
}

#[test]
fn an_originated_prefix_naming_peers_goes_to_those_only_and_follows_changes_to_the_list() {
    let mut rib = rib();
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let f = up(&mut rib, "10.0.0.4", 65004, 4);
    sent(&mut rib, e);
    sent(&mut rib, f);
    let mut route = Originate::from(net("10.96.0.0/24"));
    route.peers = vec!["10.0.0.3".parse().unwrap()];
    rib.originate(&route);
    rib.originate(&net("10.244.1.0/24").into());
    assert_eq!(nlri_count(&sent(&mut rib, e)), 2);
    assert_eq!(
        nlri_count(&sent(&mut rib, f)),
        1,
        "only the prefix for every peer"
    );
    // The same attributes to the other peer: a withdrawal there, an announcement here.
    route.peers = vec!["10.0.0.4".parse().unwrap()];
    rib.originate(&route);
    assert_eq!(
        sent(&mut rib, e)[0].withdrawn,
        vec!["10.96.0.0/24".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(
        sent(&mut rib, f)[0].nlri,
        vec!["10.96.0.0/24".parse::<Ipv4Net>().unwrap()]
    );
    // No list: every peer; withdrawn: none.
    route.peers = vec![];
    rib.originate(&route);
    assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
    assert!(sent(&mut rib, f).is_empty());
    rib.withdraw_local(route.prefix);
    assert_eq!(sent(&mut rib, e)[0].withdrawn.len(), 1);
    assert_eq!(sent(&mut rib, f)[0].withdrawn.len(), 1);
}

#[test]
fn ipv6_route_over_ipv4_session_uses_the_interfaces_ipv6_address_as_next_hop() {
    let mut rib = rib();
    let e = rib.add_peer(policy("10.0.0.3", 65003));
    let alt: IpAddr = "fd00:12::2".parse().unwrap();
    rib.peer_up(
        e,
        SessionInfo {
            local_alt_address: Some(alt),
            ..session(3)
        },
    );
    rib.originate(&net("fd00:2::/64").into());
    rib.originate(&net("10.2.0.0/24").into());
    let u = sent(&mut rib, e);
    let v6 = u.iter().find_map(|u| u.attributes.mp_reach.as_ref()).unwrap();
    assert_eq!(v6.next_hops, vec![alt]);
    let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
    assert_eq!(v4.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn many_prefixes_with_one_attribute_set_are_packed_into_few_updates_within_the_size_limit() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let prefixes: Vec<String> = (0..2000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &refs), None);
    let u = sent(&mut rib, e);
    assert_eq!(nlri_count(&u), 2000);
    // 2000 × 4 bytes in 4096-byte messages (`sent` checks each fits): 2 or 3 UPDATEs, not 2000.
    assert!(u.len() <= 3, "{} updates", u.len());
    rib.apply_update(a, withdraw(&refs), None);
    let u = sent(&mut rib, e);
    assert_eq!(u.iter().map(|u| u.withdrawn.len()).sum::<usize>(), 2000);
    assert!(u.len() <= 3);
    assert_eq!(rib.counters(e).advertised, 0);
}

#[test]
fn the_diff_groups_announcements_by_shared_attributes_and_family() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.4", 65004, 4);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    sent(&mut rib, e);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.1.0/24", "10.9.0.0/24"]),
        None,
    );
    rib.apply_update(b, announce(attrs(&[65004], "10.0.0.4"), &["10.8.0.0/24"]), None);
    rib.originate(&net("fd00:1::/64").into());
    let diff = rib.take_diff(e, false);
    let groups: Vec<(Vec<IpNet>, Option<Ipv4Addr>, Option<Family>)> = diff
        .announcements
        .iter()
        .map(|g| {
            let a = &g.attributes;
            (
                g.prefixes.clone(),
                a.next_hop,
                a.mp_reach.as_ref().map(|r| r.family),
            )
        })
        .collect();
    let us = Some(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(
        groups,
        vec![
            (vec![net("10.8.0.0/24")], us, None),
            (vec![net("10.9.0.0/24"), net("10.9.1.0/24")], us, None),
            (vec![net("fd00:1::/64")], None, Some(Family::IPV6_UNICAST)),
        ]
    );
    assert_eq!(diff.withdrawals, vec![]);
    rib.apply_update(a, withdraw(&["10.9.0.0/24"]), None);
    rib.withdraw_local(net("fd00:1::/64"));
    let diff = rib.take_diff(e, false);
    assert_eq!(diff.withdrawals, vec![net("10.9.0.0/24"), net("fd00:1::/64")]);
    assert!(diff.announcements.is_empty());
}

#[test]
fn unchanged_best_route_is_not_sent_twice() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert!(sent(&mut rib, e).is_empty());
}

#[test]
fn withdrawals_only_flush_keeps_announcements_pending() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    sent(&mut rib, e);
    rib.apply_update(a, withdraw(&["10.9.0.0/24"]), None);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.8.0.0/24"]), None);
    let diff = rib.take_diff(e, true);
    let u = on_the_wire(&rib, e, &diff);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].withdrawn.len(), 1);
    assert!(rib.has_pending(e));
    assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
    assert!(!rib.has_pending(e));
}

#[test]
fn no_export_community_stops_ebgp_advertisement() {
    let mut rib = rib();
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let mut x = attrs(&[], "10.0.0.2");
    x.communities = vec![NO_EXPORT];
    rib.apply_update(i, announce(x, &["10.9.0.0/24"]), None);
    assert_eq!(nlri_count(&sent(&mut rib, e)), 0);
    let mut y = attrs(&[], "10.0.0.2");
    y.communities = vec![crate::wire::community::NO_EXPORT_SUBCONFED];
    rib.apply_update(i, announce(y, &["10.8.0.0/24"]), None);
    assert_eq!(
        nlri_count(&sent(&mut rib, e)),
        0,
        "no confederation: NO_EXPORT_SUBCONFED is NO_EXPORT"
    );
}

#[test]
fn export_filter_limits_what_a_peer_gets() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let mut pol = policy("10.0.0.3", 65003);
    pol.export = PrefixFilter::new(&[crate::config::PrefixRule {
        prefix: net("10.9.0.0/16"),
        ge: None,
        le: Some(24),
        action: crate::config::FilterAction::Accept,
    }]);
    let e = rib.add_peer(pol);
    rib.peer_up(e, session(3));
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.1.0/24", "10.8.1.0/24"]),
        None,
    );
    let u = sent(&mut rib, e);
    assert_eq!(u[0].nlri, vec!["10.9.1.0/24".parse::<Ipv4Net>().unwrap()]);
}

fn reflector() -> (Rib, PeerIdx, PeerIdx, PeerIdx) {
    let mut rib = Rib::new(RibConfig {
        cluster_id: Some(Ipv4Addr::new(9, 9, 9, 9)),
        ..rib().config().clone()
    });
    let mut c1 = policy("10.0.0.2", 65001);
    c1.rr_client = true;
    let mut c2 = policy("10.0.0.3", 65001);
    c2.rr_client = true;
    let c1 = rib.add_peer(c1);
    let c2 = rib.add_peer(c2);
    let n = rib.add_peer(policy("10.0.0.4", 65001));
    rib.peer_up(c1, session(2));
    rib.peer_up(c2, session(3));
    rib.peer_up(n, session(4));
    for p in [c1, c2, n] {
        sent(&mut rib, p);
    }
    (rib, c1, c2, n)
}

#[test]
fn reflector_sends_client_routes_to_all_with_originator_id_and_cluster_list() {
    let (mut rib, c1, c2, n) = reflector();
    rib.apply_update(c1, announce(attrs(&[], "10.0.0.2"), &["10.9.0.0/24"]), None);
    for p in [c2, n] {
        let u = sent(&mut rib, p);
        assert_eq!(nlri_count(&u), 1);
        let a = &u[0].attributes;
        assert_eq!(a.originator_id, Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(a.cluster_list, vec![Ipv4Addr::new(9, 9, 9, 9)]);
        // Reflection does not change the next hop.
        assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 2)));
    }
    assert_eq!(nlri_count(&sent(&mut rib, c1)), 0);
}

#[test]
fn reflector_sends_non_client_routes_to_clients_only() {
    let (mut rib, c1, c2, n) = reflector();
    rib.apply_update(n, announce(attrs(&[], "10.0.0.4"), &["10.9.0.0/24"]), None);
    assert_eq!(nlri_count(&sent(&mut rib, c1)), 1);
    assert_eq!(nlri_count(&sent(&mut rib, c2)), 1);
    assert_eq!(nlri_count(&sent(&mut rib, n)), 0);
}

#[test]
fn without_cluster_id_ibgp_routes_are_not_readvertised_to_ibgp() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65001, 2);
    let b = up(&mut rib, "10.0.0.3", 65001, 3);
    rib.apply_update(a, announce(attrs(&[], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert_eq!(nlri_count(&sent(&mut rib, b)), 0);
}

#[test]
fn unknown_optional_transitive_attributes_pass_with_partial_bit_and_others_are_dropped() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let mut x = attrs(&[65002], "10.0.0.2");
    x.unknown = vec![
        crate::wire::RawAttribute {
            flags: 0xC0,
            type_code: 99,
            value: bytes::Bytes::from_static(b"ab"),
        },
        crate::wire::RawAttribute {
            flags: 0x80,
            type_code: 98,
            value: bytes::Bytes::from_static(b"cd"),
        },
    ];
    rib.apply_update(a, announce(x, &["10.9.0.0/24"]), None);
    let u = sent(&mut rib, e);
    assert_eq!(u[0].attributes.unknown.len(), 1);
    assert_eq!(u[0].attributes.unknown[0].flags, 0xE0);
}

#[test]
fn no_transit_prefixes_are_advertised_only_while_originated_here() {
    let mut rib = rib();
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    rib.set_no_transit(vec![net("10.96.0.0/16")]);
    sent(&mut rib, e);
    // Another node's service /32 (iBGP) and a pod CIDR: only the pod CIDR goes on.
    rib.apply_update(
        i,
        announce(attrs(&[], "10.0.0.2"), &["10.96.0.10/32", "10.244.2.0/24"]),
        None,
    );
    let u = sent(&mut rib, e);
    assert_eq!(
        u.iter().flat_map(|u| u.nlri.clone()).collect::<Vec<_>>(),
        ["10.244.2.0/24".parse::<Ipv4Net>().unwrap()]
    );
    // Originated here too: ours (the best) goes out.
    rib.originate(&net("10.96.0.10/32").into());
    let u = sent(&mut rib, e);
    assert_eq!(u[0].nlri, ["10.96.0.10/32".parse::<Ipv4Net>().unwrap()]);
    assert_eq!(u[0].attributes.as_path, Some(seq(&[65001])));
    // No longer ours: withdrawn, although the other node's path is still in the Loc-RIB.
    rib.withdraw_local(net("10.96.0.10/32"));
    let u = sent(&mut rib, e);
    assert_eq!(u[0].withdrawn, ["10.96.0.10/32".parse::<Ipv4Net>().unwrap()]);
    assert_eq!(best_peer(&rib, "10.96.0.10/32"), Some(i));
    // Lifting the restriction passes the learned route on again.
    rib.set_no_transit(vec![]);
    let u = sent(&mut rib, e);
    assert_eq!(u[0].nlri, ["10.96.0.10/32".parse::<Ipv4Net>().unwrap()]);
}

#[test]
fn a_route_reflector_still_reflects_no_transit_prefixes() {
    let (mut rib, c1, c2, _) = reflector();
    rib.set_no_transit(vec![net("10.96.0.0/16")]);
    sent(&mut rib, c2);
    rib.apply_update(c1, announce(attrs(&[], "10.0.0.2"), &["10.96.0.10/32"]), None);
    let u = sent(&mut rib, c2);
    assert_eq!(u[0].nlri, ["10.96.0.10/32".parse::<Ipv4Net>().unwrap()]);
    assert_eq!(
        u[0].attributes.next_hop,
        Some(Ipv4Addr::new(10, 0, 0, 2)),
        "the announcing node's"
    );
}
