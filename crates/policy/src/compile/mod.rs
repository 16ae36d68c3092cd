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
mod layout;
mod naming;
mod rules;
mod sets;
#[cfg(test)]
mod tests;

pub use self::naming::{
    CHAIN_FORWARD, CHAIN_FW_DISPATCH, CHAIN_INPUT, CHAIN_OUTPUT, CHAIN_TW_DISPATCH, from_workload_chain,
    hashed_name, iface_name, policy_chain, to_workload_chain,
};
use self::{layout::*, naming::*, sets::*};

use index::{FastMap, PodIndex, family_slot};

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
    /// Sets created empty by [`Fill::Later`] (name, family, key, definition); their members are
    /// computed in parallel and filled in afterwards.
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
            let ids: Vec<PolicyId> = c.policies.keys().cloned().collect();
            for id in &ids {
                c.put_policy_chains(id, Fill::Later);
            }
            c.refresh_endpoints(0..c.endpoints.len());
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
        self.replace_policy(PolicyId::network(key), None);
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
                self.put_policy_chains(&id, Fill::Now);
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
                    self.put_policy_chains(&id, Fill::Now);
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
        let (gone, changed) = map_diff(&self.state.namespaces, &new.namespaces, |_, ns| ns);
        let ns_changed = !gone.is_empty() || !changed.is_empty();
        for n in gone {
            self.state.namespaces.remove(&n);
        }
        for (n, ns) in changed {
            self.state.namespaces.insert(n.clone(), ns.clone());
        }
        if ns_changed {
            self.namespace_changed();
        }
        let (gone, changed) = map_diff(&self.state.pods, &new.pods, |k, p| overrides.get(k).unwrap_or(p));
        for k in gone {
            self.remove_pod_inner(&k);
        }
        for (_, p) in changed {
            self.set_pod_inner(p.clone());
        }
        let (gone, changed) = map_diff(&self.state.network_policies, &new.network_policies, |_, np| np);
        for k in gone {
            self.state.network_policies.remove(&k);
            self.replace_policy(PolicyId::network(&k), None);
        }
        for (k, np) in changed {
            self.state.network_policies.insert(k.clone(), np.clone());
            self.replace_policy(PolicyId::network(k), Some(validate::network_policy(np)));
        }
        let (gone, changed) = map_diff(&self.state.global_policies, &new.global_policies, |_, gp| gp);
        for k in gone {
            self.state.global_policies.remove(&k);
            self.replace_policy(PolicyId::Global { name: k }, None);
        }
        for (k, gp) in changed {
            self.state.global_policies.insert(k.clone(), gp.clone());
            self.replace_policy(
                PolicyId::Global { name: k.clone() },
                Some(validate::global_policy(gp)),
            );
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
    fn put_policy_chains(&mut self, id: &PolicyId, fill: Fill) {
        let Some(p) = self.policies.get(id).cloned() else {
            return;
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            for family in [Family::V4, Family::V6] {
                if !self.active_in(&p, dir, family) {
                    continue;
                }
                let chain = self.policy_chain(family, &p, dir, fill);
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
}

/// What differs between the compiler's and the new version of one kind of object: the keys only
/// `old` has, and the entries of `new` (as `value` gives them) that are new or changed.
fn map_diff<'n, K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &'n BTreeMap<K, V>,
    value: impl Fn(&'n K, &'n V) -> &'n V,
) -> (Vec<K>, Vec<(&'n K, &'n V)>) {
    let gone = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    let changed = new
        .iter()
        .map(|(k, v)| (k, value(k, v)))
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .collect();
    (gone, changed)
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
