//! The compiler: desired state ([`ClusterState`] and this node's [`LocalEndpoint`]s) to a
//! [`Program`], in the layout of Felix (research/calico.md §1).
//!
//! ```text
//! filter FORWARD  -j cara-FORWARD (inserted)        ... -m mark --mark A/A -j ACCEPT (appended)
//!   cara-FORWARD: clear A|P; -i cara+ -j cara-fw-dispatch; -o cara+ -j cara-tw-dispatch
//!     cara-fw-dispatch: -i <iface> -g cara-fw-<iface> ...; -j DROP (unknown interface)
//!     cara-tw-dispatch: -o <iface> -g cara-tw-<iface> ...; -j DROP (unknown interface)
//! filter INPUT    -j cara-INPUT: clear A|P; -i cara+ -j cara-fw-dispatch (pod to host = egress)
//! filter OUTPUT   -j cara-OUTPUT: host to pod is not policed
//! cara-tw-<iface> (ingress of the pod) / cara-fw-<iface> (egress of the pod):
//!   ESTABLISHED,RELATED ACCEPT; INVALID DROP; clear A|P
//!   Admin tier:    per policy: if !P -j cara-p{i,o}-<policy>; if A RETURN;  then clear P
//!   NetworkPolicy: per policy:        -j cara-p{i,o}-<policy>; if A RETURN;  then DROP
//!   Baseline tier (only without NetworkPolicies): as Admin
//!   set A (nothing decided: allowed)
//! cara-p{i,o}-<policy>: per rule, per peer x port block: match -> MARK A | MARK P | DROP,
//!   then "return on verdict" before the next rule.
//! ```
//!
//! A = [`MARK_ACCEPT`], P = [`MARK_PASS`]. Dispatch uses goto, so an endpoint chain's RETURN goes
//! back to `cara-FORWARD`: forwarded pod-to-pod traffic on one node passes the source's egress
//! chain and then the destination's ingress chain, and since both start by clearing A, the
//! destination's chain decides whether the final ACCEPT fires. Denial is always DROP.
//!
//! Peers become ipsets (`hash:net` of pod addresses per selector, `hash:net` with `nomatch`
//! entries for CIDRs with exceptions, `hash:ip,port` for named ports), so the number of rules per
//! endpoint does not grow with the cluster. Only policies that select a local endpoint are
//! compiled (Felix's "active" policies), and each family holds only the chains of endpoints
//! with an address in it (and of the policies that select them there).
//!
//! Set members come from [`index`]: every pod of the cluster by dense slot, with per-label and
//! per-namespace slot lists, so a selector or label expression is bitmap algebra, not a scan.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::{
    globalpolicy::GlobalPolicy,
    model::{ClusterState, Key, LocalEndpoint, NAMESPACE_NAME_LABEL, Namespace, Pod},
    policy::{
        Action as PAction, Direction, Layer, NsMatch, Peer, PodSet, Policy, PolicyId, PolicyRule, PortMatch,
    },
    program::{
        Action, CHAIN_PREFIX, Chain, CtState, Family, Hook, IFACE_PREFIX, IpSet, MARK_ACCEPT, MARK_PASS,
        MAX_CHAIN_NAME, MAX_SET_NAME, Match, Program, Protocol, Rule, SET_PREFIX, SetDir, SetKind, SetMember,
        Table,
    },
    validate,
};

/// The result of a compile: the program, and the objects that were rejected (and ignored).
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub program: Program,
    pub errors: Vec<validate::Error>,
}

pub const CHAIN_FORWARD: &str = "cara-FORWARD";
pub const CHAIN_INPUT: &str = "cara-INPUT";
pub const CHAIN_OUTPUT: &str = "cara-OUTPUT";
pub const CHAIN_FW_DISPATCH: &str = "cara-fw-dispatch";
pub const CHAIN_TW_DISPATCH: &str = "cara-tw-dispatch";

/// Dispatch chains with more endpoints than this are split by the next interface-name character.
const DISPATCH_FANOUT: usize = 16;
/// `-m multiport` takes at most 15 ports, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;

/// `cara-fw-<iface>`: the pod's egress (traffic from the workload).
pub fn from_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}fw-{iface}")
}

/// `cara-tw-<iface>`: the pod's ingress (traffic to the workload).
pub fn to_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}tw-{iface}")
}

/// The chain of one policy for one direction: `cara-pi-<hash>` (ingress), `cara-po-<hash>`.
pub fn policy_chain(id: &crate::policy::PolicyId, dir: Direction) -> String {
    let tag = match dir {
        Direction::Ingress => "pi-",
        Direction::Egress => "po-",
    };
    hashed_name(&format!("{CHAIN_PREFIX}{tag}"), &id.to_string(), MAX_CHAIN_NAME)
}

/// `prefix` + hex of sha256(`key`), cut to `max` bytes (at most 20 hex characters: 80 bits).
pub fn hashed_name(prefix: &str, key: &str, max: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let n = max.saturating_sub(prefix.len()).min(20);
    let mut out = String::with_capacity(prefix.len() + n);
    out.push_str(prefix);
    for b in digest.iter().take(n.div_ceil(2)) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out.truncate(prefix.len() + n);
    out
}

/// The host-side interface name of a pod, as the CNI plugin names it
/// ([`caracal_contract::pod_veth_name`]).
pub fn iface_name(pod: &Key) -> String {
    caracal_contract::pod_veth_name(&pod.namespace, &pod.name)
}

fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// Does endpoint `ep` get chains in `family`? Only when it has an address of that family (an
/// IPv4-only pod carries no IPv6 traffic, so it gets no IPv6 chains and its interface stays
/// unknown, dropped, in the IPv6 dispatch); an endpoint whose addresses are unknown gets both.
fn has_family_or_unknown(ep: &LocalEndpoint, family: Family) -> bool {
    ep.ips.is_empty() || ep.ips.iter().any(|ip| family_of(ip) == family)
}

fn net_family(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn family_digit(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

/// The namespace of `name`, with its `kubernetes.io/metadata.name` label guaranteed.
pub fn namespace<'a>(state: &'a ClusterState, name: &str) -> Cow<'a, Namespace> {
    match state.namespaces.get(name) {
        Some(ns) if ns.labels.get(NAMESPACE_NAME_LABEL).is_some_and(|v| v == name) => Cow::Borrowed(ns),
        Some(ns) => {
            let mut ns = ns.clone();
            ns.labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
            Cow::Owned(ns)
        }
        None => Cow::Owned(Namespace {
            name: name.into(),
            labels: [(NAMESPACE_NAME_LABEL.to_string(), name.to_string())].into(),
        }),
    }
}

/// Validates every policy; returns the valid ones in evaluation order and the errors.
pub fn policies(state: &ClusterState) -> (Vec<Policy>, Vec<validate::Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for np in state.network_policies.values() {
        match validate::network_policy(np) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    for gp in state.global_policies.values() {
        match validate::global_policy(gp) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    out.sort_by(|a, b| (a.layer, a.priority, &a.id).cmp(&(b.layer, b.priority, &b.id)));
    (out, errors)
}

mod index;

use index::{FastMap, PodIndex, family_slot};

type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// A local endpoint's pod (empty when the datastore does not know it yet) and namespace.
struct LocalView<'s> {
    pod: Cow<'s, Pod>,
    ns: Cow<'s, Namespace>,
}

fn local_views<'s>(state: &'s ClusterState, endpoints: &[LocalEndpoint]) -> Vec<LocalView<'s>> {
    endpoints
        .iter()
        .map(|ep| LocalView {
            pod: match state.pods.get(&ep.pod) {
                Some(p) => Cow::Borrowed(p),
                None => Cow::Owned(Pod {
                    namespace: ep.pod.namespace.clone(),
                    name: ep.pod.name.clone(),
                    ..Default::default()
                }),
            },
            ns: namespace(state, &ep.pod.namespace),
        })
        .collect()
}

/// The indices of the local endpoints (`views`, in endpoint order) that policy `p` selects.
fn selection(
    views: &[LocalView<'_>],
    eps_by_ns: &HashMap<String, Vec<usize>>,
    p: &Policy,
) -> BTreeSet<usize> {
    let check = |i: usize| p.subject.matches(Some(&views[i].ns), &views[i].pod);
    match &p.subject.namespaces {
        NsMatch::Named(ns) => eps_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| check(i))
            .collect(),
        NsMatch::Selector(_) => (0..views.len()).filter(|&i| check(i)).collect(),
    }
}

/// What a live ipset holds, so that a pod change can update members without recomputing sets.
#[derive(Clone, Debug)]
enum SetDef {
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

/// What changed in the program since the previous call, for an incremental apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Chains that are new or whose rules changed.
    pub chains_changed: BTreeSet<(Family, Table, String)>,
    pub chains_removed: BTreeSet<(Family, Table, String)>,
    /// Sets that are new (create and fill whole).
    pub sets_added: BTreeSet<String>,
    /// Sets no longer referenced (destroy after the chains that used them are gone).
    pub sets_removed: BTreeSet<String>,
    /// Member changes of sets that existed before and still exist.
    pub members_added: Vec<(String, SetMember)>,
    pub members_removed: Vec<(String, SetMember)>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        *self == Delta::default()
    }
}

/// The policies that apply to one endpoint in one direction, by layer, in evaluation order.
#[derive(Default)]
struct Applicable<'p> {
    admin: Vec<&'p Policy>,
    network: Vec<&'p Policy>,
    baseline: Vec<&'p Policy>,
}

/// A policy's place in the evaluation order.
type OrderKey = (Layer, i32, PolicyId);

/// A stateful compiler for one node: holds the desired state, the validated policies, which
/// policies select which local endpoint, and the live sets, so that a changed policy recompiles
/// that policy's chains and the chains of the endpoints it selects (before or after), and a
/// remote pod change only touches set members.
pub struct Compiler {
    state: ClusterState,
    endpoints: Vec<LocalEndpoint>,
    /// Endpoint indices by namespace (a NetworkPolicy only selects in its own).
    eps_by_ns: HashMap<String, Vec<usize>>,
    policies: BTreeMap<PolicyId, Policy>,
    errors: BTreeMap<String, validate::Error>,
    /// Policy -> indices of the local endpoints its subject selects (absent = none).
    selected: HashMap<PolicyId, BTreeSet<usize>>,
    /// Endpoint index -> the policies selecting it, in evaluation order.
    by_endpoint: Vec<BTreeSet<OrderKey>>,
    index: PodIndex,
    /// Live sets: name -> definition, and how many policy chains use them.
    sets: HashMap<String, SetDef>,
    set_refs: HashMap<String, usize>,
    /// (family, key) -> set name.
    set_names: HashMap<(Family, String), String>,
    program: Program,
    /// Member changes since the last public call returned.
    delta: Delta,
    /// Chains and sets touched since then, with what they were before (for the delta).
    orig_chains: HashMap<(Family, Table, String), Option<Chain>>,
    orig_sets: HashMap<String, bool>,
    recreated_sets: BTreeSet<String>,
    /// While compiling from scratch, sets are created empty and listed here (name, family, key,
    /// definition); their members are computed in parallel and filled in afterwards.
    deferring: bool,
    deferred: Vec<(String, Family, String, SetDef)>,
}

impl Compiler {
    /// Compiles from scratch. Indexing the pods runs beside validating the policies and finding
    /// the local endpoints they select; the sets are computed on all cores.
    pub fn new(state: ClusterState, endpoints: &[LocalEndpoint]) -> Self {
        let mut endpoints: Vec<LocalEndpoint> = endpoints.to_vec();
        endpoints.sort_by(|a, b| a.iface.cmp(&b.iface));
        endpoints.dedup_by(|a, b| a.iface == b.iface);
        let mut eps_by_ns: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            eps_by_ns.entry(ep.pod.namespace.clone()).or_default().push(i);
        }
        // The spawned thread indexes the pods of the first 55 % of namespaces while this one
        // validates and selects, then indexes the rest (the two take about as long).
        let split = state
            .namespaces
            .keys()
            .nth(state.namespaces.len() * 11 / 20)
            .map(|ns| Key::new(ns.clone(), ""));
        let pods = &state.pods;
        let (index, policies, errors, selections) = std::thread::scope(|scope| {
            let (first, rest) = match &split {
                Some(k) => (pods.range(..k), Some(pods.range(k..))),
                None => (pods.range(..), None),
            };
            let indexer = scope.spawn(move || {
                let mut index = PodIndex::with_capacity(pods.len());
                for pod in first.map(|(_, p)| p) {
                    index.insert(pod);
                }
                index
            });
            let mut policies = BTreeMap::new();
            let mut errors = BTreeMap::new();
            let nps = state.network_policies.values().map(validate::network_policy);
            let gps = state.global_policies.values().map(validate::global_policy);
            for r in nps.chain(gps) {
                match r {
                    Ok(p) => {
                        policies.insert(p.id.clone(), p);
                    }
                    Err(e) => {
                        errors.insert(e.object.clone(), e);
                    }
                }
            }
            let views = local_views(&state, &endpoints);
            let selections: Vec<(PolicyId, BTreeSet<usize>)> = policies
                .values()
                .map(|p| (p.id.clone(), selection(&views, &eps_by_ns, p)))
                .collect();
            let mut more = PodIndex::default();
            for pod in rest.into_iter().flatten().map(|(_, p)| p) {
                more.insert(pod);
            }
            let mut index = match indexer.join() {
                Ok(index) => index,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            index.merge(more);
            (index, policies, errors, selections)
        });
        let mut c = Compiler {
            by_endpoint: vec![BTreeSet::new(); endpoints.len()],
            state,
            endpoints,
            eps_by_ns,
            policies,
            errors,
            selected: HashMap::new(),
            index,
            sets: HashMap::new(),
            set_refs: HashMap::new(),
            set_names: HashMap::new(),
            program: Program::default(),
            delta: Delta::default(),
            orig_chains: HashMap::new(),
            orig_sets: HashMap::new(),
            recreated_sets: BTreeSet::new(),
            deferring: false,
            deferred: Vec::new(),
        };
        let mut chains = BTreeMap::new();
        for family in [Family::V4, Family::V6] {
            static_chains(&mut chains, &mut c.program.hooks, family, &c.endpoints);
        }
        c.program.chains = chains;
        for (id, sel) in selections {
            c.record_selection(&id, sel);
        }
        // The sets' members are computed on the other cores while this thread builds the chains
        // (which only need the sets' names), then it helps with what is left.
        let requests = c.set_requests();
        let state = std::mem::take(&mut c.state);
        let index = std::mem::take(&mut c.index);
        let endpoints = c.endpoints.clone();
        let defs: Vec<(Family, &SetDef)> = requests.iter().map(|(f, _, d)| (*f, d)).collect();
        let computed = compute_all(&state, &index, &endpoints, &defs, || {
            c.deferring = true;
            let ids: Vec<PolicyId> = c.policies.keys().cloned().collect();
            for id in &ids {
                c.put_policy_chains(id);
            }
            c.refresh_endpoints(0..c.endpoints.len());
            c.deferring = false;
        });
        c.state = state;
        c.index = index;
        let mut by_key: FastMap<(Family, String), BTreeSet<SetMember>> = requests
            .into_iter()
            .zip(computed)
            .map(|((f, key, _), members)| ((f, key), members))
            .collect();
        for (name, family, key, def) in std::mem::take(&mut c.deferred) {
            let members = by_key
                .remove(&(family, key))
                .unwrap_or_else(|| c.compute_members(family, &def));
            if let Some(set) = c.program.sets.get_mut(&name) {
                set.members = members;
            }
        }
        c.take_delta();
        c
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn into_program(self) -> Program {
        self.program
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The objects rejected by validation (and ignored), in name order.
    pub fn errors(&self) -> Vec<validate::Error> {
        self.errors.values().cloned().collect()
    }

    /// The changes since the last call, as the difference between the program then and now.
    fn take_delta(&mut self) -> Delta {
        let mut d = std::mem::take(&mut self.delta);
        for (key, orig) in self.orig_chains.drain() {
            match (orig, self.program.chains.get(&key)) {
                (Some(_), None) => {
                    d.chains_removed.insert(key);
                }
                (orig, Some(now)) if orig.as_ref() != Some(now) => {
                    d.chains_changed.insert(key);
                }
                _ => {}
            }
        }
        for (name, existed) in self.orig_sets.drain() {
            let exists = self.program.sets.contains_key(&name);
            let recreated = self.recreated_sets.contains(&name);
            if existed && (!exists || recreated) {
                d.sets_removed.insert(name.clone());
            }
            if exists && (!existed || recreated) {
                d.sets_added.insert(name);
            }
        }
        self.recreated_sets.clear();
        // Sets created or destroyed in this delta are written whole or not at all.
        let whole: BTreeSet<String> = d.sets_added.union(&d.sets_removed).cloned().collect();
        d.members_added.retain(|(n, _)| !whole.contains(n));
        d.members_removed.retain(|(n, _)| !whole.contains(n));
        d
    }

    /// Adds or replaces a NetworkPolicy.
    pub fn set_network_policy(&mut self, np: NetworkPolicy) -> Delta {
        let ns = np.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = np.metadata.name.clone().unwrap_or_default();
        let result = validate::network_policy(&np);
        self.state
            .network_policies
            .insert(Key::new(ns.clone(), name.clone()), np);
        self.replace_policy(PolicyId::Network { namespace: ns, name }, Some(result));
        self.take_delta()
    }

    fn set_pod_inner(&mut self, pod: Pod) {
        let key = Key::new(pod.namespace.clone(), pod.name.clone());
        let old = self.state.pods.insert(key.clone(), pod.clone());
        match &old {
            Some(o) => self.index.relabel(o, &pod),
            None => self.index.insert(&pod),
        }
        self.update_members(old.as_ref(), Some(&pod));
        self.local_changed(&key);
    }

    fn remove_pod_inner(&mut self, key: &Key) {
        let Some(old) = self.state.pods.remove(key) else {
            return;
        };
        self.index.remove(&old);
        self.update_members(Some(&old), None);
        self.local_changed(key);
    }

    pub fn remove_network_policy(&mut self, key: &Key) -> Delta {
        self.state.network_policies.remove(key);
        let id = PolicyId::Network {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        self.replace_policy(id, None);
        self.take_delta()
    }

    /// Adds or replaces a GlobalPolicy.
    pub fn set_global_policy(&mut self, gp: GlobalPolicy) -> Delta {
        let name = gp.name().to_string();
        let result = validate::global_policy(&gp);
        self.state.global_policies.insert(name.clone(), gp);
        self.replace_policy(PolicyId::Global { name }, Some(result));
        self.take_delta()
    }

    pub fn remove_global_policy(&mut self, name: &str) -> Delta {
        self.state.global_policies.remove(name);
        self.replace_policy(PolicyId::Global { name: name.into() }, None);
        self.take_delta()
    }

    /// Replaces (or with `None` removes) one policy: its chains, and the chains of every endpoint
    /// it selected before or selects now.
    fn replace_policy(&mut self, id: PolicyId, result: Option<validate::Result<Policy>>) {
        let mut touched: BTreeSet<usize> = self.selected.get(&id).cloned().unwrap_or_default();
        let released = self.drop_policy_chains(&id);
        self.errors.remove(&id.to_string());
        if let Some(old) = self.policies.remove(&id) {
            let key = (old.layer, old.priority, old.id.clone());
            for &i in &touched {
                self.by_endpoint[i].remove(&key);
            }
        }
        self.selected.remove(&id);
        match result {
            Some(Ok(p)) => {
                self.policies.insert(id.clone(), p);
                self.reselect(&id);
                self.put_policy_chains(&id);
                touched.extend(self.selected.get(&id).into_iter().flatten().copied());
            }
            Some(Err(e)) => {
                tracing::warn!(policy = %id, error = %e, "ignoring invalid policy");
                self.errors.insert(id.to_string(), e);
            }
            None => {}
        }
        self.release_sets(released);
        self.refresh_endpoints(touched.into_iter());
    }

    /// Adds or replaces a pod. A remote pod only changes set members; a local one also its
    /// chains.
    pub fn set_pod(&mut self, pod: Pod) -> Delta {
        self.set_pod_inner(pod);
        self.take_delta()
    }

    pub fn remove_pod(&mut self, key: &Key) -> Delta {
        self.remove_pod_inner(key);
        self.take_delta()
    }

    /// Adds or replaces a namespace (its labels move pods in and out of many sets: recomputes
    /// every pod set and every policy's selection).
    pub fn set_namespace(&mut self, ns: Namespace) -> Delta {
        self.state.namespaces.insert(ns.name.clone(), ns);
        self.namespace_changed();
        self.take_delta()
    }

    pub fn remove_namespace(&mut self, name: &str) -> Delta {
        if self.state.namespaces.remove(name).is_some() {
            self.namespace_changed();
        }
        self.take_delta()
    }

    fn namespace_changed(&mut self) {
        let names: Vec<(String, SetDef)> = self
            .sets
            .iter()
            .filter(|(_, d)| matches!(d, SetDef::Pods(_)))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        let defs: Vec<(Family, &SetDef)> = names
            .iter()
            .map(|(name, def)| (self.program.sets[name].family, def))
            .collect();
        let computed = compute_all(&self.state, &self.index, &self.endpoints, &defs, || {});
        for ((name, _), fresh) in names.into_iter().zip(computed) {
            let old = &self.program.sets[&name].members;
            for m in fresh.difference(old) {
                self.delta.members_added.push((name.clone(), m.clone()));
            }
            for m in old.difference(&fresh) {
                self.delta.members_removed.push((name.clone(), m.clone()));
            }
            self.program.sets.get_mut(&name).unwrap().members = fresh;
        }
        self.reselect_all();
    }

    /// Re-evaluates every policy's selection; refreshes what changed.
    fn reselect_all(&mut self) {
        // Every policy's selection first (against one view of the local endpoints), then the
        // changes.
        let views = local_views(&self.state, &self.endpoints);
        let selections: Vec<(PolicyId, BTreeSet<usize>)> = self
            .policies
            .values()
            .map(|p| (p.id.clone(), selection(&views, &self.eps_by_ns, p)))
            .collect();
        drop(views);
        let mut touched = BTreeSet::new();
        for (id, sel) in selections {
            let before = self.selected.get(&id).cloned().unwrap_or_default();
            let families_before = self.families(&id);
            self.record_selection(&id, sel);
            let after = self.selected.get(&id).cloned().unwrap_or_default();
            if before != after {
                touched.extend(before.symmetric_difference(&after).copied());
                // The policy's chains exist per family while it selects an endpoint there.
                if families_before != self.families(&id) {
                    let released = self.drop_policy_chains(&id);
                    self.put_policy_chains(&id);
                    self.release_sets(released);
                }
            }
        }
        self.refresh_endpoints(touched.into_iter());
    }

    /// Brings the compiler to `new` by applying only what differs (namespaces, pods, policies),
    /// and returns the combined delta.
    pub fn sync_to(&mut self, new: &ClusterState) -> Delta {
        self.sync_to_with(new, &BTreeMap::new())
    }

    /// As [`Compiler::sync_to`], with the pods in `overrides` taking the place of `new`'s pods
    /// of the same key (the agent's local pods whose addresses the API does not report yet), so
    /// the caller need not copy the whole cluster to change a few pods.
    pub fn sync_to_with(&mut self, new: &ClusterState, overrides: &BTreeMap<Key, Pod>) -> Delta {
        let mut ns_changed = false;
        let old_ns: Vec<String> = self.state.namespaces.keys().cloned().collect();
        for n in old_ns.iter().filter(|n| !new.namespaces.contains_key(*n)) {
            self.state.namespaces.remove(n);
            ns_changed = true;
        }
        for (n, ns) in &new.namespaces {
            if self.state.namespaces.get(n) != Some(ns) {
                self.state.namespaces.insert(n.clone(), ns.clone());
                ns_changed = true;
            }
        }
        if ns_changed {
            self.namespace_changed();
        }
        let gone: Vec<Key> = self
            .state
            .pods
            .keys()
            .filter(|k| !new.pods.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove_pod_inner(&k);
        }
        for (k, p) in &new.pods {
            let p = overrides.get(k).unwrap_or(p);
            if self.state.pods.get(k) != Some(p) {
                self.set_pod_inner(p.clone());
            }
        }
        let gone: Vec<Key> = self
            .state
            .network_policies
            .keys()
            .filter(|k| !new.network_policies.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.state.network_policies.remove(&k);
            self.replace_policy(
                PolicyId::Network {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                },
                None,
            );
        }
        for (k, np) in &new.network_policies {
            if self.state.network_policies.get(k) != Some(np) {
                self.state.network_policies.insert(k.clone(), np.clone());
                let id = PolicyId::Network {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                };
                self.replace_policy(id, Some(validate::network_policy(np)));
            }
        }
        let gone: Vec<String> = self
            .state
            .global_policies
            .keys()
            .filter(|k| !new.global_policies.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.state.global_policies.remove(&k);
            self.replace_policy(PolicyId::Global { name: k }, None);
        }
        for (k, gp) in &new.global_policies {
            if self.state.global_policies.get(k) != Some(gp) {
                self.state.global_policies.insert(k.clone(), gp.clone());
                self.replace_policy(
                    PolicyId::Global { name: k.clone() },
                    Some(validate::global_policy(gp)),
                );
            }
        }
        self.take_delta()
    }

    /// A pod changed: if it is a local endpoint, its policies may differ.
    fn local_changed(&mut self, key: &Key) {
        if self.endpoints.iter().any(|e| e.pod == *key) {
            self.reselect_all();
        }
    }

    /// Recomputes which local endpoints a policy selects, keeping `by_endpoint` in step.
    fn reselect(&mut self, id: &PolicyId) {
        let Some(p) = self.policies.get(id) else { return };
        let views = local_views(&self.state, &self.endpoints);
        let sel = selection(&views, &self.eps_by_ns, p);
        self.record_selection(id, sel);
    }

    /// Records that policy `id` selects the local endpoints `sel`.
    fn record_selection(&mut self, id: &PolicyId, sel: BTreeSet<usize>) {
        let Some(p) = self.policies.get(id) else { return };
        let key: OrderKey = (p.layer, p.priority, p.id.clone());
        let before = self.selected.get(id).cloned().unwrap_or_default();
        for i in before.difference(&sel) {
            self.by_endpoint[*i].remove(&key);
        }
        for i in sel.difference(&before) {
            self.by_endpoint[*i].insert(key.clone());
        }
        if sel.is_empty() {
            self.selected.remove(id);
        } else {
            self.selected.insert(id.clone(), sel);
        }
    }

    /// Does policy `p` get a chain for `dir` in `family` (it selects a local endpoint with
    /// chains in that family, and can decide)?
    fn active_in(&self, p: &Policy, dir: Direction, family: Family) -> bool {
        self.active(p, dir) && self.families(&p.id)[family_slot(family)]
    }

    /// The families in which some local endpoint that policy `id` selects has chains.
    fn families(&self, id: &PolicyId) -> [bool; 2] {
        let mut out = [false; 2];
        for &i in self.selected.get(id).into_iter().flatten() {
            for family in [Family::V4, Family::V6] {
                out[family_slot(family)] |= has_family_or_unknown(&self.endpoints[i], family);
            }
            if out == [true; 2] {
                break;
            }
        }
        out
    }

    /// Does policy `p` get a chain for `dir` (it selects a local endpoint and can decide)?
    fn active(&self, p: &Policy, dir: Direction) -> bool {
        self.selected.contains_key(&p.id)
            && p.rules(dir)
                .is_some_and(|rules| p.layer == Layer::Network || !rules.is_empty())
    }

    /// Compiles and installs the chains of one policy (for the directions it is active in).
    fn put_policy_chains(&mut self, id: &PolicyId) {
        let Some(p) = self.policies.get(id).cloned() else {
            return;
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            for family in [Family::V4, Family::V6] {
                if !self.active_in(&p, dir, family) {
                    continue;
                }
                let chain = self.policy_chain(family, &p, dir);
                for name in chain_sets(&chain) {
                    *self.set_refs.entry(name).or_default() += 1;
                }
                self.put_chain((family, Table::Filter, policy_chain(id, dir)), chain);
            }
        }
    }

    /// Removes the chains of one policy; returns the sets they used, to [`Self::release_sets`]
    /// once any replacement chains hold their own references (so shared sets survive).
    fn drop_policy_chains(&mut self, id: &PolicyId) -> Vec<String> {
        let mut used = Vec::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            for family in [Family::V4, Family::V6] {
                let key = (family, Table::Filter, policy_chain(id, dir));
                let Some(chain) = self.program.chains.remove(&key) else {
                    continue;
                };
                used.extend(chain_sets(&chain));
                self.orig_chains.entry(key).or_insert(Some(chain));
            }
        }
        used
    }

    /// Drops one reference to each set; destroys the sets nothing uses any more.
    fn release_sets(&mut self, names: Vec<String>) {
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

    /// Installs a chain, recording it in the delta if it differs from what was there.
    fn put_chain(&mut self, key: (Family, Table, String), chain: Chain) {
        if !self.orig_chains.contains_key(&key) {
            let orig = self.program.chains.get(&key).cloned();
            self.orig_chains.insert(key.clone(), orig);
        }
        self.program.chains.insert(key, chain);
    }

    /// Rebuilds the ingress and egress chains of the given endpoints.
    fn refresh_endpoints(&mut self, eps: impl Iterator<Item = usize>) {
        for i in eps {
            let ep = &self.endpoints[i];
            let (pod, iface) = (ep.pod.clone(), ep.iface.clone());
            for dir in [Direction::Ingress, Direction::Egress] {
                let mut app = Applicable::default();
                for (_, _, id) in &self.by_endpoint[i] {
                    let p = &self.policies[id];
                    if !self.active(p, dir) {
                        continue;
                    }
                    match p.layer {
                        Layer::Admin => app.admin.push(p),
                        Layer::Network => app.network.push(p),
                        Layer::Baseline => app.baseline.push(p),
                    }
                }
                let chain = endpoint_chain(&pod, dir, &app);
                let name = match dir {
                    Direction::Ingress => to_workload_chain(&iface),
                    Direction::Egress => from_workload_chain(&iface),
                };
                for family in [Family::V4, Family::V6] {
                    if has_family_or_unknown(&self.endpoints[i], family) {
                        self.put_chain((family, Table::Filter, name.clone()), chain.clone());
                    }
                }
            }
        }
    }

    /// Set member changes for one pod going from `old` to `new`.
    fn update_members(&mut self, old: Option<&Pod>, new: Option<&Pod>) {
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
    fn set_requests(&self) -> Vec<(Family, String, SetDef)> {
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

    fn compute_members(&self, family: Family, def: &SetDef) -> BTreeSet<SetMember> {
        compute_members(&self.state, &self.index, &self.endpoints, family, def)
    }

    fn policy_chain(&mut self, family: Family, p: &Policy, dir: Direction) -> Chain {
        let rules = p.rules(dir).unwrap_or(&[]);
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let expanded = self.expand_rule(family, p, dir, r);
            out.extend(expanded);
            if i + 1 < rules.len() && p.layer != Layer::Network {
                out.push(rule(
                    vec![Match::Mark {
                        value: 0,
                        mask: MARK_ACCEPT | MARK_PASS,
                        negated: true,
                    }],
                    Action::Return,
                    "return on verdict",
                ));
            }
        }
        Chain { rules: out }
    }

    /// One policy rule as iptables rules: the cross product of its peers and port blocks.
    fn expand_rule(&mut self, family: Family, p: &Policy, dir: Direction, r: &PolicyRule) -> Vec<Rule> {
        let set_dir = match dir {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let peers: Vec<Vec<Match>> = match &r.peers {
            None => vec![vec![]],
            Some(peers) => peers
                .iter()
                .filter_map(|peer| self.peer_match(family, peer, set_dir))
                .collect(),
        };
        let ports: Vec<Vec<Match>> = match &r.ports {
            None => vec![vec![]],
            Some(ports) => self.port_blocks(family, dir, ports),
        };
        let action = match r.action {
            PAction::Accept => Action::SetMark {
                value: MARK_ACCEPT,
                mask: MARK_ACCEPT,
            },
            PAction::Pass => Action::SetMark {
                value: MARK_PASS,
                mask: MARK_PASS,
            },
            PAction::Deny => Action::Drop,
        };
        let comment = format!("{} {} {}: {:?}", p.id, dir.name(), r.label(), r.action);
        let mut out = Vec::new();
        for peer in &peers {
            for port in &ports {
                let mut matches = port.clone();
                matches.extend(peer.iter().cloned());
                out.push(Rule {
                    matches,
                    action: action.clone(),
                    comment: Some(comment.clone()),
                });
            }
        }
        out
    }

    /// The match of one peer in `family`, or `None` when the peer cannot match that family.
    fn peer_match(&mut self, family: Family, peer: &Peer, dir: SetDir) -> Option<Vec<Match>> {
        let name = match peer {
            Peer::Net { net, except } => {
                if net_family(net) != family {
                    return None;
                }
                if except.is_empty() {
                    return Some(vec![match dir {
                        SetDir::Src => Match::Source {
                            net: *net,
                            negated: false,
                        },
                        SetDir::Dst => Match::Destination {
                            net: *net,
                            negated: false,
                        },
                    }]);
                }
                let key = format!("net:{net} except {except:?}");
                let members = || {
                    let mut m = BTreeSet::from([SetMember::Net(*net)]);
                    m.extend(except.iter().map(|e| SetMember::NoMatch(*e)));
                    m
                };
                self.ensure_set(family, &key, 'n', SetKind::HashNet, SetDef::Net, Some(members()))
            }
            Peer::Pods(set) => {
                let key = pods_set_key(set);
                self.ensure_set(
                    family,
                    &key,
                    's',
                    SetKind::HashNet,
                    SetDef::Pods(set.clone()),
                    None,
                )
            }
        };
        Some(vec![Match::Set {
            name,
            dir,
            negated: false,
        }])
    }

    /// Port matches as blocks: protocol-only, multiport groups per protocol, named-port sets.
    fn port_blocks(&mut self, family: Family, dir: Direction, ports: &[PortMatch]) -> Vec<Vec<Match>> {
        let mut out = Vec::new();
        let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
        for p in ports {
            match p {
                PortMatch::Protocol(proto) => out.push(vec![Match::Protocol(*proto)]),
                PortMatch::Range(proto, lo, hi) => ranges.entry(*proto).or_default().push((*lo, *hi)),
                PortMatch::Named(proto, name) => {
                    let (key, def) = named_port_set(dir, *proto, name);
                    let set = self.ensure_set(family, &key, 'p', SetKind::HashIpPort, def, None);
                    out.push(vec![
                        Match::Protocol(*proto),
                        Match::Set {
                            name: set,
                            dir: SetDir::Dst,
                            negated: false,
                        },
                    ]);
                }
            }
        }
        for (proto, mut list) in ranges {
            list.sort();
            list.dedup();
            let mut chunk: Vec<(u16, u16)> = Vec::new();
            let mut slots = 0;
            for r in list {
                let need = if r.0 == r.1 { 1 } else { 2 };
                if slots + need > MULTIPORT_SLOTS {
                    out.push(vec![
                        Match::Protocol(proto),
                        Match::DestPorts(std::mem::take(&mut chunk)),
                    ]);
                    slots = 0;
                }
                chunk.push(r);
                slots += need;
            }
            if !chunk.is_empty() {
                out.push(vec![Match::Protocol(proto), Match::DestPorts(chunk)]);
            }
        }
        out
    }

    /// The set for `key` in `family`, computed once and kept while referenced.
    fn ensure_set(
        &mut self,
        family: Family,
        key: &str,
        tag: char,
        kind: SetKind,
        def: SetDef,
        members: Option<BTreeSet<SetMember>>,
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
            None if self.deferring => {
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
fn compute_members(
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
fn compute_all(
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
fn pods_set_key(set: &PodSet) -> String {
    format!("pods:{}", set.canonical())
}

/// The key and definition of a named-port set. Ingress: the destination is a local endpoint;
/// egress: anywhere in the cluster.
fn named_port_set(dir: Direction, protocol: Protocol, name: &str) -> (String, SetDef) {
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
fn chain_sets(chain: &Chain) -> BTreeSet<String> {
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

fn pod_addresses(pod: &Pod, family: Family) -> impl Iterator<Item = SetMember> + '_ {
    pod.ips
        .iter()
        .filter(move |ip| family_of(ip) == family)
        .map(|ip| SetMember::Net(host_net(*ip)))
}

fn named_port_members<'p>(
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

/// Compiles the program of one node from scratch.
pub fn compile(state: &ClusterState, endpoints: &[LocalEndpoint]) -> Compiled {
    let c = Compiler::new(state.clone(), endpoints);
    let errors = c.errors();
    Compiled {
        program: c.into_program(),
        errors,
    }
}

fn static_chains(
    chains: &mut BTreeMap<(Family, Table, String), Chain>,
    hooks: &mut Vec<(Family, Hook)>,
    family: Family,
    endpoints: &[LocalEndpoint],
) {
    let wildcard = format!("{IFACE_PREFIX}+");
    let clear = Rule {
        matches: vec![],
        action: Action::SetMark {
            value: 0,
            mask: MARK_ACCEPT | MARK_PASS,
        },
        comment: Some("clear caracal mark bits".into()),
    };
    let forward = Chain {
        rules: vec![
            clear.clone(),
            rule(
                vec![Match::InInterface(wildcard.clone())],
                Action::Jump(CHAIN_FW_DISPATCH.into()),
                "from a pod: its egress policy",
            ),
            rule(
                vec![Match::OutInterface(wildcard.clone())],
                Action::Jump(CHAIN_TW_DISPATCH.into()),
                "to a pod: its ingress policy",
            ),
        ],
    };
    let input = Chain {
        rules: vec![
            clear,
            rule(
                vec![Match::InInterface(wildcard.clone())],
                Action::Jump(CHAIN_FW_DISPATCH.into()),
                "pod to host: the pod's egress policy",
            ),
        ],
    };
    let output = Chain {
        rules: vec![rule(
            vec![Match::OutInterface(wildcard)],
            Action::Return,
            "host to pod is not policed (kubelet probes)",
        )],
    };
    chains.insert((family, Table::Filter, CHAIN_FORWARD.into()), forward);
    chains.insert((family, Table::Filter, CHAIN_INPUT.into()), input);
    chains.insert((family, Table::Filter, CHAIN_OUTPUT.into()), output);
    let ifaces: Vec<&str> = endpoints
        .iter()
        .filter(|e| has_family_or_unknown(e, family))
        .map(|e| e.iface.as_str())
        .collect();
    dispatch(
        chains,
        family,
        CHAIN_FW_DISPATCH,
        true,
        &ifaces,
        IFACE_PREFIX.len(),
    );
    dispatch(
        chains,
        family,
        CHAIN_TW_DISPATCH,
        false,
        &ifaces,
        IFACE_PREFIX.len(),
    );

    for (builtin, target) in [
        ("INPUT", CHAIN_INPUT),
        ("FORWARD", CHAIN_FORWARD),
        ("OUTPUT", CHAIN_OUTPUT),
    ] {
        hooks.push((
            family,
            Hook {
                table: Table::Filter,
                builtin: builtin.into(),
                rule: rule(vec![], Action::Jump(target.into()), "caracal policy"),
                append: false,
            },
        ));
    }
    hooks.push((
        family,
        Hook {
            table: Table::Filter,
            builtin: "FORWARD".into(),
            rule: rule(
                vec![Match::Mark {
                    value: MARK_ACCEPT,
                    mask: MARK_ACCEPT,
                    negated: false,
                }],
                Action::Accept,
                "accepted by caracal policy",
            ),
            append: true,
        },
    ));
}
fn rule(matches: Vec<Match>, action: Action, comment: &str) -> Rule {
    Rule {
        matches,
        action,
        comment: Some(comment.to_string()),
    }
}

fn mark_is(bit: u32) -> Match {
    Match::Mark {
        value: bit,
        mask: bit,
        negated: false,
    }
}

fn mark_clear(bit: u32) -> Match {
    Match::Mark {
        value: 0,
        mask: bit,
        negated: false,
    }
}

/// The per-endpoint chain of one direction.
fn endpoint_chain(pod: &Key, dir: Direction, app: &Applicable<'_>) -> Chain {
    let mut rules = vec![
        rule(
            vec![Match::CtState(vec![CtState::Related, CtState::Established])],
            Action::Accept,
            "established or related: replies pass",
        ),
        rule(
            vec![Match::CtState(vec![CtState::Invalid])],
            Action::Drop,
            "conntrack invalid",
        ),
        Rule {
            matches: vec![],
            action: Action::SetMark {
                value: 0,
                mask: MARK_ACCEPT | MARK_PASS,
            },
            comment: Some(format!("{pod} {}", dir.name())),
        },
    ];
    let tier = |rules: &mut Vec<Rule>, list: &[&Policy], guard: bool| {
        for p in list {
            let mut m = Vec::new();
            if guard {
                m.push(mark_clear(MARK_PASS));
            }
            rules.push(Rule {
                matches: m,
                action: Action::Jump(policy_chain(&p.id, dir)),
                comment: Some(p.id.to_string()),
            });
            rules.push(Rule {
                matches: vec![mark_is(MARK_ACCEPT)],
                action: Action::Return,
                comment: Some(format!("accepted by {}", p.id)),
            });
        }
    };
    if !app.admin.is_empty() {
        tier(&mut rules, &app.admin, true);
        rules.push(Rule {
            matches: vec![],
            action: Action::SetMark {
                value: 0,
                mask: MARK_PASS,
            },
            comment: Some("end of Admin tier".into()),
        });
    }
    if !app.network.is_empty() {
        tier(&mut rules, &app.network, false);
        rules.push(Rule {
            matches: vec![],
            action: Action::Drop,
            comment: Some(format!(
                "{pod} {}: selected by {} NetworkPolicies, none allows this",
                dir.name(),
                app.network.len()
            )),
        });
        return Chain { rules };
    }
    if !app.baseline.is_empty() {
        tier(&mut rules, &app.baseline, true);
    }
    rules.push(Rule {
        matches: vec![],
        action: Action::SetMark {
            value: MARK_ACCEPT,
            mask: MARK_ACCEPT,
        },
        comment: Some(format!("{pod} {}: no policy decided, allowed", dir.name())),
    });
    Chain { rules }
}

/// A dispatch chain (and children): `-i|-o <iface> -g cara-fw|tw-<iface>` per endpoint, split
/// into child chains by the next character of the interface name when large, each ending in DROP
/// so that a pod interface without chains carries no traffic.
fn dispatch(
    chains: &mut BTreeMap<(Family, Table, String), Chain>,
    family: Family,
    name: &str,
    from_workload: bool,
    ifaces: &[&str],
    depth: usize,
) {
    let iface_match = |s: String| {
        if from_workload {
            Match::InInterface(s)
        } else {
            Match::OutInterface(s)
        }
    };
    let target = |iface: &str| {
        if from_workload {
            from_workload_chain(iface)
        } else {
            to_workload_chain(iface)
        }
    };
    let mut rules = Vec::new();
    let child_name_len = name.len() + 2;
    if ifaces.len() <= DISPATCH_FANOUT || child_name_len > MAX_CHAIN_NAME {
        for iface in ifaces {
            rules.push(Rule {
                matches: vec![iface_match(iface.to_string())],
                action: Action::Goto(target(iface)),
                comment: None,
            });
        }
    } else {
        let mut groups: BTreeMap<Option<char>, Vec<&str>> = BTreeMap::new();
        for iface in ifaces {
            groups
                .entry(iface[depth.min(iface.len())..].chars().next())
                .or_default()
                .push(iface);
        }
        for (c, group) in groups {
            match (c, group.len()) {
                (Some(c), n) if n > 1 => {
                    let child = format!("{name}-{c}");
                    let prefix = format!("{}{c}+", &group[0][..depth]);
                    rules.push(Rule {
                        matches: vec![iface_match(prefix)],
                        action: Action::Goto(child.clone()),
                        comment: None,
                    });
                    dispatch(chains, family, &child, from_workload, &group, depth + 1);
                }
                _ => {
                    for iface in group {
                        rules.push(Rule {
                            matches: vec![iface_match(iface.to_string())],
                            action: Action::Goto(target(iface)),
                            comment: None,
                        });
                    }
                }
            }
        }
    }
    rules.push(rule(
        vec![],
        Action::Drop,
        "unknown pod interface: no policy programmed yet",
    ));
    chains.insert((family, Table::Filter, name.to_string()), Chain { rules });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{self, Packet};
    use crate::model::NamedPort;

    fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ips: &[&str]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            node: Some("n".into()),
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
        }
    }

    fn state(policies: &str) -> ClusterState {
        let mut s = ClusterState::default();
        for (k, p) in [
            (
                Key::new("x", "a"),
                pod("x", "a", &[("app", "web")], &["10.0.0.1", "fd00::1"]),
            ),
            (
                Key::new("x", "b"),
                pod("x", "b", &[("app", "db")], &["10.0.0.2", "fd00::2"]),
            ),
            (
                Key::new("y", "c"),
                pod("y", "c", &[("app", "web")], &["10.0.1.3", "fd00::1:3"]),
            ),
        ] {
            s.pods.insert(k, p);
        }
        crate::manifests::load(&mut s, policies).unwrap();
        s
    }

    fn endpoints(s: &ClusterState, keys: &[Key]) -> Vec<LocalEndpoint> {
        keys.iter()
            .map(|k| LocalEndpoint {
                pod: k.clone(),
                iface: iface_name(k),
                ips: s.pods[k].ips.clone(),
            })
            .collect()
    }

    fn fwd(p: &Program, src: &str, dst: &str, in_if: &str, out_if: &str, port: u16) -> eval::Verdict {
        eval::run(
            p,
            "FORWARD",
            &Packet {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol: Protocol::Tcp,
                dport: port,
                in_iface: Some(in_if.into()),
                out_iface: Some(out_if.into()),
                ct: CtState::New,
            },
        )
        .unwrap()
    }

    const DENY_DB: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n";

    #[test]
    fn hooks_static_chains_and_endpoint_chains_exist_for_both_families() {
        let s = state(DENY_DB);
        let eps = endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")]);
        let p = compile(&s, &eps).program;
        for f in [Family::V4, Family::V6] {
            for name in [
                CHAIN_FORWARD,
                CHAIN_INPUT,
                CHAIN_OUTPUT,
                CHAIN_FW_DISPATCH,
                CHAIN_TW_DISPATCH,
            ] {
                assert!(
                    p.chains.contains_key(&(f, Table::Filter, name.to_string())),
                    "{f:?} {name}"
                );
            }
            for ep in &eps {
                assert!(
                    p.chains
                        .contains_key(&(f, Table::Filter, to_workload_chain(&ep.iface)))
                );
                assert!(
                    p.chains
                        .contains_key(&(f, Table::Filter, from_workload_chain(&ep.iface)))
                );
            }
            let hooks: Vec<_> = p.hooks.iter().filter(|(hf, _)| *hf == f).collect();
            assert_eq!(hooks.len(), 4);
        }
        for (_, _, name) in p.chains.keys() {
            assert!(
                name.len() <= MAX_CHAIN_NAME && name.starts_with(CHAIN_PREFIX),
                "{name}"
            );
        }
        for name in p.sets.keys() {
            assert!(
                name.len() <= MAX_SET_NAME && name.starts_with(SET_PREFIX),
                "{name}"
            );
        }
        let no_rejects = p
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .all(|r| !matches!(&r.action, Action::Jump(t) | Action::Goto(t) if t.contains("REJECT")));
        assert!(no_rejects);
    }

    #[test]
    fn unknown_pod_interfaces_are_dropped_both_ways() {
        let s = state("");
        let p = compile(&s, &endpoints(&s, &[Key::new("x", "a")])).program;
        let v = fwd(&p, "10.0.0.9", "10.0.0.1", "caranew0000001", "eth0", 80);
        assert!(!v.accepted, "traffic from an interface without chains is dropped");
        let v = fwd(&p, "10.9.9.9", "10.0.0.9", "eth0", "caranew0000001", 80);
        assert!(!v.accepted, "traffic to an interface without chains is dropped");
        let v = fwd(
            &p,
            "10.9.9.9",
            "10.0.0.1",
            "eth0",
            &iface_name(&Key::new("x", "a")),
            80,
        );
        assert!(v.accepted, "a known pod without policy is open");
        let v = fwd(&p, "10.9.9.9", "10.9.9.8", "eth0", "eth1", 80);
        assert!(v.accepted, "traffic not touching a pod is left alone");
    }

    #[test]
    fn same_node_traffic_passes_source_egress_and_destination_ingress() {
        let egress_deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: x}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}\n";
        let s = state(&format!("{DENY_DB}---\n{egress_deny}"));
        let (a, b) = (Key::new("x", "a"), Key::new("x", "b"));
        let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
        // a's egress denies everything, although b's ingress admits a on the named port.
        let v = fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080);
        assert!(!v.accepted);
        assert!(
            v.reasons().iter().any(|r| r.contains("x/a egress")),
            "{:?}",
            v.reasons()
        );
        // Without the egress policy the named port opens the flow, other ports stay closed.
        let s = state(DENY_DB);
        let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
        assert!(fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080).accepted);
        assert!(!fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8081).accepted);
        // Established replies pass even where a new flow would not.
        let mut pkt = Packet {
            src: "10.0.0.2".parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            dport: 40000,
            in_iface: Some(iface_name(&b)),
            out_iface: Some(iface_name(&a)),
            ct: CtState::Established,
        };
        assert!(eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
        pkt.ct = CtState::Invalid;
        assert!(!eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
    }

    #[test]
    fn policy_chains_and_sets_are_shared_between_endpoints() {
        let all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]\n";
        let s = state(all);
        let p = compile(&s, &endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")])).program;
        let policy_chains: Vec<_> = p
            .chains
            .keys()
            .filter(|(f, _, n)| *f == Family::V4 && n.starts_with("cara-pi-"))
            .collect();
        assert_eq!(policy_chains.len(), 1);
        let v4_sets: Vec<_> = p.sets.values().filter(|s| s.family == Family::V4).collect();
        assert_eq!(v4_sets.len(), 1);
        // Only x/a matches (podSelector without namespaceSelector: own namespace).
        assert_eq!(
            v4_sets[0].members,
            BTreeSet::from([SetMember::Net("10.0.0.1/32".parse().unwrap())])
        );
    }

    #[test]
    fn ipv6_uses_its_own_sets_and_cidrs_of_the_other_family_never_match() {
        let cidr = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.1/32]}}, {podSelector: {matchLabels: {app: web}}}]}]\n";
        let s = state(cidr);
        let b = Key::new("x", "b");
        let p = compile(&s, &endpoints(&s, std::slice::from_ref(&b))).program;
        let bi = iface_name(&b);
        assert!(
            fwd(&p, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
            "excepted, but a is web: the pod peer admits it"
        );
        let p2 = compile(
            &state(&cidr.replace(", {podSelector: {matchLabels: {app: web}}}", "")),
            &endpoints(&s, std::slice::from_ref(&b)),
        )
        .program;
        assert!(
            !fwd(&p2, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
            "excepted address"
        );
        assert!(
            fwd(&p2, "10.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
            "inside the CIDR"
        );
        assert!(
            !fwd(&p2, "11.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
            "outside the CIDR"
        );
        assert!(
            !fwd(&p2, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
            "v4 CIDR never matches v6"
        );
        assert!(
            fwd(&p, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
            "v6 pod set holds a's v6 address"
        );
        let nomatch = p2
            .sets
            .values()
            .find(|s| s.members.iter().any(|m| matches!(m, SetMember::NoMatch(_))));
        assert!(nomatch.is_some_and(|s| s.family == Family::V4 && s.kind == SetKind::HashNet));
    }

    #[test]
    fn large_dispatch_is_split_into_child_chains_and_still_finds_every_endpoint() {
        let mut s = ClusterState::default();
        let mut keys = Vec::new();
        for i in 0..200 {
            let k = Key::new("x", format!("p{i}"));
            s.pods.insert(
                k.clone(),
                pod(
                    "x",
                    &format!("p{i}"),
                    &[],
                    &[&format!("10.1.{}.{}", i / 200, i % 200 + 1)],
                ),
            );
            keys.push(k);
        }
        let p = compile(&s, &endpoints(&s, &keys)).program;
        let top = &p.chains[&(Family::V4, Table::Filter, CHAIN_TW_DISPATCH.to_string())];
        assert!(
            top.rules.len() <= 18,
            "top dispatch has {} rules",
            top.rules.len()
        );
        for k in &keys {
            let ip = s.pods[k].ips[0].to_string();
            assert!(
                fwd(&p, "10.9.9.9", &ip, "eth0", &iface_name(k), 80).accepted,
                "{k}"
            );
        }
    }

    #[test]
    fn many_ports_are_split_into_multiport_blocks_of_fifteen_slots() {
        let ports: Vec<String> = (1..=20).map(|p| format!("{{port: {}}}", 1000 + p)).collect();
        let np = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  ingress: [{{ports: [{}, {{port: 2000, endPort: 2010}}]}}]\n",
            ports.join(", ")
        );
        let s = state(&np);
        let a = Key::new("x", "a");
        let p = compile(&s, &endpoints(&s, std::slice::from_ref(&a))).program;
        let chain = p
            .chains
            .iter()
            .find(|((f, _, n), _)| *f == Family::V4 && n.starts_with("cara-pi-"))
            .unwrap()
            .1;
        for r in &chain.rules {
            if let Some(Match::DestPorts(list)) = r.matches.iter().find(|m| matches!(m, Match::DestPorts(_)))
            {
                let slots: usize = list.iter().map(|(a, b)| if a == b { 1 } else { 2 }).sum();
                assert!(slots <= MULTIPORT_SLOTS);
            }
        }
        let ai = iface_name(&a);
        for port in [1001, 1020, 2005] {
            assert!(
                fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, port).accepted,
                "{port}"
            );
        }
        assert!(!fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, 1021).accepted);
    }

    #[test]
    fn compile_is_deterministic_and_renders() {
        let s = state(DENY_DB);
        let eps = endpoints(&s, &[Key::new("x", "b"), Key::new("x", "a")]);
        let mut rev = eps.clone();
        rev.reverse();
        let p1 = compile(&s, &eps).program;
        assert_eq!(p1, compile(&s, &rev).program);
        crate::render::iptables::render_program(&p1).unwrap();
        crate::render::ipset::render_sets(&p1.sets).unwrap();
    }

    #[test]
    fn invalid_policies_are_reported_and_ignored() {
        let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: nonsense}}]}]\n";
        let s = state(bad);
        let a = Key::new("x", "a");
        let c = compile(&s, &endpoints(&s, std::slice::from_ref(&a)));
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].to_string().contains("ipBlock.cidr"));
        assert!(fwd(&c.program, "10.0.1.3", "10.0.0.1", "eth0", &iface_name(&a), 80).accepted);
    }
}

#[cfg(test)]
mod incremental_tests {
    use super::*;

    #[test]
    fn a_remote_label_change_touches_only_set_members() {
        let mut state = ClusterState::default();
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]}]\n";
        crate::manifests::load(&mut state, text).unwrap();
        for (name, node) in [("local", "n1"), ("remote", "n2")] {
            let pod = Pod {
                namespace: "x".into(),
                name: name.into(),
                ips: vec![
                    if name == "local" { "10.0.0.1" } else { "10.0.0.2" }
                        .parse()
                        .unwrap(),
                ],
                node: Some(node.into()),
                ..Default::default()
            };
            state.pods.insert(Key::new("x", name), pod);
        }
        let local = Key::new("x", "local");
        let eps = vec![LocalEndpoint {
            iface: iface_name(&local),
            ips: state.pods[&local].ips.clone(),
            pod: local,
        }];
        let mut c = Compiler::new(state.clone(), &eps);
        let mut remote = state.pods[&Key::new("x", "remote")].clone();
        remote.labels.insert("role".into(), "client".into());
        let d = c.set_pod(remote.clone());
        assert!(d.chains_changed.is_empty() && d.chains_removed.is_empty() && d.sets_added.is_empty());
        assert_eq!(d.members_added.len(), 1);
        assert_eq!(
            d.members_added[0].1,
            SetMember::Net("10.0.0.2/32".parse().unwrap())
        );
        state.pods.insert(Key::new("x", "remote"), remote);
        assert_eq!(c.program(), &compile(&state, &eps).program);
        let d = c.remove_pod(&Key::new("x", "remote"));
        assert_eq!(d.members_removed.len(), 1);
    }
}
