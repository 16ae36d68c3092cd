//! The pod's point-to-point link, over rtnetlink: a veth pair, the pod's addresses as /32 and
//! /128, a link-scope gateway reached by proxy ARP (and a static neighbour entry), host routes
//! tagged with caracal's route protocol.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::stream::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use crate::error::{Code, Error, Result};
use crate::netns;

/// Route protocol number of the host routes to pods (`ip route show proto 91`), so the agent
/// can tell its routes from everybody else's.
pub use caracal_contract::CNI_ROUTE_PROTOCOL as ROUTE_PROTOCOL;
/// Every host-side veth has this MAC, so the pod's gateway MAC never changes (as Calico does).
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv4 gateway: on-link, answered by the host veth through proxy ARP.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The host veth's EUI-64 link-local address derived from [`HOST_MAC`]: the IPv6 gateway.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// The host veth's alias marks which attachment owns it (`caracal:<network>/<container>/<ifname>`):
/// a DEL of an old sandbox never removes the veth of the pod's new one (same pod, same name),
/// and GC finds veths whose ADD died before writing the endpoint record.
pub const ALIAS_PREFIX: &str = "caracal:";

/// The owner mark of an attachment. Network names and container IDs cannot contain '/'.
pub fn owner_mark(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{ALIAS_PREFIX}{network}/{container_id}/{ifname}")
}

/// (network, container ID, ifname) of an owner mark.
pub fn parse_owner_mark(alias: &str) -> Option<(&str, &str, &str)> {
    let mut it = alias.strip_prefix(ALIAS_PREFIX)?.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next()?))
}

const ENODEV: i32 = 19;
const ESRCH: i32 = 3;
const ENOENT: i32 = 2;

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| Error::with_details(Code::Internal, what, e)
}

fn is_gone(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if [ENODEV, ESRCH, ENOENT].contains(&-m.raw_code()))
}

pub fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An rtnetlink connection bound to one network namespace.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the calling thread's namespace. Must run inside the tokio runtime.
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("cannot open netlink socket", e))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection to `ns`: a netlink socket belongs to the namespace it was opened in, so it
    /// is opened there and used from here.
    pub fn connect_in(ns: &File) -> Result<Netlink> {
        netns::run_in(ns, Netlink::connect)?
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut s = self.handle.link().get().match_name(name).execute();
        match s.try_next().await {
            Ok(m) => Ok(m),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(nl(format!("cannot look up link {name}"))(e)),
        }
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Err(e) if !is_gone(&e) => Err(nl(format!("cannot delete link {index}"))(e)),
            _ => Ok(()),
        }
    }

    async fn routes(&self, v4: bool) -> Result<Vec<RouteMessage>> {
        let msg = if v4 {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        };
        self.handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(nl("cannot list routes"))
    }

    async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl("cannot list addresses"))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }
}

pub fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

pub fn link_alias(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(n) => Some(n.as_str()),
        _ => None,
    })
}

pub fn link_mac(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac_string(mac)),
            _ => None,
        })
        .unwrap_or_default()
}

/// What ADD builds.
pub struct Spec<'a> {
    pub host_if: &'a str,
    pub ifname: &'a str,
    pub mtu: u32,
    pub ips: &'a [IpAddr],
    /// The [`owner_mark`] of this attachment.
    pub owner: &'a str,
}

pub struct Built {
    pub pod_mac: String,
}

/// Writes a sysctl under /proc/sys/net of the calling thread's namespace, only if it differs.
fn sysctl(path: &str, value: &str) -> Result<()> {
    let full = format!("/proc/sys/net/{path}");
    if std::fs::read_to_string(&full).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&full, value).map_err(|e| Error::io(format!("cannot set {full} to {value}"), e))
}

/// Checks that the pod has no `ifname` yet (SPEC.md: ADD fails if the interface exists).
pub async fn ensure_absent(pod: &Netlink, ifname: &str) -> Result<()> {
    if pod.link(ifname).await?.is_some() {
        return Err(Error::internal(format!(
            "interface {ifname} already exists in the container"
        )));
    }
    Ok(())
}

/// Creates the veth pair with the pod end directly in the pod's namespace. On error the caller's
/// rollback deletes `spec.host_if`.
pub async fn create_veth(host: &Netlink, pod_ns: &File, spec: &Spec<'_>) -> Result<u32> {
    // A host veth of this name is left from an earlier sandbox of the same pod: its pod end is
    // gone with that sandbox, so it carries no traffic any more.
    if let Some(old) = host.link(spec.host_if).await? {
        host.del_link(old.header.index).await?;
    }
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.ifname)
        .mtu(spec.mtu)
        .setns_by_fd(pod_ns.as_raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(spec.host_if)
        .mtu(spec.mtu)
        .address(HOST_MAC.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host.handle.link().add(msg).execute().await.map_err(nl(format!(
        "cannot create veth {} <-> {}",
        spec.host_if, spec.ifname
    )))?;
    let link = host
        .link(spec.host_if)
        .await?
        .ok_or_else(|| Error::internal(format!("veth {} vanished after creation", spec.host_if)))?;
    // The kernel ignores IFLA_IFALIAS on creation, so the owner mark follows at once: from here
    // on, GC can find this veth even if the plugin dies.
    let mark = LinkUnspec::new_with_index(link.header.index)
        .alias(spec.owner)
        .build();
    host.handle
        .link()
        .set(mark)
        .execute()
        .await
        .map_err(nl(format!("cannot mark {}", spec.host_if)))?;
    Ok(link.header.index)
}

/// Host side: sysctls, up, routes to the pod.
pub async fn setup_host(host: &Netlink, host_index: u32, spec: &Spec<'_>) -> Result<()> {
    let v6 = spec.ips.iter().any(IpAddr::is_ipv6);
    let h = spec.host_if;
    sysctl(&format!("ipv4/conf/{h}/proxy_arp"), "1")?;
    sysctl(&format!("ipv4/neigh/{h}/proxy_delay"), "0")?;
    sysctl(&format!("ipv4/conf/{h}/forwarding"), "1")?;
    sysctl("ipv4/ip_forward", "1")?;
    if v6 {
        // DAD off: the link-local gateway address must be usable the moment the link is up.
        sysctl(&format!("ipv6/conf/{h}/accept_dad"), "0")?;
        sysctl(&format!("ipv6/conf/{h}/disable_ipv6"), "0")?;
        sysctl(&format!("ipv6/conf/{h}/accept_ra"), "0")?;
        sysctl(&format!("ipv6/conf/{h}/proxy_ndp"), "1")?;
        sysctl(&format!("ipv6/conf/{h}/forwarding"), "1")?;
        sysctl("ipv6/conf/all/forwarding", "1")?;
    }
    let set = LinkUnspec::new_with_index(host_index).up().build();
    host.handle
        .link()
        .set(set)
        .execute()
        .await
        .map_err(nl(format!("cannot bring up {h}")))?;
    for ip in spec.ips {
        let b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(*ip, if ip.is_ipv4() { 32 } else { 128 })
            .map_err(|e| Error::internal(format!("bad route to {ip}: {e:?}")))?;
        let mut msg = b
            .output_interface(host_index)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        if ip.is_ipv4() {
            msg.header.scope = RouteScope::Link;
        }
        host.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("cannot add host route to {ip} via {h}")))?;
    }
    Ok(())
}

/// Pod side: addresses, lo up, gateway routes and neighbours.
pub async fn setup_pod(pod: &Netlink, pod_ns: &File, spec: &Spec<'_>) -> Result<Built> {
    let link = pod
        .link(spec.ifname)
        .await?
        .ok_or_else(|| Error::internal(format!("{} missing in the container after creation", spec.ifname)))?;
    let idx = link.header.index;
    let v6 = spec.ips.iter().any(IpAddr::is_ipv6);
    if v6 {
        let ifname = spec.ifname.to_owned();
        netns::run_in(pod_ns, move || -> Result<()> {
            sysctl(&format!("ipv6/conf/{ifname}/disable_ipv6"), "0")?;
            sysctl(&format!("ipv6/conf/{ifname}/accept_dad"), "0")
        })??;
    }
    pod.handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("cannot bring up {} in the container", spec.ifname)))?;
    if let Some(lo) = pod.link("lo").await?
        && !lo.header.flags.contains(LinkFlags::Up)
    {
        pod.handle
            .link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("cannot bring up lo in the container"))?;
    }
    for ip in spec.ips {
        let mut req = pod
            .handle
            .address()
            .add(idx, *ip, if ip.is_ipv4() { 32 } else { 128 });
        if ip.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.replace()
            .execute()
            .await
            .map_err(nl(format!("cannot add address {ip} in the container")))?;
    }
    if spec.ips.iter().any(IpAddr::is_ipv4) {
        let onlink = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(idx)
            .scope(RouteScope::Link)
            .build();
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(idx)
            .build();
        for r in [onlink, default] {
            pod.handle
                .route()
                .add(r)
                .replace()
                .execute()
                .await
                .map_err(nl("cannot add IPv4 routes in the container"))?;
        }
        add_neighbour(pod, idx, GATEWAY_V4.into()).await?;
    }
    if v6 {
        let default = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(idx)
            .build();
        pod.handle
            .route()
            .add(default)
            .replace()
            .execute()
            .await
            .map_err(nl("cannot add IPv6 default route in the container"))?;
        add_neighbour(pod, idx, GATEWAY_V6.into()).await?;
    }
    Ok(Built {
        pod_mac: link_mac(&link),
    })
}

/// A permanent neighbour entry for the gateway: the pod's first packet needs no ARP/ND round
/// trip, and the path does not depend on the host having a route that covers 169.254.1.1.
async fn add_neighbour(pod: &Netlink, idx: u32, gw: IpAddr) -> Result<()> {
    pod.handle
        .neighbours()
        .add(idx, gw)
        .link_layer_address(&HOST_MAC)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("cannot add neighbour {gw} in the container")))
}

/// Deletes the host veth `host_if` if `owner` owns it (or it carries no owner mark yet: an ADD
/// that died between creating and marking it). Returns whether a link was deleted.
pub async fn delete_host_veth(host: &Netlink, host_if: &str, owner: &str) -> Result<bool> {
    let Some(link) = host.link(host_if).await? else {
        return Ok(false);
    };
    if link_alias(&link).is_some_and(|a| a.starts_with(ALIAS_PREFIX) && a != owner) {
        return Ok(false);
    }
    host.del_link(link.header.index).await?;
    Ok(true)
}

/// Host links carrying an owner mark: (index, mark).
pub async fn owned_links(host: &Netlink) -> Result<Vec<(u32, String)>> {
    let links: Vec<LinkMessage> = host
        .handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("cannot list links"))?;
    Ok(links
        .iter()
        .filter_map(|l| {
            let a = link_alias(l)?;
            a.starts_with(ALIAS_PREFIX)
                .then(|| (l.header.index, a.to_owned()))
        })
        .collect())
}

/// Deletes `ifname` in the pod's namespace if it is there.
pub async fn delete_pod_if(pod: &Netlink, ifname: &str) -> Result<()> {
    if let Some(link) = pod.link(ifname).await? {
        pod.del_link(link.header.index).await?;
    }
    Ok(())
}

fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn route_gw(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

/// CHECK: everything ADD built is still there, as it was built. Returns a list of problems.
pub async fn check(
    host: &Netlink,
    pod: &Netlink,
    host_if: &str,
    ifname: &str,
    ips: &[IpAddr],
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let host_link = host.link(host_if).await?;
    let pod_link = pod.link(ifname).await?;
    match &host_link {
        None => problems.push(format!("host veth {host_if} is missing")),
        Some(l) if !l.header.flags.contains(LinkFlags::Up) => {
            problems.push(format!("host veth {host_if} is down"))
        }
        Some(_) => {}
    }
    let Some(pod_link) = pod_link else {
        problems.push(format!("interface {ifname} is missing in the container"));
        return Ok(problems);
    };
    if !pod_link.header.flags.contains(LinkFlags::Up) {
        problems.push(format!("interface {ifname} is down in the container"));
    }
    let have = pod.addresses(pod_link.header.index).await?;
    for ip in ips {
        let want = if ip.is_ipv4() { 32 } else { 128 };
        if !have.iter().any(|(a, l)| a == ip && *l == want) {
            problems.push(format!("address {ip}/{want} is missing on {ifname}"));
        }
    }
    for (a, l) in &have {
        let link_local = matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !link_local && !ips.contains(a) {
            problems.push(format!("unexpected address {a}/{l} on {ifname}"));
        }
    }
    for v4 in [true, false] {
        if !ips.iter().any(|i| i.is_ipv4() == v4) {
            continue;
        }
        let gw: IpAddr = if v4 { GATEWAY_V4.into() } else { GATEWAY_V6.into() };
        let routes = pod.routes(v4).await?;
        let ok = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && route_gw(r) == Some(gw)
                && route_oif(r) == Some(pod_link.header.index)
        });
        if !ok {
            problems.push(format!(
                "default route via {gw} dev {ifname} is missing in the container"
            ));
        }
        if let Some(hl) = &host_link {
            let host_routes = host.routes(v4).await?;
            for ip in ips.iter().filter(|i| i.is_ipv4() == v4) {
                let ok = host_routes.iter().any(|r| {
                    route_dst(r) == Some(*ip)
                        && r.header.destination_prefix_length == if v4 { 32 } else { 128 }
                        && route_oif(r) == Some(hl.header.index)
                });
                if !ok {
                    problems.push(format!("host route to {ip} dev {host_if} is missing"));
                }
            }
        }
    }
    Ok(problems)
}
