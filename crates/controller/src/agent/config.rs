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
//! bgp:                             # a speaker config (see crates/bgp/README.md), without
//!   router_id: 10.0.1.2            # `originate`: the agent originates this node's pod CIDRs
//!   local_as: 65101
//!   peers: [{address: 10.0.1.1, remote_as: 65000}]
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::Deserialize;

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
    /// The CNI config list template (with `__POD_CIDR_V4__`; default: caracal-cni's built-in
    /// one) and where to write it.
    pub cni_conflist_template: Option<PathBuf>,
    pub cni_conflist: Option<PathBuf>,
    /// Peer with every other node (InternalIP; remote AS from the node's
    /// `caracal.dev/bgp-asn` annotation, else iBGP), as well as with `bgp.peers`.
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
    /// The BGP speaker's configuration, as `caracal bgp run` takes it; absent: no BGP.
    pub bgp: Option<serde_yaml::Value>,
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
        let mut bgp = c.bgp.expect("a bgp section");
        // The agent fills in the router ID from the node's InternalIP.
        bgp["router_id"] = "192.0.2.1".into();
        caracal_bgp::config::SpeakerConfig::parse(&serde_yaml::to_string(&bgp).unwrap()).unwrap();
    }
}
