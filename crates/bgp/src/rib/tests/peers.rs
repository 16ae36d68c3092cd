use super::*;

#[test]
fn new_session_gets_the_whole_table_then_end_of_rib_when_graceful() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24", "10.9.1.0/24"]),
        None,
    );
    let e = rib.add_peer(policy("10.0.0.3", 65003));
    rib.peer_up(
        e,
        SessionInfo {
            graceful_restart: true,
            ..session(3)
        },
    );
    let u = sent(&mut rib, e);
    assert_eq!(nlri_count(&u), 2);
    assert_eq!(u[u.len() - 2], Update::end_of_rib_for(Family::IPV4_UNICAST));
    assert_eq!(u[u.len() - 1], Update::end_of_rib_for(Family::IPV6_UNICAST));
}

#[test]
fn session_down_without_graceful_restart_removes_the_peers_routes() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    sent(&mut rib, e);
    rib.peer_down(a, false);
    assert!(rib.is_empty());
    assert_eq!(sent(&mut rib, e)[0].withdrawn.len(), 1);
    assert_eq!(rib.counters(a), PeerCounters::default());
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(
        a,
        announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24", "10.9.1.0/24"]),
        None,
    );
    rib.take_changes();
    rib.peer_down(a, true);
    assert_eq!(rib.len(), 2);
    assert!(rib.paths(&net("10.9.0.0/24"))[0].stale);
    assert!(
        rib.take_changes().is_empty(),
        "forwarding must not change during the restart"
    );
    let gr = SessionInfo {
        graceful_restart: true,
        preserved_families: vec![Family::IPV4_UNICAST],
        ..session(2)
    };
    rib.peer_up(a, gr);
    assert_eq!(rib.len(), 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    assert!(!rib.paths(&net("10.9.0.0/24"))[0].stale);
    let o = rib.apply_update(a, Update::default(), None);
    assert_eq!(o.end_of_rib, Some(Family::IPV4_UNICAST));
    assert_eq!(rib.len(), 1);
    assert!(rib.best(&net("10.9.1.0/24")).is_none());
    assert_eq!(rib.counters(a).accepted, 1);
    assert!(!rib.has_stale(a));
}

#[test]
fn graceful_restart_capability_without_families_keeps_nothing() {
    let mut rib = rib();
    let a = rib.add_peer(policy("10.0.0.2", 65002));
    rib.peer_up(
        a,
        SessionInfo {
            graceful_restart: true,
            graceful_families: vec![],
            ..session(2)
        },
    );
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.peer_down(a, true);
    assert!(rib.is_empty());
    assert!(!rib.has_stale(a));
}

#[test]
fn graceful_restart_keeps_only_the_listed_families() {
    let mut rib = rib();
    let a = rib.add_peer(policy("10.0.0.2", 65002));
    let gr = SessionInfo {
        graceful_families: vec![Family::IPV6_UNICAST],
        ..session(2)
    };
    rib.peer_up(a, gr);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.originate(&net("fd00:1::/64").into());
    let mut x = attrs(&[65002], "0.0.0.0");
    x.next_hop = None;
    x.mp_reach = Some(MpReach {
        family: Family::IPV6_UNICAST,
        next_hops: vec!["fd00::2".parse().unwrap()],
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
    rib.peer_down(a, true);
    assert!(rib.best(&net("10.9.0.0/24")).is_none());
    assert!(rib.paths(&net("fd00:9::/64"))[0].stale);
}

#[test]
fn graceful_restart_stale_routes_go_when_the_restart_timer_expires() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.peer_down(a, true);
    assert!(rib.has_stale(a));
    rib.purge_stale(a, None);
    assert!(rib.is_empty());
}

#[test]
fn restarted_peer_without_forwarding_bit_loses_its_stale_routes() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.peer_down(a, true);
    rib.peer_up(
        a,
        SessionInfo {
            graceful_restart: true,
            ..session(2)
        },
    );
    assert!(rib.is_empty());
}

#[test]
fn route_refresh_resends_the_family() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    let e = up(&mut rib, "10.0.0.3", 65003, 3);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    sent(&mut rib, e);
    assert!(sent(&mut rib, e).is_empty());
    rib.route_refresh(e, Family::IPV4_UNICAST);
    assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
}

#[test]
fn removing_a_peer_withdraws_its_routes_and_frees_its_slot() {
    let mut rib = rib();
    let a = up(&mut rib, "10.0.0.2", 65002, 2);
    rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
    rib.remove_peer(a);
    assert!(rib.is_empty());
    assert_eq!(rib.add_peer(policy("10.0.0.5", 65005)), a);
}
