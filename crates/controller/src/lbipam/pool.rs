//! A LoadBalancerPool checked and ready to allocate from: its CIDRs parsed, its selector
//! compiled, its state (usable, invalid, in conflict with an older pool) decided. Pure.
//!
//! Pools are judged in a fixed order, oldest first (creationTimestamp, then name), so the
//! same set of pools always gives the same verdicts: of two overlapping pools the newer one is
//! in conflict, whatever order the API lists them in.

use std::{cmp::Ordering, collections::BTreeMap, net::IpAddr};

use caracal_policy::selector::{Labels, Selector};
use ipnet::IpNet;
use k8s_openapi::jiff::Timestamp;

use super::crd::LoadBalancerPool;

/// An address family, named as `spec.ipFamilies` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// `IPv4` or `IPv6`, as the Service API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

/// Whether a pool hands out addresses, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolState {
    Usable,
    /// The spec is wrong; the message names the field.
    Invalid(String),
    /// It overlaps an older pool (named), which keeps the range.
    Conflict {
        with: String,
        message: String,
    },
}

/// One pool, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub created: Option<Timestamp>,
    /// The CIDRs that parse (masked), also for an invalid pool: a Service keeps an address
    /// that lies in any pool, whatever its state.
    pub cidrs: Vec<IpNet>,
    /// `None`: every Service.
    pub selector: Option<Selector>,
    pub avoid_buggy_ips: bool,
    pub auto_assign: bool,
    pub disabled: bool,
    pub state: PoolState,
}

impl Pool {
    /// Checks one pool on its own (overlaps with other pools are [`check_pools`]' business).
    pub fn from_crd(pool: &LoadBalancerPool) -> Pool {
        let spec = &pool.spec;
        let mut errors = Vec::new();
        let mut cidrs: Vec<(usize, IpNet)> = Vec::new();
        if spec.cidrs.is_empty() {
            errors.push("spec.cidrs: at least one CIDR is required".to_string());
        }
        for (i, text) in spec.cidrs.iter().enumerate() {
            let net = match parse_net(text) {
                Some(net) => net,
                None => {
                    errors.push(format!(
                        "spec.cidrs[{i}]: {text:?} is not an IPv4 or IPv6 CIDR or address"
                    ));
                    continue;
                }
            };
            let masked = net.trunc();
            if masked != net {
                errors.push(format!(
                    "spec.cidrs[{i}]: {text} has host bits set (the network is {masked})"
                ));
            }
            if let Some((j, other)) = cidrs.iter().find(|(_, o)| overlaps(o, &masked)) {
                errors.push(format!(
                    "spec.cidrs[{i}]: {masked} overlaps spec.cidrs[{j}] {other}"
                ));
            }
            cidrs.push((i, masked));
        }
        let selector = match &spec.service_selector {
            None => None,
            Some(sel) => match Selector::from_k8s(sel) {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(format!("spec.serviceSelector: {e}"));
                    None
                }
            },
        };
        let state = if errors.is_empty() {
            PoolState::Usable
        } else {
            PoolState::Invalid(errors.join("; "))
        };
        let mut nets: Vec<IpNet> = cidrs.into_iter().map(|(_, n)| n).collect();
        nets.sort();
        nets.dedup();
        Pool {
            name: pool.name().to_string(),
            created: pool.metadata.creation_timestamp.as_ref().map(|t| t.0),
            cidrs: nets,
            selector,
            avoid_buggy_ips: spec.avoid_buggy_ips,
            auto_assign: spec.auto_assign,
            disabled: spec.disabled,
            state,
        }
    }

    /// Hands out new addresses: valid, not in conflict, not disabled.
    pub fn allocates(&self) -> bool {
        self.state == PoolState::Usable && !self.disabled
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.cidrs.iter().any(|n| n.contains(ip))
    }

    pub fn has_family(&self, family: Family) -> bool {
        self.cidrs.iter().any(|n| Family::of(&n.addr()) == family)
    }

    /// Whether the selector admits a Service with these labels (pseudo-labels included).
    pub fn selects(&self, labels: &Labels) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// Whether `ip` may be handed out at all (`avoidBuggyIPs`).
    pub fn may_hand_out(&self, ip: &IpAddr) -> bool {
        !(self.avoid_buggy_ips && is_buggy(ip))
    }

    /// Why this pool gives no new addresses, for messages; `None` when it does.
    pub fn why_not_allocating(&self) -> Option<String> {
        match &self.state {
            PoolState::Invalid(why) => Some(format!("pool {} is invalid ({why})", self.name)),
            PoolState::Conflict { with, .. } => {
                Some(format!("pool {} overlaps the older pool {with}", self.name))
            }
            PoolState::Usable if self.disabled => Some(format!("pool {} is disabled", self.name)),
            PoolState::Usable => None,
        }
    }

    /// How many addresses the pool can hand out, saturating at `u128::MAX`.
    pub fn size(&self) -> u128 {
        self.cidrs
            .iter()
            .map(|n| net_size(n, self.avoid_buggy_ips))
            .fold(0u128, u128::saturating_add)
    }

    /// The lowest address of the pool that `taken` does not hold and that may be handed out.
    pub fn lowest_free(&self, family: Family, taken: &impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        self.cidrs
            .iter()
            .filter(|n| Family::of(&n.addr()) == family)
            .find_map(|net| {
                let (mut a, last) = (to_u128(&net.network()), to_u128(&net.broadcast()));
                loop {
                    let ip = from_u128(a, family);
                    if self.may_hand_out(&ip) && !taken(&ip) {
                        return Some(ip);
                    }
                    if a == last {
                        return None;
                    }
                    a += 1;
                }
            })
    }

    fn order(&self, other: &Pool) -> Ordering {
        (self.created, &self.name).cmp(&(other.created, &other.name))
    }
}

/// Checks every pool and marks the newer of two overlapping pools as in conflict. Returned
/// by name.
pub fn check_pools(pools: &[LoadBalancerPool]) -> BTreeMap<String, Pool> {
    let mut checked: Vec<Pool> = pools.iter().map(Pool::from_crd).collect();
    checked.sort_by(|a, b| a.order(b));
    for i in 0..checked.len() {
        if checked[i].state != PoolState::Usable {
            continue;
        }
        let clash = checked[..i].iter().find_map(|older| {
            if older.state != PoolState::Usable {
                return None;
            }
            checked[i].cidrs.iter().find_map(|mine| {
                older
                    .cidrs
                    .iter()
                    .find(|theirs| overlaps(mine, theirs))
                    .map(|theirs| (older.name.clone(), *mine, *theirs))
            })
        });
        if let Some((with, mine, theirs)) = clash {
            let message = format!("spec.cidrs: {mine} overlaps {theirs} of the older pool {with}");
            checked[i].state = PoolState::Conflict { with, message };
        }
    }
    checked.into_iter().map(|p| (p.name.clone(), p)).collect()
}

/// A CIDR, or a plain address as its /32 or /128.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// An IPv4 address ending in .0 or .255.
pub fn is_buggy(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

fn net_size(net: &IpNet, avoid_buggy: bool) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    match net {
        IpNet::V4(v4) if avoid_buggy => {
            if host_bits >= 8 {
                // Two of every 256 addresses.
                size - size / 128
            } else {
                let ends = [v4.network().octets()[3] == 0, v4.broadcast().octets()[3] == 255];
                size - ends.iter().filter(|e| **e).count() as u128
            }
        }
        _ => size,
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(a: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(
            u32::try_from(a)
                .expect("an IPv4 network holds 32-bit addresses")
                .into(),
        ),
        Family::V6 => IpAddr::V6(a.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pool(name: &str, created: i64, spec: &str) -> LoadBalancerPool {
        let yaml = format!(
            "apiVersion: caracal.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{name: {name}, \
             creationTimestamp: '{}'}}\nspec: {spec}",
            Timestamp::from_second(created).unwrap()
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let cases = [
            ("{cidrs: []}", "spec.cidrs: at least one CIDR"),
            ("{cidrs: [10.0.0.0/24, bogus]}", "spec.cidrs[1]: \"bogus\" is not"),
            (
                "{cidrs: [10.0.0.5/24]}",
                "spec.cidrs[0]: 10.0.0.5/24 has host bits set (the network is 10.0.0.0/24)",
            ),
            (
                "{cidrs: [10.0.0.0/24, 10.0.0.128/25]}",
                "spec.cidrs[1]: 10.0.0.128/25 overlaps spec.cidrs[0] 10.0.0.0/24",
            ),
            (
                "{cidrs: [10.0.0.0/24], serviceSelector: {matchExpressions: [{key: a, operator: Is}]}}",
                "spec.serviceSelector: matchExpressions[0]: unknown operator",
            ),
        ];
        for (spec, want) in cases {
            let p = Pool::from_crd(&pool("p", 1, spec));
            match &p.state {
                PoolState::Invalid(why) => assert!(why.contains(want), "{spec}: {why}"),
                other => panic!("{spec}: {other:?}"),
            }
            assert!(!p.allocates());
        }
    }

    #[test]
    fn a_plain_address_is_a_single_address_pool() {
        let p = Pool::from_crd(&pool("p", 1, "{cidrs: [192.0.2.7, '2001:db8::7']}"));
        assert_eq!(p.state, PoolState::Usable);
        assert_eq!(p.size(), 2);
        assert!(p.contains(&ip("192.0.2.7")) && !p.contains(&ip("192.0.2.8")));
    }

    #[test]
    fn the_newer_of_two_overlapping_pools_is_in_conflict_whatever_the_list_order() {
        let older = pool("zeta", 1, "{cidrs: [10.0.0.0/24]}");
        let newer = pool("alpha", 2, "{cidrs: ['2001:db8::/64', 10.0.0.128/25]}");
        let apart = pool("beta", 3, "{cidrs: [10.0.1.0/24]}");
        for list in [
            vec![older.clone(), newer.clone(), apart.clone()],
            vec![apart, newer, older],
        ] {
            let pools = check_pools(&list);
            assert_eq!(pools["zeta"].state, PoolState::Usable);
            assert_eq!(pools["beta"].state, PoolState::Usable);
            match &pools["alpha"].state {
                PoolState::Conflict { with, message } => {
                    assert_eq!(with, "zeta");
                    assert!(
                        message.contains("10.0.0.128/25 overlaps 10.0.0.0/24 of the older pool zeta"),
                        "{message}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_invalid_pool_claims_no_range() {
        let bad = pool("a", 1, "{cidrs: [10.0.0.0/24, nope]}");
        let good = pool("b", 2, "{cidrs: [10.0.0.0/24]}");
        let pools = check_pools(&[bad, good]);
        assert_eq!(pools["b"].state, PoolState::Usable);
        assert!(matches!(pools["a"].state, PoolState::Invalid(_)));
        assert!(
            pools["a"].contains(&ip("10.0.0.1")),
            "its parseable CIDRs still count for keeping"
        );
    }

    #[test]
    fn sizes_with_and_without_avoid_buggy_ips() {
        let cases = [
            ("{cidrs: [10.0.0.0/24]}", 256),
            ("{cidrs: [10.0.0.0/24], avoidBuggyIPs: true}", 254),
            ("{cidrs: [10.0.0.0/22], avoidBuggyIPs: true}", 1024 - 8),
            ("{cidrs: [10.0.0.0/30], avoidBuggyIPs: true}", 3),
            ("{cidrs: [10.0.0.252/30], avoidBuggyIPs: true}", 3),
            ("{cidrs: [10.0.0.4/30], avoidBuggyIPs: true}", 4),
            ("{cidrs: ['2001:db8::/120'], avoidBuggyIPs: true}", 256),
            ("{cidrs: ['::/0']}", u128::MAX),
        ];
        for (spec, want) in cases {
            assert_eq!(Pool::from_crd(&pool("p", 1, spec)).size(), want, "{spec}");
        }
    }

    #[test]
    fn lowest_free_skips_taken_and_buggy_addresses_and_stays_in_family() {
        let p = Pool::from_crd(&pool(
            "p",
            1,
            "{cidrs: [10.0.1.0/31, 10.0.0.254/31, '2001:db8::/127'], avoidBuggyIPs: true}",
        ));
        let none = |_: &IpAddr| false;
        assert_eq!(p.lowest_free(Family::V4, &none), Some(ip("10.0.0.254")));
        let taken = |a: &IpAddr| *a == ip("10.0.0.254");
        // 10.0.0.255 is buggy, 10.0.1.0 too: the next is 10.0.1.1.
        assert_eq!(p.lowest_free(Family::V4, &taken), Some(ip("10.0.1.1")));
        let all = |a: &IpAddr| a.is_ipv4();
        assert_eq!(p.lowest_free(Family::V4, &all), None);
        assert_eq!(p.lowest_free(Family::V6, &all), Some(ip("2001:db8::")));
    }

    #[test]
    fn the_top_of_the_address_space_ends_the_scan() {
        let p = Pool::from_crd(&pool("p", 1, "{cidrs: [255.255.255.254/31]}"));
        let all = |_: &IpAddr| true;
        assert_eq!(p.lowest_free(Family::V4, &all), None);
    }
}
