//! The peer table and each peer's session lifecycle, with graceful restart as receiving
//! speaker (RFC 4724 §4.2): stale paths kept across a restart and purged on End-of-RIB or timeout.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::tables::{Batch, Paths, Pfx, Tables};
use super::{
    FamilyCounters, Map, PeerCounters, PeerIdx, PeerPolicy, RejectedRoute, Rib, RibPeer, SessionInfo,
    Treatments, slot,
};
use crate::wire::Family;

impl Rib {
    /// Adds a peer; returns its index.
    pub fn add_peer(&mut self, policy: PeerPolicy) -> PeerIdx {
        let peer = RibPeer {
            policy,
            session: None,
            accepted: [0; 2],
            rejected: Map::default(),
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

    pub fn counters(&self, peer: PeerIdx) -> PeerCounters {
        match self.peer(peer) {
            Some(p) => {
                let mut families = [FamilyCounters::default(); 2];
                for (f, accepted) in families.iter_mut().zip(p.accepted) {
                    f.accepted = accepted;
                    f.received = accepted;
                }
                for prefix in p.rejected.keys() {
                    families[slot(prefix)].received += 1;
                }
                for prefix in p.adj_out.keys() {
                    families[slot(prefix)].advertised += 1;
                }
                let accepted: u64 = p.accepted.iter().sum();
                PeerCounters {
                    received: accepted + p.rejected.len() as u64,
                    accepted,
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

    pub(super) fn mark_all_dirty(&mut self) {
        for p in self.peers.iter_mut().flatten() {
            if p.session.is_some() {
                p.dirty_all = true;
            }
        }
    }

    /// Every route received and rejected, with the reason, sorted by prefix then peer.
    pub fn rejected(&self) -> Vec<RejectedRoute> {
        let mut out: Vec<RejectedRoute> = self
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as PeerIdx, p.as_ref()?)))
            .flat_map(|(peer, p)| {
                p.rejected.iter().map(move |(prefix, reason)| RejectedRoute {
                    prefix: *prefix,
                    peer,
                    reason: *reason,
                })
            })
            .collect();
        out.sort_by_key(|r| (r.prefix, r.peer));
        out
    }

    /// The peer's address, for status output.
    pub fn peer_address(&self, peer: PeerIdx) -> Option<IpAddr> {
        self.peer(peer).map(|p| p.policy.address)
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
