//! Installs Loc-RIB best routes into the kernel over rtnetlink.
//!
//! Every route we install carries our own route protocol number (default 201), so that our
//! routes can be told apart from everyone else's and removed at exit or after a crash.
//! Multipath best routes become one ECMP route.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

use crate::rib::{BestRoute, ChangeKind, LOCAL, RouteChange};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("netlink connection: {0}")]
    Connection(std::io::Error),
    #[error("netlink {op} {prefix}: {source}")]
    Route {
        op: &'static str,
        prefix: IpNet,
        source: rtnetlink::Error,
    },
    #[error("netlink dump: {0}")]
    Dump(rtnetlink::Error),
    #[error("{prefix}: {reason}")]
    Invalid { prefix: IpNet, reason: String },
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// The routes this speaker owns in the kernel.
pub struct KernelRoutes {
    handle: Handle,
    protocol: u8,
    installed: HashSet<IpNet>,
    /// Ours from before a restart, not installed again yet: a withdrawal removes them too.
    leftover: HashSet<IpNet>,
}

impl KernelRoutes {
    /// Opens a netlink connection (the connection task runs on the current tokio runtime).
    pub fn new(protocol: u8) -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connection)?;
        tokio::spawn(conn);
        Ok(KernelRoutes {
            handle,
            protocol,
            installed: HashSet::new(),
            leftover: HashSet::new(),
        })
    }

    /// Takes over routes of ours left from before a restart (kept for graceful restart): a
    /// withdrawal of one of them, for example a prefix `no_install` now covers, removes it
    /// rather than leaving it for the restart time.
    pub fn adopt_leftovers(&mut self, prefixes: &[IpNet]) {
        self.leftover.extend(prefixes.iter().copied());
    }

    pub fn installed(&self) -> &HashSet<IpNet> {
        &self.installed
    }

    /// Applies best-route changes; returns the errors (one route failing does not stop the rest).
    pub async fn apply(&mut self, changes: &[RouteChange]) -> Vec<KernelError> {
        let mut errors = Vec::new();
        for c in changes {
            let hops: Vec<IpAddr> = c
                .next_hops
                .iter()
                .copied()
                .filter(|h| usable(&c.prefix, h))
                .collect();
            let result = if c.kind == ChangeKind::Withdrawn || hops.is_empty() {
                // `|`, not `||`: a prefix must leave both sets.
                if self.installed.remove(&c.prefix) | self.leftover.remove(&c.prefix) {
                    self.delete(c.prefix).await
                } else {
                    Ok(())
                }
            } else {
                let r = self.replace(c.prefix, &hops).await;
                if r.is_ok() {
                    self.installed.insert(c.prefix);
                    self.leftover.remove(&c.prefix);
                }
                r
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }

    fn message(&self, prefix: IpNet) -> RouteMessage {
        let mut m = match prefix {
            IpNet::V4(p) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(p.addr(), p.prefix_len())
                .build(),
            IpNet::V6(p) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(p.addr(), p.prefix_len())
                .build(),
        };
        m.header.protocol = RouteProtocol::from(self.protocol);
        m
    }

    async fn replace(&self, prefix: IpNet, hops: &[IpAddr]) -> Result<()> {
        let mut m = self.message(prefix);
        if hops.len() == 1 {
            m.attributes.push(RouteAttribute::Gateway(hops[0].into()));
        } else {
            let mut nexthops = Vec::new();
            for h in hops {
                let b = if h.is_ipv4() {
                    RouteNextHopBuilder::new_ipv4()
                } else {
                    RouteNextHopBuilder::new_ipv6()
                };
                let b = b.via(*h).map_err(|e| KernelError::Invalid {
                    prefix,
                    reason: e.to_string(),
                })?;
                nexthops.push(b.build());
            }
            m.attributes.push(RouteAttribute::MultiPath(nexthops));
        }
        self.handle
            .route()
            .add(m)
            .replace()
            .execute()
            .await
            .map_err(|source| KernelError::Route {
                op: "replace",
                prefix,
                source,
            })
    }

    async fn delete(&self, prefix: IpNet) -> Result<()> {
        match self.handle.route().del(self.message(prefix)).execute().await {
            Ok(()) => Ok(()),
            // Already gone (someone else removed it): that is what we wanted.
            Err(rtnetlink::Error::NetlinkError(e)) if matches!(e.raw_code(), -3 | -2) => Ok(()),
            Err(source) => Err(KernelError::Route {
                op: "delete",
                prefix,
                source,
            }),
        }
    }

    /// Removes every route we installed.
    pub async fn remove_all(&mut self) -> Vec<KernelError> {
        let mut errors = Vec::new();
        for prefix in std::mem::take(&mut self.installed) {
            if let Err(e) = self.delete(prefix).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Lists routes in the kernel carrying our protocol number (left by an earlier run).
    pub async fn ours(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessage::default();
            filter.header.address_family = family;
            let mut stream = self.handle.route().get(filter).execute();
            while let Some(m) = stream.try_next().await.map_err(KernelError::Dump)? {
                if m.header.protocol != RouteProtocol::from(self.protocol) {
                    continue;
                }
                let len = m.header.destination_prefix_length;
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(d) => Some(d.clone()),
                    _ => None,
                });
                let addr: Option<IpAddr> = match dst {
                    Some(netlink_packet_route::route::RouteAddress::Inet(a)) => Some(a.into()),
                    Some(netlink_packet_route::route::RouteAddress::Inet6(a)) => Some(a.into()),
                    _ if family == AddressFamily::Inet => Some(Ipv4Addr::UNSPECIFIED.into()),
                    _ => Some(Ipv6Addr::UNSPECIFIED.into()),
                };
                if let Some(net) = addr.and_then(|a| IpNet::new(a, len).ok()) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Deletes routes of ours that are not currently installed by this run.
    pub async fn purge_foreign(&self, keep: &HashSet<IpNet>) -> Result<usize> {
        let mut n = 0;
        for prefix in self.ours().await? {
            if !keep.contains(&prefix) && !self.installed.contains(&prefix) {
                self.delete(prefix).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Whether `prefix` lies inside one of `nets` (equal or longer).
pub fn covered(nets: &[IpNet], prefix: &IpNet) -> bool {
    nets.iter().any(|n| n.contains(prefix))
}

/// The best-route changes as the kernel should see them: a prefix covered by `no_install`
/// becomes a withdrawal, which removes it if an earlier configuration installed it and is
/// ignored otherwise.
pub fn without_no_install(mut changes: Vec<RouteChange>, no_install: &[IpNet]) -> Vec<RouteChange> {
    if no_install.is_empty() {
        return changes;
    }
    for c in &mut changes {
        if covered(no_install, &c.prefix) {
            c.kind = ChangeKind::Withdrawn;
            c.next_hops.clear();
        }
    }
    changes
}

/// When `no_install` changes from `old` to `new`: the changes that bring the kernel in line
/// for the best routes whose coverage changed (newly covered ones removed, uncovered learned
/// ones installed).
pub fn no_install_changed(best: &[BestRoute], old: &[IpNet], new: &[IpNet]) -> Vec<RouteChange> {
    best.iter()
        .filter(|r| covered(old, &r.prefix) != covered(new, &r.prefix))
        .filter_map(|r| {
            if covered(new, &r.prefix) {
                Some(RouteChange {
                    prefix: r.prefix,
                    kind: ChangeKind::Withdrawn,
                    next_hops: vec![],
                })
            } else {
                (r.peer != LOCAL).then(|| RouteChange {
                    prefix: r.prefix,
                    kind: ChangeKind::Changed,
                    next_hops: r.next_hops.clone(),
                })
            }
        })
        .collect()
}

/// Whether the kernel can use `hop` for `prefix` without an interface (no IPv4-mapped or
/// link-local next hops, same family).
fn usable(prefix: &IpNet, hop: &IpAddr) -> bool {
    match (prefix, hop) {
        (IpNet::V4(_), IpAddr::V4(h)) => !h.is_unspecified(),
        (IpNet::V6(_), IpAddr::V6(h)) => {
            !h.is_unspecified() && !h.is_unicast_link_local() && h.to_ipv4_mapped().is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(prefix: &str, kind: ChangeKind, hops: &[&str]) -> RouteChange {
        RouteChange {
            prefix: prefix.parse().unwrap(),
            kind,
            next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn no_install_prefixes_reach_the_kernel_as_withdrawals_only() {
        let no_install: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap(), "fd00:96::/112".parse().unwrap()];
        let changes = vec![
            change("10.96.0.0/16", ChangeKind::Added, &["10.0.0.12"]),
            change("10.96.0.10/32", ChangeKind::Changed, &["10.0.0.12", "10.0.0.13"]),
            change("10.244.2.0/24", ChangeKind::Added, &["10.0.0.12"]),
            change("10.0.0.0/8", ChangeKind::Added, &["10.0.0.12"]),
            change("fd00:96::10/128", ChangeKind::Added, &["fd00::12"]),
        ];
        let got = without_no_install(changes.clone(), &no_install);
        assert_eq!(
            got,
            vec![
                change("10.96.0.0/16", ChangeKind::Withdrawn, &[]),
                change("10.96.0.10/32", ChangeKind::Withdrawn, &[]),
                changes[2].clone(),
                // A shorter prefix holding the range is not covered.
                changes[3].clone(),
                change("fd00:96::10/128", ChangeKind::Withdrawn, &[]),
            ]
        );
        assert_eq!(without_no_install(changes.clone(), &[]), changes);
    }

    #[test]
    fn changing_no_install_withdraws_newly_covered_and_installs_uncovered_learned_routes() {
        let attrs = std::sync::Arc::new(crate::rib::RouteAttrs {
            attrs: Default::default(),
            next_hop: "10.0.0.12".parse().unwrap(),
            link_local: None,
        });
        let best = |prefix: &str, peer| BestRoute {
            prefix: prefix.parse().unwrap(),
            next_hops: vec!["10.0.0.12".parse().unwrap()],
            attrs: attrs.clone(),
            peer,
        };
        let routes = [
            best("10.96.0.10/32", 1),
            best("10.97.0.10/32", 1),
            best("10.97.0.11/32", LOCAL),
            best("10.244.2.0/24", 1),
        ];
        let old: Vec<IpNet> = vec!["10.96.0.0/16".parse().unwrap()];
        let new: Vec<IpNet> = vec!["10.97.0.0/16".parse().unwrap()];
        assert_eq!(
            no_install_changed(&routes, &old, &new),
            vec![
                change("10.96.0.10/32", ChangeKind::Changed, &["10.0.0.12"]),
                change("10.97.0.10/32", ChangeKind::Withdrawn, &[]),
                change("10.97.0.11/32", ChangeKind::Withdrawn, &[]),
            ]
        );
        assert!(no_install_changed(&routes, &old, &old).is_empty());
    }

    #[test]
    fn only_same_family_global_next_hops_are_usable() {
        let v4: IpNet = "10.0.0.0/24".parse().unwrap();
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert!(usable(&v4, &"10.0.0.1".parse().unwrap()));
        assert!(!usable(&v4, &"fd00::1".parse().unwrap()));
        assert!(usable(&v6, &"fd00::1".parse().unwrap()));
        assert!(!usable(&v6, &"fe80::1".parse().unwrap()));
        assert!(!usable(&v6, &"::ffff:10.0.0.1".parse().unwrap()));
    }
}
