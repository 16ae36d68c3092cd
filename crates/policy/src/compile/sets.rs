//! Set lifetime: the live ipsets, shared between policy chains by reference count, their
//! definitions and members, and member updates when a pod changes.

use super::*;

pub(super) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// What a live ipset holds, so that a pod change can update members without recomputing sets.
#[derive(Clone, Debug)]
pub(super) enum SetDef {
    Pods(PodSet),
    Net,
    /// Pods with a container port of this name and protocol: local endpoints only (ingress) or
    /// the whole cluster (egress).
    NamedPort {
        local: bool,
        protocol: Protocol,
        name: String,
    },
}

/// When a new set's members are computed: at once, or (compiling from scratch) later, all sets
/// together on every core, while the chains are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fill {
    Now,
    Later,
}

impl Compiler {
    /// Drops one reference to each set; destroys the sets nothing uses any more.
    pub(super) fn release_sets(&mut self, names: Vec<String>) {
        for name in names {
            let refs = self.set_refs.entry(name.clone()).or_default();
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.set_refs.remove(&name);
                self.sets.remove(&name);
                self.set_names.retain(|_, n| *n != name);
                if self.program.sets.remove(&name).is_some() {
                    self.orig_sets.entry(name).or_insert(true);
                }
            }
        }
    }

    /// Set member changes for one pod going from `old` to `new`.
    pub(super) fn update_members(&mut self, old: Option<&Pod>, new: Option<&Pod>) {
        let local = |pod: &Pod, eps: &[LocalEndpoint]| {
            eps.iter()
                .any(|e| e.pod.namespace == pod.namespace && e.pod.name == pod.name)
        };
        for (name, def) in &self.sets {
            let Some(set) = self.program.sets.get_mut(name) else {
                continue;
            };
            let family = set.family;
            let contribution = |pod: Option<&Pod>| -> BTreeSet<SetMember> {
                let Some(pod) = pod else { return BTreeSet::new() };
                match def {
                    SetDef::Net => BTreeSet::new(),
                    SetDef::Pods(ps) => {
                        if ps.matches(Some(&namespace(&self.state, &pod.namespace)), pod) {
                            pod_addresses(pod, family).collect()
                        } else {
                            BTreeSet::new()
                        }
                    }
                    SetDef::NamedPort {
                        local: only_local,
                        protocol,
                        name,
                    } => {
                        if *only_local && !local(pod, &self.endpoints) {
                            BTreeSet::new()
                        } else {
                            named_port_members(pod, family, *protocol, name).collect()
                        }
                    }
                }
            };
            let before = contribution(old);
            let after = contribution(new);
            for m in before.difference(&after) {
                if set.members.remove(m) {
                    self.delta.members_removed.push((name.clone(), m.clone()));
                }
            }
            for m in after.difference(&before) {
                if set.members.insert(m.clone()) {
                    self.delta.members_added.push((name.clone(), m.clone()));
                }
            }
        }
    }

    /// The sets the active policies' chains will ask for: (family, key, definition), each once.
    pub(super) fn set_requests(&self) -> Vec<(Family, String, SetDef)> {
        let mut seen: FastSet<(Family, String)> = FastSet::default();
        let mut out = Vec::new();
        for p in self.policies.values() {
            for dir in [Direction::Ingress, Direction::Egress] {
                if !self.active(p, dir) {
                    continue;
                }
                for r in p.rules(dir).unwrap_or(&[]) {
                    let peers = r.peers.iter().flatten().filter_map(|peer| match peer {
                        Peer::Pods(set) => Some((pods_set_key(set), SetDef::Pods(set.clone()))),
                        Peer::Net { .. } => None,
                    });
                    let ports = r.ports.iter().flatten().filter_map(|pm| match pm {
                        PortMatch::Named(proto, name) => Some(named_port_set(dir, *proto, name)),
                        _ => None,
                    });
                    for (key, def) in peers.chain(ports) {
                        for family in [Family::V4, Family::V6] {
                            if !self.active_in(p, dir, family) {
                                continue;
                            }
                            if seen.insert((family, key.clone())) {
                                out.push((family, key.clone(), def.clone()));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub(super) fn compute_members(&self, family: Family, def: &SetDef) -> BTreeSet<SetMember> {
        compute_members(&self.state, &self.index, &self.endpoints, family, def)
    }

    /// The set for `key` in `family`, computed once and kept while referenced; `members` when
    /// the caller has them, otherwise computed as `fill` says.
    #[allow(clippy::too_many_arguments)] // the set's identity, definition and how to fill it
    pub(super) fn ensure_set(
        &mut self,
        family: Family,
        key: &str,
        tag: char,
        kind: SetKind,
        def: SetDef,
        members: Option<BTreeSet<SetMember>>,
        fill: Fill,
    ) -> String {
        if let Some(name) = self.set_names.get(&(family, key.to_string()))
            && self.program.sets.contains_key(name)
        {
            return name.clone();
        }
        let prefix = format!("{SET_PREFIX}{}{tag}-", family_digit(family));
        let name = hashed_name(&prefix, key, MAX_SET_NAME);
        let members = match members {
            Some(m) => m,
            None if fill == Fill::Later => {
                self.deferred
                    .push((name.clone(), family, key.to_string(), def.clone()));
                BTreeSet::new()
            }
            None => self.compute_members(family, &def),
        };
        self.program.sets.insert(
            name.clone(),
            IpSet {
                family,
                kind,
                members,
            },
        );
        self.sets.insert(name.clone(), def);
        self.set_names.insert((family, key.to_string()), name.clone());
        match self.orig_sets.get(&name) {
            // Destroyed and recreated within one delta: written whole again.
            Some(true) => {
                self.recreated_sets.insert(name.clone());
            }
            Some(false) => {}
            None => {
                self.orig_sets.insert(name.clone(), false);
            }
        }
        name
    }
}

/// The members of one set.
pub(super) fn compute_members(
    state: &ClusterState,
    index: &PodIndex,
    endpoints: &[LocalEndpoint],
    family: Family,
    def: &SetDef,
) -> BTreeSet<SetMember> {
    match def {
        SetDef::Net => BTreeSet::new(),
        // No pod has an address of this family: skip the scan.
        SetDef::Pods(_) if index.count(family) == 0 => BTreeSet::new(),
        SetDef::Pods(ps) => index
            .members(state, ps)
            .ones()
            .flat_map(|id| index.ips(id).iter().filter(|ip| family_of(ip) == family))
            .map(|ip| SetMember::Net(host_net(*ip)))
            .collect(),
        SetDef::NamedPort {
            local,
            protocol,
            name,
        } => {
            let pods: Vec<&Pod> = if *local {
                endpoints.iter().filter_map(|e| state.pods.get(&e.pod)).collect()
            } else {
                state.pods.values().collect()
            };
            pods.into_iter()
                .flat_map(|p| named_port_members(p, family, *protocol, name))
                .collect()
        }
    }
}

/// [`compute_members`] of many sets on all cores: the other cores start at once, this thread
/// first runs `meanwhile`, then joins them.
pub(super) fn compute_all(
    state: &ClusterState,
    index: &PodIndex,
    endpoints: &[LocalEndpoint],
    defs: &[(Family, &SetDef)],
    meanwhile: impl FnOnce(),
) -> Vec<BTreeSet<SetMember>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((family, def)) = defs.get(i) else { break };
            done.push((i, compute_members(state, index, endpoints, *family, def)));
        }
        done
    };
    let mut out = vec![BTreeSet::new(); defs.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        meanwhile();
        let mut all = work();
        for w in workers {
            match w.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (i, members) in all {
            out[i] = members;
        }
    });
    out
}

/// The key of the set of a pod peer.
pub(super) fn pods_set_key(set: &PodSet) -> String {
    format!("pods:{}", set.canonical())
}

/// The key and definition of a named-port set. Ingress: the destination is a local endpoint;
/// egress: anywhere in the cluster.
pub(super) fn named_port_set(dir: Direction, protocol: Protocol, name: &str) -> (String, SetDef) {
    let local = dir == Direction::Ingress;
    let scope = if local { "local" } else { "cluster" };
    let key = format!("port:{scope}:{}:{name}", protocol.name());
    let def = SetDef::NamedPort {
        local,
        protocol,
        name: name.to_string(),
    };
    (key, def)
}

/// The sets a chain's rules match on.
pub(super) fn chain_sets(chain: &Chain) -> BTreeSet<String> {
    chain
        .rules
        .iter()
        .flat_map(|r| &r.matches)
        .filter_map(|m| match m {
            Match::Set { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn pod_addresses(pod: &Pod, family: Family) -> impl Iterator<Item = SetMember> + '_ {
    pod.ips
        .iter()
        .filter(move |ip| family_of(ip) == family)
        .map(|ip| SetMember::Net(host_net(*ip)))
}

pub(super) fn named_port_members<'p>(
    pod: &'p Pod,
    family: Family,
    protocol: Protocol,
    name: &'p str,
) -> impl Iterator<Item = SetMember> + 'p {
    pod.ports
        .iter()
        .filter(move |p| p.name == name && p.protocol == protocol)
        .flat_map(move |np| {
            pod.ips
                .iter()
                .filter(move |ip| family_of(ip) == family)
                .map(move |ip| SetMember::IpPort {
                    ip: *ip,
                    protocol,
                    port: np.port,
                })
        })
}
