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
//!
//! Where things are: `tables` stores paths and interned attribute sets and applies every change
//! to the Loc-RIB; `decision` is the §9.1.2 decision process; `peers` is the peer table and the
//! session lifecycle (graceful restart as receiving speaker); `import` takes UPDATEs and
//! originated prefixes in; `export` is the per-peer export policy; `adj_out` computes what each
//! peer must be sent.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::PrefixFilter;
use crate::wire::{Family, PathAttributes};

mod adj_out;
mod decision;
mod export;
mod import;
mod peers;
mod tables;
#[cfg(test)]
mod tests;

pub use adj_out::{AdjRibOutDiff, Announcement};
use tables::{Interner, Tables};

type Hasher = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Hasher>;

/// Index of a peer in the RIB; [`LOCAL`] is the speaker itself (originated prefixes).
pub type PeerIdx = u32;
pub const LOCAL: PeerIdx = 0;

/// Well-known communities (RFC 1997), kept here for the RIB's callers.
pub use crate::wire::community::{NO_ADVERTISE, NO_EXPORT};
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

/// The slot of a prefix's family in per-family counters: 0 IPv4, 1 IPv6 (unicast).
fn slot(prefix: &IpNet) -> usize {
    match prefix {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1,
    }
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
    /// Prefixes received but rejected, with the reason.
    rejected: Map<IpNet, RejectReason>,
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

/// Why a received route was not taken into the Loc-RIB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Our AS in the AS_PATH of a route from another AS (RFC 4271 §9.1.2).
    AsPathLoop,
    /// Our router ID as ORIGINATOR_ID (RFC 4456 §8).
    OriginatorIdLoop,
    /// Our cluster ID in the CLUSTER_LIST (RFC 4456 §8).
    ClusterListLoop,
    /// The UPDATE gave no next hop for the route's family.
    NoNextHop,
    /// The peer's import filter denied the prefix.
    ImportFilter,
}

impl RejectReason {
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::AsPathLoop => "our AS in the AS_PATH",
            RejectReason::OriginatorIdLoop => "our router ID as ORIGINATOR_ID",
            RejectReason::ClusterListLoop => "our cluster ID in the CLUSTER_LIST",
            RejectReason::NoNextHop => "no next hop",
            RejectReason::ImportFilter => "denied by the import filter",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A received route the RIB holds no path for, and why (`caracal bgp status --routes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedRoute {
    pub prefix: IpNet,
    pub peer: PeerIdx,
    pub reason: RejectReason,
}

/// Kind of a best-route change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ChangeKind {
    Added,
    Changed,
    Withdrawn,
}

/// A change of a prefix's best route(s), for the kernel installer and the agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Originated prefixes advertised to some peers only, with those peers' addresses.
    local_export: Map<IpNet, Vec<IpAddr>>,
    changes: Vec<RouteChange>,
    /// Prefixes covered by these are advertised only as this speaker's own (see
    /// [`Rib::set_no_transit`]).
    no_transit: Vec<IpNet>,
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        Rib {
            config,
            tables: Tables::default(),
            interner: Interner::default(),
            peers: vec![None],
            local_export: Map::default(),
            changes: Vec::new(),
            no_transit: Vec::new(),
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

    fn peer(&self, peer: PeerIdx) -> Option<&RibPeer> {
        self.peers.get(peer as usize).and_then(Option::as_ref)
    }

    fn peer_mut(&mut self, peer: PeerIdx) -> Option<&mut RibPeer> {
        self.peers.get_mut(peer as usize).and_then(Option::as_mut)
    }
}
