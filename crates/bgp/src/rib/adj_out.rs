//! Adj-RIB-Out: what each peer has been sent, what it must be sent next, and the UPDATEs
//! that carry the difference.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::decision::Decide;
use super::{Hasher, Map, PeerIdx, Rib, RouteAttrs};
use crate::wire::{Family, MpReach, MpUnreach, PathAttributes, Update};

impl Rib {
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
}

/// Bytes an attribute set takes on the wire at most (4-byte headers, 2-octet AS paths with
/// AS4_PATH), so that packing never overflows a message.
pub(super) fn attrs_size_bound(a: &RouteAttrs) -> usize {
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
