//! Storage: the per-family prefix tables, the interner of attribute sets, and the one place
//! paths are set or removed, with the bookkeeping ([`Batch`]) that follows every change.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::decision::{Decide, Summary};
use super::{BestRoute, ChangeKind, Hasher, LOCAL, Map, Path, PeerIdx, Rib, RouteAttrs, RouteChange};

/// All candidates for one prefix; the single-path case (almost every prefix with few peers) is
/// stored inline without a `Vec`.
#[derive(Clone, Debug)]
pub(super) enum Paths {
    One(Path),
    // Boxed so the enum stays 16 bytes (the niche of the inline path's Arc tells them apart).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Path>>),
}

impl Paths {
    pub(super) fn as_slice(&self) -> &[Path] {
        match self {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }

    /// Replaces the path from `path.peer`, or adds it.
    fn upsert(&mut self, path: Path) {
        match self {
            Paths::One(p) if p.peer == path.peer => *p = path,
            Paths::One(p) => {
                let first = p.clone();
                *self = Paths::Many(Box::new(vec![first, path]));
            }
            Paths::Many(v) => match v.iter_mut().find(|p| p.peer == path.peer) {
                Some(p) => *p = path,
                None => v.push(path),
            },
        }
    }

    /// Removes `peer`'s path; returns whether one was removed and whether none are left.
    fn remove(&mut self, peer: PeerIdx) -> (bool, bool) {
        match self {
            Paths::One(p) => {
                let hit = p.peer == peer;
                (hit, hit)
            }
            Paths::Many(v) => {
                let before = v.len();
                v.retain(|p| p.peer != peer);
                let hit = v.len() != before;
                if v.len() == 1 {
                    let only = v.pop().expect("one path left");
                    *self = Paths::One(only);
                }
                (hit, false)
            }
        }
    }

    pub(super) fn get(&self, peer: PeerIdx) -> Option<&Path> {
        self.as_slice().iter().find(|p| p.peer == peer)
    }
}

/// The two address families' prefix types share the RIB code through this trait.
pub(super) trait Pfx: Copy + Eq + Hash + Ord + Into<IpNet> + std::fmt::Debug {
    /// The family's slot in per-family counters (`super::slot`).
    const SLOT: usize;
    fn table(t: &Tables) -> &Map<Self, Paths>;
    fn table_mut(t: &mut Tables) -> &mut Map<Self, Paths>;
}

impl Pfx for Ipv4Net {
    const SLOT: usize = 0;
    fn table(t: &Tables) -> &Map<Self, Paths> {
        &t.v4
    }
    fn table_mut(t: &mut Tables) -> &mut Map<Self, Paths> {
        &mut t.v4
    }
}

impl Pfx for Ipv6Net {
    const SLOT: usize = 1;
    fn table(t: &Tables) -> &Map<Self, Paths> {
        &t.v6
    }
    fn table_mut(t: &mut Tables) -> &mut Map<Self, Paths> {
        &mut t.v6
    }
}

#[derive(Default)]
pub(super) struct Tables {
    pub(super) v4: Map<Ipv4Net, Paths>,
    pub(super) v6: Map<Ipv6Net, Paths>,
}

/// Interned attribute sets: identical sets share one allocation.
#[derive(Default)]
pub(super) struct Interner {
    set: HashSet<Arc<RouteAttrs>, Hasher>,
    /// Size after the last sweep; the next sweep runs when the set has doubled.
    swept_at: usize,
}

impl Interner {
    pub(super) fn intern(&mut self, attrs: RouteAttrs) -> Arc<RouteAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return a.clone();
        }
        if self.set.len() >= 2 * self.swept_at + 1024 {
            // Sets nobody references any more (only the interner holds them).
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
        let a = Arc::new(attrs);
        self.set.insert(a.clone());
        a
    }
}

impl Rib {
    pub(super) fn set_path(
        &mut self,
        batch: &mut Batch,
        peer: PeerIdx,
        prefix: IpNet,
        attrs: Option<Arc<RouteAttrs>>,
    ) {
        match prefix {
            IpNet::V4(p) => self.set_path_in::<Ipv4Net>(batch, peer, p, attrs),
            IpNet::V6(p) => self.set_path_in::<Ipv6Net>(batch, peer, p, attrs),
        }
    }

    pub(super) fn set_path_in<P: Pfx>(
        &mut self,
        batch: &mut Batch,
        peer: PeerIdx,
        prefix: P,
        attrs: Option<Arc<RouteAttrs>>,
    ) {
        let table = P::table_mut(&mut self.tables);
        let ctx = Decide {
            peers: &self.peers,
            multipath: self.config.multipath,
        };
        type Step = (bool, bool, Option<Summary>, Option<Summary>);
        use std::collections::hash_map::Entry;
        let (added, removed, before, after): Step = match (table.entry(prefix), attrs) {
            (Entry::Vacant(_), None) => return,
            (Entry::Vacant(v), Some(attrs)) => {
                let paths = v.insert(Paths::One(Path {
                    attrs,
                    peer,
                    stale: false,
                }));
                let before = batch.wants_changes.then(Summary::default);
                (
                    true,
                    false,
                    before,
                    batch.wants_changes.then(|| ctx.summary(Some(paths))),
                )
            }
            (Entry::Occupied(mut o), Some(attrs)) => {
                let paths = o.get_mut();
                let before = batch.wants_changes.then(|| ctx.summary(Some(paths)));
                let existed = paths.get(peer).is_some_and(|p| !p.stale);
                paths.upsert(Path {
                    attrs,
                    peer,
                    stale: false,
                });
                let after = batch.wants_changes.then(|| ctx.summary(Some(paths)));
                (!existed, false, before, after)
            }
            (Entry::Occupied(mut o), None) => {
                let paths = o.get_mut();
                let before = batch.wants_changes.then(|| ctx.summary(Some(paths)));
                let was_fresh = paths.get(peer).is_some_and(|p| !p.stale);
                let (hit, empty) = paths.remove(peer);
                if !hit {
                    return;
                }
                let after = if empty {
                    o.remove();
                    batch.wants_changes.then(Summary::default)
                } else {
                    batch.wants_changes.then(|| ctx.summary(Some(o.get())))
                };
                (false, was_fresh, before, after)
            }
        };
        if peer != LOCAL {
            batch.accepted_delta[P::SLOT] += i64::from(added) - i64::from(removed);
        }
        if let (Some(before), Some(after)) = (before, after) {
            batch.note(prefix.into(), before, after, self.config.track_changes);
        }
    }

    /// Applies a batch's bookkeeping: per-peer counters, dirty marks, change records.
    pub(super) fn finish(&mut self, batch: Batch) {
        if let Some(p) = self.peers.get_mut(batch.peer as usize).and_then(Option::as_mut) {
            for (accepted, delta) in p.accepted.iter_mut().zip(batch.accepted_delta) {
                *accepted = accepted.saturating_add_signed(delta);
            }
        }
        if batch.changed.is_empty() {
            return;
        }
        for p in self.peers.iter_mut().flatten() {
            if p.session.is_some() && !p.dirty_all {
                p.dirty.extend(batch.changed.iter().copied());
            }
        }
        self.changes.extend(batch.records);
    }

    /// Takes the best-route changes recorded since the last call.
    pub fn take_changes(&mut self) -> Vec<RouteChange> {
        std::mem::take(&mut self.changes)
    }

    /// Number of prefixes in the Loc-RIB.
    pub fn len(&self) -> usize {
        self.tables.v4.len() + self.tables.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The best route(s) of one prefix.
    pub fn best(&self, prefix: &IpNet) -> Option<BestRoute> {
        let ctx = Decide {
            peers: &self.peers,
            multipath: self.config.multipath,
        };
        let paths = match prefix {
            IpNet::V4(p) => self.tables.v4.get(p),
            IpNet::V6(p) => self.tables.v6.get(p),
        }?;
        ctx.best_route(*prefix, paths)
    }

    /// Every best route, sorted by prefix.
    pub fn best_routes(&self) -> Vec<BestRoute> {
        let ctx = Decide {
            peers: &self.peers,
            multipath: self.config.multipath,
        };
        let mut out: Vec<BestRoute> = self
            .tables
            .v4
            .iter()
            .filter_map(|(p, paths)| ctx.best_route(IpNet::V4(*p), paths))
            .chain(
                self.tables
                    .v6
                    .iter()
                    .filter_map(|(p, paths)| ctx.best_route(IpNet::V6(*p), paths)),
            )
            .collect();
        out.sort_by_key(|r| r.prefix);
        out
    }

    /// All candidate paths of one prefix (for tests and diagnostics).
    pub fn paths(&self, prefix: &IpNet) -> Vec<Path> {
        match prefix {
            IpNet::V4(p) => self.tables.v4.get(p).map(|x| x.as_slice().to_vec()),
            IpNet::V6(p) => self.tables.v6.get(p).map(|x| x.as_slice().to_vec()),
        }
        .unwrap_or_default()
    }

    /// Approximate heap bytes per route, for benchmarks (tables and interned sets).
    pub fn memory_estimate(&self) -> usize {
        let slot = std::mem::size_of::<(Ipv4Net, Paths)>() + 1;
        let slot6 = std::mem::size_of::<(Ipv6Net, Paths)>() + 1;
        self.tables.v4.capacity() * slot + self.tables.v6.capacity() * slot6
    }
}

/// Bookkeeping of one RIB operation.
pub(super) struct Batch {
    peer: PeerIdx,
    accepted_delta: [i64; 2],
    /// Somebody needs to know which prefixes changed best route.
    wants_changes: bool,
    changed: Vec<IpNet>,
    records: Vec<RouteChange>,
}

impl Batch {
    pub(super) fn new(rib: &Rib, peer: PeerIdx) -> Self {
        let wants_changes = rib.config.track_changes
            || rib
                .peers
                .iter()
                .enumerate()
                .any(|(i, p)| p.as_ref().is_some_and(|p| p.session.is_some()) && i as PeerIdx != peer);
        Batch {
            peer,
            accepted_delta: [0; 2],
            wants_changes,
            changed: Vec::new(),
            records: Vec::new(),
        }
    }

    fn note(&mut self, prefix: IpNet, before: Summary, after: Summary, track: bool) {
        if before == after {
            return;
        }
        self.changed.push(prefix);
        if track {
            let kind = match (&before.best, &after.best) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Withdrawn,
                _ => ChangeKind::Changed,
            };
            self.records.push(RouteChange {
                prefix,
                kind,
                next_hops: after.next_hops,
            });
        }
    }
}
