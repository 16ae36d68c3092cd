//! GlobalPolicy, the cluster-scoped CRD (`caracal.dev/v1alpha1`), as defined in
//! `shared/conformance/GLOBALPOLICY.md`. The type derives the CRD; `crds/globalpolicy.yaml` holds
//! the generated YAML and a test fails when the two drift apart.
//!
//! The schema carries every rule it can express (ranges, enums, `minItems`, the peer shape as CEL);
//! [`crate::validate`] checks the rest (CIDRs, port names, label expressions) and is also what the
//! offline paths (conformance runner, manifest directories) rely on, since they have no apiserver.

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{Condition, LabelSelector},
    util::intstr::IntOrString,
};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a GlobalPolicy.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "caracal.dev",
    version = "v1alpha1",
    kind = "GlobalPolicy",
    plural = "globalpolicies",
    shortname = "gp",
    status = "GlobalPolicyStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Tier","type":"string","jsonPath":".spec.tier"}"#,
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GlobalPolicySpec {
    /// Admin (evaluated before NetworkPolicies) or Baseline (after them).
    #[serde(default)]
    pub tier: Tier,
    /// 0..1000, lower is evaluated first; ties are broken by name.
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,
    /// The pods this policy applies to; absent means every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Ingress rules in order; absent means the policy has no ingress rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub ingress: Option<Vec<GlobalRule>>,
    /// Egress rules in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub egress: Option<Vec<GlobalRule>>,
}

/// The tier a GlobalPolicy belongs to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Tier {
    #[default]
    Admin,
    Baseline,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RuleAction {
    /// Allow; in the Admin tier no NetworkPolicy or Baseline rule can deny it any more.
    Accept,
    /// Drop.
    Deny,
    /// End this tier and hand the decision to the next layer.
    Pass,
}

/// Which pods a policy applies to: every given selector must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Namespaces by label; absent or `{}` = every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods by label; absent or `{}` = every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// A label expression over the pod's labels (`tier == 'db' && has(env)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// One rule: the first rule (in order) whose peers and ports match decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalRule {
    /// Optional name, reported by `caracal policy explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub name: Option<String>,
    pub action: RuleAction,
    /// Sources (ingress rules), OR-ed; absent = every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub from: Option<Vec<Peer>>,
    /// Destinations (egress rules), OR-ed; absent = every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub to: Option<Vec<Peer>>,
    /// Destination ports, OR-ed; absent = every port and protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub ports: Option<Vec<GlobalPort>>,
}

/// A peer: selectors (all given ones must match) or networks, never both, never empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.networks) != (has(self.namespaceSelector) || has(self.podSelector) || has(self.selector))"
).message("a peer has either selectors (namespaceSelector, podSelector, selector) or networks, not both and not neither"))]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Namespaces by label; absent = every namespace (unlike NetworkPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// A label expression over the pod's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// CIDRs; they match any address, pod addresses included. Host bits are masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub networks: Option<Vec<String>>,
}

/// Transport protocols a port can name.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum PortProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// A destination port: a number, a range (`port`..=`endPort`) or a named container port of the
/// destination pod. Without `port`, every port of the protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)")
    .message("endPort needs a numeric port and must not be below it"))]
#[serde(rename_all = "camelCase")]
pub struct GlobalPort {
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: PortProtocol,
    /// A number 1..65535 or a container port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// The last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}

/// What the controller reports about a GlobalPolicy (conditions `Valid` and, on error, why).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as the YAML document checked in under `crds/globalpolicy.yaml`.
pub fn crd_yaml() -> String {
    let crd = GlobalPolicy::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated from crates/policy/src/globalpolicy.rs by `cargo test -p caracal-policy crd`; do not edit.\n{body}"
    )
}

impl GlobalPolicy {
    /// The GlobalPolicy's name (cluster-scoped, so no namespace).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/globalpolicy.yaml");

    /// Set `CARACAL_UPDATE_CRDS=1` to rewrite the checked-in YAML from the type.
    #[test]
    fn crd_yaml_matches_the_checked_in_file() {
        let want = crd_yaml();
        if std::env::var_os("CARACAL_UPDATE_CRDS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(CRD_PATH).parent().unwrap()).unwrap();
            std::fs::write(CRD_PATH, &want).unwrap();
        }
        let have = std::fs::read_to_string(CRD_PATH).unwrap_or_default();
        assert!(
            have == want,
            "crds/globalpolicy.yaml drifted from the GlobalPolicy type; regenerate with \
             CARACAL_UPDATE_CRDS=1 cargo test -p caracal-policy crd_yaml"
        );
    }

    #[test]
    fn crd_is_cluster_scoped_with_shortname_and_status() {
        let crd = GlobalPolicy::crd();
        assert_eq!(crd.spec.group, "caracal.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.kind, "GlobalPolicy");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["gp".to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn schema_says_priority_required_ranges_enums_and_min_items() {
        let json = serde_json::to_value(GlobalPolicy::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(spec["required"].as_array().unwrap().contains(&"priority".into()));
        assert_eq!(spec["properties"]["priority"]["minimum"], 0.0);
        assert_eq!(spec["properties"]["priority"]["maximum"], 1000.0);
        let tier = &spec["properties"]["tier"];
        assert_eq!(tier["enum"], serde_json::json!(["Admin", "Baseline"]));
        assert_eq!(tier["default"], "Admin");
        let rule = &spec["properties"]["ingress"]["items"];
        assert_eq!(
            rule["properties"]["action"]["enum"],
            serde_json::json!(["Accept", "Deny", "Pass"])
        );
        for list in ["from", "to", "ports"] {
            assert_eq!(rule["properties"][list]["minItems"], 1, "{list}");
        }
        let text = json.to_string();
        assert!(
            text.contains("x-kubernetes-validations"),
            "peer shape rule is in the schema"
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let yaml = r#"
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: deny-db-from-dev}
spec:
  priority: 10
  subject:
    podSelector: {matchLabels: {app: db}}
    selector: "tier == 'db'"
  ingress:
    - name: from-dev
      action: Deny
      from:
        - namespaceSelector: {matchLabels: {env: dev}}
        - networks: ["10.0.0.0/8"]
      ports:
        - {protocol: TCP, port: 5432}
        - {port: serve-80-tcp}
        - {protocol: UDP, port: 8000, endPort: 8080}
"#;
        let gp: GlobalPolicy = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(gp.name(), "deny-db-from-dev");
        assert_eq!(gp.spec.tier, Tier::Admin);
        let rule = &gp.spec.ingress.as_ref().unwrap()[0];
        assert_eq!(rule.action, RuleAction::Deny);
        let ports = rule.ports.as_ref().unwrap();
        assert_eq!(ports[1].protocol, PortProtocol::Tcp);
        assert_eq!(ports[1].port, Some(IntOrString::String("serve-80-tcp".into())));
        assert_eq!(ports[2].end_port, Some(8080));
    }

    #[test]
    fn unknown_tier_or_action_is_a_parse_error() {
        let bad_tier = "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: a}\nspec: {priority: 1, tier: Top}";
        assert!(serde_yaml::from_str::<GlobalPolicy>(bad_tier).is_err());
        let bad_action = "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: a}\nspec: {priority: 1, ingress: [{action: Allow}]}";
        assert!(serde_yaml::from_str::<GlobalPolicy>(bad_action).is_err());
        let no_priority =
            "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: a}\nspec: {tier: Admin}";
        assert!(serde_yaml::from_str::<GlobalPolicy>(no_priority).is_err());
    }
}
