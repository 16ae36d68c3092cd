//! CaracalNodeStatus, the cluster-scoped CRD (`caracal.dev/v1alpha1`) each agent writes about
//! its own node (the object is named after the node), modelled on Calico's CalicoNodeStatus:
//! BGP sessions, originated routes, policy state. The type derives the CRD;
//! `crds/caracalnodestatus.yaml` holds the generated YAML and a test fails when they drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which node the status is about (the object's name is the node's too).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "caracal.dev",
    version = "v1alpha1",
    kind = "CaracalNodeStatus",
    plural = "caracalnodestatuses",
    shortname = "cns",
    status = "NodeStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Established","type":"integer","jsonPath":".status.bgp.numberEstablished"}"#,
    printcolumn = r#"{"name":"Not Established","type":"integer","jsonPath":".status.bgp.numberNotEstablished"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.policy.endpoints"}"#,
    printcolumn = r#"{"name":"Last Apply","type":"string","jsonPath":".status.policy.lastApplyResult"}"#,
    printcolumn = r#"{"name":"Updated","type":"date","jsonPath":".status.updated"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CaracalNodeStatusSpec {
    /// The node this status is about.
    pub node: String,
}

// Counts are i64 (`format: int64`), the integer type Kubernetes schemas know.

/// What the node's agent last reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// When the agent wrote this status (it writes on change, at most every 10 s, and at least
    /// every 5 minutes: an older time means the agent is not running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Time>,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<RoutesStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyStatus>,
}

/// The node's BGP speaker and its sessions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpStatus {
    #[serde(rename = "routerID")]
    pub router_id: String,
    #[serde(rename = "localAS")]
    pub local_as: i64,
    pub number_established: i64,
    pub number_not_established: i64,
    #[serde(default)]
    pub peers: Vec<PeerSession>,
}

/// Why the node peers with a peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PeerKind {
    /// Another node of the cluster (node-to-node mesh).
    #[default]
    NodeMesh,
    /// A peer configured for every node.
    GlobalPeer,
    /// A peer chosen for this node.
    NodePeer,
}

/// One BGP session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSession {
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    #[serde(rename = "peerAS")]
    pub peer_as: i64,
    #[serde(rename = "type")]
    pub kind: PeerKind,
    /// The BGP FSM state: Idle, Connect, Active, OpenSent, OpenConfirm or Established.
    pub state: String,
    /// When the session entered its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    pub prefixes_received: i64,
    pub prefixes_accepted: i64,
    pub prefixes_advertised: i64,
    /// Why the session last went down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Routes the node originates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutesStatus {
    /// Prefixes the node announces (its pod CIDRs).
    #[serde(default)]
    pub originated: Vec<String>,
}

/// The result of a policy apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApplyResult {
    #[default]
    Succeeded,
    Failed,
}

/// The node's policy dataplane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Local pod endpoints with policy programmed.
    pub endpoints: i64,
    /// NetworkPolicies in the cluster model.
    pub network_policies: i64,
    /// GlobalPolicies in the cluster model.
    pub global_policies: i64,
    /// caracal's iptables chains and ipsets of the last apply's program.
    pub chains: i64,
    pub ipsets: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply_time: Option<Time>,
    /// full (compiled whole, compared with the kernel) or delta.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_apply_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply_result: Option<ApplyResult>,
    /// Why the last apply failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The CRD as the YAML document checked in under `crds/caracalnodestatus.yaml`.
pub fn crd_yaml() -> String {
    crate::crds::yaml(
        &CaracalNodeStatus::crd(),
        "crates/controller/src/nodestatus/crd.rs",
        "cargo test -p caracal crd",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set `CARACAL_UPDATE_CRDS=1` to rewrite the checked-in YAML from the type.
    #[test]
    fn node_status_crd_yaml_matches_the_checked_in_file() {
        crate::crds::assert_checked_in(
            "caracalnodestatus.yaml",
            &crd_yaml(),
            "cargo test -p caracal --lib node_status_crd_yaml",
        );
    }

    #[test]
    fn node_status_crd_is_cluster_scoped_with_a_status_subresource() {
        let crd = CaracalNodeStatus::crd();
        assert_eq!(crd.spec.group, "caracal.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.plural, "caracalnodestatuses");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let json = serde_json::to_value(&crd).unwrap();
        let peer = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["bgp"]["properties"]["peers"]["items"];
        assert_eq!(
            peer["properties"]["type"]["enum"],
            serde_json::json!(["NodeMesh", "GlobalPeer", "NodePeer"])
        );
        assert!(peer["properties"]["peerIP"].is_object(), "{peer}");
    }
}
