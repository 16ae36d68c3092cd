//! The dataplane program: what the compiler produces and what the renderer, the applier and the
//! evaluator consume.
//!
//! A program is a value. It can be rendered to `iptables-restore` and `ipset restore` input,
//! diffed against what the kernel holds, simulated packet by packet, and golden-tested. Rules are
//! structured (matches and one action), never pre-rendered strings, so that the evaluator runs
//! exactly what the kernel would.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Address family of a table, chain set or ipset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

/// The iptables tables caracal writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Filter,
    Raw,
    Mangle,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Raw => "raw",
            Table::Mangle => "mangle",
        }
    }
}

/// Layer-4 protocol of a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
}

impl Protocol {
    /// A Kubernetes `protocol` field (NetworkPolicyPort, ContainerPort): `TCP`, `UDP` or `SCTP`,
    /// case-sensitive as the API is; absent means TCP. The one parser of it: the API watchers, the
    /// manifest loaders, the validator and the CLI all come here.
    pub fn from_k8s(field: Option<&str>) -> Option<Protocol> {
        match field.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "ipv6-icmp",
        }
    }

    /// The IANA protocol number. ipset resolves protocol names through `/etc/protocols`, which a
    /// minimal node image may not have, so set members are written with the number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }

    /// A protocol by its name (as `/etc/protocols` spells it) or its number.
    pub fn from_name_or_number(text: &str) -> Option<Protocol> {
        [
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Sctp,
            Protocol::Icmp,
            Protocol::Icmpv6,
        ]
        .into_iter()
        .find(|p| p.name() == text || text.parse() == Ok(p.number()))
    }
}

/// Direction an ipset is matched in (`-m set --match-set NAME src|dst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SetDir {
    Src,
    Dst,
}

/// Conntrack states (`-m conntrack --ctstate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

/// One match of a rule. All matches of a rule must hold (logical AND).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Match {
    /// `-i NAME` / `-i PREFIX+` (a trailing `+` is a prefix wildcard, as in iptables).
    InInterface(String),
    /// `-o NAME` / `-o PREFIX+`.
    OutInterface(String),
    /// `-s NET`, optionally negated (`! -s NET`).
    Source { net: IpNet, negated: bool },
    /// `-d NET`, optionally negated.
    Destination { net: IpNet, negated: bool },
    /// `-m set --match-set NAME src|dst`, optionally negated.
    Set {
        name: String,
        dir: SetDir,
        negated: bool,
    },
    /// `-p PROTO`.
    Protocol(Protocol),
    /// `--dport` / `-m multiport --dports`: any of the inclusive ranges. Needs a `Protocol` match.
    DestPorts(Vec<(u16, u16)>),
    /// `-m mark --mark VALUE/MASK` (or `! --mark`).
    Mark { value: u32, mask: u32, negated: bool },
    /// `-m conntrack --ctstate S1,S2`.
    CtState(Vec<CtState>),
}

/// What a rule does when all its matches hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    Accept,
    Drop,
    Return,
    /// `-j CHAIN`: evaluate CHAIN, then continue after this rule when it returns.
    Jump(String),
    /// `-g CHAIN`: evaluate CHAIN; a RETURN in it returns to this chain's caller.
    Goto(String),
    /// `-j MARK --set-xmark VALUE/MASK`: `mark = (mark & !mask) ^ value`.
    SetMark {
        value: u32,
        mask: u32,
    },
    /// No verdict: the rule only counts or carries a comment.
    None,
}

/// One rule: matches, an action and a comment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    /// Human-readable, rendered as `-m comment --comment "..."`; the evaluator reports it.
    pub comment: Option<String>,
}

/// A chain owned by caracal (all names start with [`CHAIN_PREFIX`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub rules: Vec<Rule>,
}

/// A rule caracal inserts into a built-in chain (`INPUT`, `FORWARD`, `OUTPUT`, `PREROUTING`, ...),
/// placed at the top (insert) or the bottom (append) of that chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub table: Table,
    pub builtin: String,
    pub rule: Rule,
    pub append: bool,
}

/// The kind of an ipset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SetKind {
    /// `hash:ip`: single addresses (pod IPs of a selector).
    HashIp,
    /// `hash:net`: CIDRs (ipBlocks, `networks`), with `nomatch` entries for excepts.
    HashNet,
    /// `hash:ip,port`: pod address plus protocol and port (named ports).
    HashIpPort,
}

/// One member of an ipset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SetMember {
    Net(IpNet),
    /// A `nomatch` entry of a `hash:net` set: addresses in it do not match the set.
    NoMatch(IpNet),
    IpPort {
        ip: std::net::IpAddr,
        protocol: Protocol,
        port: u16,
    },
}

/// An ipset owned by caracal (name starts with [`SET_PREFIX`], at most 31 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpSet {
    pub family: Family,
    pub kind: SetKind,
    pub members: std::collections::BTreeSet<SetMember>,
}

/// The whole dataplane program of one node, for both families.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Chains by (family, table, name). Every name starts with [`CHAIN_PREFIX`] and is at most
    /// 28 bytes.
    pub chains: BTreeMap<(Family, Table, String), Chain>,
    /// Rules hooked into built-in chains, per family.
    pub hooks: Vec<(Family, Hook)>,
    /// ipsets by name.
    pub sets: BTreeMap<String, IpSet>,
}

/// Prefix of every chain caracal owns.
pub const CHAIN_PREFIX: &str = "cara-";
/// Prefix of every ipset caracal owns.
pub const SET_PREFIX: &str = "cara-";
/// Prefix of every pod-side host interface (the veth on the host); `cara+` in iptables matches all.
pub use caracal_contract::IFACE_PREFIX;
/// iptables limits chain names to 28 bytes.
pub const MAX_CHAIN_NAME: usize = 28;
/// ipset limits set names to 31 bytes.
pub const MAX_SET_NAME: usize = 31;

/// Mark bits, kept clear of kube-proxy's 0x4000 (masquerade) and 0x8000 (drop).
pub const MARK_ACCEPT: u32 = 0x10000;
pub const MARK_PASS: u32 = 0x20000;
