//! The compiler's index of every pod in the cluster: each pod gets a dense slot number, labels
//! and namespaces map to ascending lists of slots, and a pod set's members are found by bitmap
//! algebra over those lists, without touching the pods themselves. Only the members' addresses
//! are read, from the slots.
//!
//! Scanning 100,000 pods and matching each one's labels costs a few cache misses per pod (every
//! label string is an allocation of its own); the lists are read sequentially instead.

use std::{collections::HashMap, net::IpAddr};

use crate::{
    expr::Expr,
    model::{ClusterState, Key, Pod},
    policy::{NsMatch, PodSet},
    program::Family,
    selector::Requirement,
};

/// Hash maps keyed by label and pod names: foldhash (randomly seeded per process) instead of
/// SipHash, which dominated indexing 100,000 pods.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set of pod slots, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: u32) {
        let w = i as usize / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: u32) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    fn set_all(&mut self, ids: &[u32]) {
        if let Some(&last) = ids.last() {
            let need = last as usize / 64 + 1;
            if need > self.0.len() {
                self.0.resize(need, 0);
            }
        }
        for &i in ids {
            self.0[i as usize / 64] |= 1 << (i % 64);
        }
    }

    fn from_ids(ids: &[u32]) -> Bits {
        let mut b = Bits::default();
        b.set_all(ids);
        b
    }

    fn or(&mut self, other: &Bits) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w |= o;
        }
    }

    fn and(&mut self, other: &Bits) {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w &= other.0.get(i).copied().unwrap_or(0);
        }
    }

    fn and_not(&mut self, other: &Bits) {
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w &= !o;
        }
    }

    pub(super) fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }
}

pub(super) fn family_slot(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

fn has_family(pod: &Pod, f: Family) -> bool {
    pod.ips.iter().any(|ip| super::family_of(ip) == f)
}

fn insert_sorted(list: &mut Vec<u32>, id: u32) {
    if let Err(pos) = list.binary_search(&id) {
        list.insert(pos, id);
    }
}

fn remove_sorted(list: &mut Vec<u32>, id: u32) {
    if let Ok(pos) = list.binary_search(&id) {
        list.remove(pos);
    }
}

/// A pod's addresses, without an allocation for the usual one or two.
#[derive(Clone, Debug)]
enum Ips {
    Inline(u8, [IpAddr; 2]),
    Heap(Vec<IpAddr>),
}

impl Ips {
    fn new(ips: &[IpAddr]) -> Ips {
        if ips.len() <= 2 {
            let mut a = [IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED); 2];
            a[..ips.len()].copy_from_slice(ips);
            Ips::Inline(ips.len() as u8, a)
        } else {
            Ips::Heap(ips.to_vec())
        }
    }

    fn as_slice(&self) -> &[IpAddr] {
        match self {
            Ips::Inline(n, a) => &a[..usize::from(*n)],
            Ips::Heap(v) => v,
        }
    }
}

/// Every pod of the cluster by slot, label and namespace.
#[derive(Debug, Default)]
pub(super) struct PodIndex {
    /// The addresses of the pod in each slot; `None` for a free slot.
    slots: Vec<Option<Ips>>,
    free: Vec<u32>,
    /// The slot of each pod.
    ids: FastMap<Key, u32>,
    /// The slots in use.
    live: Bits,
    /// label key -> label value -> slots of the pods carrying it, ascending.
    by_label: FastMap<String, FastMap<String, Vec<u32>>>,
    /// namespace -> slots of its pods, ascending.
    by_namespace: FastMap<String, Vec<u32>>,
    /// Pods with at least one address of each family (v4, v6).
    with_family: [usize; 2],
}

impl PodIndex {
    pub(super) fn with_capacity(pods: usize) -> Self {
        PodIndex {
            slots: Vec::with_capacity(pods),
            ids: FastMap::with_capacity_and_hasher(pods, Default::default()),
            ..Default::default()
        }
    }

    pub(super) fn insert(&mut self, pod: &Pod) {
        let key = Key::new(pod.namespace.clone(), pod.name.clone());
        if self.ids.contains_key(&key) {
            return;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(Ips::new(&pod.ips));
                id
            }
            None => {
                self.slots.push(Some(Ips::new(&pod.ips)));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        self.place(id, pod);
    }

    /// Files the pod in slot `id` under its namespace and labels.
    fn place(&mut self, id: u32, pod: &Pod) {
        self.live.set(id);
        match self.by_namespace.get_mut(pod.namespace.as_str()) {
            Some(list) => insert_sorted(list, id),
            None => {
                self.by_namespace.insert(pod.namespace.clone(), vec![id]);
            }
        }
        for f in [Family::V4, Family::V6] {
            if has_family(pod, f) {
                self.with_family[family_slot(f)] += 1;
            }
        }
        self.add_labels(id, pod);
    }

    /// Adds the pods of `other`, an index of other pods built on its own.
    pub(super) fn merge(&mut self, other: PodIndex) {
        let offset = self.slots.len() as u32;
        self.slots.extend(other.slots);
        self.free.extend(other.free.iter().map(|id| id + offset));
        for (key, id) in other.ids {
            self.ids.insert(key, id + offset);
        }
        for id in other.live.ones() {
            self.live.set(id + offset);
        }
        // Every slot of `other` is above every slot here: appending keeps the lists ascending.
        for (k, values) in other.by_label {
            let mine = self.by_label.entry(k).or_default();
            for (v, list) in values {
                mine.entry(v)
                    .or_default()
                    .extend(list.iter().map(|id| id + offset));
            }
        }
        for (ns, list) in other.by_namespace {
            self.by_namespace
                .entry(ns)
                .or_default()
                .extend(list.iter().map(|id| id + offset));
        }
        for (mine, theirs) in self.with_family.iter_mut().zip(other.with_family) {
            *mine += theirs;
        }
    }

    fn add_labels(&mut self, id: u32, pod: &Pod) {
        for (k, v) in &pod.labels {
            // Look up by &str first, so that only a new key or value allocates.
            let values = match self.by_label.get_mut(k.as_str()) {
                Some(values) => values,
                None => self.by_label.entry(k.clone()).or_default(),
            };
            match values.get_mut(v.as_str()) {
                Some(list) => insert_sorted(list, id),
                None => {
                    values.insert(v.clone(), vec![id]);
                }
            }
        }
    }

    fn remove_labels(&mut self, id: u32, pod: &Pod) {
        for (k, v) in &pod.labels {
            let Some(values) = self.by_label.get_mut(k.as_str()) else {
                continue;
            };
            if let Some(list) = values.get_mut(v.as_str()) {
                remove_sorted(list, id);
                if list.is_empty() {
                    values.remove(v.as_str());
                }
            }
            if values.is_empty() {
                self.by_label.remove(k.as_str());
            }
        }
    }

    pub(super) fn remove(&mut self, pod: &Pod) {
        let key = Key::new(pod.namespace.clone(), pod.name.clone());
        let Some(id) = self.ids.remove(&key) else {
            return;
        };
        self.remove_labels(id, pod);
        for f in [Family::V4, Family::V6] {
            if has_family(pod, f) {
                self.with_family[family_slot(f)] -= 1;
            }
        }
        if let Some(list) = self.by_namespace.get_mut(pod.namespace.as_str()) {
            remove_sorted(list, id);
            if list.is_empty() {
                self.by_namespace.remove(pod.namespace.as_str());
            }
        }
        self.slots[id as usize] = None;
        self.live.clear(id);
        self.free.push(id);
    }

    /// Pods with an address of family `f`.
    pub(super) fn count(&self, f: Family) -> usize {
        self.with_family[family_slot(f)]
    }

    /// Updates a pod already in the index (labels and addresses).
    pub(super) fn relabel(&mut self, old: &Pod, new: &Pod) {
        let key = Key::new(new.namespace.clone(), new.name.clone());
        let Some(&id) = self.ids.get(&key) else {
            return self.insert(new);
        };
        for f in [Family::V4, Family::V6] {
            let slot = &mut self.with_family[family_slot(f)];
            *slot = *slot + usize::from(has_family(new, f)) - usize::from(has_family(old, f));
        }
        self.slots[id as usize] = Some(Ips::new(&new.ips));
        if old.labels != new.labels {
            self.remove_labels(id, old);
            self.add_labels(id, new);
        }
    }

    /// The addresses of the pod in slot `id`.
    pub(super) fn ips(&self, id: u32) -> &[IpAddr] {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map_or(&[], Ips::as_slice)
    }

    fn list(&self, k: &str, v: &str) -> &[u32] {
        self.by_label
            .get(k)
            .and_then(|values| values.get(v))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Pods whose label `k` is one of `values`.
    fn any_of<'v>(&self, k: &str, values: impl IntoIterator<Item = &'v String>) -> Bits {
        let mut b = Bits::default();
        for v in values {
            b.set_all(self.list(k, v));
        }
        b
    }

    /// Pods that carry label `k`.
    fn has_key(&self, k: &str) -> Bits {
        let mut b = Bits::default();
        for list in self
            .by_label
            .get(k)
            .into_iter()
            .flat_map(|values| values.values())
        {
            b.set_all(list);
        }
        b
    }

    /// Every pod not in `b`.
    fn not(&self, b: &Bits) -> Bits {
        let mut out = self.live.clone();
        out.and_not(b);
        out
    }

    fn requirement(&self, r: &Requirement) -> Bits {
        match r {
            Requirement::In(k, vs) => self.any_of(k, vs),
            Requirement::NotIn(k, vs) => self.not(&self.any_of(k, vs)),
            Requirement::Exists(k) => self.has_key(k),
            Requirement::DoesNotExist(k) => self.not(&self.has_key(k)),
        }
    }

    fn expr(&self, e: &Expr) -> Bits {
        match e {
            Expr::All => self.live.clone(),
            Expr::Has(k) => self.has_key(k),
            Expr::Eq(k, v) => Bits::from_ids(self.list(k, v)),
            Expr::Ne(k, v) => self.not(&Bits::from_ids(self.list(k, v))),
            Expr::In(k, vs) => self.any_of(k, vs),
            Expr::NotIn(k, vs) => self.not(&self.any_of(k, vs)),
            Expr::Not(e) => self.not(&self.expr(e)),
            Expr::And(es) => {
                let mut b = self.live.clone();
                for e in es {
                    b.and(&self.expr(e));
                }
                b
            }
            Expr::Or(es) => {
                let mut b = Bits::default();
                for e in es {
                    b.or(&self.expr(e));
                }
                b
            }
        }
    }

    /// The slots of every pod of `set`. `state` supplies the namespaces' labels (a namespace
    /// the datastore does not know has only its name label).
    pub(super) fn members(&self, state: &ClusterState, set: &PodSet) -> Bits {
        let mut bits = match &set.namespaces {
            NsMatch::Named(n) => Bits::from_ids(self.by_namespace.get(n).map(Vec::as_slice).unwrap_or(&[])),
            NsMatch::Selector(s) if s.is_everything() => self.live.clone(),
            NsMatch::Selector(_) => {
                let mut b = Bits::default();
                for (n, list) in &self.by_namespace {
                    if set.namespaces.matches(&super::namespace(state, n)) {
                        b.set_all(list);
                    }
                }
                b
            }
        };
        for r in set.pods.selector.requirements() {
            bits.and(&self.requirement(r));
        }
        if let Some(e) = &set.pods.expr {
            bits.and(&self.expr(e));
        }
        bits
    }

    /// The namespaces that have pods.
    #[cfg(test)]
    pub(super) fn namespaces(&self) -> std::collections::BTreeSet<&str> {
        self.by_namespace.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::Namespace, policy::PodMatch, selector::Selector};
    use std::collections::{BTreeMap, BTreeSet};

    fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ip: &str) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ips: vec![ip.parse().unwrap()],
            ..Default::default()
        }
    }

    /// A small deterministic generator, so the test needs no dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    const KEYS: [&str; 3] = ["app", "tier", "env"];
    const VALUES: [&str; 3] = ["a", "b", "c"];

    fn random_expr(r: &mut Lcg, depth: u32) -> Expr {
        let k = KEYS[r.next(3) as usize].to_string();
        let v = VALUES[r.next(3) as usize].to_string();
        let vs: BTreeSet<String> = (0..=r.next(2))
            .map(|_| VALUES[r.next(3) as usize].to_string())
            .collect();
        match r.next(if depth == 0 { 6 } else { 9 }) {
            0 => Expr::All,
            1 => Expr::Has(k),
            2 => Expr::Eq(k, v),
            3 => Expr::Ne(k, v),
            4 => Expr::In(k, vs),
            5 => Expr::NotIn(k, vs),
            6 => Expr::Not(Box::new(random_expr(r, depth - 1))),
            7 => Expr::And((0..=r.next(2)).map(|_| random_expr(r, depth - 1)).collect()),
            _ => Expr::Or((0..=r.next(2)).map(|_| random_expr(r, depth - 1)).collect()),
        }
    }

    fn random_selector(r: &mut Lcg) -> Selector {
        let reqs = (0..r.next(3))
            .map(|_| {
                let k = KEYS[r.next(3) as usize].to_string();
                let vs: BTreeSet<String> = (0..=r.next(2))
                    .map(|_| VALUES[r.next(3) as usize].to_string())
                    .collect();
                match r.next(4) {
                    0 => Requirement::In(k, vs),
                    1 => Requirement::NotIn(k, vs),
                    2 => Requirement::Exists(k),
                    _ => Requirement::DoesNotExist(k),
                }
            })
            .collect();
        Selector::from_requirements(reqs)
    }

    /// Bitmap algebra over the index selects exactly the pods that matching each pod selects,
    /// across random pods, removals, relabels, selectors, expressions and namespace matches.
    #[test]
    fn index_members_equal_matching_every_pod() {
        let mut r = Lcg(7);
        let mut state = ClusterState::default();
        for ns in ["n0", "n1", "n2"] {
            state.namespaces.insert(
                ns.into(),
                Namespace {
                    name: ns.into(),
                    labels: [
                        ("kubernetes.io/metadata.name".to_string(), ns.to_string()),
                        ("team".to_string(), if ns == "n2" { "x" } else { "y" }.to_string()),
                    ]
                    .into(),
                },
            );
        }
        let mut index = PodIndex::default();
        for i in 0..300 {
            let mut labels: Vec<(&str, &str)> = Vec::new();
            for k in KEYS {
                if r.next(4) != 0 {
                    labels.push((k, VALUES[r.next(3) as usize]));
                }
            }
            // n3 has pods but no Namespace object.
            let p = pod(
                &format!("n{}", r.next(4)),
                &format!("p{i}"),
                &labels,
                &format!("10.0.{}.{}", i / 250, i % 250),
            );
            index.insert(&p);
            state
                .pods
                .insert(Key::new(p.namespace.clone(), p.name.clone()), p);
        }
        // Remove and relabel some, so slots are freed and reused.
        let keys: Vec<Key> = state.pods.keys().cloned().collect();
        for k in keys.iter().step_by(7) {
            let old = state.pods.remove(k).unwrap();
            index.remove(&old);
        }
        for k in keys.iter().step_by(5) {
            let Some(old) = state.pods.get(k).cloned() else {
                continue;
            };
            let mut new = old.clone();
            new.labels.insert("app".into(), VALUES[r.next(3) as usize].into());
            new.labels.remove("env");
            index.relabel(&old, &new);
            state.pods.insert(k.clone(), new);
        }
        for i in 0..40 {
            let p = pod(
                "n1",
                &format!("late{i}"),
                &[("tier", "a")],
                &format!("10.1.0.{i}"),
            );
            index.insert(&p);
            state.pods.insert(Key::new("n1", format!("late{i}")), p);
        }
        assert_eq!(index.namespaces(), ["n0", "n1", "n2", "n3"].into());
        let by_ip: BTreeMap<IpAddr, &Pod> = state.pods.values().map(|p| (p.ips[0], p)).collect();
        for case in 0..400 {
            let namespaces = match case % 3 {
                0 => NsMatch::Named(format!("n{}", r.next(4))),
                1 => NsMatch::Selector(Selector::everything()),
                _ => NsMatch::Selector(Selector::label("team", "y")),
            };
            let set = PodSet {
                namespaces,
                pods: PodMatch {
                    selector: random_selector(&mut r),
                    expr: (r.next(2) == 0).then(|| random_expr(&mut r, 3)),
                },
            };
            let got: BTreeSet<IpAddr> = index
                .members(&state, &set)
                .ones()
                .flat_map(|id| index.ips(id).to_vec())
                .collect();
            let want: BTreeSet<IpAddr> = by_ip
                .iter()
                .filter(|(_, p)| set.matches(Some(&super::super::namespace(&state, &p.namespace)), p))
                .map(|(ip, _)| *ip)
                .collect();
            assert_eq!(got, want, "case {case}: {set:?}");
        }
    }
}
