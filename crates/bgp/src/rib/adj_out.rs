//! Adj-RIB-Out: what each peer has been sent, and the difference it must be sent next, as an
//! [`AdjRibOutDiff`] (withdrawals, and announcements grouped by shared attributes) that the
//! session driver encodes with the codec's packer (`wire::encode_updates` and friends).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;

use super::decision::Decide;
use super::{Hasher, LOCAL, Map, PeerIdx, Rib, RouteAttrs};
use crate::wire::{
    EncodeError, EncodeOptions, Family, MpReach, PathAttributes, encode_end_of_rib, encode_updates,
    encode_withdrawals,
};

/// What a peer must be sent next, in order: withdrawals, announcements, End-of-RIB markers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdjRibOutDiff {
    /// Prefixes no longer advertised: IPv4 first, each family sorted.
    pub withdrawals: Vec<IpNet>,
    /// Prefixes advertised anew or with changed attributes, one group per attribute set and
    /// family, ordered by their first prefix.
    pub announcements: Vec<Announcement>,
    /// Families whose initial table is complete (RFC 4724 §2).
    pub end_of_rib: Vec<Family>,
}

/// Prefixes of one family that share their attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The attributes as the packer takes them: an IPv4 next hop in NEXT_HOP, any other in an
    /// MP_REACH_NLRI template without NLRI (RFC 4760; an RFC 2545 link-local one after it).
    pub attributes: PathAttributes,
    /// Sorted.
    pub prefixes: Vec<IpNet>,
}

impl AdjRibOutDiff {
    pub fn is_empty(&self) -> bool {
        self.withdrawals.is_empty() && self.announcements.is_empty() && self.end_of_rib.is_empty()
    }

    /// Encodes the diff with the codec's packer, as few UPDATEs as fit the session's largest
    /// message. A group that cannot be encoded is left out and its error returned; the rest
    /// is still sent.
    pub fn encode(&self, opts: &EncodeOptions) -> (Vec<Bytes>, Vec<EncodeError>) {
        let mut msgs = Vec::new();
        let mut errors = Vec::new();
        let mut take = |r: Result<Vec<Bytes>, EncodeError>| match r {
            Ok(m) => msgs.extend(m),
            Err(e) => errors.push(e),
        };
        if !self.withdrawals.is_empty() {
            take(encode_withdrawals(&self.withdrawals, opts));
        }
        for a in &self.announcements {
            take(encode_updates(&a.attributes, &a.prefixes, opts));
        }
        for f in &self.end_of_rib {
            take(encode_end_of_rib(*f, opts).map(|m| vec![m]));
        }
        (msgs, errors)
    }
}

/// `a` as the packer takes it for prefixes of `family`.
fn wire_attributes(a: &RouteAttrs, family: Family) -> PathAttributes {
    let mut out = a.attrs.clone();
    match a.next_hop {
        IpAddr::V4(nh) if family == Family::IPV4_UNICAST => out.next_hop = Some(nh),
        nh => {
            let mut next_hops = vec![nh];
            next_hops.extend(a.link_local.map(IpAddr::V6));
            out.mp_reach = Some(MpReach {
                family,
                next_hops,
                nlri: Vec::new(),
            });
        }
    }
    out
}

impl Rib {
    /// Whether `peer` has anything to send.
    pub fn has_pending(&self, peer: PeerIdx) -> bool {
        self.peer(peer).is_some_and(|p| {
            p.session.is_some() && (p.dirty_all || !p.dirty.is_empty() || !p.eor_pending.is_empty())
        })
    }

    /// Computes what `peer` must be sent and updates its Adj-RIB-Out as if it had been: every
    /// prefix that shares an exported attribute set is in one group. With `withdrawals_only`,
    /// announcements stay pending (MRAI running).
    pub fn take_diff(&mut self, peer: PeerIdx, withdrawals_only: bool) -> AdjRibOutDiff {
        let Some(p) = self.peer(peer) else {
            return AdjRibOutDiff::default();
        };
        let Some(session) = p.session.clone() else {
            return AdjRibOutDiff::default();
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
            let desired = best
                .filter(|b| b.peer == LOCAL || !self.held_back(&prefix, b.peer, peer))
                .and_then(|b| {
                    let key = (Arc::as_ptr(&b.attrs) as usize, b.peer);
                    cache
                        .entry(key)
                        .or_insert_with(|| self.export(peer, &session, b).map(Arc::new))
                        .clone()
                });
            let local_only_to = best
                .filter(|b| b.peer == LOCAL)
                .and_then(|_| self.local_export.get(&prefix));
            let desired = desired.filter(|_| {
                session.families.contains(&Family::of(&prefix))
                    && p.policy.export.accepts(&prefix)
                    && local_only_to.is_none_or(|to| to.contains(&p.policy.address))
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
        let mut diff = AdjRibOutDiff {
            withdrawals: withdraw,
            ..Default::default()
        };
        diff.withdrawals.sort_by_key(|p| (p.addr().is_ipv6(), *p));
        for (attrs, prefixes) in announce.into_values() {
            let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = prefixes.into_iter().partition(|p| p.addr().is_ipv4());
            for (family, mut prefixes) in [(Family::IPV4_UNICAST, v4), (Family::IPV6_UNICAST, v6)] {
                if !prefixes.is_empty() {
                    prefixes.sort();
                    diff.announcements.push(Announcement {
                        attributes: wire_attributes(&attrs, family),
                        prefixes,
                    });
                }
            }
        }
        diff.announcements
            .sort_by(|a, b| a.prefixes[0].cmp(&b.prefixes[0]));
        if !withdrawals_only && p.dirty.is_empty() {
            diff.end_of_rib = std::mem::take(&mut p.eor_pending);
        }
        diff
    }
}
