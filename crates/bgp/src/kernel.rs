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

use crate::rib::{ChangeKind, RouteChange};

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
        })
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
                if self.installed.remove(&c.prefix) {
                    self.delete(c.prefix).await
                } else {
                    Ok(())
                }
            } else {
                let r = self.replace(c.prefix, &hops).await;
                if r.is_ok() {
                    self.installed.insert(c.prefix);
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
