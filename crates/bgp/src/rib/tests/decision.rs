use super::*;

#[test]
fn announced_route_becomes_best_and_is_reported_as_added() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.2.0.0/24", "10.2.1.0/24"]),
        None,
    );
    assert_eq!(rib.len(), 2);
    assert_eq!(best_peer(&rib, "10.2.0.0/24"), Some(a));
    let changes = rib.take_changes();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Added));
    assert_eq!(changes[0].next_hops, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(rib.counters(a), v4_counters(2, 2, 0));
    rib.apply_update(a, withdraw(&["10.2.0.0/24"]), None);
    assert_eq!(rib.take_changes()[0].kind, ChangeKind::Withdrawn);
    assert_eq!(rib.counters(a).accepted, 1);
}

#[test]
fn attribute_sets_of_one_update_are_shared_not_cloned() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.2.0.0/24", "10.2.1.0/24"]),
        None,
    );
    let x = rib.paths(&net("10.2.0.0/24"))[0].attrs.clone();
    let y = rib.paths(&net("10.2.1.0/24"))[0].attrs.clone();
    assert!(Arc::ptr_eq(&x, &y));
}

#[test]
fn higher_local_pref_wins() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65001, 2);
    let b = up(&mut rib, "10.0.0.3", 65001, 3);
    let mut low = attrs(&[65009], "10.0.0.2");
    low.local_pref = Some(50);
    let mut high = attrs(&[65009, 65010], "10.0.0.3");
    high.local_pref = Some(200);
    rib.apply_update(a, announce(low, &["10.9.0.0/24"]), None);
    rib.apply_update(b, announce(high, &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
}

#[test]
fn shorter_as_path_wins_and_a_set_counts_one() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(
        a,
        announce(attrs(&[65002, 65009], "10.0.0.2"), &["10.9.0.0/24"]),
        None,
    );
    let mut with_set = attrs(&[65003], "10.0.0.3");
    with_set.as_path.as_mut().unwrap().segments.push(AsSegment {
        kind: SegmentKind::Set,
        asns: vec![1, 2, 3],
    });
    rib.apply_update(b, announce(with_set, &["10.9.0.0/24"]), None);
    // Equal length (2 each): multipath, best by lower router ID.
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(a));
    assert_eq!(rib.best(&net("10.9.0.0/24")).unwrap().next_hops.len(), 2);
    rib.apply_update(b, announce(attrs(&[65003], "10.0.0.3"), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
    assert_eq!(rib.best(&net("10.9.0.0/24")).unwrap().next_hops.len(), 1);
}

#[test]
fn lower_origin_wins() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65003, 3);
    let mut incomplete = attrs(&[65002], "10.0.0.2");
    incomplete.origin = Some(Origin::Incomplete);
    rib.apply_update(a, announce(incomplete, &["10.9.0.0/24"]), None);
    let mut egp = attrs(&[65003], "10.0.0.3");
    egp.origin = Some(Origin::Egp);
    rib.apply_update(b, announce(egp, &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
}

#[test]
fn lower_med_wins_only_between_routes_from_the_same_neighbour_as() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65002, 3);
    let c = up(&mut rib, "10.0.0.4", 65004, 4);
    let med = |m: u32, nh: &str, asn: u32| {
        let mut x = attrs(&[asn], nh);
        x.med = Some(m);
        x
    };
    rib.apply_update(a, announce(med(50, "10.0.0.2", 65002), &["10.9.0.0/24"]), None);
    rib.apply_update(b, announce(med(10, "10.0.0.3", 65002), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
    // Different neighbour AS: MED is not compared, the router ID decides (a has .2).
    rib.apply_update(b, withdraw(&["10.9.0.0/24"]), None);
    rib.apply_update(c, announce(med(1, "10.0.0.4", 65004), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(a));
}

#[test]
fn ebgp_route_wins_over_ibgp_route() {
    let mut rib = rib();
    let i = up(&mut rib, "10.0.0.2", 65001, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(i, announce(attrs(&[65003], "10.0.0.9"), &["10.9.0.0/24"]), None);
    rib.apply_update(e, announce(attrs(&[65003], "10.0.0.3"), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(e));
    assert_eq!(rib.best(&net("10.9.0.0/24")).unwrap().next_hops.len(), 1);
}

#[test]
fn lower_router_id_then_originator_id_breaks_ties() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65001, 9);
    let b = up(&mut rib, "10.0.0.3", 65001, 5);
    rib.apply_update(a, announce(attrs(&[65009], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.apply_update(b, announce(attrs(&[65009], "10.0.0.3"), &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
    let mut reflected = attrs(&[65009], "10.0.0.2");
    reflected.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    rib.apply_update(a, announce(reflected, &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(a));
}

#[test]
fn shorter_cluster_list_then_lower_peer_address_break_ties() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.3", 65001, 2);
    let b = up(&mut rib, "10.0.0.2", 65001, 3);
    let mut x = attrs(&[65009], "10.0.0.9");
    x.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let mut long = x.clone();
    long.cluster_list = vec![Ipv4Addr::new(7, 7, 7, 7), Ipv4Addr::new(8, 8, 8, 8)];
    rib.apply_update(a, announce(x.clone(), &["10.9.0.0/24"]), None);
    rib.apply_update(b, announce(long, &["10.9.0.0/24"]), None);
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(a));
    rib.apply_update(b, announce(x, &["10.9.0.0/24"]), None);
    // All equal: the lower peer address (10.0.0.2, peer b) wins.
    assert_eq!(best_peer(&rib, "10.9.0.0/24"), Some(b));
}

#[test]
fn equal_paths_form_a_multipath_set_and_changes_carry_all_next_hops() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(
        a,
        announce(attrs(&[65002, 65009], "10.0.0.2"), &["10.9.0.0/24"]),
        None,
    );
    rib.take_changes();
    rib.apply_update(
        b,
        announce(attrs(&[65003, 65009], "10.0.0.3"), &["10.9.0.0/24"]),
        None,
    );
    let changes = rib.take_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Changed);
    let hops: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
    assert_eq!(changes[0].next_hops, hops);
    rib.apply_update(a, withdraw(&["10.9.0.0/24"]), None);
    assert_eq!(rib.take_changes()[0].next_hops, vec![hops[1]]);
}

#[test]
fn multipath_off_reports_one_next_hop() {
    let mut rib = Rib::new(RibConfig {
        multipath: false,
        ..rib().config().clone()
    });
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let b = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.apply_update(b, announce(attrs(&[65003], "10.0.0.3"), &["10.9.0.0/24"]), None);
    assert_eq!(rib.best(&net("10.9.0.0/24")).unwrap().next_hops.len(), 1);
}
