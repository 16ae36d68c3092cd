//! Export policy: which attributes a peer gets for a best path (RFC 4271 §5, §9.1.3; route
//! reflection, RFC 4456; well-known communities, RFC 1997).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    DEFAULT_LOCAL_PREF, LOCAL, NO_ADVERTISE, NO_EXPORT, Path, PeerIdx, Rib, RouteAttrs, SessionInfo,
};
use crate::wire::RawAttribute;
use crate::wire::community::NO_EXPORT_SUBCONFED;

impl Rib {
    /// Whether a route for `prefix` learned from `src` stays away from `dst` under
    /// [`Rib::set_no_transit`]: everything but route reflection, which keeps the original next
    /// hop (RFC 4456), so a router reflected to still reaches the announcing node.
    pub(super) fn held_back(&self, prefix: &IpNet, src: PeerIdx, dst: PeerIdx) -> bool {
        if !self.no_transit.iter().any(|n| n.contains(prefix)) {
            return false;
        }
        let (Some(s), Some(d)) = (self.peer(src), self.peer(dst)) else {
            return true;
        };
        let reflected = self.config.cluster_id.is_some()
            && s.policy.ibgp()
            && d.policy.ibgp()
            && (s.policy.rr_client || d.policy.rr_client);
        !reflected
    }

    /// Routes learned for prefixes covered by `nets` are passed on to no peer (a route
    /// reflector still reflects them): such a prefix is advertised only while this speaker
    /// originates it. Service addresses are announced by the nodes that can serve them; a node
    /// passing on another's with itself as next hop would draw the traffic to itself.
    pub fn set_no_transit(&mut self, nets: Vec<IpNet>) {
        if self.no_transit != nets {
            self.no_transit = nets;
            self.mark_all_dirty();
        }
    }

    /// The attributes `peer` gets for `path`, or `None` when it must not get it.
    pub(super) fn export(&self, peer: PeerIdx, session: &SessionInfo, path: &Path) -> Option<RouteAttrs> {
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
        // Without confederations, NO_EXPORT_SUBCONFED stops at the AS border as NO_EXPORT does.
        if !dst.ibgp()
            && a.communities
                .iter()
                .any(|c| *c == NO_EXPORT || *c == NO_EXPORT_SUBCONFED)
        {
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
}
