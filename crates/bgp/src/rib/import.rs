//! Routes into the RIB: UPDATEs from peers (RFC 7606 treatments, loop detection, import
//! filters, own next hops) and prefixes originated by this speaker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::tables::Batch;
use super::{ImportOutcome, LOCAL, PeerIdx, PeerPolicy, RejectReason, Rib, RouteAttrs};
use crate::config::Originate;
use crate::wire::{Action, AsPath, Origin, PathAttributes, Update};

impl Rib {
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
            self.withdraw_prefixes(&mut batch, peer, all);
            self.finish(batch);
            return outcome;
        }
        let looped = self.loops(&policy, &attributes);

        // A withdrawn route is no longer received, whether it was accepted or rejected.
        let unreach = mp_unreach.map(|u| u.withdrawn).unwrap_or_default();
        self.withdraw_prefixes(
            &mut batch,
            peer,
            withdrawn.into_iter().map(IpNet::V4).chain(unreach),
        );

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
            let v4_attrs = match (looped, next_hop_v4) {
                (Some(reason), _) => Err(reason),
                (None, Some(nh)) if has_v4 && !own.contains(&IpAddr::V4(nh)) => {
                    Ok(self.interner.intern(RouteAttrs {
                        attrs: attributes.clone(),
                        next_hop: IpAddr::V4(nh),
                        link_local: None,
                    }))
                }
                (None, _) => Err(RejectReason::NoNextHop),
            };
            // RFC 4271 §6.3: a NEXT_HOP that is our own address is semantically incorrect; the
            // route is ignored (withdrawn, as the peer's earlier one must not linger), and the
            // session stays up.
            let v4_own = next_hop_v4
                .map(IpAddr::V4)
                .filter(|nh| has_v4 && own.contains(nh));
            if let Some(nh) = v4_own {
                outcome.own_next_hop = Some(nh);
                self.withdraw_prefixes(&mut batch, peer, nlri.into_iter().map(IpNet::V4));
            } else {
                for prefix in nlri {
                    let prefix = IpNet::V4(prefix);
                    let verdict = import_verdict(&policy, &prefix, &v4_attrs);
                    self.import_one(&mut batch, peer, prefix, verdict);
                }
            }
            if let Some(reach) = mp_reach {
                let (nh, ll) = split_next_hops(&reach.next_hops);
                if let Some(nh) = nh.filter(|nh| !reach.nlri.is_empty() && own.contains(nh)) {
                    outcome.own_next_hop = Some(nh);
                    self.withdraw_prefixes(&mut batch, peer, reach.nlri.into_iter());
                    self.finish_import(peer, batch, &mut outcome);
                    return outcome;
                }
                let attrs = match (looped, nh) {
                    (Some(reason), _) => Err(reason),
                    (None, Some(nh)) => Ok(self.interner.intern(RouteAttrs {
                        attrs: attributes,
                        next_hop: nh,
                        link_local: ll,
                    })),
                    (None, None) => Err(RejectReason::NoNextHop),
                };
                for prefix in reach.nlri {
                    let verdict = import_verdict(&policy, &prefix, &attrs);
                    self.import_one(&mut batch, peer, prefix, verdict);
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

    /// Withdraws `peer`'s paths for prefixes withdrawn or whose announcement was ignored, and
    /// forgets their rejection.
    fn withdraw_prefixes(&mut self, batch: &mut Batch, peer: PeerIdx, prefixes: impl Iterator<Item = IpNet>) {
        for prefix in prefixes {
            if let Some(p) = self.peer_mut(peer)
                && !p.rejected.is_empty()
            {
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
        verdict: Result<&Arc<RouteAttrs>, RejectReason>,
    ) {
        let p = self.peers[peer as usize].as_mut().expect("peer exists");
        match verdict {
            Ok(_) => {
                if !p.rejected.is_empty() {
                    p.rejected.remove(&prefix);
                }
            }
            Err(reason) => {
                p.rejected.insert(prefix, reason);
            }
        }
        self.set_path(batch, peer, prefix, verdict.ok().cloned());
    }

    /// Loop detection: our AS in an eBGP AS_PATH (RFC 4271 §9.1.2), our router ID as
    /// ORIGINATOR_ID or our cluster ID in CLUSTER_LIST (RFC 4456 §8).
    fn loops(&self, policy: &PeerPolicy, attrs: &PathAttributes) -> Option<RejectReason> {
        if !policy.ibgp()
            && let Some(path) = &attrs.as_path
            && path.segments.iter().any(|s| {
                s.asns
                    .iter()
                    .any(|a| *a == policy.local_as || *a == self.config.local_as)
            })
        {
            return Some(RejectReason::AsPathLoop);
        }
        if attrs.originator_id == Some(self.config.router_id) {
            return Some(RejectReason::OriginatorIdLoop);
        }
        if let Some(cluster) = self.config.cluster_id
            && attrs.cluster_list.contains(&cluster)
        {
            return Some(RejectReason::ClusterListLoop);
        }
        None
    }

    /// Originates a prefix from this speaker with its attributes, to every peer or to the ones
    /// it names; again with other attributes or peers replaces them.
    pub fn originate(&mut self, route: &Originate) {
        let prefix = route.prefix;
        let next_hop = match prefix {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let attrs = self.interner.intern(RouteAttrs {
            attrs: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                communities: route.communities.clone(),
                large_communities: route.large_communities.clone(),
                ..Default::default()
            },
            next_hop,
            link_local: None,
        });
        let mut batch = Batch::new(self, LOCAL);
        self.set_path(&mut batch, LOCAL, prefix, Some(attrs));
        self.finish(batch);
        let to = Some(&route.peers).filter(|p| !p.is_empty());
        if self.local_export.get(&prefix) != to {
            match to {
                Some(to) => self.local_export.insert(prefix, to.clone()),
                None => self.local_export.remove(&prefix),
            };
            // Same attributes, other peers: what each peer gets must be looked at again.
            for p in self.peers.iter_mut().flatten() {
                if p.session.is_some() && !p.dirty_all {
                    p.dirty.insert(prefix);
                }
            }
        }
    }

    /// Stops originating `prefix`.
    pub fn withdraw_local(&mut self, prefix: IpNet) {
        self.local_export.remove(&prefix);
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
}

/// The attribute set `prefix` is stored with, or why it is rejected: the UPDATE's own verdict
/// (a loop, no next hop) first, then the peer's import filter.
fn import_verdict<'a>(
    policy: &PeerPolicy,
    prefix: &IpNet,
    attrs: &'a Result<Arc<RouteAttrs>, RejectReason>,
) -> Result<&'a Arc<RouteAttrs>, RejectReason> {
    match attrs {
        Ok(a) if policy.import.accepts(prefix) => Ok(a),
        Ok(_) => Err(RejectReason::ImportFilter),
        Err(reason) => Err(*reason),
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
