//! The semantic checks of BGPConfiguration and BGPPeer that the CRD schema cannot express
//! (addresses, CIDRs, label expressions, durations, communities), turning a spec into the
//! validated form peer selection works on. Pure: the same verdict from the API server's objects
//! and from a manifest directory. Every error names the field (`spec.peerIP: ...`).

use std::{net::IpAddr, str::FromStr};

use caracal_bgp::config::{FilterAction as SpeakerAction, PrefixRule};
use caracal_policy::expr::{self, Expr};
use ipnet::IpNet;

use super::types::{
    BgpConfigurationSpec, BgpPassword, BgpPeerSpec, FilterAction, FilterRule, SecretKeyRef, SourceAddress,
};

/// A refused object: the field and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field path, as in `spec.importFilter[0].cidr`.
    pub field: String,
    pub reason: String,
}

pub type Result<T, E = FieldError> = std::result::Result<T, E>;

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The most a graceful-restart time can be (12 bits, RFC 4724 §3).
pub const MAX_RESTART_SECS: u64 = 4095;

/// A valid cluster BGP configuration, as peer selection needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterBgp {
    pub as_number: Option<u32>,
    pub mesh: bool,
    pub listen_port: Option<u16>,
    pub mesh_restart_time: Option<u16>,
    pub mesh_password: Option<SecretKeyRef>,
    /// Fields accepted but not acted on (yet), for the object's status and the log.
    pub not_applied: Vec<String>,
}

/// Which nodes a BGPPeer applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeMatch {
    All,
    Node(String),
    Selector(Expr),
}

/// Who the selected nodes peer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// `peerIP` (with its port, if given) in `as_number`.
    Address {
        ip: IpAddr,
        port: Option<u16>,
        as_number: u32,
    },
    /// The nodes a `peerSelector` selects, each in its own AS.
    Nodes(Expr),
}

/// A valid BGPPeer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub nodes: NodeMatch,
    pub remote: Remote,
    pub local_as: Option<u32>,
    pub password: Option<SecretKeyRef>,
    pub source_address: SourceAddress,
    pub restart_time: Option<u16>,
    pub ebgp_multihop: Option<u8>,
    /// Speaker rules; a non-empty list ends with accept-everything (no match accepts).
    pub import: Vec<PrefixRule>,
    pub export: Vec<PrefixRule>,
    pub max_prefixes: Option<u32>,
}

/// Checks a BGPConfiguration's spec.
pub fn configuration(spec: &BgpConfigurationSpec) -> Result<ClusterBgp> {
    if spec.as_number == Some(0) {
        return Err(err("spec.asNumber", "must not be 0"));
    }
    if spec.listen_port == Some(0) {
        return Err(err("spec.listenPort", "must be 1..65535"));
    }
    let mesh_restart_time = spec
        .node_mesh_max_restart_time
        .as_deref()
        .map(|d| restart_time("spec.nodeMeshMaxRestartTime", d))
        .transpose()?;
    let mesh_password = password("spec.nodeMeshPassword", spec.node_mesh_password.as_ref())?;
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in spec.communities.iter().enumerate() {
        if c.name.is_empty() {
            return Err(err(format!("spec.communities[{i}].name"), "must not be empty"));
        }
        if !names.insert(c.name.as_str()) {
            return Err(err(
                format!("spec.communities[{i}].name"),
                format!("{:?} is defined twice", c.name),
            ));
        }
        community(&c.value).map_err(|r| err(format!("spec.communities[{i}].value"), r))?;
    }
    for (i, a) in spec.prefix_advertisements.iter().enumerate() {
        cidr(&format!("spec.prefixAdvertisements[{i}].cidr"), &a.cidr)?;
        for (j, c) in a.communities.iter().enumerate() {
            if !names.contains(c.as_str()) && community(c).is_err() {
                return Err(err(
                    format!("spec.prefixAdvertisements[{i}].communities[{j}]"),
                    format!("{c:?} is neither a name from spec.communities nor an aa:nn or aa:nn:mm value"),
                ));
            }
        }
    }
    for (i, c) in spec.large_communities.iter().enumerate() {
        if c.split(':').count() != 3 {
            return Err(err(
                format!("spec.largeCommunities[{i}]"),
                format!("{c:?} is not a large community aa:nn:mm"),
            ));
        }
        community(c).map_err(|r| err(format!("spec.largeCommunities[{i}]"), r))?;
    }
    for (list, cidrs) in [
        ("serviceClusterIPs", &spec.service_cluster_ips),
        ("serviceExternalIPs", &spec.service_external_ips),
        ("serviceLoadBalancerIPs", &spec.service_load_balancer_ips),
    ] {
        for (i, c) in cidrs.iter().enumerate() {
            cidr(&format!("spec.{list}[{i}].cidr"), &c.cidr)?;
        }
    }
    // Everything here is applied (logSeverityScreen sets the BGP speaker's log level).
    let not_applied = Vec::new();
    Ok(ClusterBgp {
        as_number: spec.as_number,
        mesh: spec.node_to_node_mesh_enabled,
        listen_port: spec.listen_port,
        mesh_restart_time,
        mesh_password,
        not_applied,
    })
}

/// Checks a BGPPeer's spec.
pub fn peer(name: &str, spec: &BgpPeerSpec) -> Result<Peer> {
    let nodes = match (&spec.node, &spec.node_selector) {
        (Some(_), Some(_)) => {
            return Err(err(
                "spec.nodeSelector",
                "node and nodeSelector are mutually exclusive",
            ));
        }
        (Some(n), None) if n.is_empty() => return Err(err("spec.node", "must not be empty")),
        (Some(n), None) => NodeMatch::Node(n.clone()),
        (None, Some(s)) => NodeMatch::Selector(selector("spec.nodeSelector", s)?),
        (None, None) => NodeMatch::All,
    };
    if spec.as_number == Some(0) {
        return Err(err("spec.asNumber", "must not be 0"));
    }
    let remote = match (&spec.peer_ip, &spec.peer_selector) {
        (Some(_), Some(_)) => {
            return Err(err(
                "spec.peerSelector",
                "peerIP and peerSelector are mutually exclusive",
            ));
        }
        (None, None) => {
            return Err(err("spec.peerIP", "one of peerIP and peerSelector is required"));
        }
        (Some(text), None) => {
            let (ip, port) = peer_address(text).map_err(|r| err("spec.peerIP", r))?;
            let as_number = spec
                .as_number
                .ok_or_else(|| err("spec.asNumber", "is required with peerIP"))?;
            Remote::Address { ip, port, as_number }
        }
        (None, Some(s)) => {
            if spec.as_number.is_some() {
                return Err(err(
                    "spec.asNumber",
                    "must be empty with peerSelector (the selected nodes' own AS is used)",
                ));
            }
            Remote::Nodes(selector("spec.peerSelector", s)?)
        }
    };
    if spec.local_as_number == Some(0) {
        return Err(err("spec.localASNumber", "must not be 0"));
    }
    if spec.keep_original_next_hop == Some(true) {
        return Err(err(
            "spec.keepOriginalNextHop",
            "not supported: caracal's speaker always sets itself as the next hop towards eBGP peers",
        ));
    }
    if spec.ebgp_multihop == Some(0) {
        return Err(err("spec.ebgpMultihop", "the TTL must be 1..255"));
    }
    if spec.max_prefixes == Some(0) {
        return Err(err("spec.maxPrefixes", "must be at least 1"));
    }
    let restart_time = spec
        .max_restart_time
        .as_deref()
        .map(|d| restart_time("spec.maxRestartTime", d))
        .transpose()?;
    Ok(Peer {
        name: name.to_string(),
        nodes,
        remote,
        local_as: spec.local_as_number,
        password: password("spec.password", spec.password.as_ref())?,
        source_address: spec.source_address,
        restart_time,
        ebgp_multihop: spec.ebgp_multihop,
        import: filter("spec.importFilter", &spec.import_filter)?,
        export: filter("spec.exportFilter", &spec.export_filter)?,
        max_prefixes: spec.max_prefixes,
    })
}

/// `ip`, `ip:port` or `[ipv6]:port`.
pub fn peer_address(text: &str) -> std::result::Result<(IpAddr, Option<u16>), String> {
    let bad = || format!("{text:?} is not an IP address (ip, ip:port or [ipv6]:port)");
    if let Ok(ip) = IpAddr::from_str(text) {
        return Ok((ip, None));
    }
    let addr = std::net::SocketAddr::from_str(text).map_err(|_| bad())?;
    if addr.port() == 0 {
        return Err(format!("{text:?}: the port must be 1..65535"));
    }
    Ok((addr.ip(), Some(addr.port())))
}

fn selector(field: &str, text: &str) -> Result<Expr> {
    expr::parse(text).map_err(|e| err(field, format!("{text:?}: {e}")))
}

fn cidr(field: &str, text: &str) -> Result<IpNet> {
    let net = IpNet::from_str(text.trim()).map_err(|_| err(field, format!("{text:?} is not a CIDR")))?;
    if net.trunc() != net {
        return Err(err(field, format!("{text:?} has host bits set")));
    }
    Ok(net)
}

fn password(field: &str, p: Option<&BgpPassword>) -> Result<Option<SecretKeyRef>> {
    let Some(p) = p else { return Ok(None) };
    let r = &p.secret_key_ref;
    if r.name.is_empty() {
        return Err(err(format!("{field}.secretKeyRef.name"), "must not be empty"));
    }
    if r.key.is_empty() {
        return Err(err(format!("{field}.secretKeyRef.key"), "must not be empty"));
    }
    Ok(Some(r.clone()))
}

fn restart_time(field: &str, text: &str) -> Result<u16> {
    let secs = duration_secs(text).map_err(|r| err(field, r))?;
    if secs > MAX_RESTART_SECS {
        return Err(err(
            field,
            format!("{text:?} is more than {MAX_RESTART_SECS}s (the capability's 12 bits)"),
        ));
    }
    Ok(secs as u16)
}

/// A Go-style duration (`90s`, `2m`, `1m30s`, `1.5h`, `500ms`) in whole seconds, rounded as
/// Calico rounds; a bare number is seconds.
pub fn duration_secs(text: &str) -> std::result::Result<u64, String> {
    let bad = || format!("{text:?} is not a duration (like 120s, 2m or 1m30s)");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(secs);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u32::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as u64)
}

/// `aa:nn` (two 16-bit numbers, RFC 1997) or `aa:nn:mm` (three 32-bit numbers, RFC 8092).
fn community(text: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a community (aa:nn with 16-bit numbers, or aa:nn:mm with 32-bit ones)"
        ))
    }
}

fn filter(field: &str, rules: &[FilterRule]) -> Result<Vec<PrefixRule>> {
    let mut out = Vec::with_capacity(rules.len() + 2);
    for (i, r) in rules.iter().enumerate() {
        let prefix = cidr(&format!("{field}[{i}].cidr"), &r.cidr)?;
        let len = prefix.prefix_len();
        let max = prefix.max_prefix_len();
        let range = r.prefix_length.unwrap_or_default();
        let ge = range.min.unwrap_or(len);
        let le = range.max.unwrap_or(max);
        if ge < len || ge > max {
            return Err(err(
                format!("{field}[{i}].prefixLength.min"),
                format!("must be within {len}..{max} for {prefix}"),
            ));
        }
        if le < ge || le > max {
            return Err(err(
                format!("{field}[{i}].prefixLength.max"),
                format!("must be within {ge}..{max} for {prefix}"),
            ));
        }
        out.push(PrefixRule {
            prefix,
            ge: Some(ge),
            le: Some(le),
            action: match r.action {
                FilterAction::Accept => SpeakerAction::Accept,
                FilterAction::Reject => SpeakerAction::Reject,
            },
        });
    }
    // The speaker rejects what no rule matches; a BGPFilter accepts it.
    if !out.is_empty() {
        for any in ["0.0.0.0/0", "::/0"] {
            let prefix: IpNet = any.parse().expect("a literal CIDR");
            out.push(PrefixRule {
                prefix,
                ge: Some(0),
                le: Some(prefix.max_prefix_len()),
                action: SpeakerAction::Accept,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_spec(yaml: &str) -> BgpPeerSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn config_spec(yaml: &str) -> BgpConfigurationSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn bad_peers_are_refused_naming_the_field() {
        let cases = [
            (
                "{peerIP: 10.0.0.300, asNumber: 65000}",
                "spec.peerIP: \"10.0.0.300\" is not an IP address",
            ),
            (
                "{peerIP: '10.0.0.1:0', asNumber: 65000}",
                "spec.peerIP: \"10.0.0.1:0\": the port",
            ),
            ("{peerIP: 'fd00::1:179x', asNumber: 65000}", "spec.peerIP:"),
            ("{peerIP: 10.0.0.1}", "spec.asNumber: is required with peerIP"),
            ("{peerIP: 10.0.0.1, asNumber: 0}", "spec.asNumber: must not be 0"),
            ("{asNumber: 65000}", "spec.peerIP: one of peerIP and peerSelector"),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, peerSelector: all()}",
                "spec.peerSelector: peerIP and peerSelector are mutually exclusive",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, node: a, nodeSelector: all()}",
                "spec.nodeSelector: node and nodeSelector are mutually exclusive",
            ),
            (
                "{peerSelector: all(), asNumber: 65000}",
                "spec.asNumber: must be empty with peerSelector",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, nodeSelector: \"rack == \"}",
                "spec.nodeSelector: \"rack == \": at position",
            ),
            ("{peerSelector: \"has(rr\"}", "spec.peerSelector:"),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, node: ''}",
                "spec.node: must not be empty",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, keepOriginalNextHop: true}",
                "spec.keepOriginalNextHop: not supported",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, maxRestartTime: 2h}",
                "spec.maxRestartTime: \"2h\" is more than 4095s",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, maxRestartTime: soon}",
                "spec.maxRestartTime: \"soon\" is not a duration",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, ebgpMultihop: 0}",
                "spec.ebgpMultihop",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, maxPrefixes: 0}",
                "spec.maxPrefixes",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, localASNumber: 0}",
                "spec.localASNumber",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, password: {secretKeyRef: {name: s, key: ''}}}",
                "spec.password.secretKeyRef.key: must not be empty",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, importFilter: [{cidr: 10.0.0.0/33, action: Accept}]}",
                "spec.importFilter[0].cidr: \"10.0.0.0/33\" is not a CIDR",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, exportFilter: [{cidr: 10.0.0.0/8, action: Accept}, {cidr: 10.1.0.1/16, action: Reject}]}",
                "spec.exportFilter[1].cidr: \"10.1.0.1/16\" has host bits set",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, importFilter: [{cidr: 10.0.0.0/16, prefixLength: {min: 8}, action: Accept}]}",
                "spec.importFilter[0].prefixLength.min: must be within 16..32",
            ),
            (
                "{peerIP: 10.0.0.1, asNumber: 1, importFilter: [{cidr: 10.0.0.0/16, prefixLength: {min: 24, max: 20}, action: Accept}]}",
                "spec.importFilter[0].prefixLength.max",
            ),
        ];
        for (yaml, want) in cases {
            let e = peer("p", &peer_spec(yaml)).expect_err(yaml).to_string();
            assert!(e.starts_with(want), "{yaml}: got {e:?}, want {want:?}...");
        }
    }

    #[test]
    fn good_peers_become_their_validated_form() {
        let p = peer(
            "tor",
            &peer_spec(
                "{peerIP: '[fd00::1]:1179', asNumber: 65000, nodeSelector: \"rack == 'a'\", \
                 maxRestartTime: 1m30s, password: {secretKeyRef: {name: s, key: k}}, \
                 importFilter: [{cidr: 10.0.0.0/8, prefixLength: {max: 24}, action: Reject}]}",
            ),
        )
        .unwrap();
        assert_eq!(
            p.remote,
            Remote::Address {
                ip: "fd00::1".parse().unwrap(),
                port: Some(1179),
                as_number: 65000
            }
        );
        assert_eq!(p.nodes, NodeMatch::Selector(expr::parse("rack == 'a'").unwrap()));
        assert_eq!(p.restart_time, Some(90));
        assert_eq!(p.password.unwrap().key, "k");
        assert_eq!(p.source_address, SourceAddress::UseNodeIp);
        // The rule, then accept-everything for both families (no match accepts).
        assert_eq!(p.import.len(), 3);
        assert_eq!((p.import[0].ge, p.import[0].le), (Some(8), Some(24)));
        let f = caracal_bgp::config::PrefixFilter::new(&p.import);
        assert!(!f.accepts(&"10.1.0.0/16".parse().unwrap()));
        assert!(f.accepts(&"10.1.0.0/25".parse().unwrap()));
        assert!(f.accepts(&"192.168.0.0/24".parse().unwrap()));
        assert!(f.accepts(&"fd00::/64".parse().unwrap()));
        assert!(p.export.is_empty(), "no rules: no filter");

        let rr = peer("rr", &peer_spec("{peerSelector: \"route-reflector == 'true'\"}")).unwrap();
        assert_eq!(rr.nodes, NodeMatch::All);
        assert!(matches!(rr.remote, Remote::Nodes(_)));
        let one = peer("one", &peer_spec("{peerIP: 10.0.0.1, asNumber: 1, node: n1}")).unwrap();
        assert_eq!(one.nodes, NodeMatch::Node("n1".into()));
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_field() {
        let cases = [
            ("{asNumber: 0}", "spec.asNumber"),
            (
                "{nodeMeshMaxRestartTime: 5000s}",
                "spec.nodeMeshMaxRestartTime: \"5000s\" is more than",
            ),
            (
                "{nodeMeshMaxRestartTime: 12parsecs}",
                "spec.nodeMeshMaxRestartTime: \"12parsecs\" is not a duration",
            ),
            (
                "{nodeMeshPassword: {secretKeyRef: {name: '', key: k}}}",
                "spec.nodeMeshPassword.secretKeyRef.name",
            ),
            (
                "{communities: [{name: a, value: '65536:1'}]}",
                "spec.communities[0].value",
            ),
            (
                "{communities: [{name: a, value: '1:2'}, {name: a, value: '1:3'}]}",
                "spec.communities[1].name",
            ),
            (
                "{prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]}",
                "spec.prefixAdvertisements[0].communities[0]",
            ),
            (
                "{prefixAdvertisements: [{cidr: 10.0.0.300/8}]}",
                "spec.prefixAdvertisements[0].cidr",
            ),
            ("{largeCommunities: ['1:2']}", "spec.largeCommunities[0]"),
            (
                "{serviceClusterIPs: [{cidr: 10.96.0.0/12}, {cidr: banana}]}",
                "spec.serviceClusterIPs[1].cidr",
            ),
            (
                "{serviceExternalIPs: [{cidr: 10.96.0.1/12}]}",
                "spec.serviceExternalIPs[0].cidr: \"10.96.0.1/12\" has host bits set",
            ),
            (
                "{serviceLoadBalancerIPs: [{cidr: ''}]}",
                "spec.serviceLoadBalancerIPs[0].cidr",
            ),
        ];
        for (yaml, want) in cases {
            let e = configuration(&config_spec(yaml)).expect_err(yaml).to_string();
            assert!(e.starts_with(want), "{yaml}: got {e:?}, want {want:?}...");
        }
    }

    #[test]
    fn good_configuration_keeps_mesh_settings_and_lists_what_is_not_applied() {
        let c = configuration(&config_spec(
            "{asNumber: 64512, nodeToNodeMeshEnabled: false, listenPort: 1179, nodeMeshMaxRestartTime: 2m, \
             nodeMeshPassword: {secretKeyRef: {name: s, key: mesh}}, \
             communities: [{name: big, value: '64512:1:2'}], \
             prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [big, '64512:7']}]}",
        ))
        .unwrap();
        assert_eq!(c.as_number, Some(64512));
        assert!(!c.mesh);
        assert_eq!(c.listen_port, Some(1179));
        assert_eq!(c.mesh_restart_time, Some(120));
        assert_eq!(c.mesh_password.unwrap().key, "mesh");
        assert!(c.not_applied.is_empty(), "{:?}", c.not_applied);
        let empty = configuration(&config_spec("{}")).unwrap();
        assert!(empty.mesh);
        assert!(empty.not_applied.is_empty());
    }

    #[test]
    fn durations_read_like_go() {
        for (text, secs) in [
            ("120s", 120),
            ("2m", 120),
            ("1m30s", 90),
            ("1.5h", 5400),
            ("1500ms", 2),
            ("90", 90),
            ("0", 0),
        ] {
            assert_eq!(duration_secs(text), Ok(secs), "{text}");
        }
        for bad in ["", "s", "1x", "m5", "1..2s", "-1s"] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_addresses_take_an_optional_port() {
        assert_eq!(peer_address("10.0.0.1"), Ok(("10.0.0.1".parse().unwrap(), None)));
        assert_eq!(
            peer_address("10.0.0.1:1179"),
            Ok(("10.0.0.1".parse().unwrap(), Some(1179)))
        );
        assert_eq!(peer_address("fd00::1"), Ok(("fd00::1".parse().unwrap(), None)));
        assert_eq!(
            peer_address("[fd00::1]:179"),
            Ok(("fd00::1".parse().unwrap(), Some(179)))
        );
        assert!(peer_address("10.0.0.1:99999").is_err());
        assert!(peer_address("host.example").is_err());
    }
}
