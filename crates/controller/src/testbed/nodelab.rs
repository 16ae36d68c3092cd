//! A node in a box: one node namespace, one namespace per pod wired the way the CNI plugin does
//! it, servers for every (port, protocol) in every pod, and real probes between pods.
//!
//! Plumbing per pod (Calico's layout, `research/calico.md` §2.2): a veth pair with the host side
//! `cara<11 hex>` in the node namespace (proxy ARP on, proxy delay 0, a `/32` route to the pod)
//! and `eth0` in the pod namespace (the pod's `/32`, `169.254.1.1` on-link, default route via
//! it). Pods reach each other only through the node's FORWARD chain, so the applied program
//! decides every probe.
//!
//! Servers and probe sockets are created by threads that entered the pod's namespace (a socket
//! stays in the namespace it was created in), then driven by one tokio runtime: no process per
//! pod or per probe.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use caracal_policy::model::{Key, LocalEndpoint};
use caracal_policy::program::Protocol;
use tokio::runtime::Runtime;

use crate::dataplane::netns::{Netns, in_netns, run, tool, unique_suffix};
use crate::dataplane::{Error, Result};

/// The gateway every pod routes through; the node answers ARP for it by proxy.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// How long a probe waits for a handshake or a reply before it counts as dropped.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
const UDP_PROBE: &[u8] = b"caracal-probe";

/// The host-side interface name the CNI plugin gives a pod.
pub fn host_iface(pod: &Key) -> String {
    caracal_contract::pod_veth_name(&pod.namespace, &pod.name)
}

/// One probe: a connection attempt from a pod to another pod's port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    pub from: Key,
    pub to: Key,
    pub port: u16,
    pub protocol: Protocol,
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed (TCP, SCTP) or the echo came back (UDP).
    Connected,
    /// Nothing came back within [`PROBE_TIMEOUT`]: the packet was dropped.
    TimedOut,
    /// The connection was refused or failed otherwise (a REJECT, or no server): never what a
    /// policy should do, so it matches neither `.` nor `X`.
    Failed(String),
    /// The protocol cannot be probed on this kernel (SCTP without the sctp module).
    Skipped(String),
}

/// One pod of a [`NodeLab`].
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub key: Key,
    pub ip: Ipv4Addr,
    /// Host-side veth name (`cara` + up to 11 characters).
    pub iface: String,
}

struct LabPod {
    ns: Netns,
    iface: String,
    ip: Ipv4Addr,
}

/// The test bed. Dropping it removes every namespace (and so every veth, route, rule and set).
pub struct NodeLab {
    rt: Runtime,
    // Pods before the node: their namespaces go first, taking the veths with them.
    pods: BTreeMap<Key, LabPod>,
    node: Netns,
    sctp: std::result::Result<(), String>,
}

impl NodeLab {
    /// Brings up a node with `pods` at addresses `10.66.<a>.<b>` in order, on interfaces
    /// named by [`host_iface`], each serving every (port, protocol) in `services`.
    pub fn up(pods: &[Key], services: &[(u16, Protocol)]) -> Result<NodeLab> {
        let specs: Vec<PodSpec> = pods
            .iter()
            .enumerate()
            .map(|(i, key)| PodSpec {
                key: key.clone(),
                ip: Ipv4Addr::new(10, 66, ((i + 2) >> 8) as u8, ((i + 2) & 0xff) as u8),
                iface: host_iface(key),
            })
            .collect();
        NodeLab::up_with(&specs, services)
    }

    /// Brings up a node with pods at the given addresses and host interface names.
    pub fn up_with(pods: &[PodSpec], services: &[(u16, Protocol)]) -> Result<NodeLab> {
        let suffix = unique_suffix();
        let node = Netns::create(&format!("cn-{suffix}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Lab(format!("tokio runtime: {e}")))?;
        let mut lab = NodeLab {
            rt,
            pods: BTreeMap::new(),
            node,
            sctp: Ok(()),
        };
        let ip = tool("ip")?;
        let node_name = lab.node.name().to_owned();
        in_netns(Some(&node_name), || -> Result<()> {
            for (path, value) in [("ipv4/ip_forward", "1"), ("ipv4/conf/all/rp_filter", "0")] {
                std::fs::write(format!("/proc/sys/net/{path}"), value)
                    .map_err(|e| Error::Lab(format!("sysctl {path}: {e}")))?;
            }
            Ok(())
        })??;
        // Proxy ARP answers only for addresses the node routes out of another interface, as a
        // real node does with its default route; here that route ends in an unconnected veth, so
        // nothing leaves the namespace.
        let mut node_batch = String::from(
            "link add gw0 type veth peer name gw1\nlink set gw1 up\nlink set gw0 up\nroute add default dev gw0\n",
        );
        for (i, PodSpec { key, ip, iface }) in pods.iter().enumerate() {
            if !iface.starts_with(caracal_policy::program::IFACE_PREFIX) || iface.len() > 15 {
                return Err(Error::Lab(format!(
                    "pod {key}: bad host interface name {iface:?}"
                )));
            }
            if lab.pods.contains_key(key) || lab.pods.values().any(|p| p.iface == *iface || p.ip == *ip) {
                return Err(Error::Lab(format!(
                    "pod {key} repeats another pod's name, interface or address"
                )));
            }
            let ns = Netns::create(&format!("cp-{suffix}-{i}"))?;
            let (iface, pod_ip) = (iface.clone(), *ip);
            node_batch.push_str(&format!(
                "link add {iface} type veth peer name eth0 netns {}\nlink set {iface} up\n\
                 route add {pod_ip}/32 dev {iface} scope link\n",
                ns.name()
            ));
            lab.pods.insert(
                key.clone(),
                LabPod {
                    ns,
                    iface,
                    ip: pod_ip,
                },
            );
        }
        run(Some(&node_name), &ip, &["-batch", "-"], Some(&node_batch))?;
        for pod in lab.pods.values() {
            let iface = pod.iface.clone();
            in_netns(Some(&node_name), move || -> Result<()> {
                for (path, value) in [("proxy_arp", "1"), ("rp_filter", "0")] {
                    std::fs::write(format!("/proc/sys/net/ipv4/conf/{iface}/{path}"), value)
                        .map_err(|e| Error::Lab(format!("sysctl {iface}/{path}: {e}")))?;
                }
                std::fs::write(format!("/proc/sys/net/ipv4/neigh/{iface}/proxy_delay"), "0")
                    .map_err(|e| Error::Lab(format!("sysctl {iface}/proxy_delay: {e}")))?;
                Ok(())
            })??;
            let batch = format!(
                "addr add {}/32 dev eth0\nlink set eth0 up\nroute add {GATEWAY} dev eth0 scope link\n\
                 route add default via {GATEWAY} dev eth0\n",
                pod.ip
            );
            run(Some(pod.ns.name()), &ip, &["-batch", "-"], Some(&batch))?;
        }
        lab.sctp = in_netns(Some(&node_name), || {
            socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::from(libc::IPPROTO_SCTP)),
            )
            .map(drop)
            .map_err(|e| format!("this kernel has no SCTP ({e})"))
        })?;
        lab.start_servers(services)?;
        Ok(lab)
    }

    fn start_servers(&self, services: &[(u16, Protocol)]) -> Result<()> {
        for (key, pod) in &self.pods {
            let sctp_ok = self.sctp.is_ok();
            let sockets = in_netns(Some(pod.ns.name()), || -> std::io::Result<Vec<Server>> {
                let mut out = Vec::new();
                for &(port, protocol) in services {
                    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
                    match protocol {
                        Protocol::Tcp => out.push(Server::Stream(stream_listener(addr, None)?)),
                        Protocol::Sctp if sctp_ok => {
                            out.push(Server::Stream(stream_listener(addr, Some(libc::IPPROTO_SCTP))?))
                        }
                        Protocol::Udp => {
                            let s = std::net::UdpSocket::bind(addr)?;
                            s.set_nonblocking(true)?;
                            out.push(Server::Udp(s));
                        }
                        _ => {}
                    }
                }
                Ok(out)
            })?
            .map_err(|e| Error::Lab(format!("servers in pod {key}: {e}")))?;
            let _guard = self.rt.enter();
            for s in sockets {
                match s {
                    Server::Stream(l) => {
                        let l = tokio::net::TcpListener::from_std(l)
                            .map_err(|e| Error::Lab(format!("listener in pod {key}: {e}")))?;
                        self.rt.spawn(async move {
                            while let Ok((conn, _)) = l.accept().await {
                                drop(conn);
                            }
                        });
                    }
                    Server::Udp(u) => {
                        let u = tokio::net::UdpSocket::from_std(u)
                            .map_err(|e| Error::Lab(format!("udp server in pod {key}: {e}")))?;
                        self.rt.spawn(async move {
                            let mut buf = [0u8; 512];
                            while let Ok((n, peer)) = u.recv_from(&mut buf).await {
                                let _ = u.send_to(&buf[..n], peer).await;
                            }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The node namespace, where the program is applied.
    pub fn node_netns(&self) -> &str {
        self.node.name()
    }

    pub fn pod_ip(&self, pod: &Key) -> Option<Ipv4Addr> {
        self.pods.get(pod).map(|p| p.ip)
    }

    pub fn pods(&self) -> impl Iterator<Item = &Key> {
        self.pods.keys()
    }

    /// The pods as the compiler sees this node's endpoints.
    pub fn local_endpoints(&self) -> Vec<LocalEndpoint> {
        self.pods
            .iter()
            .map(|(key, p)| LocalEndpoint {
                pod: key.clone(),
                iface: p.iface.clone(),
                ips: vec![p.ip.into()],
            })
            .collect()
    }

    /// Runs all probes at once; outcomes in the order of `probes`.
    pub fn probe(&self, probes: &[Probe]) -> Result<Vec<Outcome>> {
        // Client sockets are made in the source pod's namespace, one thread per source pod.
        let mut by_src: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
        for (i, p) in probes.iter().enumerate() {
            if !self.pods.contains_key(&p.from) || !self.pods.contains_key(&p.to) {
                return Err(Error::Lab(format!("probe {} -> {}: no such pod", p.from, p.to)));
            }
            by_src.entry(&p.from).or_default().push(i);
        }
        let mut clients: Vec<Option<std::io::Result<Client>>> = (0..probes.len()).map(|_| None).collect();
        for (src, idx) in by_src {
            let made = in_netns(Some(self.pods[src].ns.name()), || {
                idx.iter()
                    .map(|&i| (i, Client::new(probes[i].protocol, self.sctp.is_ok())))
                    .collect::<Vec<_>>()
            })?;
            for (i, c) in made {
                clients[i] = Some(c);
            }
        }
        let _guard = self.rt.enter();
        let mut tasks = Vec::with_capacity(probes.len());
        for (p, client) in probes.iter().zip(clients) {
            let dst = SocketAddr::V4(SocketAddrV4::new(self.pods[&p.to].ip, p.port));
            let client = client.expect("every probe has a client");
            let skip = match (&self.sctp, p.protocol) {
                (Err(why), Protocol::Sctp) => Some(why.clone()),
                (_, Protocol::Icmp | Protocol::Icmpv6) => Some("ICMP is not probed".into()),
                _ => None,
            };
            tasks.push(self.rt.spawn(async move {
                if let Some(why) = skip {
                    return Outcome::Skipped(why);
                }
                match client {
                    Ok(c) => c.probe(dst).await,
                    Err(e) => Outcome::Failed(format!("socket: {e}")),
                }
            }));
        }
        let results = self.rt.block_on(futures::future::join_all(tasks));
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| Outcome::Failed(format!("probe task: {e}"))))
            .collect())
    }

    /// Probes until every probe shows its expected outcome (`true` = connects, `false` = times
    /// out) or `deadline` passes; only probes not yet as expected are repeated. Returns the last
    /// outcome of each probe.
    pub fn probe_until(&self, probes: &[Probe], expect: &[bool], deadline: Duration) -> Result<Vec<Outcome>> {
        let started = Instant::now();
        let mut outcomes = self.probe(probes)?;
        loop {
            let pending: Vec<usize> = (0..probes.len())
                .filter(|&i| !matches_expectation(&outcomes[i], expect[i]))
                .collect();
            if pending.is_empty() || started.elapsed() + PROBE_TIMEOUT > deadline {
                return Ok(outcomes);
            }
            std::thread::sleep(Duration::from_millis(100));
            let again: Vec<Probe> = pending.iter().map(|&i| probes[i].clone()).collect();
            for (i, o) in pending.into_iter().zip(self.probe(&again)?) {
                outcomes[i] = o;
            }
        }
    }
}

/// Whether an outcome is what a truth-table cell asks for; skipped probes match nothing and are
/// reported as skipped by the caller.
pub fn matches_expectation(outcome: &Outcome, connect: bool) -> bool {
    matches!(
        (outcome, connect),
        (Outcome::Connected, true) | (Outcome::TimedOut, false) | (Outcome::Skipped(_), _)
    )
}

enum Server {
    Stream(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// A TCP (or, with `IPPROTO_SCTP`, an SCTP one-to-one) listener. SCTP stream sockets take the
/// same accept and connect calls as TCP, so the tokio TCP types drive both.
fn stream_listener(addr: SocketAddr, protocol: Option<i32>) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        protocol.map(socket2::Protocol::from),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

enum Client {
    Stream(tokio::net::TcpSocket),
    Udp(std::net::UdpSocket),
}

impl Client {
    fn new(protocol: Protocol, sctp: bool) -> std::io::Result<Client> {
        match protocol {
            Protocol::Udp => {
                let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.set_nonblocking(true)?;
                Ok(Client::Udp(s))
            }
            Protocol::Sctp if sctp => {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::from(libc::IPPROTO_SCTP)),
                )?;
                s.set_nonblocking(true)?;
                Ok(Client::Stream(tokio::net::TcpSocket::from_std_stream(s.into())))
            }
            // Placeholders for probes that are skipped.
            Protocol::Sctp | Protocol::Icmp | Protocol::Icmpv6 | Protocol::Tcp => {
                Ok(Client::Stream(tokio::net::TcpSocket::new_v4()?))
            }
        }
    }

    async fn probe(self, dst: SocketAddr) -> Outcome {
        match self {
            Client::Stream(s) => match tokio::time::timeout(PROBE_TIMEOUT, s.connect(dst)).await {
                Ok(Ok(_conn)) => Outcome::Connected,
                Ok(Err(e)) if e.kind() == ErrorKind::TimedOut => Outcome::TimedOut,
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(_) => Outcome::TimedOut,
            },
            Client::Udp(s) => {
                let s = match tokio::net::UdpSocket::from_std(s) {
                    Ok(s) => s,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                if let Err(e) = s.send_to(UDP_PROBE, dst).await {
                    return Outcome::Failed(e.to_string());
                }
                let mut buf = [0u8; 64];
                let wait = async {
                    loop {
                        match s.recv_from(&mut buf).await {
                            Ok((n, from)) if from == dst && &buf[..n] == UDP_PROBE => return Ok(()),
                            Ok(_) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                };
                match tokio::time::timeout(PROBE_TIMEOUT, wait).await {
                    Ok(Ok(())) => Outcome::Connected,
                    // An ICMP port unreachable (a reject, or no server) surfaces as an error.
                    Ok(Err(e)) => Outcome::Failed(e.to_string()),
                    Err(_) => Outcome::TimedOut,
                }
            }
        }
    }
}
