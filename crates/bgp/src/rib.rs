//! The routing information bases (RFC 4271 §3.2, §9): Adj-RIB-In per peer, the Loc-RIB with
//! the §9.1 decision process, and Adj-RIB-Out per peer; route reflection (RFC 4456), graceful
//! restart as receiving speaker (RFC 4724 §4.2), import/export prefix filters and max-prefix.
//!
//! Memory layout, since a full table is a million prefixes: one hash map per family from prefix
//! to its candidate paths; a path is a peer index and an `Arc` to an interned attribute set
//! (16 bytes), stored inline when it is the only one. The Adj-RIB-In is that same table viewed
//! per peer (each path remembers its peer), so received routes are stored once. Attribute sets
//! are interned, so the thousands of prefixes of one UPDATE share one allocation.
//!
//! The RIB is pure: UPDATE values in, best-route changes and UPDATE values out. The driver
//! decides when to flush a peer's Adj-RIB-Out (MRAI).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::PrefixFilter;
use crate::wire::{
    Action, AsPath, Family, MAX_MESSAGE_LEN, MpReach, MpUnreach, Origin, PathAttributes, RawAttribute, Update,
};

type Hasher = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Hasher>;

/// Index of a peer in the RIB; [`LOCAL`] is the speaker itself (originated prefixes).
pub type PeerIdx = u32;
pub const LOCAL: PeerIdx = 0;

/// Well-known communities (RFC 1997).
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
/// LOCAL_PREF assumed when a route carries none.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A stored attribute set: the UPDATE's path attributes without the MP fields, with the next hop
/// pulled out (IPv4 NEXT_HOP or the MP_REACH next hops).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    pub attrs: PathAttributes,
    pub next_hop: IpAddr,
    /// RFC 2545 link-local next hop that may accompany an IPv6 global one.
    pub link_local: Option<Ipv6Addr>,
}

/// One candidate path for a prefix.
#[derive(Clone, Debug)]
pub struct Path {
    pub attrs: Arc<RouteAttrs>,
    pub peer: PeerIdx,
    /// Kept from a peer that is restarting (RFC 4724), until it refreshes or the timer ends.
    pub stale: bool,
}

/// All candidates for one prefix; the single-path case (almost every prefix with few peers) is
/// stored inline without a `Vec`.
#[derive(Clone, Debug)]
enum Paths {
    One(Path),
    // Boxed so the enum stays 16 bytes (the niche of the inline path's Arc tells them apart).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Path>>),
}

impl Paths {
    fn as_slice(&self) -> &[Path] {
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

    fn get(&self, peer: PeerIdx) -> Option<&Path> {
        self.as_slice().iter().find(|p| p.peer == peer)
    }
}

/// The two address families' prefix types share the RIB code through this trait.
trait Pfx: Copy + Eq + Hash + Ord + Into<IpNet> + std::fmt::Debug {
    /// The family's slot in per-family counters ([`slot`]).
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

/// The slot of a prefix's family in per-family counters: 0 IPv4, 1 IPv6 (unicast).
fn slot(prefix: &IpNet) -> usize {
    match prefix {
        IpNet::V4(_) => Ipv4Net::SLOT,
        IpNet::V6(_) => Ipv6Net::SLOT,
    }
}

#[derive(Default)]
struct Tables {
    v4: Map<Ipv4Net, Paths>,
    v6: Map<Ipv6Net, Paths>,
}

/// Interned attribute sets: identical sets share one allocation.
#[derive(Default)]
struct Interner {
    set: HashSet<Arc<RouteAttrs>, Hasher>,
    /// Size after the last sweep; the next sweep runs when the set has doubled.
    swept_at: usize,
}

impl Interner {
    fn intern(&mut self, attrs: RouteAttrs) -> Arc<RouteAttrs> {
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

/// What the RIB needs to know about a peer, from its configuration.
#[derive(Clone, Debug)]
pub struct PeerPolicy {
    pub address: IpAddr,
    pub remote_as: u32,
    /// Our AS towards this peer.
    pub local_as: u32,
    pub rr_client: bool,
    pub next_hop_self: bool,
    pub import: PrefixFilter,
    pub export: PrefixFilter,
    pub max_prefixes: Option<u32>,
}

impl PeerPolicy {
    pub fn ibgp(&self) -> bool {
        self.remote_as == self.local_as
    }
}

/// The parts of an established session the RIB uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub router_id: Ipv4Addr,
    pub families: Vec<Family>,
    /// Our address on the session, used as next hop when we set ourselves.
    pub local_address: IpAddr,
    /// An address of the other family on the same interface, the next hop for routes of the
    /// family the session's own address cannot serve (IPv6 routes over an IPv4 session).
    pub local_alt_address: Option<IpAddr>,
    /// The peer advertised graceful restart.
    pub graceful_restart: bool,
    /// Families listed in the peer's graceful-restart capability: those we keep as stale if
    /// the session drops.
    pub graceful_families: Vec<Family>,
    /// The peer's OPEN carried the graceful-restart R bit with these families' F bits set;
    /// used to decide whether stale routes survive the re-establishment.
    pub preserved_families: Vec<Family>,
}

/// Counters for status output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
    /// UPDATEs used without their malformed attributes (RFC 7606 attribute discard).
    pub attribute_discards: u64,
    /// UPDATEs whose prefixes were withdrawn instead (RFC 7606 treat-as-withdraw).
    pub treated_as_withdraw: u64,
    /// UPDATEs ignored for naming our own address as next hop (RFC 4271 §6.3).
    pub own_next_hop: u64,
    /// `received`, `accepted` and `advertised` of IPv4 unicast (`[0]`) and IPv6 unicast (`[1]`).
    pub families: [FamilyCounters; 2],
}

/// Prefix counts of one address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyCounters {
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
}

impl PeerCounters {
    /// The families in the order of [`PeerCounters::families`].
    pub const FAMILIES: [Family; 2] = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];
}

/// How often the peer's UPDATEs got each RFC 7606 treatment, since the peer was added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Treatments {
    attribute_discard: u64,
    treat_as_withdraw: u64,
    own_next_hop: u64,
}

struct RibPeer {
    policy: PeerPolicy,
    session: Option<SessionInfo>,
    /// Accepted paths in the tables from this peer (excluding stale ones), per family slot.
    accepted: [u64; 2],
    /// Prefixes received but rejected by import policy or loop detection.
    rejected: HashSet<IpNet, Hasher>,
    /// Adj-RIB-Out: what the peer has been sent.
    adj_out: Map<IpNet, Arc<RouteAttrs>>,
    /// Prefixes whose advertisement may have to change.
    dirty: HashSet<IpNet, Hasher>,
    /// Every prefix must be compared (new session, export policy change, route refresh).
    dirty_all: bool,
    /// End-of-RIB still to be sent after the initial table (families).
    eor_pending: Vec<Family>,
    /// Families with stale paths from a previous session of this peer.
    stale: Vec<Family>,
    treatments: Treatments,
}

/// Kind of a best-route change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Withdrawn,
}

/// A change of a prefix's best route(s), for the kernel installer and the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteChange {
    pub prefix: IpNet,
    pub kind: ChangeKind,
    /// Next hops of the multipath set; empty for withdrawn and for locally originated routes.
    pub next_hops: Vec<IpAddr>,
}

/// A best route as shown by `caracal bgp status --routes`.
#[derive(Clone, Debug)]
pub struct BestRoute {
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
    pub attrs: Arc<RouteAttrs>,
    /// The peer the first best path came from ([`LOCAL`] for originated prefixes).
    pub peer: PeerIdx,
}

/// Speaker-wide parameters.
#[derive(Clone, Debug)]
pub struct RibConfig {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    /// Set: we are a route reflector (RFC 4456).
    pub cluster_id: Option<Ipv4Addr>,
    pub multipath: bool,
    /// Record [`RouteChange`]s (for the kernel installer); off saves work when nobody listens.
    pub track_changes: bool,
}

/// Result of applying one UPDATE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The peer now has more accepted prefixes than its `max_prefixes`: stop it with Cease 6/1.
    pub max_prefixes_exceeded: bool,
    /// End-of-RIB received for this family (stale paths of the family have been removed).
    pub end_of_rib: Option<Family>,
    /// The UPDATE gave this, our own address on the session, as next hop; its announcements
    /// were ignored and the peer's earlier routes for them withdrawn (RFC 4271 §6.3).
    pub own_next_hop: Option<IpAddr>,
}

/// Adj-RIBs-In, Loc-RIB and Adj-RIBs-Out of the whole speaker.
pub struct Rib {
    config: RibConfig,
    tables: Tables,
    interner: Interner,
    /// Indexed by [`PeerIdx`]; slot 0 is the local speaker and always `None`.
    peers: Vec<Option<RibPeer>>,
    changes: Vec<RouteChange>,
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        Rib {
            config,
            tables: Tables::default(),
            interner: Interner::default(),
            peers: vec![None],
            changes: Vec::new(),
        }
    }

    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    /// Changes the speaker-wide parameters (route reflection, multipath) on reload.
    pub fn set_config(&mut self, config: RibConfig) {
        self.config = config;
        self.mark_all_dirty();
    }

    // ---------------------------------------------------------------- peers

    /// Adds a peer; returns its index.
    pub fn add_peer(&mut self, policy: PeerPolicy) -> PeerIdx {
        let peer = RibPeer {
            policy,
            session: None,
            accepted: [0; 2],
            rejected: HashSet::default(),
            adj_out: Map::default(),
            dirty: HashSet::default(),
            dirty_all: false,
            eor_pending: Vec::new(),
            stale: Vec::new(),
            treatments: Treatments::default(),
        };
        match self.peers.iter().skip(1).position(Option::is_none) {
            Some(i) => {
                self.peers[i + 1] = Some(peer);
                (i + 1) as PeerIdx
            }
            None => {
                self.peers.push(Some(peer));
                (self.peers.len() - 1) as PeerIdx
            }
        }
    }

    /// Removes a peer and all its routes.
    pub fn remove_peer(&mut self, peer: PeerIdx) {
        self.peer_down(peer, false);
        if let Some(slot) = self.peers.get_mut(peer as usize) {
            *slot = None;
        }
    }

    /// Changes a peer's policy. Export changes re-evaluate everything we sent; import changes
    /// only apply to routes received from now on (the driver asks for a route refresh).
    pub fn set_policy(&mut self, peer: PeerIdx, policy: PeerPolicy) {
        if let Some(p) = self.peer_mut(peer) {
            p.policy = policy;
            p.dirty_all = true;
        }
    }

    pub fn policy(&self, peer: PeerIdx) -> Option<&PeerPolicy> {
        self.peer(peer).map(|p| &p.policy)
    }

    fn peer(&self, peer: PeerIdx) -> Option<&RibPeer> {
        self.peers.get(peer as usize).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, peer: PeerIdx) -> Option<&mut RibPeer> {
        self.peers.get_mut(peer as usize).and_then(Option::as_mut)
    }

    pub fn counters(&self, peer: PeerIdx) -> PeerCounters {
        match self.peer(peer) {
            Some(p) => {
                let mut families = [FamilyCounters::default(); 2];
                for (f, accepted) in families.iter_mut().zip(p.accepted) {
                    f.accepted = accepted;
                    f.received = accepted;
                }
                for prefix in &p.rejected {
                    families[slot(prefix)].received += 1;
                }
                for prefix in p.adj_out.keys() {
                    families[slot(prefix)].advertised += 1;
                }
                PeerCounters {
                    received: p.accepted.iter().sum::<u64>() + p.rejected.len() as u64,
                    accepted: p.accepted.iter().sum(),
                    advertised: p.adj_out.len() as u64,
                    attribute_discards: p.treatments.attribute_discard,
                    treated_as_withdraw: p.treatments.treat_as_withdraw,
                    own_next_hop: p.treatments.own_next_hop,
                    families,
                }
            }
            None => PeerCounters::default(),
        }
    }

    /// The session reached Established: the whole Loc-RIB is to be advertised to it, followed
    /// by End-of-RIB when it does graceful restart. Stale routes from a previous session whose
    /// family the peer did not preserve (F bit) are removed now (RFC 4724 §4.2).
    pub fn peer_up(&mut self, peer: PeerIdx, session: SessionInfo) {
        let Some(p) = self.peer_mut(peer) else { return };
        p.adj_out.clear();
        p.dirty.clear();
        p.dirty_all = true;
        p.eor_pending = if session.graceful_restart {
            session.families.clone()
        } else {
            vec![]
        };
        let drop: Vec<Family> = p
            .stale
            .iter()
            .copied()
            .filter(|f| !session.graceful_restart || !session.preserved_families.contains(f))
            .collect();
        p.session = Some(session);
        for f in drop {
            self.purge_stale(peer, Some(f));
        }
    }

    /// The session went down. With `keep_stale` (the peer does graceful restart) its routes
    /// stay, marked stale, until [`Rib::purge_stale`]; otherwise they are removed.
    pub fn peer_down(&mut self, peer: PeerIdx, keep_stale: bool) {
        let Some(p) = self.peer_mut(peer) else { return };
        // RFC 4724 §4.2: only families listed in the peer's graceful-restart capability are
        // kept; a capability without families means "aware, but keep nothing".
        let families: Vec<Family> = p
            .session
            .take()
            .map(|s| {
                s.families
                    .into_iter()
                    .filter(|f| s.graceful_families.contains(f))
                    .collect()
            })
            .unwrap_or_default();
        p.adj_out.clear();
        p.dirty.clear();
        p.dirty_all = false;
        p.eor_pending.clear();
        p.rejected.clear();
        if keep_stale && !families.is_empty() {
            p.stale = families.clone();
            p.accepted = [0; 2];
            for f in &families {
                if *f == Family::IPV4_UNICAST {
                    mark_stale::<Ipv4Net>(&mut self.tables, peer);
                } else if *f == Family::IPV6_UNICAST {
                    mark_stale::<Ipv6Net>(&mut self.tables, peer);
                }
            }
            self.purge_peer(peer, |prefix| !families.contains(&Family::of(prefix)));
        } else {
            self.purge_peer(peer, |_| true);
        }
    }

    /// Removes a peer's stale paths (of one family, or all): End-of-RIB arrived or the restart
    /// timer ran out.
    pub fn purge_stale(&mut self, peer: PeerIdx, family: Option<Family>) {
        if let Some(p) = self.peer_mut(peer) {
            p.stale.retain(|f| family.is_some_and(|x| x != *f));
        }
        let v4 = family.is_none_or(|f| f == Family::IPV4_UNICAST);
        let v6 = family.is_none_or(|f| f == Family::IPV6_UNICAST);
        self.purge_peer(peer, move |p: &IpNet| {
            (v4 && matches!(p, IpNet::V4(_))) || (v6 && matches!(p, IpNet::V6(_)))
        });
    }

    /// Whether the peer still has stale paths.
    pub fn has_stale(&self, peer: PeerIdx) -> bool {
        self.peer(peer).is_some_and(|p| !p.stale.is_empty())
    }

    /// The peer asked for our routes again (RFC 2918): resend the family.
    pub fn route_refresh(&mut self, peer: PeerIdx, family: Family) {
        if let Some(p) = self.peer_mut(peer) {
            p.adj_out.retain(|prefix, _| Family::of(prefix) != family);
            p.dirty_all = true;
        }
    }

    /// Removes `peer`'s paths for prefixes matching `select` (stale ones only when the peer is
    /// up, since fresh ones replaced them).
    fn purge_peer(&mut self, peer: PeerIdx, select: impl Fn(&IpNet) -> bool) {
        let only_stale = self.peer(peer).is_some_and(|p| p.session.is_some());
        let mut batch = Batch::new(self, peer);
        purge::<Ipv4Net>(self, &mut batch, peer, only_stale, &select);
        purge::<Ipv6Net>(self, &mut batch, peer, only_stale, &select);
        if !only_stale && let Some(p) = self.peer_mut(peer) {
            p.accepted = [0; 2];
        }
        self.finish(batch);
    }

    fn mark_all_dirty(&mut self) {
        for p in self.peers.iter_mut().flatten() {
            if p.session.is_some() {
                p.dirty_all = true;
            }
        }
    }

    // ---------------------------------------------------------------- import

    /// Applies an UPDATE from `peer` with the RFC 7606 treatment its decoding called for
    /// (`None` for a well-formed one). Treat-as-withdraw withdraws every prefix it carries, and
    /// such an UPDATE is never an End-of-RIB, whatever is left of it. A session reset never
    /// reaches here (the session ends instead); should one, it is treated as withdraw.
    pub fn apply_update(
        &mut self,
        peer: PeerIdx,
        update: Update,
        treatment: Option<Action>,
    ) -> ImportOutcome {
        let mut outcome = ImportOutcome::default();
        let Some(p) = self.peer_mut(peer) else {
            return outcome;
        };
        let treat_as_withdraw = match treatment {
            None => false,
            Some(Action::AttributeDiscard) => {
                p.treatments.attribute_discard += 1;
                false
            }
            Some(Action::TreatAsWithdraw | Action::SessionReset) => {
                p.treatments.treat_as_withdraw += 1;
                true
            }
        };
        let p = &*p;
        // End-of-RIB (RFC 4724 §2), never from an UPDATE treated as withdraw.
        let eor = update.end_of_rib().filter(|_| !treat_as_withdraw);
        let Update {
            withdrawn,
            mut attributes,
            nlri,
        } = update;
        let mp_reach = attributes.mp_reach.take();
        let mp_unreach = attributes.mp_unreach.take();

        if let Some(f) = eor {
            outcome.end_of_rib = Some(f);
            if p.stale.contains(&f) {
                self.purge_stale(peer, Some(f));
            }
            return outcome;
        }

        let policy = p.policy.clone();
        let own: Vec<IpAddr> = p
            .session
            .iter()
            .flat_map(|s| std::iter::once(s.local_address).chain(s.local_alt_address))
            .collect();
        let mut batch = Batch::new(self, peer);
        if treat_as_withdraw {
            let reach = mp_reach.map(|r| r.nlri).unwrap_or_default();
            let unreach = mp_unreach.map(|u| u.withdrawn).unwrap_or_default();
            let all = withdrawn
                .into_iter()
                .chain(nlri)
                .map(IpNet::V4)
                .chain(reach)
                .chain(unreach);
            for prefix in all {
                if let Some(p) = self.peer_mut(peer) {
                    p.rejected.remove(&prefix);
                }
                self.set_path(&mut batch, peer, prefix, None);
            }
            self.finish(batch);
            return outcome;
        }
        let reject_reason = self.loops(&policy, &attributes);

        for w in withdrawn {
            self.set_path(&mut batch, peer, IpNet::V4(w), None);
        }
        if let Some(u) = mp_unreach {
            for w in u.withdrawn {
                self.set_path(&mut batch, peer, w, None);
            }
        }

        let has_v4 = !nlri.is_empty();
        let has_mp = mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
        if has_v4 || has_mp {
            let ebgp = !policy.ibgp();
            if ebgp {
                // RFC 4271 §5.1.5 / RFC 4456: these mean nothing coming from another AS.
                attributes.local_pref = None;
                attributes.originator_id = None;
                attributes.cluster_list.clear();
            }
            let next_hop_v4 = attributes.next_hop.take();
            let v4_attrs = match next_hop_v4 {
                Some(nh) if has_v4 && !reject_reason && !own.contains(&IpAddr::V4(nh)) => {
                    Some(self.interner.intern(RouteAttrs {
                        attrs: attributes.clone(),
                        next_hop: IpAddr::V4(nh),
                        link_local: None,
                    }))
                }
                _ => None,
            };
            // RFC 4271 §6.3: a NEXT_HOP that is our own address is semantically incorrect; the
            // route is ignored (withdrawn, as the peer's earlier one must not linger), and the
            // session stays up.
            let v4_own = next_hop_v4
                .map(IpAddr::V4)
                .filter(|nh| has_v4 && own.contains(nh));
            if let Some(nh) = v4_own {
                outcome.own_next_hop = Some(nh);
                self.withdraw_ignored(&mut batch, peer, nlri.into_iter().map(IpNet::V4));
            } else {
                for prefix in nlri {
                    let prefix = IpNet::V4(prefix);
                    let accepted = v4_attrs.is_some() && policy.import.accepts(&prefix);
                    self.import_one(&mut batch, peer, prefix, v4_attrs.as_ref().filter(|_| accepted));
                }
            }
            if let Some(reach) = mp_reach {
                let (nh, ll) = split_next_hops(&reach.next_hops);
                if let Some(nh) = nh.filter(|nh| !reach.nlri.is_empty() && own.contains(nh)) {
                    outcome.own_next_hop = Some(nh);
                    self.withdraw_ignored(&mut batch, peer, reach.nlri.into_iter());
                    self.finish_import(peer, batch, &mut outcome);
                    return outcome;
                }
                let attrs = match nh {
                    Some(nh) if !reject_reason => Some(self.interner.intern(RouteAttrs {
                        attrs: attributes,
                        next_hop: nh,
                        link_local: ll,
                    })),
                    _ => None,
                };
                for prefix in reach.nlri {
                    let accepted = attrs.is_some() && policy.import.accepts(&prefix);
                    self.import_one(&mut batch, peer, prefix, attrs.as_ref().filter(|_| accepted));
                }
            }
        }
        self.finish_import(peer, batch, &mut outcome);
        outcome
    }

    fn finish_import(&mut self, peer: PeerIdx, batch: Batch, outcome: &mut ImportOutcome) {
        self.finish(batch);
        if let Some(p) = self.peer_mut(peer) {
            if outcome.own_next_hop.is_some() {
                p.treatments.own_next_hop += 1;
            }
            if let Some(max) = p.policy.max_prefixes {
                outcome.max_prefixes_exceeded = p.accepted.iter().sum::<u64>() > u64::from(max);
            }
        }
    }

    /// Withdraws `peer`'s paths for prefixes whose announcement was ignored.
    fn withdraw_ignored(&mut self, batch: &mut Batch, peer: PeerIdx, prefixes: impl Iterator<Item = IpNet>) {
        for prefix in prefixes {
            if let Some(p) = self.peer_mut(peer) {
                p.rejected.remove(&prefix);
            }
            self.set_path(batch, peer, prefix, None);
        }
    }

    fn import_one(
        &mut self,
        batch: &mut Batch,
        peer: PeerIdx,
        prefix: IpNet,
        attrs: Option<&Arc<RouteAttrs>>,
    ) {
        let p = self.peers[peer as usize].as_mut().expect("peer exists");
        match attrs {
            Some(_) => {
                if !p.rejected.is_empty() {
                    p.rejected.remove(&prefix);
                }
            }
            None => {
                p.rejected.insert(prefix);
            }
        }
        self.set_path(batch, peer, prefix, attrs.cloned());
    }

    /// Loop detection: our AS in an eBGP AS_PATH (RFC 4271 §9.1.2), our router ID as
    /// ORIGINATOR_ID or our cluster ID in CLUSTER_LIST (RFC 4456 §8).
    fn loops(&self, policy: &PeerPolicy, attrs: &PathAttributes) -> bool {
        if !policy.ibgp()
            && let Some(path) = &attrs.as_path
            && path.segments.iter().any(|s| {
                s.asns
                    .iter()
                    .any(|a| *a == policy.local_as || *a == self.config.local_as)
            })
        {
            return true;
        }
        if attrs.originator_id == Some(self.config.router_id) {
            return true;
        }
        if let Some(cluster) = self.config.cluster_id
            && attrs.cluster_list.contains(&cluster)
        {
            return true;
        }
        false
    }

    // ---------------------------------------------------------------- local routes

    /// Originates `prefix` from this speaker.
    pub fn originate(&mut self, prefix: IpNet) {
        let next_hop = match prefix {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let attrs = self.interner.intern(RouteAttrs {
            attrs: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                ..Default::default()
            },
            next_hop,
            link_local: None,
        });
        let mut batch = Batch::new(self, LOCAL);
        self.set_path(&mut batch, LOCAL, prefix, Some(attrs));
        self.finish(batch);
    }

    /// Stops originating `prefix`.
    pub fn withdraw_local(&mut self, prefix: IpNet) {
        let mut batch = Batch::new(self, LOCAL);
        self.set_path(&mut batch, LOCAL, prefix, None);
        self.finish(batch);
    }

    pub fn originated(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (p, paths) in &self.tables.v4 {
            if paths.get(LOCAL).is_some() {
                out.push(IpNet::V4(*p));
            }
        }
        for (p, paths) in &self.tables.v6 {
            if paths.get(LOCAL).is_some() {
                out.push(IpNet::V6(*p));
            }
        }
        out.sort();
        out
    }

    // ---------------------------------------------------------------- Loc-RIB

    fn set_path(&mut self, batch: &mut Batch, peer: PeerIdx, prefix: IpNet, attrs: Option<Arc<RouteAttrs>>) {
        match prefix {
            IpNet::V4(p) => self.set_path_in::<Ipv4Net>(batch, peer, p, attrs),
            IpNet::V6(p) => self.set_path_in::<Ipv6Net>(batch, peer, p, attrs),
        }
    }

    fn set_path_in<P: Pfx>(
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
    fn finish(&mut self, batch: Batch) {
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

    /// The peer's address, for status output.
    pub fn peer_address(&self, peer: PeerIdx) -> Option<IpAddr> {
        self.peer(peer).map(|p| p.policy.address)
    }

    // ---------------------------------------------------------------- Adj-RIB-Out

    /// Whether `peer` has anything to send.
    pub fn has_pending(&self, peer: PeerIdx) -> bool {
        self.peer(peer).is_some_and(|p| {
            p.session.is_some() && (p.dirty_all || !p.dirty.is_empty() || !p.eor_pending.is_empty())
        })
    }

    /// Computes what `peer` must be sent, updates its Adj-RIB-Out and returns the UPDATEs,
    /// packing every prefix that shares an attribute set into as few messages as fit in
    /// `max_message_len`. With `withdrawals_only`, announcements stay pending (MRAI running).
    pub fn take_updates(
        &mut self,
        peer: PeerIdx,
        max_message_len: usize,
        withdrawals_only: bool,
    ) -> Vec<Update> {
        let Some(p) = self.peer(peer) else { return vec![] };
        let Some(session) = p.session.clone() else {
            return vec![];
        };
        let candidates: Vec<IpNet> = if p.dirty_all {
            let mut all: Vec<IpNet> = p.adj_out.keys().copied().collect();
            all.extend(self.tables.v4.keys().map(|k| IpNet::V4(*k)));
            all.extend(self.tables.v6.keys().map(|k| IpNet::V6(*k)));
            all
        } else {
            p.dirty.iter().copied().collect()
        };
        let dirty_all = p.dirty_all;
        let ctx = Decide {
            peers: &self.peers,
            multipath: self.config.multipath,
        };
        // Export attributes per source attribute set: prefixes that share a set share the
        // exported one too, which is what packing groups by.
        let mut cache: HashMap<(usize, PeerIdx), Option<Arc<RouteAttrs>>, Hasher> = HashMap::default();
        let mut withdraw: Vec<IpNet> = Vec::new();
        let mut announce: Map<usize, (Arc<RouteAttrs>, Vec<IpNet>)> = Map::default();
        let mut keep_dirty: Vec<IpNet> = Vec::new();
        let mut adj_changes: Vec<(IpNet, Option<Arc<RouteAttrs>>)> = Vec::new();
        let mut seen: HashSet<IpNet, Hasher> = HashSet::default();

        for prefix in candidates {
            if dirty_all && !seen.insert(prefix) {
                continue;
            }
            let best = match prefix {
                IpNet::V4(x) => self.tables.v4.get(&x).and_then(|ps| ctx.best_path(ps)),
                IpNet::V6(x) => self.tables.v6.get(&x).and_then(|ps| ctx.best_path(ps)),
            };
            let desired = best.and_then(|b| {
                let key = (Arc::as_ptr(&b.attrs) as usize, b.peer);
                cache
                    .entry(key)
                    .or_insert_with(|| self.export(peer, &session, b).map(Arc::new))
                    .clone()
            });
            let desired = desired.filter(|_| {
                session.families.contains(&Family::of(&prefix)) && p.policy.export.accepts(&prefix)
            });
            let current = p.adj_out.get(&prefix);
            match (current, desired) {
                (None, None) => {}
                (Some(c), Some(d)) if Arc::ptr_eq(c, &d) || **c == *d => {}
                (Some(_), None) => {
                    withdraw.push(prefix);
                    adj_changes.push((prefix, None));
                }
                (_, Some(d)) if withdrawals_only => {
                    let _ = d;
                    keep_dirty.push(prefix);
                }
                (_, Some(d)) => {
                    announce
                        .entry(Arc::as_ptr(&d) as usize)
                        .or_insert_with(|| (d.clone(), Vec::new()))
                        .1
                        .push(prefix);
                    adj_changes.push((prefix, Some(d)));
                }
            }
        }

        let p = self.peers[peer as usize].as_mut().expect("peer exists");
        for (prefix, a) in adj_changes {
            match a {
                Some(a) => p.adj_out.insert(prefix, a),
                None => p.adj_out.remove(&prefix),
            };
        }
        p.dirty.clear();
        p.dirty_all = false;
        p.dirty.extend(keep_dirty);
        let mut updates = pack_withdrawals(withdraw, max_message_len);
        let mut groups: Vec<(Arc<RouteAttrs>, Vec<IpNet>)> = announce.into_values().collect();
        groups.sort_by(|a, b| a.1[0].cmp(&b.1[0]));
        for (attrs, mut prefixes) in groups {
            prefixes.sort();
            updates.extend(pack_announcements(&attrs, &prefixes, max_message_len));
        }
        if !withdrawals_only && p.dirty.is_empty() {
            for f in std::mem::take(&mut p.eor_pending) {
                updates.push(Update::end_of_rib_for(f));
            }
        }
        updates
    }

    /// The attributes `peer` gets for `path`, or `None` when it must not get it.
    fn export(&self, peer: PeerIdx, session: &SessionInfo, path: &Path) -> Option<RouteAttrs> {
        if path.peer == peer {
            return None; // never back to where it came from
        }
        let dst = &self.peer(peer)?.policy;
        let src = if path.peer == LOCAL {
            None
        } else {
            Some(self.peer(path.peer)?)
        };
        let a = &path.attrs.attrs;
        if a.communities.contains(&NO_ADVERTISE) {
            return None;
        }
        if !dst.ibgp() && a.communities.contains(&NO_EXPORT) {
            return None;
        }
        let mut out = a.clone();
        let mut reflected = false;
        if let Some(src) = src
            && src.policy.ibgp()
            && dst.ibgp()
        {
            // RFC 4456 §6: reflect client routes to everyone, non-client routes to clients.
            let cluster_id = self.config.cluster_id?;
            if !src.policy.rr_client && !dst.rr_client {
                return None;
            }
            reflected = true;
            if out.originator_id.is_none() {
                out.originator_id = src.session.as_ref().map(|s| s.router_id);
            }
            out.cluster_list.insert(0, cluster_id);
        }
        out.unknown.retain(RawAttribute::is_optional_transitive);
        for u in &mut out.unknown {
            u.mark_partial();
        }
        let own_next_hop = |v6: bool| -> IpAddr {
            if let Some(alt) = session.local_alt_address
                && alt.is_ipv6() == v6
                && session.local_address.is_ipv6() != v6
            {
                return alt;
            }
            match (session.local_address, v6) {
                (IpAddr::V4(a), false) => IpAddr::V4(a),
                (IpAddr::V6(a), true) => IpAddr::V6(a),
                (IpAddr::V4(a), true) => IpAddr::V6(a.to_ipv6_mapped()),
                (IpAddr::V6(a), false) => IpAddr::V4(a.to_ipv4_mapped().unwrap_or(self.config.router_id)),
            }
        };
        let v6 = path.attrs.next_hop.is_ipv6();
        let mut next_hop = path.attrs.next_hop;
        let mut link_local = path.attrs.link_local;
        if dst.ibgp() {
            if out.local_pref.is_none() {
                out.local_pref = Some(DEFAULT_LOCAL_PREF);
            }
            if src.is_none() || (dst.next_hop_self && !reflected) {
                next_hop = own_next_hop(v6);
                link_local = None;
            }
        } else {
            let mut path_out = out.as_path.take().unwrap_or_default();
            path_out.prepend(dst.local_as);
            out.as_path = Some(path_out);
            out.local_pref = None;
            out.originator_id = None;
            out.cluster_list.clear();
            if src.is_some() {
                out.med = None; // a MED is not passed between neighbouring ASes (§5.1.4)
            }
            next_hop = own_next_hop(v6);
            link_local = None;
        }
        if next_hop.is_unspecified() {
            next_hop = own_next_hop(v6);
        }
        Some(RouteAttrs {
            attrs: out,
            next_hop,
            link_local,
        })
    }

    /// Approximate heap bytes per route, for benchmarks (tables and interned sets).
    pub fn memory_estimate(&self) -> usize {
        let slot = std::mem::size_of::<(Ipv4Net, Paths)>() + 1;
        let slot6 = std::mem::size_of::<(Ipv6Net, Paths)>() + 1;
        self.tables.v4.capacity() * slot + self.tables.v6.capacity() * slot6
    }
}

fn split_next_hops(hops: &[IpAddr]) -> (Option<IpAddr>, Option<Ipv6Addr>) {
    let ll = hops.iter().find_map(|h| match h {
        IpAddr::V6(a) if a.is_unicast_link_local() => Some(*a),
        _ => None,
    });
    let global = hops.iter().copied().find(|h| match h {
        IpAddr::V6(a) => !a.is_unicast_link_local(),
        IpAddr::V4(_) => true,
    });
    match (global, ll) {
        (Some(g), ll) => (Some(g), ll),
        (None, Some(ll)) => (Some(IpAddr::V6(ll)), Some(ll)),
        (None, None) => (None, None),
    }
}

fn mark_stale<P: Pfx>(tables: &mut Tables, peer: PeerIdx) {
    for paths in P::table_mut(tables).values_mut() {
        match paths {
            Paths::One(p) if p.peer == peer => p.stale = true,
            Paths::One(_) => {}
            Paths::Many(v) => v
                .iter_mut()
                .filter(|p| p.peer == peer)
                .for_each(|p| p.stale = true),
        }
    }
}

fn purge<P: Pfx>(
    rib: &mut Rib,
    batch: &mut Batch,
    peer: PeerIdx,
    only_stale: bool,
    select: &impl Fn(&IpNet) -> bool,
) {
    let victims: Vec<P> = P::table(&rib.tables)
        .iter()
        .filter(|(prefix, paths)| {
            paths.get(peer).is_some_and(|p| !only_stale || p.stale) && select(&(**prefix).into())
        })
        .map(|(prefix, _)| *prefix)
        .collect();
    for prefix in victims {
        rib.set_path_in::<P>(batch, peer, prefix, None);
    }
}

/// Bookkeeping of one RIB operation.
struct Batch {
    peer: PeerIdx,
    accepted_delta: [i64; 2],
    /// Somebody needs to know which prefixes changed best route.
    wants_changes: bool,
    changed: Vec<IpNet>,
    records: Vec<RouteChange>,
}

impl Batch {
    fn new(rib: &Rib, peer: PeerIdx) -> Self {
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

/// The parts of a prefix's decision that matter to others: the best path and the multipath
/// next hops.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    best: Option<(PeerIdx, usize)>,
    next_hops: Vec<IpAddr>,
}

/// The decision process (RFC 4271 §9.1.2) over one prefix's candidates.
struct Decide<'a> {
    peers: &'a [Option<RibPeer>],
    multipath: bool,
}

impl Decide<'_> {
    fn best_path<'p>(&self, paths: &'p Paths) -> Option<&'p Path> {
        let slice = paths.as_slice();
        let mut best = slice.first()?;
        for p in &slice[1..] {
            if self.compare(p, best).is_lt() {
                best = p;
            }
        }
        Some(best)
    }

    fn summary(&self, paths: Option<&Paths>) -> Summary {
        let Some(paths) = paths else {
            return Summary::default();
        };
        let Some(best) = self.best_path(paths) else {
            return Summary::default();
        };
        Summary {
            best: Some((best.peer, Arc::as_ptr(&best.attrs) as usize)),
            next_hops: self.next_hops(paths, best),
        }
    }

    fn next_hops(&self, paths: &Paths, best: &Path) -> Vec<IpAddr> {
        if best.peer == LOCAL {
            return Vec::new();
        }
        let mut hops = vec![best.attrs.next_hop];
        if self.multipath {
            for p in paths.as_slice() {
                if p.peer != LOCAL
                    && !std::ptr::eq(p, best)
                    && self.compare_multipath(p, best).is_eq()
                    && !hops.contains(&p.attrs.next_hop)
                {
                    hops.push(p.attrs.next_hop);
                }
            }
            hops.sort();
        }
        hops
    }

    fn best_route(&self, prefix: IpNet, paths: &Paths) -> Option<BestRoute> {
        let best = self.best_path(paths)?;
        Some(BestRoute {
            prefix,
            next_hops: self.next_hops(paths, best),
            attrs: best.attrs.clone(),
            peer: best.peer,
        })
    }

    fn peer(&self, idx: PeerIdx) -> Option<&RibPeer> {
        self.peers.get(idx as usize).and_then(Option::as_ref)
    }

    /// Steps up to and including IGP cost: paths equal here form the multipath set.
    fn compare_multipath(&self, a: &Path, b: &Path) -> std::cmp::Ordering {
        use std::cmp::Reverse;
        let (x, y) = (&a.attrs.attrs, &b.attrs.attrs);
        // RFC 4271 §9.1.2.2 a; no AS_PATH is an empty one.
        let route_len = |a: &PathAttributes| a.as_path.as_ref().map_or(0, AsPath::route_len);
        // Our own routes first (what other implementations call weight).
        (a.peer != LOCAL)
            .cmp(&(b.peer != LOCAL))
            // A fresh path beats one kept from a restarting peer.
            .then(a.stale.cmp(&b.stale))
            .then_with(|| {
                Reverse(x.local_pref.unwrap_or(DEFAULT_LOCAL_PREF))
                    .cmp(&Reverse(y.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)))
            })
            .then_with(|| route_len(x).cmp(&route_len(y)))
            .then_with(|| {
                x.origin
                    .unwrap_or(Origin::Incomplete)
                    .cmp(&y.origin.unwrap_or(Origin::Incomplete))
            })
            .then_with(|| {
                // MED only between routes from the same neighbouring AS (§9.1.2.2 c).
                let (na, nb) = (
                    x.as_path.as_ref().and_then(AsPath::first_as),
                    y.as_path.as_ref().and_then(AsPath::first_as),
                );
                if na == nb {
                    x.med.unwrap_or(0).cmp(&y.med.unwrap_or(0))
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| {
                let ebgp = |p: &Path| self.peer(p.peer).is_some_and(|r| !r.policy.ibgp());
                ebgp(b).cmp(&ebgp(a))
            })
        // IGP cost to the next hop: caracal runs no IGP, so all next hops cost the same.
    }

    /// The full §9.1.2.2 order.
    fn compare(&self, a: &Path, b: &Path) -> std::cmp::Ordering {
        self.compare_multipath(a, b)
            .then_with(|| {
                let id = |p: &Path| {
                    p.attrs.attrs.originator_id.or_else(|| {
                        self.peer(p.peer)
                            .and_then(|r| r.session.as_ref())
                            .map(|s| s.router_id)
                    })
                };
                id(a).cmp(&id(b))
            })
            .then_with(|| {
                a.attrs
                    .attrs
                    .cluster_list
                    .len()
                    .cmp(&b.attrs.attrs.cluster_list.len())
            })
            .then_with(|| {
                let addr = |p: &Path| self.peer(p.peer).map(|r| r.policy.address);
                addr(a).cmp(&addr(b))
            })
    }
}

// ---------------------------------------------------------------- packing

/// Bytes an attribute set takes on the wire at most (4-byte headers, 2-octet AS paths with
/// AS4_PATH), so that packing never overflows a message.
fn attrs_size_bound(a: &RouteAttrs) -> usize {
    let x = &a.attrs;
    let asns: usize = x
        .as_path
        .as_ref()
        .map_or(0, |p| p.segments.iter().map(|s| 2 + 6 * s.asns.len() + 2).sum());
    let unknown: usize = x.unknown.iter().map(|u| 4 + u.value.len()).sum();
    4 + 1 // ORIGIN
        + 8 + asns // AS_PATH and AS4_PATH headers
        + 4 + 4 // NEXT_HOP
        + 8 // MED
        + 8 // LOCAL_PREF
        + 4 // ATOMIC_AGGREGATE
        + 2 * (4 + 8) // AGGREGATOR, AS4_AGGREGATOR
        + 4 + 4 * x.communities.len()
        + 4 + 12 * x.large_communities.len()
        + 8 // ORIGINATOR_ID
        + 4 + 4 * x.cluster_list.len()
        + unknown
        + 4 + 5 + 33 + 1 // MP_REACH header with two IPv6 next hops
}

fn prefix_size(p: &IpNet) -> usize {
    1 + (p.prefix_len() as usize).div_ceil(8)
}

/// Room for NLRI/withdrawn prefixes in one UPDATE after the header and length fields.
fn room(max_message_len: usize, attrs: usize) -> usize {
    max_message_len.saturating_sub(crate::wire::HEADER_LEN + 4 + attrs)
}

fn chunks(prefixes: &[IpNet], room: usize) -> Vec<Vec<IpNet>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for p in prefixes {
        let s = prefix_size(p);
        if used + s > room && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += s;
        cur.push(*p);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn pack_withdrawals(prefixes: Vec<IpNet>, max_message_len: usize) -> Vec<Update> {
    let (mut v4, mut v6): (Vec<IpNet>, Vec<IpNet>) = prefixes.into_iter().partition(|p| p.addr().is_ipv4());
    v4.sort();
    v6.sort();
    let mut out = Vec::new();
    for chunk in chunks(&v4, room(max_message_len, 0)) {
        out.push(Update {
            withdrawn: chunk
                .into_iter()
                .filter_map(|p| match p {
                    IpNet::V4(p) => Some(p),
                    IpNet::V6(_) => None,
                })
                .collect(),
            ..Default::default()
        });
    }
    // MP_UNREACH: 4 header + 3 AFI/SAFI.
    for chunk in chunks(&v6, room(max_message_len, 7)) {
        out.push(Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: chunk,
                }),
                ..Default::default()
            },
            ..Default::default()
        });
    }
    out
}

fn pack_announcements(attrs: &RouteAttrs, prefixes: &[IpNet], max_message_len: usize) -> Vec<Update> {
    let room = room(max_message_len, attrs_size_bound(attrs));
    let mut out = Vec::new();
    for chunk in chunks(prefixes, room.max(17)) {
        let mut a = attrs.attrs.clone();
        match attrs.next_hop {
            IpAddr::V4(nh) if chunk[0].addr().is_ipv4() => {
                a.next_hop = Some(nh);
                out.push(Update {
                    attributes: a,
                    nlri: chunk
                        .into_iter()
                        .filter_map(|p| match p {
                            IpNet::V4(p) => Some(p),
                            IpNet::V6(_) => None,
                        })
                        .collect(),
                    ..Default::default()
                });
            }
            nh => {
                let family = if chunk[0].addr().is_ipv4() {
                    Family::IPV4_UNICAST
                } else {
                    Family::IPV6_UNICAST
                };
                let mut next_hops = vec![nh];
                if let Some(ll) = attrs.link_local {
                    next_hops.push(IpAddr::V6(ll));
                }
                a.mp_reach = Some(MpReach {
                    family,
                    next_hops,
                    nlri: chunk,
                });
                out.push(Update {
                    attributes: a,
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// The classic message size limit, for callers without extended messages.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = MAX_MESSAGE_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Action, AsSegment, Family, SegmentKind};

    const R1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn rib() -> Rib {
        Rib::new(RibConfig {
            router_id: R1,
            local_as: 65001,
            cluster_id: None,
            multipath: true,
            track_changes: true,
        })
    }

    fn policy(addr: &str, remote_as: u32) -> PeerPolicy {
        PeerPolicy {
            address: addr.parse().unwrap(),
            remote_as,
            local_as: 65001,
            rr_client: false,
            next_hop_self: false,
            import: PrefixFilter::default(),
            export: PrefixFilter::default(),
            max_prefixes: None,
        }
    }

    fn session(id: u8) -> SessionInfo {
        SessionInfo {
            router_id: Ipv4Addr::new(192, 0, 2, id),
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            local_address: "10.0.0.1".parse().unwrap(),
            local_alt_address: None,
            graceful_restart: false,
            graceful_families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            preserved_families: vec![],
        }
    }

    /// Adds a peer and brings its session up.
    fn up(rib: &mut Rib, addr: &str, remote_as: u32, id: u8) -> PeerIdx {
        let p = rib.add_peer(policy(addr, remote_as));
        rib.peer_up(p, session(id));
        p
    }

    fn seq(asns: &[u32]) -> AsPath {
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns: asns.to_vec(),
            }],
        }
    }

    fn attrs(path: &[u32], next_hop: &str) -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(seq(path)),
            next_hop: Some(next_hop.parse().unwrap()),
            ..Default::default()
        }
    }

    fn announce(attributes: PathAttributes, prefixes: &[&str]) -> Update {
        Update {
            withdrawn: vec![],
            attributes,
            nlri: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn withdraw(prefixes: &[&str]) -> Update {
        Update {
            withdrawn: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// Counters of a peer that sent only IPv4 unicast.
    fn v4_counters(received: u64, accepted: u64, advertised: u64) -> PeerCounters {
        let family = FamilyCounters {
            received,
            accepted,
            advertised,
        };
        PeerCounters {
            received,
            accepted,
            advertised,
            families: [family, FamilyCounters::default()],
            ..Default::default()
        }
    }

    fn best_peer(rib: &Rib, prefix: &str) -> Option<PeerIdx> {
        rib.best(&net(prefix)).map(|b| b.peer)
    }

    fn sent(rib: &mut Rib, peer: PeerIdx) -> Vec<Update> {
        rib.take_updates(peer, 4096, false)
    }

    fn nlri_count(updates: &[Update]) -> usize {
        updates
            .iter()
            .map(|u| u.nlri.len() + u.attributes.mp_reach.as_ref().map_or(0, |r| r.nlri.len()))
            .sum()
    }

    #[test]
    fn single_path_entry_is_16_bytes_inline() {
        assert_eq!(std::mem::size_of::<Path>(), 16);
        assert_eq!(std::mem::size_of::<Paths>(), 16);
        assert_eq!(std::mem::size_of::<(Ipv4Net, Paths)>(), 24);
    }

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

    #[test]
    fn ebgp_route_with_our_as_in_path_is_rejected() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        rib.apply_update(
            a,
            announce(attrs(&[65002, 65001, 65009], "10.0.0.2"), &["10.9.0.0/24"]),
            None,
        );
        assert!(rib.is_empty());
        assert_eq!(rib.counters(a), v4_counters(1, 0, 0));
    }

    #[test]
    fn reflected_route_with_our_originator_id_or_cluster_id_is_rejected() {
        let mut rib = Rib::new(RibConfig {
            cluster_id: Some(Ipv4Addr::new(9, 9, 9, 9)),
            ..rib().config().clone()
        });
        let a = up(&mut rib, "10.0.0.2", 65001, 2);
        let mut x = attrs(&[], "10.0.0.2");
        x.originator_id = Some(R1);
        rib.apply_update(a, announce(x, &["10.9.0.0/24"]), None);
        let mut y = attrs(&[], "10.0.0.2");
        y.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9)];
        rib.apply_update(a, announce(y, &["10.8.0.0/24"]), None);
        assert!(rib.is_empty());
    }

    #[test]
    fn import_filter_rejects_and_a_later_rejection_withdraws() {
        let mut rib = rib();
        let mut pol = policy("10.0.0.2", 65002);
        pol.import = PrefixFilter::new(&[crate::config::PrefixRule {
            prefix: net("10.0.0.0/8"),
            ge: Some(24),
            le: Some(24),
            action: crate::config::FilterAction::Accept,
        }]);
        let a = rib.add_peer(pol);
        rib.peer_up(a, session(2));
        rib.apply_update(
            a,
            announce(
                attrs(&[65002], "10.0.0.2"),
                &["10.9.0.0/24", "10.9.0.0/16", "192.168.0.0/24"],
            ),
            None,
        );
        assert_eq!(rib.len(), 1);
        assert_eq!(rib.counters(a), v4_counters(3, 1, 0));
    }

    #[test]
    fn max_prefixes_exceeded_is_reported() {
        let mut rib = rib();
        let mut pol = policy("10.0.0.2", 65002);
        pol.max_prefixes = Some(2);
        let a = rib.add_peer(pol);
        rib.peer_up(a, session(2));
        let o = rib.apply_update(
            a,
            announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24", "10.9.1.0/24"]),
            None,
        );
        assert!(!o.max_prefixes_exceeded);
        let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.2.0/24"]), None);
        assert!(o.max_prefixes_exceeded);
    }

    #[test]
    fn treat_as_withdraw_removes_the_peers_earlier_route() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        rib.apply_update(
            a,
            announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]),
            Some(Action::TreatAsWithdraw),
        );
        assert!(rib.is_empty());
        assert_eq!(rib.counters(a).received, 0);
    }

    /// RFC 7606 §2 and RFC 4724 §2: an UPDATE treated as withdraw is never an End-of-RIB, even
    /// when it named no prefix and every attribute it had was malformed (so it decodes as an
    /// empty UPDATE).
    #[test]
    fn treat_as_withdraw_update_naming_no_prefix_keeps_a_restarting_peers_stale_routes() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        rib.peer_down(a, true);
        let gr = SessionInfo {
            graceful_restart: true,
            preserved_families: vec![Family::IPV4_UNICAST],
            ..session(2)
        };
        rib.peer_up(a, gr);
        assert!(rib.has_stale(a));

        // Header, no withdrawn routes, one ORIGIN attribute with the undefined value 7, no NLRI.
        let mut frame = vec![0xff; 16];
        frame.extend_from_slice(&[0, 27, 2, 0, 0, 0, 4, 0x40, 1, 1, 7]);
        let opts = crate::wire::SessionOptions::default();
        let (m, treatment) = crate::wire::Message::decode_with_outcome(&frame, &opts).unwrap();
        let crate::wire::Message::Update(u) = m else {
            panic!("not an UPDATE: {m:?}")
        };
        assert_eq!(u, Update::default(), "decodes as the End-of-RIB shape");
        assert_eq!(treatment.map(|t| t.action), Some(Action::TreatAsWithdraw));

        let o = rib.apply_update(a, u, Some(Action::TreatAsWithdraw));
        assert_eq!(o.end_of_rib, None);
        assert!(rib.has_stale(a), "stale routes must wait for the real End-of-RIB");
        assert!(rib.best(&net("10.9.0.0/24")).is_some());
        assert_eq!(rib.counters(a).treated_as_withdraw, 1);
        assert_eq!(rib.counters(a).attribute_discards, 0);
    }

    #[test]
    fn route_with_our_own_address_as_next_hop_is_ignored_and_withdraws_the_earlier_one() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        assert_eq!(o.own_next_hop, None);
        assert!(rib.best(&net("10.9.0.0/24")).is_some());
        // session(2) puts us at 10.0.0.1.
        let o = rib.apply_update(a, announce(attrs(&[65002], "10.0.0.1"), &["10.9.0.0/24"]), None);
        assert_eq!(o.own_next_hop, Some("10.0.0.1".parse().unwrap()));
        assert!(rib.best(&net("10.9.0.0/24")).is_none());
        assert_eq!(rib.counters(a).own_next_hop, 1);
        assert_eq!(
            rib.counters(a).received,
            0,
            "an ignored route is not counted as rejected"
        );

        let v6 = |nh: &str| Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(seq(&[65002])),
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hops: vec![nh.parse().unwrap()],
                    nlri: vec![net("2001:db8:9::/48")],
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut s = session(2);
        s.local_alt_address = Some("2001:db8::1".parse().unwrap());
        rib.peer_up(a, s);
        rib.apply_update(a, v6("2001:db8::2"), None);
        assert!(rib.best(&net("2001:db8:9::/48")).is_some());
        let o = rib.apply_update(a, v6("2001:db8::1"), None);
        assert_eq!(o.own_next_hop, Some("2001:db8::1".parse().unwrap()));
        assert!(rib.best(&net("2001:db8:9::/48")).is_none());
        assert_eq!(rib.counters(a).own_next_hop, 2);
    }

    #[test]
    fn ipv6_routes_from_mp_reach_keep_global_and_link_local_next_hops() {
        let mut rib = rib();
        let a = up(&mut rib, "fd00::2", 65002, 2);
        let mut x = attrs(&[65002], "0.0.0.0");
        x.next_hop = None;
        x.mp_reach = Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::2".parse().unwrap(), "fe80::2".parse().unwrap()],
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
        let best = rib.best(&net("fd00:9::/64")).unwrap();
        assert_eq!(best.next_hops, vec!["fd00::2".parse::<IpAddr>().unwrap()]);
        assert_eq!(best.attrs.link_local, Some("fe80::2".parse().unwrap()));
        let mp_withdraw = Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: vec![net("fd00:9::/64")],
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        rib.apply_update(a, mp_withdraw, None);
        assert!(rib.is_empty());
    }

    #[test]
    fn prefix_counters_are_kept_per_family() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let mut x = attrs(&[65002], "10.0.0.2");
        x.mp_reach = Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::2".parse().unwrap()],
            nlri: vec![net("fd00:9::/64"), net("fd00:8::/64")],
        });
        rib.apply_update(a, announce(x, &["10.2.0.0/24"]), None);
        let c = rib.counters(a);
        assert_eq!((c.received, c.accepted), (3, 3));
        assert_eq!(PeerCounters::FAMILIES[1], Family::IPV6_UNICAST);
        assert_eq!((c.families[0].received, c.families[0].accepted), (1, 1));
        assert_eq!((c.families[1].received, c.families[1].accepted), (2, 2));
        rib.apply_update(a, withdraw(&["10.2.0.0/24"]), None);
        let c = rib.counters(a);
        assert_eq!((c.families[0].accepted, c.families[1].accepted), (0, 2));
    }

    #[test]
    fn ebgp_export_prepends_our_as_sets_next_hop_self_and_strips_local_pref_and_med() {
        let mut rib = rib();
        let i = up(&mut rib, "10.0.0.2", 65001, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        sent(&mut rib, e);
        let mut x = attrs(&[65009], "10.0.0.9");
        x.local_pref = Some(300);
        x.med = Some(7);
        rib.apply_update(i, announce(x, &["10.9.0.0/24"]), None);
        let u = sent(&mut rib, e);
        assert_eq!(u.len(), 1);
        let a = &u[0].attributes;
        assert_eq!(a.as_path, Some(seq(&[65001, 65009])));
        assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a.local_pref, None);
        assert_eq!(a.med, None);
        assert_eq!(rib.counters(e).advertised, 1);
        // Nothing goes back to the peer the route came from, and iBGP is not re-advertised to iBGP.
        assert_eq!(nlri_count(&sent(&mut rib, i)), 0);
    }

    #[test]
    fn ibgp_export_keeps_next_hop_unless_next_hop_self() {
        let mut rib = rib();
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        let i = up(&mut rib, "10.0.0.2", 65001, 2);
        sent(&mut rib, i);
        rib.apply_update(e, announce(attrs(&[65003], "10.0.0.3"), &["10.9.0.0/24"]), None);
        let u = sent(&mut rib, i);
        assert_eq!(u[0].attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(u[0].attributes.local_pref, Some(100));
        assert_eq!(u[0].attributes.as_path, Some(seq(&[65003])));
        let mut pol = policy("10.0.0.2", 65001);
        pol.next_hop_self = true;
        rib.set_policy(i, pol);
        let u = sent(&mut rib, i);
        assert_eq!(u[0].attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn originated_prefix_goes_to_ebgp_with_our_as_and_to_ibgp_with_empty_path() {
        let mut rib = rib();
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        let i = up(&mut rib, "10.0.0.2", 65001, 2);
        rib.originate(net("10.244.1.0/24"));
        rib.originate(net("fd00:244::/64"));
        assert_eq!(rib.originated().len(), 2);
        let u = sent(&mut rib, e);
        assert_eq!(nlri_count(&u), 2);
        let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
        assert_eq!(v4.attributes.as_path, Some(seq(&[65001])));
        assert_eq!(v4.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let v6 = u.iter().find(|u| u.attributes.mp_reach.is_some()).unwrap();
        // An IPv4 session carries IPv6 routes with an IPv4-mapped next hop.
        let nh: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(v6.attributes.mp_reach.as_ref().unwrap().next_hops, vec![nh]);
        let u = sent(&mut rib, i);
        let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
        assert_eq!(v4.attributes.as_path, Some(AsPath::default()));
        assert_eq!(v4.attributes.local_pref, Some(100));
        // Local routes are not reported for the kernel.
        assert!(rib.take_changes().iter().all(|c| c.next_hops.is_empty()));
        rib.withdraw_local(net("10.244.1.0/24"));
        let u = sent(&mut rib, e);
        assert_eq!(u[0].withdrawn, vec!["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]);
    }

    #[test]
    fn ipv6_route_over_ipv4_session_uses_the_interfaces_ipv6_address_as_next_hop() {
        let mut rib = rib();
        let e = rib.add_peer(policy("10.0.0.3", 65003));
        let alt: IpAddr = "fd00:12::2".parse().unwrap();
        rib.peer_up(
            e,
            SessionInfo {
                local_alt_address: Some(alt),
                ..session(3)
            },
        );
        rib.originate(net("fd00:2::/64"));
        rib.originate(net("10.2.0.0/24"));
        let u = sent(&mut rib, e);
        let v6 = u.iter().find_map(|u| u.attributes.mp_reach.as_ref()).unwrap();
        assert_eq!(v6.next_hops, vec![alt]);
        let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
        assert_eq!(v4.attributes.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn many_prefixes_with_one_attribute_set_are_packed_into_few_updates_within_the_size_limit() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        let prefixes: Vec<String> = (0..2000)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &refs), None);
        let u = sent(&mut rib, e);
        assert_eq!(nlri_count(&u), 2000);
        // 2000 × 4 bytes in 4096-byte messages: 2 or 3 UPDATEs, not 2000.
        assert!(u.len() <= 3, "{} updates", u.len());
        for m in &u {
            assert!(
                m.nlri.len() * 4
                    + attrs_size_bound(&RouteAttrs {
                        attrs: m.attributes.clone(),
                        next_hop: IpAddr::V4(m.attributes.next_hop.unwrap()),
                        link_local: None,
                    })
                    + 23
                    <= 4096
            );
        }
        rib.apply_update(a, withdraw(&refs), None);
        let u = sent(&mut rib, e);
        assert_eq!(u.iter().map(|u| u.withdrawn.len()).sum::<usize>(), 2000);
        assert!(u.len() <= 3);
        assert_eq!(rib.counters(e).advertised, 0);
    }

    #[test]
    fn unchanged_best_route_is_not_sent_twice() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        assert!(sent(&mut rib, e).is_empty());
    }

    #[test]
    fn withdrawals_only_flush_keeps_announcements_pending() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.9.0.0/24"]), None);
        sent(&mut rib, e);
        rib.apply_update(a, withdraw(&["10.9.0.0/24"]), None);
        rib.apply_update(a, announce(attrs(&[65002], "10.0.0.2"), &["10.8.0.0/24"]), None);
        let u = rib.take_updates(e, 4096, true);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].withdrawn.len(), 1);
        assert!(rib.has_pending(e));
        assert_eq!(nlri_count(&sent(&mut rib, e)), 1);
        assert!(!rib.has_pending(e));
    }

    #[test]
    fn no_export_community_stops_ebgp_advertisement() {
        let mut rib = rib();
        let i = up(&mut rib, "10.0.0.2", 65001, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        let mut x = attrs(&[], "10.0.0.2");
        x.communities = vec![NO_EXPORT];
        rib.apply_update(i, announce(x, &["10.9.0.0/24"]), None);
        assert_eq!(nlri_count(&sent(&mut rib, e)), 0);
    }

    #[test]
    fn export_filter_limits_what_a_peer_gets() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let mut pol = policy("10.0.0.3", 65003);
        pol.export = PrefixFilter::new(&[crate::config::PrefixRule {
            prefix: net("10.9.0.0/16"),
            ge: None,
            le: Some(24),
            action: crate::config::FilterAction::Accept,
        }]);
        let e = rib.add_peer(pol);
        rib.peer_up(e, session(3));
        rib.apply_update(
            a,
            announce(attrs(&[65002], "10.0.0.2"), &["10.9.1.0/24", "10.8.1.0/24"]),
            None,
        );
        let u = sent(&mut rib, e);
        assert_eq!(u[0].nlri, vec!["10.9.1.0/24".parse::<Ipv4Net>().unwrap()]);
    }

    fn reflector() -> (Rib, PeerIdx, PeerIdx, PeerIdx) {
        let mut rib = Rib::new(RibConfig {
            cluster_id: Some(Ipv4Addr::new(9, 9, 9, 9)),
            ..rib().config().clone()
        });
        let mut c1 = policy("10.0.0.2", 65001);
        c1.rr_client = true;
        let mut c2 = policy("10.0.0.3", 65001);
        c2.rr_client = true;
        let c1 = rib.add_peer(c1);
        let c2 = rib.add_peer(c2);
        let n = rib.add_peer(policy("10.0.0.4", 65001));
        rib.peer_up(c1, session(2));
        rib.peer_up(c2, session(3));
        rib.peer_up(n, session(4));
        for p in [c1, c2, n] {
            sent(&mut rib, p);
        }
        (rib, c1, c2, n)
    }

    #[test]
    fn reflector_sends_client_routes_to_all_with_originator_id_and_cluster_list() {
        let (mut rib, c1, c2, n) = reflector();
        rib.apply_update(c1, announce(attrs(&[], "10.0.0.2"), &["10.9.0.0/24"]), None);
        for p in [c2, n] {
            let u = sent(&mut rib, p);
            assert_eq!(nlri_count(&u), 1);
            let a = &u[0].attributes;
            assert_eq!(a.originator_id, Some(Ipv4Addr::new(192, 0, 2, 2)));
            assert_eq!(a.cluster_list, vec![Ipv4Addr::new(9, 9, 9, 9)]);
            // Reflection does not change the next hop.
            assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 2)));
        }
        assert_eq!(nlri_count(&sent(&mut rib, c1)), 0);
    }

    #[test]
    fn reflector_sends_non_client_routes_to_clients_only() {
        let (mut rib, c1, c2, n) = reflector();
        rib.apply_update(n, announce(attrs(&[], "10.0.0.4"), &["10.9.0.0/24"]), None);
        assert_eq!(nlri_count(&sent(&mut rib, c1)), 1);
        assert_eq!(nlri_count(&sent(&mut rib, c2)), 1);
        assert_eq!(nlri_count(&sent(&mut rib, n)), 0);
    }

    #[test]
    fn without_cluster_id_ibgp_routes_are_not_readvertised_to_ibgp() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65001, 2);
        let b = up(&mut rib, "10.0.0.3", 65001, 3);
        rib.apply_update(a, announce(attrs(&[], "10.0.0.2"), &["10.9.0.0/24"]), None);
        assert_eq!(nlri_count(&sent(&mut rib, b)), 0);
    }

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
        rib.originate(net("fd00:1::/64"));
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

    #[test]
    fn unknown_optional_transitive_attributes_pass_with_partial_bit_and_others_are_dropped() {
        let mut rib = rib();
        let a = up(&mut rib, "10.0.0.2", 65002, 2);
        let e = up(&mut rib, "10.0.0.3", 65003, 3);
        let mut x = attrs(&[65002], "10.0.0.2");
        x.unknown = vec![
            crate::wire::RawAttribute {
                flags: 0xC0,
                type_code: 99,
                value: bytes::Bytes::from_static(b"ab"),
            },
            crate::wire::RawAttribute {
                flags: 0x80,
                type_code: 98,
                value: bytes::Bytes::from_static(b"cd"),
            },
        ];
        rib.apply_update(a, announce(x, &["10.9.0.0/24"]), None);
        let u = sent(&mut rib, e);
        assert_eq!(u[0].attributes.unknown.len(), 1);
        assert_eq!(u[0].attributes.unknown[0].flags, 0xE0);
    }
}
