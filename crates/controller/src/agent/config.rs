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
    /// The CNI config list template (with `__POD_CIDR_V4__`) and where to write it.
    pub cni_conflist_template: Option<PathBuf>,
    pub cni_conflist: Option<PathBuf>,
    /// Peer with every other node (InternalIP; remote AS from the node's
    /// `caracal.dev/bgp-asn` annotation, else iBGP), as well as with `bgp.peers`.
    #[serde(default)]
    pub bgp_node_mesh: bool,
    /// The BGP speaker's configuration, as `caracal bgp run` takes it; absent: no BGP.
    pub bgp: Option<serde_yaml::Value>,
}

fn default_endpoints_dir() -> PathBuf {
    PathBuf::from("/var/run/caracal/endpoints")
}

fn default_endpoint_poll_ms() -> u64 {
    200
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
}
