//! The standalone speaker's configuration (`caracal bgp run --config speaker.yaml`).
//!
//! YAML, snake_case, unknown fields rejected so that a typo is an error rather than a silently
//! ignored option. Errors name the field (`peers[1].remote_as: ...`). The format is documented
//! for users in `crates/bgp/README.md`; keep the two in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::{Family, LargeCommunity, community};

/// Configuration errors; the message names the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole speaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeakerConfig {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    /// Address to listen on; unset listens on both 0.0.0.0 and ::.
    #[serde(default)]
    pub listen_address: Option<IpAddr>,
    /// TCP port to listen on; 0 means do not listen (active sessions only).
    #[serde(default = "default_port")]
    pub listen_port: u16,
    /// Unix socket that `caracal bgp status` talks to.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Install the Loc-RIB best routes into the kernel main table.
    #[serde(default)]
    pub install_routes: bool,
    /// Route protocol number that marks our kernel routes (`ip route ... proto 201`); FRR
    /// already names 186-197, so the default stays clear of them.
    #[serde(default = "default_route_protocol")]
    pub route_protocol: u8,
    /// Setting this makes the speaker a route reflector (RFC 4456) for the peers marked
    /// `route_reflector_client`.
    #[serde(default)]
    pub cluster_id: Option<Ipv4Addr>,
    /// Prefixes this speaker originates, each a plain prefix or a prefix with communities.
    #[serde(default)]
    pub originate: Vec<Originate>,
    /// Learned routes for prefixes covered by these (equal or longer) stay in the RIB but are
    /// never installed into the kernel: addresses some other component answers for on this
    /// host (Service ranges, which kube-proxy handles on every node).
    #[serde(default)]
    pub no_install: Vec<IpNet>,
    /// Routes for prefixes covered by these are advertised only while this speaker originates
    /// them; learned ones are passed on to no peer, except by route reflection, which keeps
    /// the next hop (a node must not draw traffic for a Service address another node announces).
    #[serde(default)]
    pub no_transit: Vec<IpNet>,
    /// Minimum route advertisement interval in milliseconds (RFC 4271 §9.2.1.1) for all peers;
    /// withdrawals are never delayed. 0 sends changes as soon as they are computed.
    #[serde(default)]
    pub mrai_ms: u64,
    /// Install multipath (ECMP) routes when several best paths are equal.
    #[serde(default = "default_true")]
    pub multipath: bool,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Write every input of the speaker's core, with the decisions it made, to this file (JSON
    /// lines), for `caracal bgp replay` to check or a bug report to carry. Read at start only.
    #[serde(default)]
    pub record_events: Option<PathBuf>,
}

/// One neighbour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub remote_as: u32,
    /// Overrides the speaker's `local_as` towards this peer.
    #[serde(default)]
    pub local_as: Option<u32>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Never connect; wait for the peer to connect.
    #[serde(default)]
    pub passive: bool,
    /// Local address to connect from.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// TTL for eBGP sessions to peers more than one hop away (default 1 for eBGP, 255 for iBGP).
    #[serde(default)]
    pub ebgp_multihop: Option<u8>,
    /// TCP MD5 signature password (RFC 2385).
    #[serde(default)]
    pub password: Option<String>,
    /// More accepted prefixes than this closes the session with Cease 6/1.
    #[serde(default)]
    pub max_prefixes: Option<u32>,
    #[serde(default)]
    pub import: Vec<PrefixRule>,
    #[serde(default)]
    pub export: Vec<PrefixRule>,
    #[serde(default)]
    pub next_hop_self: bool,
    #[serde(default)]
    pub route_reflector_client: bool,
    /// Restart time advertised in the graceful-restart capability (RFC 4724); 0 disables it.
    #[serde(default)]
    pub graceful_restart_time: u16,
    /// Seconds between connection attempts.
    #[serde(default = "default_connect_retry")]
    pub connect_retry_time: u16,
    /// This peer's minimum route advertisement interval in milliseconds, instead of the
    /// speaker's `mrai_ms` (for example a longer one towards a ToR that should not see churn).
    #[serde(default)]
    pub mrai_ms: Option<u64>,
    #[serde(default = "default_families")]
    pub families: Vec<FamilyName>,
}

/// A prefix filter rule: `prefix` with an optional length range `ge..=le`. Rules are tried in
/// order and the first match decides; a prefix that matches none is rejected, unless the list
/// is empty (then everything is accepted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    pub prefix: IpNet,
    #[serde(default)]
    pub ge: Option<u8>,
    #[serde(default)]
    pub le: Option<u8>,
    #[serde(default)]
    pub action: FilterAction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    #[default]
    Accept,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyName {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl FamilyName {
    pub fn family(self) -> Family {
        match self {
            FamilyName::Ipv4Unicast => Family::IPV4_UNICAST,
            FamilyName::Ipv6Unicast => Family::IPV6_UNICAST,
        }
    }
}

fn default_port() -> u16 {
    179
}
fn default_route_protocol() -> u8 {
    201
}
fn default_true() -> bool {
    true
}
fn default_hold_time() -> u16 {
    90
}
fn default_connect_retry() -> u16 {
    5
}
fn default_families() -> Vec<FamilyName> {
    vec![FamilyName::Ipv4Unicast, FamilyName::Ipv6Unicast]
}

impl SpeakerConfig {
    /// Reads and validates a YAML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: SpeakerConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges, duplicates and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.local_as == 0 {
            return Err(invalid("local_as", "must not be 0"));
        }
        if self.router_id.is_unspecified() {
            return Err(invalid("router_id", "must not be 0.0.0.0"));
        }
        for (i, Originate { prefix: p, .. }) in self.originate.iter().enumerate() {
            if p.trunc() != *p {
                return Err(invalid(
                    format!("originate[{i}]"),
                    format!("{p} has host bits set"),
                ));
            }
        }
        for (list, nets) in [("no_install", &self.no_install), ("no_transit", &self.no_transit)] {
            for (i, p) in nets.iter().enumerate() {
                if p.trunc() != *p {
                    return Err(invalid(format!("{list}[{i}]"), format!("{p} has host bits set")));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            let f = |name: &str| format!("peers[{i}].{name}");
            if !seen.insert(peer.address) {
                return Err(invalid(f("address"), format!("{} is listed twice", peer.address)));
            }
            if peer.remote_as == 0 {
                return Err(invalid(f("remote_as"), "must not be 0"));
            }
            if peer.local_as == Some(0) {
                return Err(invalid(f("local_as"), "must not be 0"));
            }
            if peer.hold_time == 1 || peer.hold_time == 2 {
                return Err(invalid(f("hold_time"), "must be 0 or at least 3 (RFC 4271 §4.2)"));
            }
            if peer.port == 0 {
                return Err(invalid(f("port"), "must not be 0"));
            }
            if peer.ebgp_multihop == Some(0) {
                return Err(invalid(f("ebgp_multihop"), "TTL must be at least 1"));
            }
            if let Some(pw) = &peer.password
                && (pw.is_empty() || pw.len() > 80)
            {
                return Err(invalid(f("password"), "must be 1 to 80 bytes (TCP_MD5SIG)"));
            }
            if peer.graceful_restart_time > 4095 {
                return Err(invalid(
                    f("graceful_restart_time"),
                    "must fit in 12 bits (≤ 4095)",
                ));
            }
            if peer.families.is_empty() {
                return Err(invalid(f("families"), "must name at least one family"));
            }
            if let (Some(src), addr) = (peer.source_address, peer.address)
                && src.is_ipv4() != addr.is_ipv4()
            {
                return Err(invalid(
                    f("source_address"),
                    "must be of the same family as address",
                ));
            }
            for (list, rules) in [("import", &peer.import), ("export", &peer.export)] {
                for (j, r) in rules.iter().enumerate() {
                    let max = r.prefix.max_prefix_len();
                    let field = format!("peers[{i}].{list}[{j}]");
                    if r.prefix.trunc() != r.prefix {
                        return Err(invalid(
                            format!("{field}.prefix"),
                            format!("{} has host bits set", r.prefix),
                        ));
                    }
                    let ge = r.ge.unwrap_or(r.prefix.prefix_len());
                    let le = r.le.unwrap_or(if r.ge.is_some() {
                        max
                    } else {
                        r.prefix.prefix_len()
                    });
                    if ge < r.prefix.prefix_len() || ge > max {
                        return Err(invalid(format!("{field}.ge"), "out of range"));
                    }
                    if le < ge || le > max {
                        return Err(invalid(format!("{field}.le"), "out of range"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl PeerConfig {
    /// The local AS towards this peer.
    pub fn local_as(&self, speaker: &SpeakerConfig) -> u32 {
        self.local_as.unwrap_or(speaker.local_as)
    }

    pub fn families(&self) -> Vec<Family> {
        self.families.iter().map(|f| f.family()).collect()
    }
}

/// A compiled prefix filter (see [`PrefixRule`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixFilter {
    rules: Vec<(IpNet, u8, u8, FilterAction)>,
}

impl PrefixFilter {
    pub fn new(rules: &[PrefixRule]) -> Self {
        let rules = rules
            .iter()
            .map(|r| {
                let len = r.prefix.prefix_len();
                let ge = r.ge.unwrap_or(len);
                let le = r.le.unwrap_or(if r.ge.is_some() {
                    r.prefix.max_prefix_len()
                } else {
                    len
                });
                (r.prefix, ge, le, r.action)
            })
            .collect();
        PrefixFilter { rules }
    }

    /// Whether `prefix` passes.
    pub fn accepts(&self, prefix: &IpNet) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        for (net, ge, le, action) in &self.rules {
            let len = prefix.prefix_len();
            if len >= *ge && len <= *le && net.contains(prefix) {
                return *action == FilterAction::Accept;
            }
        }
        false
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The unspecified address of a family, for listening on both.
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// A prefix this speaker originates and the attributes it carries. In YAML either the plain
/// prefix (`10.1.0.0/24`, the older form) or `{prefix, communities, large_communities, peers}`
/// with communities as `ASN:value` (or `no_export`, `no_advertise`, `no_export_subconfed`),
/// large communities as `global:local1:local2`, and `peers` the addresses of the only peers it
/// goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Originate {
    pub prefix: IpNet,
    /// COMMUNITIES (RFC 1997), as on the wire.
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
    /// The peers (by address) it is advertised to; empty: every peer.
    pub peers: Vec<IpAddr>,
}

impl From<IpNet> for Originate {
    fn from(prefix: IpNet) -> Self {
        Originate {
            prefix,
            communities: Vec::new(),
            large_communities: Vec::new(),
            peers: Vec::new(),
        }
    }
}

impl std::str::FromStr for Originate {
    type Err = ipnet::AddrParseError;

    /// A plain prefix, without attributes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<IpNet>().map(Originate::from)
    }
}

fn parse_community(s: &str) -> Result<u32, String> {
    community::parse(s)
        .ok_or_else(|| format!("community {s:?} is not ASN:value (each 0-65535) or a well-known name"))
}

fn parse_large_community(s: &str) -> Result<LargeCommunity, String> {
    community::parse_large(s).ok_or_else(|| format!("large community {s:?} is not global:local1:local2"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginateFields {
    prefix: IpNet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    large_communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peers: Vec<IpAddr>,
}

impl Serialize for Originate {
    /// The plain prefix when there are no attributes, so configurations round-trip as written.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.communities.is_empty() && self.large_communities.is_empty() && self.peers.is_empty() {
            return self.prefix.serialize(s);
        }
        OriginateFields {
            prefix: self.prefix,
            communities: self.communities.iter().map(|c| community::format(*c)).collect(),
            large_communities: self
                .large_communities
                .iter()
                .map(community::format_large)
                .collect(),
            peers: self.peers.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Originate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Originate;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a prefix, or {prefix, communities, large_communities, peers}")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Originate, E> {
                s.parse().map_err(|e| E::custom(format!("{s:?}: {e}")))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Originate, A::Error> {
                let f = OriginateFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let communities = f.communities.iter().map(|c| parse_community(c));
                let large = f.large_communities.iter().map(|c| parse_large_community(c));
                Ok(Originate {
                    prefix: f.prefix,
                    communities: communities.collect::<Result<_, _>>().map_err(de::Error::custom)?,
                    large_communities: large.collect::<Result<_, _>>().map_err(de::Error::custom)?,
                    peers: f.peers,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
router_id: 10.0.0.1
local_as: 65001
listen_port: 1179
control_socket: /tmp/x.sock
cluster_id: 10.0.0.1
originate: [10.1.0.0/24, "fd00:1::/64"]
no_install: [10.96.0.0/16]
no_transit: [10.96.0.0/16]
mrai_ms: 100
peers:
  - address: 10.0.0.2
    remote_as: 65002
    hold_time: 30
    password: secret
    max_prefixes: 100
    import:
      - {prefix: 10.0.0.0/8, ge: 16, le: 24, action: accept}
      - {prefix: 0.0.0.0/0, le: 32, action: reject}
    families: [ipv4_unicast]
  - address: "fd00::2"
    remote_as: 65001
    passive: true
    route_reflector_client: true
"#;

    #[test]
    fn full_config_parses_with_defaults() {
        let c = SpeakerConfig::parse(FULL).unwrap();
        assert_eq!(c.local_as, 65001);
        assert_eq!(c.listen_port, 1179);
        assert_eq!(c.originate.len(), 2);
        assert_eq!(c.no_install, ["10.96.0.0/16".parse::<IpNet>().unwrap()]);
        assert_eq!(c.peers[0].port, 179);
        assert_eq!(c.peers[0].families, vec![FamilyName::Ipv4Unicast]);
        assert_eq!(c.peers[1].hold_time, 90);
        assert!(c.peers[1].passive);
        assert_eq!(c.peers[1].families.len(), 2);
        assert_eq!(c.route_protocol, 201);
    }

    #[test]
    fn originate_takes_plain_prefixes_and_prefixes_with_communities() {
        let text = FULL.replace(
            r#"originate: [10.1.0.0/24, "fd00:1::/64"]"#,
            r#"originate:
  - 10.1.0.0/24
  - {prefix: "fd00:1::/64", communities: ["65001:100", no_export], large_communities: ["65001:1:2"], peers: [10.0.0.2]}"#,
        );
        let c = SpeakerConfig::parse(&text).unwrap();
        assert_eq!(c.originate[0], "10.1.0.0/24".parse().unwrap());
        assert_eq!(
            c.originate[1],
            Originate {
                prefix: "fd00:1::/64".parse().unwrap(),
                communities: vec![65001 << 16 | 100, community::NO_EXPORT],
                large_communities: vec![LargeCommunity {
                    global: 65001,
                    local1: 1,
                    local2: 2
                }],
                peers: vec!["10.0.0.2".parse().unwrap()],
            }
        );
        // Written back: the plain form stays plain.
        let yaml = serde_yaml::to_string(&c.originate).unwrap();
        assert!(yaml.starts_with("- 10.1.0.0/24\n"), "{yaml}");
        let again: Vec<Originate> = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(again, c.originate);
        for bad in [
            "{prefix: 10.1.0.0/24, communities: [\"65536:1\"]}",
            "{prefix: 10.1.0.0/24, color: 1}",
            "10.1.0/24",
        ] {
            assert!(serde_yaml::from_str::<Originate>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_field_is_named_in_the_error() {
        let text = FULL.replace("hold_time: 30", "hold_tme: 30");
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains("hold_tme"), "{e}");
    }

    #[test]
    fn bad_value_names_the_field_with_its_index() {
        let text = FULL.replace("hold_time: 30", "hold_time: 2");
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("peers[0].hold_time"), "{e}");
        let text = FULL.replace("remote_as: 65002", "remote_as: banana");
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains("remote_as"), "{e}");
        let text = FULL.replace("le: 24", "le: 12");
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("peers[0].import[0].le"), "{e}");
    }

    #[test]
    fn no_install_with_host_bits_names_the_entry() {
        let text = FULL.replace(
            "no_install: [10.96.0.0/16]",
            "no_install: [10.96.0.0/16, 10.97.0.1/16]",
        );
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("no_install[1]"), "{e}");
    }

    #[test]
    fn duplicate_peer_is_rejected() {
        let text = FULL.replace("\"fd00::2\"", "10.0.0.2");
        let e = SpeakerConfig::parse(&text).unwrap_err().to_string();
        assert!(e.contains("peers[1].address"), "{e}");
    }

    #[test]
    fn prefix_filter_first_match_wins_and_unmatched_is_rejected() {
        let c = SpeakerConfig::parse(FULL).unwrap();
        let f = PrefixFilter::new(&c.peers[0].import);
        assert!(f.accepts(&"10.1.0.0/16".parse().unwrap()));
        assert!(f.accepts(&"10.1.2.0/24".parse().unwrap()));
        assert!(!f.accepts(&"10.1.2.0/25".parse().unwrap()));
        assert!(!f.accepts(&"10.0.0.0/8".parse().unwrap()));
        assert!(!f.accepts(&"192.168.0.0/24".parse().unwrap()));
        assert!(!f.accepts(&"fd00::/64".parse().unwrap()));
        assert!(PrefixFilter::new(&[]).accepts(&"192.168.0.0/24".parse().unwrap()));
    }

    #[test]
    fn exact_rule_without_ge_le_matches_only_that_length() {
        let f = PrefixFilter::new(&[PrefixRule {
            prefix: "10.0.0.0/8".parse().unwrap(),
            ge: None,
            le: None,
            action: FilterAction::Accept,
        }]);
        assert!(f.accepts(&"10.0.0.0/8".parse().unwrap()));
        assert!(!f.accepts(&"10.1.0.0/16".parse().unwrap()));
    }
}
