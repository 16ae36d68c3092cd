//! Which BGP sessions a node has: a pure function of the cluster BGP configuration, the BGPPeers,
//! the nodes, the resolved passwords and the node's name, following Calico's rules
//! (`shared/research/next-features.md` §1.5, §1.6):
//!
//! - sessions are keyed by peer address and port; the first one emitted for a key wins, in the
//!   order global peers (no `node`/`nodeSelector`), node peers (this node is `node` or matches
//!   `nodeSelector`), reverse peerings (this node is selected by a `peerSelector`, or is the
//!   `peerIP` of a BGPPeer, so it peers back with the BGPPeer's nodes), then the node mesh, so
//!   explicit peers win over the mesh and a forward peering over an implicit reverse one;
//! - a node with a route-reflector cluster ID leaves the mesh, and the mesh leaves it out; on it,
//!   every iBGP session to a peer without the same cluster ID is a route-reflector client;
//! - a peer at one of the node's own addresses is skipped;
//! - the mesh is on unless the BGPConfiguration turns it off.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use caracal_bgp::config::{PeerConfig, PrefixRule, SpeakerConfig};

use super::{
    types::{SecretKeyRef, SourceAddress},
    validate::{ClusterBgp, NodeMatch, Peer, Remote},
};
use crate::datastore::Node;

/// What the agent's own configuration gives when the objects say nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// The AS of nodes without `caracal.dev/bgp-asn` when the BGPConfiguration has no
    /// `asNumber` (the ConfigMap's `bgp.local_as`).
    pub local_as: u32,
    /// The port other nodes are reached on when the BGPConfiguration has no `listenPort`.
    pub listen_port: u16,
    /// Graceful-restart time of sessions whose object sets none.
    pub restart_time: u16,
}

/// The inputs of [`select`].
pub struct Inputs<'a> {
    /// This node's name.
    pub node: &'a str,
    /// The `default` BGPConfiguration, if any.
    pub config: Option<&'a ClusterBgp>,
    pub peers: &'a [Peer],
    pub nodes: &'a BTreeMap<String, Node>,
    /// The Secret values the passwords refer to, where found.
    pub passwords: &'a BTreeMap<SecretKeyRef, String>,
    pub defaults: Defaults,
}

/// Where a session comes from, as Calico names its BIRD protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionKind {
    Mesh,
    Global,
    Node,
}

/// One session of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub kind: SessionKind,
    /// The BGPPeer it comes from (none for the mesh).
    pub peer: Option<String>,
    /// The node at the other end, when it is one.
    pub remote_node: Option<String>,
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: Option<u32>,
    pub password: Option<String>,
    pub route_reflector_client: bool,
    pub graceful_restart_time: u16,
    pub source_address: Option<IpAddr>,
    pub ebgp_multihop: Option<u8>,
    pub max_prefixes: Option<u32>,
    pub import: Vec<PrefixRule>,
    pub export: Vec<PrefixRule>,
}

impl Session {
    /// Calico's protocol name (`Mesh_192_0_2_2`, `Node_10_0_0_1_port_1179`), which tools parse.
    pub fn name(&self) -> String {
        let kind = match self.kind {
            SessionKind::Mesh => "Mesh",
            SessionKind::Global => "Global",
            SessionKind::Node => "Node",
        };
        let ip = self.address.to_string().replace(['.', ':'], "_");
        match self.port {
            179 => format!("{kind}_{ip}"),
            p => format!("{kind}_{ip}_port_{p}"),
        }
    }

    /// The speaker's configuration of this session (the speaker's defaults for hold time,
    /// connect retry and families).
    pub fn peer_config(&self) -> PeerConfig {
        let mut p = base_peer(self.address, self.remote_as);
        p.local_as = self.local_as;
        p.port = self.port;
        p.password = self.password.clone();
        p.route_reflector_client = self.route_reflector_client;
        p.graceful_restart_time = self.graceful_restart_time;
        p.source_address = self.source_address;
        p.ebgp_multihop = self.ebgp_multihop;
        p.max_prefixes = self.max_prefixes;
        p.import = self.import.clone();
        p.export = self.export.clone();
        p
    }
}

/// A peer with `address` and `remote_as` and the speaker's defaults for everything else.
pub fn base_peer(address: IpAddr, remote_as: u32) -> PeerConfig {
    #[derive(serde::Serialize)]
    struct Required {
        address: IpAddr,
        remote_as: u32,
    }
    let value = serde_json::to_value(Required { address, remote_as }).expect("two plain fields encode");
    serde::Deserialize::deserialize(value).expect("a peer needs only its address and AS")
}

/// This node's BGP: its identity and sessions, and what could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBgp {
    pub local_as: u32,
    /// Set on a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// The BGPConfiguration's `listenPort`, if it sets one.
    pub listen_port: Option<u16>,
    pub sessions: Vec<Session>,
    /// Sessions left out and why (a missing password, a second port to one address).
    pub problems: Vec<String>,
}

impl NodeBgp {
    /// `base` (router ID, listen address, control socket, originated prefixes...) with this
    /// node's AS, cluster ID, sessions and (if the objects set one) listen port instead of its
    /// own.
    pub fn apply_to(&self, base: &SpeakerConfig) -> SpeakerConfig {
        let mut c = base.clone();
        c.local_as = self.local_as;
        if let Some(port) = self.listen_port {
            c.listen_port = port;
        }
        c.cluster_id = self.cluster_id;
        c.peers = self.sessions.iter().map(Session::peer_config).collect();
        c
    }
}

fn matches(m: &NodeMatch, node: &Node) -> bool {
    match m {
        NodeMatch::All => true,
        NodeMatch::Node(name) => *name == node.name,
        NodeMatch::Selector(e) => e.matches(&node.labels),
    }
}

/// The address a node is peered on: its first InternalIP, as the node mesh always did.
fn peering_ip(node: &Node) -> Option<IpAddr> {
    node.internal_ips().next()
}

struct Builder<'a> {
    inputs: &'a Inputs<'a>,
    this: &'a Node,
    local_as: u32,
    listen_port: u16,
    own_ips: BTreeSet<IpAddr>,
    node_by_ip: BTreeMap<IpAddr, &'a Node>,
    /// Every key emitted or claimed (a session left out for a missing password keeps its key,
    /// so the mesh does not take over a peering an object asked for).
    keys: BTreeSet<(IpAddr, u16)>,
    out: NodeBgp,
}

impl<'a> Builder<'a> {
    fn as_of(&self, node: &Node) -> u32 {
        node.asn.unwrap_or_else(|| self.cluster_as())
    }

    fn cluster_as(&self) -> u32 {
        self.inputs
            .config
            .and_then(|c| c.as_number)
            .unwrap_or(self.inputs.defaults.local_as)
    }

    fn other_nodes(&self) -> impl Iterator<Item = &'a Node> + 'a {
        let this = self.this.name.clone();
        self.inputs.nodes.values().filter(move |n| n.name != this)
    }

    /// This node's address of the peer's family, for `sourceAddress: UseNodeIP`.
    fn source_for(&self, peer: IpAddr) -> Option<IpAddr> {
        let mut ips = self
            .this
            .internal_ips()
            .chain(self.this.addresses.iter().map(|a| a.ip));
        ips.find(|ip| ip.is_ipv4() == peer.is_ipv4())
    }

    fn password(&self, r: Option<&SecretKeyRef>, whose: &str) -> Result<Option<String>, String> {
        let Some(r) = r else { return Ok(None) };
        match self.inputs.passwords.get(r) {
            Some(p) if !p.is_empty() && p.len() <= 80 => Ok(Some(p.clone())),
            Some(_) => Err(format!(
                "{whose}: password Secret {:?} key {:?} must be 1 to 80 bytes (TCP MD5)",
                r.name, r.key
            )),
            None => Err(format!(
                "{whose}: password Secret {:?} key {:?} not found",
                r.name, r.key
            )),
        }
    }

    /// Adds a session unless its key is taken or it points at this node.
    fn push(&mut self, session: Result<Session, String>, address: IpAddr, port: u16) {
        if self.own_ips.contains(&address) || !self.keys.insert((address, port)) {
            return;
        }
        let session = match session {
            Ok(s) => s,
            Err(problem) => {
                self.out.problems.push(problem);
                return;
            }
        };
        if self.out.sessions.iter().any(|s| s.address == address) {
            self.out.problems.push(format!(
                "{}: {address} port {port} left out: the speaker has one session per address, \
                 and {address} already has one on another port",
                session.peer.as_deref().unwrap_or("mesh")
            ));
            return;
        }
        self.out.sessions.push(session);
    }

    fn explicit(
        &self,
        p: &Peer,
        kind: SessionKind,
        address: IpAddr,
        port: u16,
        remote_as: u32,
        remote_node: Option<&Node>,
    ) -> Result<Session, String> {
        Ok(Session {
            kind,
            peer: Some(p.name.clone()),
            remote_node: remote_node.map(|n| n.name.clone()),
            address,
            port,
            remote_as,
            local_as: p.local_as,
            password: self.password(p.password.as_ref(), &format!("BGPPeer {}", p.name))?,
            route_reflector_client: false,
            graceful_restart_time: p.restart_time.unwrap_or(self.inputs.defaults.restart_time),
            source_address: match p.source_address {
                SourceAddress::UseNodeIp => self.source_for(address),
                SourceAddress::None => None,
            },
            ebgp_multihop: p.ebgp_multihop,
            max_prefixes: p.max_prefixes,
            import: p.import.clone(),
            export: p.export.clone(),
        })
    }

    /// The forward sessions of a BGPPeer that applies to this node.
    fn forward(&mut self, p: &Peer, kind: SessionKind) {
        match &p.remote {
            Remote::Address { ip, port, as_number } => {
                let port = port.unwrap_or(if self.node_by_ip.contains_key(ip) {
                    self.listen_port
                } else {
                    179
                });
                let remote = self.node_by_ip.get(ip).copied();
                let s = self.explicit(p, kind, *ip, port, *as_number, remote);
                self.push(s, *ip, port);
            }
            Remote::Nodes(selector) => {
                let targets: Vec<&Node> = self
                    .other_nodes()
                    .filter(|n| selector.matches(&n.labels))
                    .collect();
                self.peer_with_nodes(p, kind, targets);
            }
        }
    }

    fn peer_with_nodes(&mut self, p: &Peer, kind: SessionKind, targets: Vec<&Node>) {
        for n in targets {
            let Some(ip) = peering_ip(n) else { continue };
            let s = self.explicit(p, kind, ip, self.listen_port, self.as_of(n), Some(n));
            self.push(s, ip, self.listen_port);
        }
    }

    /// This node is the remote end of a BGPPeer: it peers back with the BGPPeer's nodes.
    fn reverse(&mut self, p: &Peer) {
        let selected = match &p.remote {
            Remote::Nodes(selector) => selector.matches(&self.this.labels),
            Remote::Address { ip, port, as_number } => {
                self.own_ips.contains(ip)
                    && *as_number == self.local_as
                    && port.is_none_or(|port| port == self.listen_port)
            }
        };
        if !selected {
            return;
        }
        let targets: Vec<&Node> = self.other_nodes().filter(|n| matches(&p.nodes, n)).collect();
        self.peer_with_nodes(p, SessionKind::Node, targets);
    }

    fn mesh(&mut self) {
        let config = self.inputs.config;
        if !config.is_none_or(|c| c.mesh) || self.this.rr_cluster_id.is_some() {
            return;
        }
        let password = self.password(
            config.and_then(|c| c.mesh_password.as_ref()),
            "BGPConfiguration default nodeMeshPassword",
        );
        let restart = config
            .and_then(|c| c.mesh_restart_time)
            .unwrap_or(self.inputs.defaults.restart_time);
        let targets: Vec<&Node> = self.other_nodes().filter(|n| n.rr_cluster_id.is_none()).collect();
        for n in targets {
            let Some(ip) = peering_ip(n) else { continue };
            let s = password.clone().map(|password| Session {
                kind: SessionKind::Mesh,
                peer: None,
                remote_node: Some(n.name.clone()),
                address: ip,
                port: self.listen_port,
                remote_as: self.as_of(n),
                local_as: None,
                password,
                route_reflector_client: false,
                graceful_restart_time: restart,
                source_address: None,
                ebgp_multihop: None,
                max_prefixes: None,
                import: Vec::new(),
                export: Vec::new(),
            });
            self.push(s, ip, self.listen_port);
        }
    }

    /// On a route reflector: iBGP peers without the same cluster ID are its clients.
    fn mark_clients(&mut self) {
        let Some(cluster) = self.this.rr_cluster_id else {
            return;
        };
        for s in &mut self.out.sessions {
            let ibgp = s.remote_as == s.local_as.unwrap_or(self.local_as);
            let remote_cluster = s
                .remote_node
                .as_ref()
                .and_then(|n| self.inputs.nodes.get(n))
                .and_then(|n| n.rr_cluster_id);
            s.route_reflector_client = ibgp && remote_cluster != Some(cluster);
        }
    }
}

/// This node's sessions (see the module documentation for the rules).
pub fn select(inputs: &Inputs<'_>) -> NodeBgp {
    let configured_port = inputs.config.and_then(|c| c.listen_port);
    let listen_port = configured_port.unwrap_or(inputs.defaults.listen_port);
    let Some(this) = inputs.nodes.get(inputs.node) else {
        return NodeBgp {
            local_as: inputs
                .config
                .and_then(|c| c.as_number)
                .unwrap_or(inputs.defaults.local_as),
            cluster_id: None,
            listen_port: configured_port,
            sessions: Vec::new(),
            problems: vec![format!(
                "node {} is not in the datastore: no sessions",
                inputs.node
            )],
        };
    };
    let mut node_by_ip = BTreeMap::new();
    for n in inputs.nodes.values() {
        for ip in n.internal_ips() {
            node_by_ip.entry(ip).or_insert(n);
        }
    }
    let mut b = Builder {
        inputs,
        this,
        local_as: 0,
        listen_port,
        own_ips: this.addresses.iter().map(|a| a.ip).collect(),
        node_by_ip,
        keys: BTreeSet::new(),
        out: NodeBgp {
            local_as: 0,
            cluster_id: this.rr_cluster_id,
            listen_port: configured_port,
            sessions: Vec::new(),
            problems: Vec::new(),
        },
    };
    b.local_as = b.as_of(this);
    b.out.local_as = b.local_as;
    for p in inputs.peers.iter().filter(|p| p.nodes == NodeMatch::All) {
        b.forward(p, SessionKind::Global);
    }
    for p in inputs
        .peers
        .iter()
        .filter(|p| p.nodes != NodeMatch::All && matches(&p.nodes, this))
    {
        b.forward(p, SessionKind::Node);
    }
    for p in inputs.peers {
        b.reverse(p);
    }
    b.mesh();
    b.mark_clients();
    b.out
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
