//! Table tests of the allocator: each builds pools and Services, runs one allocation and
//! checks the desired addresses, the changes and the Events.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::lbipam::{
    crd::LoadBalancerPool,
    pool::{Family, check_pools},
};

fn pools(list: &[(&str, i64, &str)]) -> BTreeMap<String, Pool> {
    let crds: Vec<LoadBalancerPool> = list
        .iter()
        .map(|(name, created, spec)| {
            let yaml = format!(
                "apiVersion: caracal.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{name: {name}, \
                 creationTimestamp: '{}'}}\nspec: {spec}",
                Timestamp::from_second(*created).unwrap()
            );
            serde_yaml::from_str(&yaml).unwrap()
        })
        .collect();
    check_pools(&crds)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(s: &str) -> ServiceKey {
    let (namespace, name) = s.split_once('/').unwrap();
    ServiceKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// A LoadBalancer Service of caracal's, IPv4 only, asking for nothing and holding nothing.
fn svc(k: &str, created: i64) -> ServiceView {
    let key = key(k);
    let labels = [
        (
            "io.kubernetes.service.namespace".to_string(),
            key.namespace.clone(),
        ),
        ("io.kubernetes.service.name".to_string(), key.name.clone()),
    ]
    .into();
    ServiceView {
        key,
        created: Some(Timestamp::from_second(created).unwrap()),
        owner: Owner::Caracal,
        families: vec![Family::V4],
        prefer_dual_stack: false,
        requested: Ok(vec![]),
        current: vec![],
        labels,
    }
}

impl ServiceView {
    fn holding(mut self, ips: &[&str]) -> Self {
        self.current = ips.iter().map(|s| ip(s)).collect();
        self
    }
    fn asking(mut self, ips: &[&str]) -> Self {
        self.requested = Ok(ips.iter().map(|s| ip(s)).collect());
        self
    }
    fn dual(mut self, prefer: bool) -> Self {
        self.families = vec![Family::V4, Family::V6];
        self.prefer_dual_stack = prefer;
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    fn owner(mut self, o: Owner) -> Self {
        self.owner = o;
        self
    }
}

fn desired(plan: &Plan, k: &str) -> Vec<String> {
    plan.desired[&key(k)].iter().map(ToString::to_string).collect()
}

fn warnings(plan: &Plan, k: &str) -> Vec<(&'static str, String)> {
    plan.events
        .iter()
        .filter(|e| e.warning && e.service == key(k))
        .map(|e| (e.reason, e.message.clone()))
        .collect()
}

fn one_warning(plan: &Plan, k: &str, reason: &str, text: &str) {
    let w = warnings(plan, k);
    assert!(
        w.iter().any(|(r, m)| *r == reason && m.contains(text)),
        "{k}: expected {reason} with {text:?} in {w:?}"
    );
}

const V4_POOL: &str = "{cidrs: [10.0.0.0/30]}";

#[test]
fn lowest_free_addresses_go_oldest_first_whatever_the_list_order() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let a = svc("ns/web", 10);
    let b = svc("ns/api", 20);
    let c = svc("other/api", 20);
    for list in [vec![a.clone(), b.clone(), c.clone()], vec![c, b, a]] {
        let plan = allocate(&p, &list);
        assert_eq!(desired(&plan, "ns/web"), ["10.0.0.0"]);
        // Same creation time: namespace/name decides.
        assert_eq!(desired(&plan, "ns/api"), ["10.0.0.1"]);
        assert_eq!(desired(&plan, "other/api"), ["10.0.0.2"]);
        assert_eq!(plan.changes.len(), 3);
        let allocated: Vec<_> = plan
            .events
            .iter()
            .filter(|e| e.reason == reason::ALLOCATED)
            .collect();
        assert_eq!(allocated.len(), 3);
        assert!(allocated.iter().any(|e| e.message == "10.0.0.0 from pool a"));
    }
}

#[test]
fn held_addresses_are_kept_so_a_restart_changes_nothing() {
    let p = pools(&[("a", 1, V4_POOL)]);
    // Not the lowest ones, and the older Service holds the higher address.
    let list = [
        svc("ns/old", 1).holding(&["10.0.0.3"]),
        svc("ns/new", 2).holding(&["10.0.0.1"]),
    ];
    let plan = allocate(&p, &list);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(desired(&plan, "ns/old"), ["10.0.0.3"]);
}

#[test]
fn a_duplicate_address_stays_with_the_older_service_and_the_newer_is_told() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let list = [
        svc("ns/new", 2).holding(&["10.0.0.2"]),
        svc("ns/old", 1).holding(&["10.0.0.2"]),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/old"), ["10.0.0.2"]);
    assert_eq!(desired(&plan, "ns/new"), ["10.0.0.0"]);
    one_warning(
        &plan,
        "ns/new",
        reason::CONFLICT,
        "10.0.0.2 is also held by ns/old, which is older",
    );
    assert!(warnings(&plan, "ns/old").is_empty());
    assert!(!plan.changes.contains_key(&key("ns/old")));
}

#[test]
fn exhaustion_is_a_warning_and_nobody_loses_an_address() {
    let p = pools(&[("a", 1, "{cidrs: [10.0.0.0/31]}")]);
    let list = [
        svc("ns/a", 1).holding(&["10.0.0.1"]),
        svc("ns/b", 2),
        svc("ns/c", 3),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/a"), ["10.0.0.1"]);
    assert_eq!(desired(&plan, "ns/b"), ["10.0.0.0"]);
    assert!(desired(&plan, "ns/c").is_empty());
    one_warning(
        &plan,
        "ns/c",
        reason::EXHAUSTED,
        "no free IPv4 address: every address of pool a is in use",
    );
    assert!(!plan.changes.contains_key(&key("ns/c")), "nothing to write for c");
    assert_eq!(
        plan.pools["a"],
        PoolReport {
            state: PoolState::Usable,
            disabled: false,
            total: 2,
            used: 2,
            available: 0
        }
    );
}

#[test]
fn a_freed_address_goes_to_the_next_service() {
    let p = pools(&[("a", 1, "{cidrs: [10.0.0.0/31]}")]);
    // ns/a (which held 10.0.0.0) was deleted; ns/c was waiting.
    let list = [svc("ns/b", 2).holding(&["10.0.0.1"]), svc("ns/c", 3)];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/c"), ["10.0.0.0"]);
}

#[test]
fn requests_are_honoured_or_explained() {
    let p = pools(&[
        ("a", 1, "{cidrs: [10.0.0.0/29], avoidBuggyIPs: true}"),
        ("manual", 2, "{cidrs: [10.0.1.0/30], autoAssign: false}"),
        ("off", 3, "{cidrs: [10.0.2.0/30], disabled: true}"),
        (
            "picky",
            4,
            "{cidrs: [10.0.3.0/30], serviceSelector: {matchLabels: {tier: edge}}}",
        ),
    ]);
    let list = [
        svc("ns/holder", 1).holding(&["10.0.0.5"]),
        svc("ns/wants-held", 2)
            .asking(&["10.0.0.5"])
            .holding(&["10.0.0.1"]),
        svc("ns/wants-manual", 3).asking(&["10.0.1.2"]),
        svc("ns/wants-outside", 4).asking(&["192.0.2.1"]),
        svc("ns/wants-disabled", 5).asking(&["10.0.2.1"]),
        svc("ns/wants-picky", 6).asking(&["10.0.3.1"]),
        svc("ns/wants-buggy", 7).asking(&["10.0.0.0"]),
        svc("ns/wants-v6", 8).asking(&["2001:db8::1"]),
        svc("ns/edge", 9).label("tier", "edge").asking(&["10.0.3.1"]),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/wants-manual"), ["10.0.1.2"]);
    assert_eq!(desired(&plan, "ns/edge"), ["10.0.3.1"]);
    one_warning(
        &plan,
        "ns/wants-held",
        reason::REQUESTED_IN_USE,
        "requested 10.0.0.5 is held by ns/holder; it keeps 10.0.0.1",
    );
    assert_eq!(desired(&plan, "ns/wants-held"), ["10.0.0.1"], "keeps what it had");
    one_warning(
        &plan,
        "ns/wants-outside",
        reason::REQUESTED_OUTSIDE_POOLS,
        "requested 192.0.2.1 is in no LoadBalancerPool",
    );
    one_warning(
        &plan,
        "ns/wants-disabled",
        reason::REQUESTED_NOT_ALLOWED,
        "pool off is disabled",
    );
    one_warning(
        &plan,
        "ns/wants-picky",
        reason::REQUESTED_NOT_ALLOWED,
        "pool picky's serviceSelector does not select this Service",
    );
    one_warning(
        &plan,
        "ns/wants-buggy",
        reason::REQUESTED_NOT_ALLOWED,
        "avoidBuggyIPs",
    );
    one_warning(
        &plan,
        "ns/wants-v6",
        reason::REQUESTED_FAMILY,
        "IPv6 is not in spec.ipFamilies",
    );
    // A failed request is not replaced by an automatic pick.
    for k in [
        "ns/wants-outside",
        "ns/wants-disabled",
        "ns/wants-picky",
        "ns/wants-buggy",
    ] {
        assert!(desired(&plan, k).is_empty(), "{k}");
    }
}

#[test]
fn a_changed_request_moves_the_service_when_the_address_is_free() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let plan = allocate(&p, &[svc("ns/s", 1).holding(&["10.0.0.0"]).asking(&["10.0.0.3"])]);
    assert_eq!(plan.changes[&key("ns/s")], vec![ip("10.0.0.3")]);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == reason::RELEASED
                && e.message == "10.0.0.0: replaced by the requested 10.0.0.3")
    );
}

#[test]
fn an_invalid_request_assigns_and_changes_nothing() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let mut bad = svc("ns/bad", 1).holding(&["10.0.0.2"]);
    bad.requested =
        Err("annotation caracal.dev/loadBalancerIPs: \"x\" is not an IPv4 or IPv6 address".into());
    let mut new = svc("ns/new", 2);
    new.requested = bad.requested.clone();
    let plan = allocate(&p, &[bad, new]);
    assert_eq!(desired(&plan, "ns/bad"), ["10.0.0.2"]);
    assert!(desired(&plan, "ns/new").is_empty());
    one_warning(
        &plan,
        "ns/new",
        reason::INVALID_REQUEST,
        "\"x\" is not an IPv4 or IPv6 address; no address is assigned or changed",
    );
}

#[test]
fn auto_assign_false_pools_serve_only_requests() {
    let p = pools(&[("manual", 1, "{cidrs: [10.0.1.0/30], autoAssign: false}")]);
    let plan = allocate(&p, &[svc("ns/s", 1)]);
    assert!(desired(&plan, "ns/s").is_empty());
    one_warning(
        &plan,
        "ns/s",
        reason::NO_POOL,
        "pool manual only hands out requested addresses (autoAssign: false)",
    );
}

#[test]
fn invalid_and_conflicting_pools_hand_out_nothing_new_but_take_nothing_away() {
    let p = pools(&[
        ("old", 1, "{cidrs: [10.0.0.0/24]}"),
        ("overlap", 2, "{cidrs: [10.0.0.128/25, 10.9.0.0/30]}"),
        ("broken", 3, "{cidrs: [10.8.0.0/30, not-a-cidr]}"),
    ]);
    let list = [
        svc("ns/in-overlap-only", 1).holding(&["10.9.0.1"]),
        svc("ns/in-broken", 2).holding(&["10.8.0.2"]),
        svc("ns/new", 3),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/in-overlap-only"), ["10.9.0.1"]);
    assert_eq!(desired(&plan, "ns/in-broken"), ["10.8.0.2"]);
    assert_eq!(
        desired(&plan, "ns/new"),
        ["10.0.0.0"],
        "from the older, usable pool"
    );
    assert!(matches!(plan.pools["overlap"].state, PoolState::Conflict { .. }));
    assert!(matches!(plan.pools["broken"].state, PoolState::Invalid(_)));
    assert_eq!(plan.pools["overlap"].used, 1);
    assert_eq!(plan.pools["overlap"].available, 0);
}

#[test]
fn a_requested_address_in_a_conflicting_pool_says_which_pool_it_overlaps() {
    let p = pools(&[
        ("old", 1, "{cidrs: [10.0.0.0/24]}"),
        ("overlap", 2, "{cidrs: [10.0.0.0/25, 10.9.0.0/30]}"),
    ]);
    let plan = allocate(&p, &[svc("ns/s", 1).asking(&["10.9.0.1"])]);
    one_warning(
        &plan,
        "ns/s",
        reason::REQUESTED_NOT_ALLOWED,
        "pool overlap overlaps the older pool old",
    );
}

#[test]
fn a_deleted_pool_releases_its_addresses() {
    let p = pools(&[("b", 1, "{cidrs: [10.1.0.0/30]}")]);
    let plan = allocate(&p, &[svc("ns/s", 1).holding(&["10.0.0.1"])]);
    assert_eq!(plan.changes[&key("ns/s")], vec![ip("10.1.0.0")]);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == reason::RELEASED && e.message == "10.0.0.1: it lies in no LoadBalancerPool")
    );
}

#[test]
fn a_selector_that_stops_matching_moves_the_service_to_a_pool_that_does() {
    let p = pools(&[
        (
            "edge",
            1,
            "{cidrs: [10.0.0.0/30], serviceSelector: {matchLabels: {tier: edge}}}",
        ),
        ("rest", 2, "{cidrs: [10.1.0.0/30]}"),
        (
            "ns-only",
            3,
            "{cidrs: [10.2.0.0/30], serviceSelector: {matchLabels: {io.kubernetes.service.namespace: team}}}",
        ),
    ]);
    let list = [
        svc("ns/was-edge", 1).holding(&["10.0.0.1"]),
        svc("ns/edge", 2).label("tier", "edge"),
        svc("team/z", 3).holding(&["10.2.0.3"]),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(desired(&plan, "ns/was-edge"), ["10.1.0.0"]);
    assert!(
        plan.events.iter().any(|e| e.reason == reason::RELEASED
            && e.message.contains("pool edge no longer selects this Service"))
    );
    assert_eq!(desired(&plan, "ns/edge"), ["10.0.0.0"]);
    assert_eq!(
        desired(&plan, "team/z"),
        ["10.2.0.3"],
        "selected by its namespace"
    );
}

#[test]
fn services_that_are_not_load_balancers_give_their_addresses_back() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let list = [
        svc("ns/was-lb", 1)
            .owner(Owner::NotLoadBalancer)
            .holding(&["10.0.0.0", "198.51.100.1"]),
        svc("ns/cluster-ip", 2).owner(Owner::NotLoadBalancer),
        svc("ns/lb", 3),
    ];
    let plan = allocate(&p, &list);
    assert_eq!(
        plan.changes[&key("ns/was-lb")],
        vec![ip("198.51.100.1")],
        "only pool addresses"
    );
    assert!(!plan.changes.contains_key(&key("ns/cluster-ip")));
    assert_eq!(
        desired(&plan, "ns/lb"),
        ["10.0.0.0"],
        "the released address is free again"
    );
}

#[test]
fn another_class_is_left_alone_and_its_addresses_are_not_handed_out() {
    let p = pools(&[("a", 1, V4_POOL)]);
    let list = [
        svc("ns/metallb", 1).owner(Owner::Other).holding(&["10.0.0.0"]),
        svc("ns/ours", 2),
    ];
    let plan = allocate(&p, &list);
    assert!(!plan.changes.contains_key(&key("ns/metallb")));
    assert!(!plan.desired.contains_key(&key("ns/metallb")));
    assert_eq!(desired(&plan, "ns/ours"), ["10.0.0.1"]);
    assert_eq!(plan.pools["a"].used, 2);
}

#[test]
fn dual_stack_gets_one_address_per_family_in_family_order() {
    let p = pools(&[("v4", 1, V4_POOL), ("v6", 2, "{cidrs: ['2001:db8::/126']}")]);
    let mut v6_first = svc("ns/v6-first", 2).dual(false);
    v6_first.families.reverse();
    let plan = allocate(&p, &[svc("ns/dual", 1).dual(false), v6_first]);
    assert_eq!(desired(&plan, "ns/dual"), ["10.0.0.0", "2001:db8::"]);
    assert_eq!(desired(&plan, "ns/v6-first"), ["2001:db8::1", "10.0.0.1"]);
}

#[test]
fn a_missing_secondary_family_warns_only_when_dual_stack_is_required() {
    let p = pools(&[("v4", 1, V4_POOL)]);
    let plan = allocate(
        &p,
        &[svc("ns/prefer", 1).dual(true), svc("ns/require", 2).dual(false)],
    );
    assert_eq!(desired(&plan, "ns/prefer"), ["10.0.0.0"]);
    assert!(warnings(&plan, "ns/prefer").is_empty());
    assert_eq!(desired(&plan, "ns/require"), ["10.0.0.1"]);
    one_warning(
        &plan,
        "ns/require",
        reason::NO_POOL,
        "no LoadBalancerPool hands out IPv6 addresses",
    );
}

#[test]
fn an_address_of_a_family_the_service_no_longer_has_is_released() {
    let p = pools(&[("v4", 1, V4_POOL), ("v6", 2, "{cidrs: ['2001:db8::/126']}")]);
    let plan = allocate(
        &p,
        &[svc("ns/s", 1).holding(&["10.0.0.2", "2001:db8::2", "10.0.0.3"])],
    );
    assert_eq!(plan.changes[&key("ns/s")], vec![ip("10.0.0.2")]);
    let released: Vec<_> = plan
        .events
        .iter()
        .filter(|e| e.reason == reason::RELEASED)
        .map(|e| e.message.as_str())
        .collect();
    assert!(
        released.contains(&"2001:db8::2: IPv6 is not in spec.ipFamilies"),
        "{released:?}"
    );
    assert!(
        released.contains(&"10.0.0.3: the Service already holds 10.0.0.2, one address per family"),
        "{released:?}"
    );
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let p = pools(&[(
        "a",
        1,
        "{cidrs: [10.0.0.255/32, 10.0.1.0/31], avoidBuggyIPs: true}",
    )]);
    let plan = allocate(&p, &[svc("ns/s", 1)]);
    assert_eq!(desired(&plan, "ns/s"), ["10.0.1.1"]);
    assert_eq!(plan.pools["a"].total, 1);
}

#[test]
fn no_pools_at_all_is_a_warning_naming_the_family() {
    let plan = allocate(&BTreeMap::new(), &[svc("ns/s", 1)]);
    one_warning(
        &plan,
        "ns/s",
        reason::NO_POOL,
        "no LoadBalancerPool hands out IPv4 addresses to this Service",
    );
}
