//! The allocator: (checked pools, every Service) → the ingress addresses each of caracal's
//! Services should hold, the Events that explain it, and each pool's counts. Pure and
//! deterministic: the state is the Services' status, so a restarted controller computes
//! the same answer and nothing is reshuffled.
//!
//! Services are taken oldest first (creationTimestamp, then namespace/name), in three passes:
//!
//! 1. **keep**: an address a Service holds stays while it lies in some pool (whatever that
//!    pool's state: an invalid, conflicting or disabled pool takes nobody's address away), is of
//!    one of its `ipFamilies`, and no older Service holds it. Only a pool whose selector stopped
//!    selecting the Service, a pool that is gone, or a request for another address releases it.
//! 2. **requests** (`caracal.dev/loadBalancerIPs`, else `spec.loadBalancerIP`): the requested
//!    address if it is free and in a pool that hands it out to this Service; otherwise a
//!    Warning, the Service keeps what it had, and no other address is picked instead.
//! 3. **automatic**: each family still without an address gets the lowest free address of
//!    the first pool by name that is usable, `autoAssign`, of that family and selects it.
//!
//! Addresses held by LoadBalancer Services of another class are never handed out; Services
//! that are no longer LoadBalancers give theirs back.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    pool::{Family, Pool, PoolState},
    service::{Owner, ServiceKey, ServiceView},
};

#[cfg(test)]
mod tests;

/// Event reasons, as `kubectl describe service` shows them.
pub mod reason {
    pub const ALLOCATED: &str = "IPAllocated";
    pub const RELEASED: &str = "IPReleased";
    pub const CONFLICT: &str = "AddressConflict";
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const REQUESTED_IN_USE: &str = "RequestedIPInUse";
    pub const REQUESTED_OUTSIDE_POOLS: &str = "RequestedIPOutsidePools";
    pub const REQUESTED_NOT_ALLOWED: &str = "RequestedIPNotAllowed";
    pub const REQUESTED_FAMILY: &str = "RequestedFamilyNotEnabled";
    pub const NO_POOL: &str = "NoPool";
    pub const EXHAUSTED: &str = "PoolExhausted";
}

/// An Event to write on a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceEvent {
    pub service: ServiceKey,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A pool's state and counts after the allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolReport {
    pub state: PoolState,
    pub disabled: bool,
    pub total: u128,
    pub used: u128,
    pub available: u128,
}

/// What to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The Services whose `status.loadBalancer.ingress` must change, with the addresses it
    /// should list (primary family first; empty: none).
    pub changes: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// Every Service's desired addresses, changed or not (for tests and logs).
    pub desired: BTreeMap<ServiceKey, Vec<IpAddr>>,
    pub events: Vec<ServiceEvent>,
    pub pools: BTreeMap<String, PoolReport>,
}

struct Run<'a> {
    pools: &'a BTreeMap<String, Pool>,
    holder: BTreeMap<IpAddr, ServiceKey>,
    held: BTreeMap<ServiceKey, BTreeMap<Family, IpAddr>>,
    /// Why an address a Service had is gone (for the IPReleased event).
    released: BTreeMap<(ServiceKey, IpAddr), String>,
    events: Vec<ServiceEvent>,
}

impl Run<'_> {
    fn warn(&mut self, s: &ServiceView, reason: &'static str, message: String) {
        self.events.push(ServiceEvent {
            service: s.key.clone(),
            warning: true,
            reason,
            message,
        });
    }

    fn claim(&mut self, s: &ServiceView, ip: IpAddr) {
        self.holder.insert(ip, s.key.clone());
        if let Some(old) = self
            .held
            .entry(s.key.clone())
            .or_default()
            .insert(Family::of(&ip), ip)
            && old != ip
        {
            self.holder.remove(&old);
        }
    }

    fn release(&mut self, s: &ServiceView, ip: IpAddr, why: String) {
        self.released.insert((s.key.clone(), ip), why);
    }

    fn holds(&self, s: &ServiceView, family: Family) -> Option<IpAddr> {
        self.held.get(&s.key)?.get(&family).copied()
    }

    /// Pass 1 for one Service.
    fn keep(&mut self, s: &ServiceView) {
        self.held.entry(s.key.clone()).or_default();
        for &ip in &s.current {
            let family = Family::of(&ip);
            if !s.families.contains(&family) {
                self.release(s, ip, format!("{} is not in spec.ipFamilies", family.name()));
                continue;
            }
            if let Some(first) = self.holds(s, family) {
                self.release(
                    s,
                    ip,
                    format!("the Service already holds {first}, one address per family"),
                );
                continue;
            }
            if let Err(why) = self.may_keep(s, &ip) {
                self.release(s, ip, why);
                continue;
            }
            if let Some(other) = self.holder.get(&ip).cloned() {
                self.warn(
                    s,
                    reason::CONFLICT,
                    format!("{ip} is also held by {other}, which is older and keeps it; this Service gets another address"),
                );
                self.release(s, ip, format!("{other} holds it"));
                continue;
            }
            self.claim(s, ip);
        }
    }

    fn may_keep(&self, s: &ServiceView, ip: &IpAddr) -> Result<(), String> {
        let containing: Vec<&Pool> = self.pools.values().filter(|p| p.contains(ip)).collect();
        if containing.is_empty() {
            return Err("it lies in no LoadBalancerPool".to_string());
        }
        // An invalid or conflicting pool does not take an address away; only a usable pool
        // whose selector no longer admits the Service does.
        if containing
            .iter()
            .any(|p| p.state != PoolState::Usable || p.selects(&s.labels))
        {
            return Ok(());
        }
        Err(format!(
            "pool {} no longer selects this Service (spec.serviceSelector)",
            names(&containing)
        ))
    }

    /// Pass 2 for one Service.
    fn request(&mut self, s: &ServiceView) {
        let requested = match &s.requested {
            Ok(r) => r.clone(),
            Err(why) => {
                self.warn(
                    s,
                    reason::INVALID_REQUEST,
                    format!("{why}; no address is assigned or changed"),
                );
                return;
            }
        };
        for ip in requested {
            let family = Family::of(&ip);
            if !s.families.contains(&family) {
                self.warn(
                    s,
                    reason::REQUESTED_FAMILY,
                    format!(
                        "{ip} is requested but {} is not in spec.ipFamilies",
                        family.name()
                    ),
                );
                continue;
            }
            let had = self.holds(s, family);
            if had == Some(ip) {
                continue;
            }
            let keeps = had.map(|h| format!("; it keeps {h}")).unwrap_or_default();
            if let Some(other) = self.holder.get(&ip).cloned() {
                self.warn(
                    s,
                    reason::REQUESTED_IN_USE,
                    format!("requested {ip} is held by {other}{keeps}"),
                );
                continue;
            }
            match self.may_hand_out(s, &ip) {
                Ok(()) => {
                    if let Some(h) = had {
                        self.release(s, h, format!("replaced by the requested {ip}"));
                    }
                    self.claim(s, ip);
                }
                Err((reason, why)) => self.warn(s, reason, format!("{why}{keeps}")),
            }
        }
    }

    fn may_hand_out(&self, s: &ServiceView, ip: &IpAddr) -> Result<(), (&'static str, String)> {
        let containing: Vec<&Pool> = self.pools.values().filter(|p| p.contains(ip)).collect();
        if containing.is_empty() {
            return Err((
                reason::REQUESTED_OUTSIDE_POOLS,
                format!("requested {ip} is in no LoadBalancerPool"),
            ));
        }
        let mut why_not = Vec::new();
        for p in &containing {
            if let Some(why) = p.why_not_allocating() {
                why_not.push(why);
            } else if !p.selects(&s.labels) {
                why_not.push(format!(
                    "pool {}'s serviceSelector does not select this Service",
                    p.name
                ));
            } else if !p.may_hand_out(ip) {
                why_not.push(format!(
                    "pool {} avoids addresses ending in .0 and .255 (avoidBuggyIPs)",
                    p.name
                ));
            } else {
                return Ok(());
            }
        }
        Err((
            reason::REQUESTED_NOT_ALLOWED,
            format!("requested {ip} cannot be handed out: {}", why_not.join("; ")),
        ))
    }

    /// Pass 3 for one Service.
    fn automatic(&mut self, s: &ServiceView) {
        if s.requested.is_err() {
            return;
        }
        for (i, &family) in s.families.iter().enumerate() {
            if self.holds(s, family).is_some() || s.requested_ip(family).is_some() {
                continue;
            }
            let pools = self.pools;
            let candidates: Vec<&Pool> = pools
                .values()
                .filter(|p| p.allocates() && p.auto_assign && p.has_family(family) && p.selects(&s.labels))
                .collect();
            if candidates.is_empty() {
                let any_of_family = self.pools.values().any(|p| p.allocates() && p.has_family(family));
                if i > 0 && s.prefer_dual_stack && !any_of_family {
                    continue;
                }
                let message = self.why_no_pool(s, family);
                self.warn(s, reason::NO_POOL, message);
                continue;
            }
            let holder = &self.holder;
            let found = candidates
                .iter()
                .find_map(|p| p.lowest_free(family, &|ip| holder.contains_key(ip)));
            match found {
                Some(ip) => self.claim(s, ip),
                None => self.warn(
                    s,
                    reason::EXHAUSTED,
                    format!(
                        "no free {} address: every address of pool {} is in use",
                        family.name(),
                        names(&candidates)
                    ),
                ),
            }
        }
    }

    fn why_no_pool(&self, s: &ServiceView, family: Family) -> String {
        let mut why: Vec<String> = Vec::new();
        for p in self.pools.values().filter(|p| p.has_family(family)) {
            if let Some(w) = p.why_not_allocating() {
                why.push(w);
            } else if !p.auto_assign {
                why.push(format!(
                    "pool {} only hands out requested addresses (autoAssign: false)",
                    p.name
                ));
            } else if !p.selects(&s.labels) {
                why.push(format!(
                    "pool {}'s serviceSelector does not select this Service",
                    p.name
                ));
            }
        }
        let detail = if why.is_empty() {
            String::new()
        } else {
            format!(": {}", why.join("; "))
        };
        format!(
            "no LoadBalancerPool hands out {} addresses to this Service{detail}",
            family.name()
        )
    }
}

fn names(pools: &[&Pool]) -> String {
    pools
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the three passes over every Service; see the module documentation.
pub fn allocate(pools: &BTreeMap<String, Pool>, services: &[ServiceView]) -> Plan {
    let mut order: Vec<&ServiceView> = services.iter().collect();
    order.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    let mut run = Run {
        pools,
        holder: BTreeMap::new(),
        held: BTreeMap::new(),
        released: BTreeMap::new(),
        events: Vec::new(),
    };
    for s in order.iter().filter(|s| s.owner == Owner::Other) {
        for ip in &s.current {
            run.holder.entry(*ip).or_insert_with(|| s.key.clone());
        }
    }
    let ours: Vec<&ServiceView> = order
        .iter()
        .copied()
        .filter(|s| s.owner == Owner::Caracal)
        .collect();
    for s in &ours {
        run.keep(s);
    }
    for s in &ours {
        run.request(s);
    }
    for s in &ours {
        run.automatic(s);
    }

    let mut plan = Plan::default();
    for s in &ours {
        let held = run.held.get(&s.key).cloned().unwrap_or_default();
        let desired: Vec<IpAddr> = s.families.iter().filter_map(|f| held.get(f).copied()).collect();
        if desired != s.current {
            for ip in desired.iter().filter(|ip| !s.current.contains(ip)) {
                let pool = pools
                    .values()
                    .find(|p| p.contains(ip))
                    .map(|p| p.name.as_str())
                    .unwrap_or_default();
                run.events.push(ServiceEvent {
                    service: s.key.clone(),
                    warning: false,
                    reason: reason::ALLOCATED,
                    message: format!("{ip} from pool {pool}"),
                });
            }
            plan.changes.insert(s.key.clone(), desired.clone());
        }
        plan.desired.insert(s.key.clone(), desired);
    }
    // Services that stopped being LoadBalancers give back what they hold from a pool.
    for s in order.iter().filter(|s| s.owner == Owner::NotLoadBalancer) {
        let (gone, kept): (Vec<IpAddr>, Vec<IpAddr>) = s
            .current
            .iter()
            .copied()
            .partition(|ip| pools.values().any(|p| p.contains(ip)));
        for ip in &gone {
            run.release(s, *ip, "the Service is no longer of type LoadBalancer".into());
        }
        if !gone.is_empty() {
            plan.changes.insert(s.key.clone(), kept);
        }
    }
    for s in &order {
        let desired = plan.changes.get(&s.key);
        for ip in &s.current {
            if desired.is_some_and(|d| !d.contains(ip)) {
                let why = run
                    .released
                    .get(&(s.key.clone(), *ip))
                    .cloned()
                    .unwrap_or_else(|| "no longer assigned".into());
                run.events.push(ServiceEvent {
                    service: s.key.clone(),
                    warning: false,
                    reason: reason::RELEASED,
                    message: format!("{ip}: {why}"),
                });
            }
        }
    }

    let taken: BTreeSet<IpAddr> = run.holder.keys().copied().collect();
    for (name, p) in pools {
        let total = p.size();
        let used = taken.iter().filter(|ip| p.contains(ip)).count() as u128;
        let available = if p.allocates() {
            let used_allocatable = taken
                .iter()
                .filter(|ip| p.contains(ip) && p.may_hand_out(ip))
                .count() as u128;
            total.saturating_sub(used_allocatable)
        } else {
            0
        };
        plan.pools.insert(
            name.clone(),
            PoolReport {
                state: p.state.clone(),
                disabled: p.disabled,
                total,
                used,
                available,
            },
        );
    }
    run.events.sort();
    run.events.dedup();
    plan.events = run.events;
    plan
}
