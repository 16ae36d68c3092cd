//! The agent's configuration file (`caracal agent --config agent.yaml`). Every field has a
//! default that suits a DaemonSet; the lab sets folders and BGP explicitly.
//!
//! ```yaml
//! node_name: node1                 # default: --node-name or $NODE_NAME
//! manifests: /etc/caracal/cluster  # read the model from manifests instead of the API server
//! endpoints_dir: /var/run/caracal/endpoints
//! readiness_file: /var/run/caracal/ready
//! pod_cidrs: [10.244.1.0/24]       # default: the Node object's spec.podCIDRs
//! policy: true                     # program NetworkPolicy and GlobalPolicy
//! health_listen: 127.0.0.1:9099     # /livez and /readyz
//! metrics_listen: 0.0.0.0:9091      # /metrics (OpenMetrics text)
//! lb_ipam: true                    # take part in the LoadBalancer IP allocator's election
//! bgp:                             # a speaker config (see crates/bgp/README.md), without
//!   router_id: 10.0.1.2            # `originate`: the agent originates this node's pod CIDRs
//!   local_as: 65101
//!   peers: [{address: 10.0.1.1, remote_as: 65000}]
//! services:                        # service IP advertisement over BGP (crate::services)
//!   cluster_ips: [10.96.0.0/16]
//!   external_ips: [192.0.2.0/24]
//!   load_balancer_ips: [198.51.100.0/24]
//!   load_balancer_aggregation: Enabled   # Disabled: one /32 per LoadBalancer IP in use
//! pod_pools:                       # outgoing NAT per pool (crate::nat)
//!   - {cidr: 10.244.0.0/16, nat_outgoing: true}
//! ```

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use caracal_bgp::config::SpeakerConfig;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::{nat::PodPool, services::ServiceAdvertisement};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub node_name: String,
    /// A folder of manifests to use as the datastore instead of the Kubernetes API.
    pub manifests: Option<PathBuf>,
    #[serde(default = "default_endpoints_dir")]
    pub endpoints_dir: PathBuf,
    #[serde(default = "default_endpoint_poll_ms")]
    pub endpoint_poll_ms: u64,
    /// Every this many seconds the whole policy program is compared with what the kernel
    /// holds, and anything changed behind the agent's back is put right (0: never). Between
    /// resyncs only the compiler's deltas are applied.
    #[serde(default = "default_policy_resync_secs")]
    pub policy_resync_secs: u64,
    /// Created after the first successful apply; the CNI plugin's STATUS reports ready then.
    #[serde(default = "default_readiness_file")]
    pub readiness_file: Option<PathBuf>,
    /// This node's pod CIDRs; empty: take them from the Node object.
    #[serde(default)]
    pub pod_cidrs: Vec<IpNet>,
    #[serde(default = "yes")]
    pub policy: bool,
    /// Take part in the election of the one agent that hands LoadBalancerPool addresses to
    /// `type: LoadBalancer` Services (crate::lbipam); needs the Kubernetes API.
    #[serde(default)]
    pub lb_ipam: bool,
    /// The CNI config list template (with `__POD_CIDR_V4__`; default: caracal-cni's built-in
    /// one) and where to write it.
    pub cni_conflist_template: Option<PathBuf>,
    pub cni_conflist: Option<PathBuf>,
    /// Peer with every other node (InternalIP; remote AS from the node's
    /// `caracal.dev/bgp-asn` annotation, else iBGP), as well as with `bgp.peers`. Both are
    /// ignored while a BGPConfiguration `default` or a BGPPeer exists: the objects decide
    /// (see `crate::bgpapi`).
    #[serde(default)]
    pub bgp_node_mesh: bool,
    /// Graceful-restart time (seconds) of the node-mesh sessions when `bgp.peers` gives no
    /// first peer to copy it from. With it, restarting the agent (a DaemonSet rollout) keeps
    /// every node's routes in place while the sessions come back; 0 turns it off.
    #[serde(default = "default_mesh_graceful_restart")]
    pub bgp_mesh_graceful_restart_time: u16,
    /// Where `/livez` and `/readyz` are served (the DaemonSet's probes, on 127.0.0.1:9099);
    /// absent: nowhere.
    #[serde(default)]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Where Prometheus scrapes `/metrics` (the DaemonSet: 0.0.0.0:9091, every address of the
    /// node, as Felix's 9091); absent: nowhere.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The BGP speaker's configuration, as `caracal bgp run` takes it; absent: no BGP.
    pub bgp: Option<BgpConfig>,
    /// Service IP advertisement: the ranges whose Service addresses this node announces over
    /// BGP (with `bgp`); empty: none.
    #[serde(default)]
    pub services: ServiceAdvertisement,
    /// The cluster's pod address pools. A pool with `nat_outgoing` has its pods' traffic to
    /// anywhere outside every pool, every node's pod CIDRs and the Service ranges masqueraded
    /// to the node's address (outgoing NAT); none: the agent leaves the nat table alone.
    #[serde(default, deserialize_with = "crate::nat::deserialize_pools")]
    pub pod_pools: Vec<PodPool>,
}

/// The agent's BGP section: a speaker config, as `caracal bgp run` takes it, in which
/// `router_id` may be left out (one ConfigMap for every node): then the node's first IPv4
/// InternalIP is its BGP identifier, as Calico does. Typed and checked when the agent config is
/// read, so nothing is patched at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpConfig {
    /// The configured router ID; `None`: the node's.
    pub router_id: Option<Ipv4Addr>,
    /// Everything else; its `router_id` is meaningless until [`BgpConfig::speaker`] sets it.
    speaker: SpeakerConfig,
}

impl BgpConfig {
    /// The speaker configuration with `router_id` (the configured one wins).
    pub fn speaker(&self, router_id: Ipv4Addr) -> SpeakerConfig {
        let mut s = self.speaker.clone();
        s.router_id = self.router_id.unwrap_or(router_id);
        s
    }
}

impl<'de> Deserialize<'de> for BgpConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_yaml::Value::deserialize(d)?;
        let map = value
            .as_mapping_mut()
            .ok_or_else(|| D::Error::custom("bgp: expected a speaker config mapping"))?;
        let key = serde_yaml::Value::from("router_id");
        let router_id = map
            .remove(&key)
            .map(serde_yaml::from_value::<Ipv4Addr>)
            .transpose()
            .map_err(|e| D::Error::custom(format!("bgp.router_id: {e}")))?;
        // The speaker's type requires one; the real one is set by `speaker`.
        map.insert(key, serde_yaml::Value::from(Ipv4Addr::UNSPECIFIED.to_string()));
        let speaker = serde_yaml::from_value::<SpeakerConfig>(value)
            .map_err(|e| D::Error::custom(format!("bgp: {e}")))?;
        Ok(BgpConfig { router_id, speaker })
    }
}

fn default_endpoints_dir() -> PathBuf {
    PathBuf::from("/var/run/caracal/endpoints")
}

fn default_endpoint_poll_ms() -> u64 {
    200
}

fn default_mesh_graceful_restart() -> u16 {
    120
}

fn default_policy_resync_secs() -> u64 {
    90
}

fn default_readiness_file() -> Option<PathBuf> {
    Some(PathBuf::from("/var/run/caracal/ready"))
}

fn yes() -> bool {
    true
}

impl Default for AgentConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("every field has a default")
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("{}: invalid agent config", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_daemonset_defaults() {
        let c = AgentConfig::default();
        assert_eq!(c.endpoints_dir, PathBuf::from("/var/run/caracal/endpoints"));
        assert!(c.policy);
        assert!(c.bgp.is_none());
    }

    #[test]
    fn unknown_field_is_named_in_the_error() {
        let e = serde_yaml::from_str::<AgentConfig>("node_name: n\npolicyy: true\n").unwrap_err();
        assert!(e.to_string().contains("policyy"), "{e}");
    }

    #[test]
    fn services_section_is_typed_and_checked_at_load() {
        let c: AgentConfig = serde_yaml::from_str(
            "services: {cluster_ips: [10.96.0.0/16], load_balancer_aggregation: Disabled}\n",
        )
        .unwrap();
        assert_eq!(c.services.cluster_ips, ["10.96.0.0/16".parse::<IpNet>().unwrap()]);
        assert!(AgentConfig::default().services.is_empty());
        let e =
            serde_yaml::from_str::<AgentConfig>("services: {external_ips: [192.0.2.1/24]}\n").unwrap_err();
        assert!(e.to_string().contains("services.external_ips[0]"), "{e}");
    }

    #[test]
    fn bad_pod_cidr_is_rejected() {
        assert!(serde_yaml::from_str::<AgentConfig>("pod_cidrs: [10.0.0.0/33]\n").is_err());
    }

    /// The ConfigMap in deploy/ parses (unknown fields are errors), and so does its BGP part.
    #[test]
    fn the_shipped_config_map_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/agent-config.yaml");
        let cm: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = cm["data"]["agent.yaml"].as_str().expect("data.agent.yaml");
        let c: AgentConfig = serde_yaml::from_str(text).unwrap();
        assert!(c.bgp_node_mesh);
        assert_eq!(c.bgp_mesh_graceful_restart_time, 120);
        assert_eq!(c.policy_resync_secs, 90);
        // The DaemonSet names the port the agent serves its metrics on.
        let metrics = c.metrics_listen.expect("metrics_listen");
        assert!(metrics.ip().is_unspecified(), "scraped on the node's addresses");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/daemonset.yaml");
        let ds: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let agent = &ds["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(agent["name"], "agent");
        let ports = agent["ports"].as_sequence().expect("ports");
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "metrics" && p["containerPort"].as_u64() == Some(metrics.port().into())),
            "{ports:?}"
        );
        assert!(c.lb_ipam, "the DaemonSet allocates LoadBalancer addresses");
        let bgp = c.bgp.expect("a bgp section");
        // The agent fills in the router ID from the node's InternalIP.
        assert_eq!(bgp.router_id, None);
        let speaker = bgp.speaker("192.0.2.1".parse().unwrap());
        speaker.validate().unwrap();
        assert_eq!(speaker.router_id, "192.0.2.1".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn a_configured_router_id_wins_and_bgp_typos_are_errors_at_load() {
        let c: AgentConfig = serde_yaml::from_str(
            "bgp: {router_id: 10.0.0.1, local_as: 65000}
",
        )
        .unwrap();
        let bgp = c.bgp.unwrap();
        assert_eq!(bgp.router_id, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            bgp.speaker("192.0.2.1".parse().unwrap()).router_id,
            "10.0.0.1".parse::<Ipv4Addr>().unwrap()
        );
        let e = serde_yaml::from_str::<AgentConfig>(
            "bgp: {local_as: 65000, peerz: []}
",
        )
        .unwrap_err();
        assert!(e.to_string().contains("peerz"), "{e}");
        let e = serde_yaml::from_str::<AgentConfig>(
            "bgp: {router_id: nope, local_as: 1}
",
        )
        .unwrap_err();
        assert!(e.to_string().contains("router_id"), "{e}");
    }
}
