//! The decision process (RFC 4271 §9.1.2): best path, multipath set and their summary.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::tables::Paths;
use super::{BestRoute, DEFAULT_LOCAL_PREF, LOCAL, Path, PeerIdx, RibPeer};
use crate::wire::{AsPath, Origin, PathAttributes};

/// The parts of a prefix's decision that matter to others: the best path and the multipath
/// next hops.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) best: Option<(PeerIdx, usize)>,
    pub(super) next_hops: Vec<IpAddr>,
}

/// The decision process (RFC 4271 §9.1.2) over one prefix's candidates.
pub(super) struct Decide<'a> {
    pub(super) peers: &'a [Option<RibPeer>],
    pub(super) multipath: bool,
}

impl Decide<'_> {
    pub(super) fn best_path<'p>(&self, paths: &'p Paths) -> Option<&'p Path> {
        let slice = paths.as_slice();
        let mut best = slice.first()?;
        for p in &slice[1..] {
            if self.compare(p, best).is_lt() {
                best = p;
            }
        }
        Some(best)
    }

    pub(super) fn summary(&self, paths: Option<&Paths>) -> Summary {
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

    pub(super) fn best_route(&self, prefix: IpNet, paths: &Paths) -> Option<BestRoute> {
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
