//! BGPConfiguration and BGPPeer, the cluster-scoped CRDs (`caracal.dev/v1alpha1`) that configure
//! BGP from Kubernetes objects, after Calico's resources of the same names
//! (`shared/research/next-features.md` §1). The types derive the CRDs; `crds/bgpconfiguration.yaml`
//! and `crds/bgppeer.yaml` hold the generated YAML and a test fails when they drift apart.
//!
//! The schema carries what it can express (ranges, enums, lengths, the mutually exclusive fields
//! as CEL); [`super::validate`] checks the rest (addresses, CIDRs, selectors, durations) and is
//! what the manifest directory relies on, since it has no apiserver.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name of the BGPConfiguration that configures the whole cluster; others are ignored.
pub const DEFAULT_CONFIGURATION: &str = "default";

/// Cluster-wide BGP settings. Only the object named `default` is read.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "caracal.dev",
    version = "v1alpha1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    shortname = "bgpconfig",
    status = "BgpObjectStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"AS","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Mesh","type":"boolean","jsonPath":".spec.nodeToNodeMeshEnabled"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BgpConfigurationSpec {
    /// The cluster's AS number; a node's `caracal.dev/bgp-asn` annotation overrides it. Absent:
    /// the agent ConfigMap's `bgp.local_as`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub as_number: Option<u32>,
    /// Every node peers with every other node (iBGP, or eBGP to a node with its own AS), except
    /// route reflectors. Explicit BGPPeers win over mesh sessions to the same address.
    #[serde(default = "yes")]
    pub node_to_node_mesh_enabled: bool,
    /// The TCP port every node listens on and mesh sessions connect to (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: Option<u16>,
    /// Graceful-restart time of the mesh sessions, as a duration (`120s`, `2m`); at most 4095 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub node_mesh_max_restart_time: Option<String>,
    /// TCP MD5 password of the mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    /// Named community values (`aa:nn`, or `aa:nn:mm` for a large community) that
    /// `prefixAdvertisements` refer to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub communities: Vec<Community>,
    /// Communities to attach to advertised prefixes inside a CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Large communities (`aa:nn:mm`, RFC 8092) to attach to every prefix this cluster advertises.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub large_communities: Vec<String>,
    /// Service cluster IP ranges to advertise (the services reconciler reads them).
    #[serde(default, rename = "serviceClusterIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Allowed ranges for Services' `spec.externalIPs` to be advertised.
    #[serde(default, rename = "serviceExternalIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Allowed ranges for LoadBalancer ingress IPs to be advertised.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 100))]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// Enabled advertises `serviceLoadBalancerIPs` as the CIDRs; Disabled a /32 (/128) per
    /// LoadBalancer IP instead.
    #[serde(default)]
    pub service_load_balancer_aggregation: Aggregation,
    /// The BGP log level (Trace, Debug, Info, Warning, Error, Fatal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<LogSeverity>,
}

fn yes() -> bool {
    true
}

/// A named community value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Community {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `aa:nn` (RFC 1997) or `aa:nn:mm` (RFC 8092).
    #[schemars(length(min = 3, max = 34))]
    pub value: String,
}

/// Communities attached to the advertised prefixes inside `cidr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PrefixAdvertisement {
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
    /// Names from `communities`, or literal `aa:nn` / `aa:nn:mm` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub communities: Vec<String>,
}

/// One service range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceCidr {
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
}

/// The services reconciler's own type: one vocabulary for both configuration sources.
pub use crate::services::Aggregation;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LogSeverity {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl LogSeverity {
    /// The `tracing` level the BGP speaker logs at (Fatal: errors only, as there is no higher).
    pub fn level(self) -> &'static str {
        match self {
            LogSeverity::Trace => "trace",
            LogSeverity::Debug => "debug",
            LogSeverity::Info => "info",
            LogSeverity::Warning => "warn",
            LogSeverity::Error | LogSeverity::Fatal => "error",
        }
    }
}

/// A BGP neighbour, and which nodes peer with it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "caracal.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    shortname = "bgpp",
    status = "BgpObjectStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Peer IP","type":"string","jsonPath":".spec.peerIP"}"#,
    printcolumn = r#"{"name":"AS","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Node Selector","type":"string","jsonPath":".spec.nodeSelector"}"#,
    printcolumn = r#"{"name":"Peer Selector","type":"string","jsonPath":".spec.peerSelector"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#
)]
#[x_kube(validation = Rule::new("!(has(self.node) && has(self.nodeSelector))")
    .message("node and nodeSelector are mutually exclusive"))]
#[x_kube(validation = Rule::new("has(self.peerIP) != has(self.peerSelector)")
    .message("exactly one of peerIP and peerSelector is required"))]
#[x_kube(validation = Rule::new("!has(self.peerSelector) || !has(self.asNumber)")
    .message("asNumber must be empty with peerSelector: the selected nodes' AS is used"))]
#[x_kube(validation = Rule::new("!has(self.peerIP) || has(self.asNumber)")
    .message("asNumber is required with peerIP"))]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerSpec {
    /// The one node that peers; absent (and no `nodeSelector`): every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node: Option<String>,
    /// The nodes that peer, as a label expression (`rack == 'a'`, `all()`); absent (and no
    /// `node`): every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub node_selector: Option<String>,
    /// The neighbour: `ip`, `ip:port` or `[ipv6]:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub peer_ip: Option<String>,
    /// The neighbour's AS number (required with `peerIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub as_number: Option<u32>,
    /// Instead of `peerIP`: the nodes (label expression) the selected nodes peer with, with
    /// their own AS; the route-reflector pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub peer_selector: Option<String>,
    /// The local AS towards this peer, instead of the node's.
    #[serde(default, rename = "localASNumber", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub local_as_number: Option<u32>,
    /// TCP MD5 password (RFC 2385), from a Secret in the agent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    /// UseNodeIP (default): connect from the node's IP of the peer's family; None: let the
    /// kernel choose.
    #[serde(default)]
    pub source_address: SourceAddress,
    /// Keep the next hop of re-advertised eBGP routes. Not supported by caracal's speaker (it
    /// always sets itself as the next hop towards eBGP peers): `true` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    /// Graceful-restart time, as a duration (`120s`, `2m`); at most 4095 s. Default: the agent's
    /// `bgp_mesh_graceful_restart_time` (120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub max_restart_time: Option<String>,
    /// The TTL of packets to an eBGP peer more than one hop away (1..255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub ebgp_multihop: Option<u8>,
    /// Prefixes accepted from this peer: rules in order, the first match decides, no match
    /// accepts (as Calico's BGPFilter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub import_filter: Vec<FilterRule>,
    /// Prefixes advertised to this peer, with the same rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub export_filter: Vec<FilterRule>,
    /// More accepted prefixes than this closes the session (Cease 6/1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_prefixes: Option<u32>,
}

/// Where a password comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPassword {
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in the agent's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceAddress {
    #[default]
    #[serde(rename = "UseNodeIP")]
    UseNodeIp,
    None,
}

/// One prefix filter rule: prefixes inside `cidr` whose length is within `prefixLength`
/// (default: from the CIDR's own length to /32 or /128, so the CIDR and everything inside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterRule {
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    pub action: FilterAction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub max: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// What the agent reports about a BGP object (condition `Valid` and, on error, why).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpObjectStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn crd_yaml_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    crate::crds::yaml(
        crd,
        "crates/controller/src/bgpapi/types.rs",
        "cargo test -p caracal bgpapi::types",
    )
}

/// The CRD as the YAML document checked in under `crds/bgpconfiguration.yaml`.
pub fn bgp_configuration_crd_yaml() -> String {
    crd_yaml_of(&BGPConfiguration::crd())
}

/// The CRD as the YAML document checked in under `crds/bgppeer.yaml`.
pub fn bgp_peer_crd_yaml() -> String {
    crd_yaml_of(&BGPPeer::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_file(file: &str, want: &str) {
        crate::crds::assert_checked_in(file, want, "cargo test -p caracal --lib bgpapi::types");
    }

    /// Set `CARACAL_UPDATE_CRDS=1` to rewrite the checked-in YAML from the types.
    #[test]
    fn crd_yaml_matches_the_checked_in_files() {
        check_file("bgpconfiguration.yaml", &bgp_configuration_crd_yaml());
        check_file("bgppeer.yaml", &bgp_peer_crd_yaml());
    }

    #[test]
    fn crds_are_cluster_scoped_with_status_and_calico_names() {
        for (crd, kind, plural) in [
            (BGPConfiguration::crd(), "BGPConfiguration", "bgpconfigurations"),
            (BGPPeer::crd(), "BGPPeer", "bgppeers"),
        ] {
            assert_eq!(crd.spec.group, "caracal.dev");
            assert_eq!(crd.spec.scope, "Cluster");
            assert_eq!(crd.spec.names.kind, kind);
            assert_eq!(crd.spec.names.plural, plural);
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, "v1alpha1");
            assert!(v.subresources.as_ref().unwrap().status.is_some());
        }
    }

    #[test]
    fn schema_has_calico_field_names_defaults_and_the_exclusivity_rules() {
        let json = serde_json::to_value(BGPConfiguration::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for field in [
            "asNumber",
            "nodeToNodeMeshEnabled",
            "listenPort",
            "nodeMeshMaxRestartTime",
            "nodeMeshPassword",
            "communities",
            "prefixAdvertisements",
            "largeCommunities",
            "serviceClusterIPs",
            "serviceExternalIPs",
            "serviceLoadBalancerIPs",
            "serviceLoadBalancerAggregation",
            "logSeverityScreen",
        ] {
            assert!(
                spec["properties"].get(field).is_some(),
                "BGPConfiguration {field}"
            );
        }
        assert_eq!(spec["properties"]["nodeToNodeMeshEnabled"]["default"], true);
        assert_eq!(
            spec["properties"]["serviceLoadBalancerAggregation"]["enum"],
            serde_json::json!(["Enabled", "Disabled"])
        );
        let json = serde_json::to_value(BGPPeer::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for field in [
            "node",
            "nodeSelector",
            "peerIP",
            "asNumber",
            "peerSelector",
            "localASNumber",
            "password",
            "sourceAddress",
            "keepOriginalNextHop",
            "maxRestartTime",
            "ebgpMultihop",
            "importFilter",
            "exportFilter",
            "maxPrefixes",
        ] {
            assert!(spec["properties"].get(field).is_some(), "BGPPeer {field}");
        }
        assert_eq!(
            spec["properties"]["sourceAddress"]["enum"],
            serde_json::json!(["UseNodeIP", "None"])
        );
        let rules = spec["x-kubernetes-validations"].as_array().unwrap();
        assert_eq!(rules.len(), 4, "{rules:?}");
    }

    #[test]
    fn parses_calicos_documented_examples() {
        let config: BGPConfiguration = serde_yaml::from_str(
            r#"
apiVersion: caracal.dev/v1alpha1
kind: BGPConfiguration
metadata: {name: default}
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  nodeMeshMaxRestartTime: 120s
  asNumber: 63400
  listenPort: 178
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
  communities: [{name: bgp-large-community, value: "63400:300:100"}]
  prefixAdvertisements: [{cidr: 172.218.4.0/26, communities: [bgp-large-community, "63400:120"]}]
"#,
        )
        .unwrap();
        assert!(!config.spec.node_to_node_mesh_enabled);
        assert_eq!(config.spec.listen_port, Some(178));
        assert_eq!(config.spec.service_cluster_ips[0].cidr, "10.96.0.0/12");
        assert_eq!(
            config.spec.service_load_balancer_aggregation,
            Aggregation::Enabled
        );
        let empty: BGPConfiguration = serde_yaml::from_str(
            "apiVersion: caracal.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {}",
        )
        .unwrap();
        assert!(empty.spec.node_to_node_mesh_enabled, "the mesh is on by default");

        let peer: BGPPeer = serde_yaml::from_str(
            r#"
apiVersion: caracal.dev/v1alpha1
kind: BGPPeer
metadata: {name: rack1-tor}
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
  nodeSelector: rack == 'rack-1'
  password: {secretKeyRef: {name: bgp-secrets, key: rr-password}}
  sourceAddress: None
  maxRestartTime: 15s
  importFilter: [{cidr: 10.0.0.0/8, prefixLength: {max: 24}, action: Accept}]
"#,
        )
        .unwrap();
        assert_eq!(peer.spec.peer_ip.as_deref(), Some("192.20.30.40"));
        assert_eq!(peer.spec.source_address, SourceAddress::None);
        assert_eq!(
            peer.spec.password.unwrap().secret_key_ref,
            SecretKeyRef {
                name: "bgp-secrets".into(),
                key: "rr-password".into()
            }
        );
        let rr: BGPPeer = serde_yaml::from_str(
            "apiVersion: caracal.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: peer-with-rr}\n\
             spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}",
        )
        .unwrap();
        assert_eq!(rr.spec.source_address, SourceAddress::UseNodeIp);
    }
}
