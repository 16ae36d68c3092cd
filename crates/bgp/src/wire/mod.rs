//! BGP-4 messages on the wire (RFC 4271 §4) and their path attributes.
//!
//! These are the types the codec decodes into and encodes from, and what the state machine and
//! the RIB work with. Decoding is pure: bytes in, a value or an error that says which
//! NOTIFICATION (or which RFC 7606 treatment) applies.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

mod attribute;
pub mod community;
mod error;
mod message;
mod nlri;
mod notification;
mod open;
mod options;
mod pack;
mod reader;
#[cfg(test)]
mod tests;
mod update;

pub use error::{EncodeError, Error, Result};
pub use message::{MessageType, frame_len};
pub use notification::{CeaseSubcode, ErrorCode, FsmSubcode, MAX_SHUTDOWN_COMMUNICATION, OpenSubcode};
pub use open::encode_capabilities;
pub use options::{DecodeOptions, EncodeOptions, SessionOptions};
pub use pack::{encode_end_of_rib, encode_updates, encode_withdrawals};
pub use update::{Action, AttrIssue, Treatment, UpdateOutcome, decode_update};

/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;
/// Length of the fixed header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message with the extended-message capability (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// Address family identifiers (RFC 4760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Afi {
    Ipv4,
    Ipv6,
    Other(u16),
}

/// Subsequent address family identifiers (RFC 4760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Safi {
    Unicast,
    Other(u8),
}

/// An (AFI, SAFI) pair; caracal routes IPv4 and IPv6 unicast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Family {
    pub afi: Afi,
    pub safi: Safi,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
    };
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
    };
}

/// A BGP message (RFC 4271 §4.1 types 1–4, RFC 2918 type 5).
// UPDATE is the big variant and also by far the most common one: boxing it would add an
// allocation per message to save stack space on the rare others.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 §4.2).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Version    |     My Autonomous System      |   Hold Time   :
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// :               |                BGP Identifier                 :
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// :               | Opt Parm Len  |  Optional Parameters (var)    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the real AS needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// Capabilities (RFC 5492) caracal understands; anything else is kept as `Unknown`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Capability {
    /// Code 1 (RFC 4760).
    Multiprotocol(Family),
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 6 (RFC 8654).
    ExtendedMessage,
    /// Code 64 (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    /// Code 70 (RFC 7313), recognised so that it is not reported as unknown.
    EnhancedRouteRefresh,
    Unknown {
        code: u8,
        value: Bytes,
    },
}

/// The graceful-restart capability value (RFC 4724 §3).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GracefulRestart {
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// The N bit (RFC 8538), kept for round trips.
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Families whose forwarding state the sender can preserve, with the F bit.
    pub families: Vec<(Family, bool)>,
}

/// UPDATE (RFC 4271 §4.3). IPv4 unicast NLRI travel in the classic fields; other families in
/// `attributes.mp_reach` / `attributes.mp_unreach` (RFC 4760).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

/// One AS_PATH segment; AS numbers are always held as 4 octets in memory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// AS_PATH (RFC 4271 §5.1.2), already merged with AS4_PATH (RFC 6793 §4.2.3) after decoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

/// AGGREGATOR (RFC 4271 §5.1.7), with a 4-octet AS in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// A LARGE_COMMUNITY (RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MpReach {
    pub family: Family,
    /// One next hop, or for IPv6 a global and a link-local one (RFC 2545 §3).
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
}

/// An attribute caracal does not interpret, kept with its flags so that optional transitive
/// ones can be passed on with the Partial bit set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

impl RawAttribute {
    /// An optional transitive attribute, the only kind of unknown one passed on (RFC 4271 §9).
    pub fn is_optional_transitive(&self) -> bool {
        let ot = attr_flag::OPTIONAL | attr_flag::TRANSITIVE;
        self.flags & ot == ot
    }

    /// Sets the Partial bit: a speaker passed the attribute on without knowing it (RFC 4271
    /// §5).
    pub fn mark_partial(&mut self) {
        self.flags |= attr_flag::PARTIAL;
    }
}

/// Path attributes of an UPDATE (RFC 4271 §5). Absent attributes are `None` or empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Unrecognised optional attributes (transitive ones are propagated).
    pub unknown: Vec<RawAttribute>,
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

/// ROUTE-REFRESH (RFC 2918 §3; the subtype byte is RFC 7313's, 0 for a plain refresh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

impl RouteRefresh {
    /// A plain request for the peer's routes of `family` (RFC 2918, subtype 0 of RFC 7313).
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh { family, subtype: 0 }
    }
}

/// Path attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    pub const LARGE_COMMUNITIES: u8 = 32;
    pub const OTC: u8 = 35;
}

/// Path attribute flag bits (RFC 4271 §4.3).
pub mod attr_flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

impl From<u16> for Afi {
    fn from(v: u16) -> Self {
        match v {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            n => Afi::Other(n),
        }
    }
}

impl From<Afi> for u16 {
    fn from(a: Afi) -> Self {
        match a {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(n) => n,
        }
    }
}

impl From<u8> for Safi {
    fn from(v: u8) -> Self {
        match v {
            1 => Safi::Unicast,
            n => Safi::Other(n),
        }
    }
}

impl From<Safi> for u8 {
    fn from(s: Safi) -> Self {
        match s {
            Safi::Unicast => 1,
            Safi::Other(n) => n,
        }
    }
}

impl Family {
    /// Builds a family from its wire numbers.
    pub fn new(afi: u16, safi: u8) -> Family {
        Family {
            afi: Afi::from(afi),
            safi: Safi::from(safi),
        }
    }

    /// The unicast family a prefix belongs to.
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.afi, self.safi) {
            (Afi::Ipv4, Safi::Unicast) => f.write_str("ipv4-unicast"),
            (Afi::Ipv6, Safi::Unicast) => f.write_str("ipv6-unicast"),
            (afi, safi) => write!(f, "afi {}/safi {}", u16::from(afi), u8::from(safi)),
        }
    }
}

impl Origin {
    /// The ORIGIN value on the wire.
    pub fn code(self) -> u8 {
        match self {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }
    }
}

impl SegmentKind {
    /// The segment type on the wire (RFC 4271 §4.3, RFC 5065 §3).
    pub fn code(self) -> u8 {
        match self {
            SegmentKind::Set => 1,
            SegmentKind::Sequence => 2,
            SegmentKind::ConfedSequence => 3,
            SegmentKind::ConfedSet => 4,
        }
    }

    /// Whether the segment is a confederation segment (RFC 5065).
    pub fn is_confed(self) -> bool {
        matches!(self, SegmentKind::ConfedSequence | SegmentKind::ConfedSet)
    }
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: impl IntoIterator<Item = u32>) -> AsPath {
        let asns: Vec<u32> = asns.into_iter().collect();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// The path length used by the decision process (RFC 4271 §9.1.2.2): an AS_SET counts as
    /// one, confederation segments count as zero (RFC 5065 §5.3).
    pub fn route_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Sequence => s.asns.len(),
                SegmentKind::Set => 1,
                SegmentKind::ConfedSequence | SegmentKind::ConfedSet => 0,
            })
            .sum()
    }

    /// Every AS number in the path, in order.
    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().flat_map(|s| s.asns.iter().copied())
    }

    /// The first AS of the first AS_SEQUENCE: the neighbour AS for routes learned over eBGP.
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(s) if s.kind == SegmentKind::Sequence => s.asns.first().copied(),
            _ => None,
        }
    }

    /// Whether `asn` occurs anywhere in the path (loop detection, RFC 4271 §9.1.2).
    pub fn contains(&self, asn: u32) -> bool {
        self.asns().any(|a| a == asn)
    }

    /// Prepends `asn` to the path, the way a speaker does when it advertises over eBGP
    /// (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentKind::Sequence && s.asns.len() < 255 => s.asns.insert(0, asn),
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }
}

impl Update {
    /// The family whose End-of-RIB marker (RFC 4724 §2) this UPDATE is, if it is one: an empty
    /// UPDATE for IPv4 unicast, or an UPDATE with nothing but an empty MP_UNREACH_NLRI.
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        let a = &self.attributes;
        match &a.mp_unreach {
            None if *a == PathAttributes::default() => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => {
                let rest = PathAttributes {
                    mp_unreach: None,
                    ..a.clone()
                };
                (rest == PathAttributes::default()).then_some(u.family)
            }
            _ => None,
        }
    }

    /// The End-of-RIB marker for `family`.
    pub fn end_of_rib_for(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            return Update::default();
        }
        let attributes = PathAttributes {
            mp_unreach: Some(MpUnreach {
                family,
                withdrawn: Vec::new(),
            }),
            ..Default::default()
        };
        Update {
            attributes,
            ..Default::default()
        }
    }

    /// Every prefix this UPDATE withdraws, whatever field carries it.
    pub fn withdrawn_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        let classic = self.withdrawn.iter().map(|p| IpNet::V4(*p));
        let mp = self
            .attributes
            .mp_unreach
            .iter()
            .flat_map(|u| u.withdrawn.iter().copied());
        classic.chain(mp)
    }

    /// Every prefix this UPDATE announces, whatever field carries it.
    pub fn announced_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        let classic = self.nlri.iter().map(|p| IpNet::V4(*p));
        let mp = self
            .attributes
            .mp_reach
            .iter()
            .flat_map(|r| r.nlri.iter().copied());
        classic.chain(mp)
    }
}

impl Capability {
    /// The capability code (RFC 5492, IANA "Capability Codes").
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => 1,
            Capability::RouteRefresh => 2,
            Capability::ExtendedMessage => 6,
            Capability::GracefulRestart(_) => 64,
            Capability::FourOctetAs(_) => 65,
            Capability::EnhancedRouteRefresh => 70,
            Capability::Unknown { code, .. } => *code,
        }
    }
}

impl Open {
    /// The speaker's AS: the 4-octet AS capability if present, else "My Autonomous System".
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// The families announced with the multiprotocol capability. Without any, a speaker
    /// implicitly supports IPv4 unicast only (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let v: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if v.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            v
        }
    }

    /// Whether the OPEN carries a capability with `code`.
    pub fn has_capability(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    /// The graceful-restart capability, if present.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }
}
