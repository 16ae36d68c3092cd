//! LoadBalancerPool, the cluster-scoped CRD (`caracal.dev/v1alpha1`) the LoadBalancer IP
//! allocator hands addresses out of. The type derives the CRD; `crds/loadbalancerpool.yaml`
//! holds the generated YAML and a test fails when the two drift apart.
//!
//! The schema checks what it can (at least one CIDR, each one a CIDR or an address, by CEL);
//! [`super::pool`] checks the rest (host bits, overlaps, the selector) and reports it in the
//! pool's status, since the allocator must not trust that every object went through this
//! schema.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a LoadBalancerPool.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "caracal.dev",
    version = "v1alpha1",
    kind = "LoadBalancerPool",
    plural = "loadbalancerpools",
    shortname = "lbpool",
    status = "LoadBalancerPoolStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"CIDRs","type":"string","jsonPath":".spec.cidrs"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"Conflict\")].status"}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.used"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.available"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolSpec {
    /// IPv4 and IPv6 CIDRs to hand out (`192.0.2.0/24`, `2001:db8:1::/120`); a plain address is
    /// a /32 or /128. Host bits must be zero and the CIDRs must not overlap, here or with an
    /// older pool (the newer pool is then marked Conflict and not used).
    #[schemars(length(min = 1, max = 100), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c) || isIP(c))")
        .message("every entry must be an IPv4 or IPv6 CIDR (192.0.2.0/24) or address"))]
    pub cidrs: Vec<String>,
    /// Only Services whose labels match may get an address from this pool; absent = every
    /// Service. The pseudo-labels `io.kubernetes.service.namespace` and
    /// `io.kubernetes.service.name` match the Service's namespace and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// Never hand out IPv4 addresses ending in .0 or .255 (some clients drop them as network or
    /// broadcast addresses).
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Hand addresses out to Services that ask for none; false: only addresses requested by
    /// `spec.loadBalancerIP` or the `caracal.dev/loadBalancerIPs` annotation.
    #[serde(default = "yes")]
    pub auto_assign: bool,
    /// Hand out no new addresses; Services keep the ones they have.
    #[serde(default)]
    pub disabled: bool,
}

fn yes() -> bool {
    true
}

/// What the allocator reports about a pool: conditions `Valid` and `Conflict`, and address
/// counts (saturating at 2^63-1: an IPv6 /64 has more).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Addresses the pool can hand out.
    #[serde(default)]
    pub total: i64,
    /// Addresses of the pool held by Services.
    #[serde(default)]
    pub used: i64,
    /// `total` minus the used addresses among them.
    #[serde(default)]
    pub available: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as the YAML document checked in under `crds/loadbalancerpool.yaml`.
pub fn crd_yaml() -> String {
    crate::crds::yaml(
        &LoadBalancerPool::crd(),
        "crates/controller/src/lbipam/crd.rs",
        "cargo test -p caracal crd_yaml",
    )
}

impl LoadBalancerPool {
    /// The pool's name (cluster-scoped, so no namespace).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set `CARACAL_UPDATE_CRDS=1` to rewrite the checked-in YAML from the type.
    #[test]
    fn crd_yaml_matches_the_checked_in_file() {
        crate::crds::assert_checked_in(
            "loadbalancerpool.yaml",
            &crd_yaml(),
            "cargo test -p caracal crd_yaml",
        );
    }

    #[test]
    fn crd_is_cluster_scoped_with_shortname_and_status() {
        let crd = LoadBalancerPool::crd();
        assert_eq!(crd.spec.group, "caracal.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.kind, "LoadBalancerPool");
        assert_eq!(crd.spec.names.plural, "loadbalancerpools");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["lbpool".to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn schema_requires_cidrs_checks_them_by_cel_and_defaults_auto_assign() {
        let json = serde_json::to_value(LoadBalancerPool::crd()).unwrap();
        let spec = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(spec["required"].as_array().unwrap().contains(&"cidrs".into()));
        let cidrs = &spec["properties"]["cidrs"];
        assert_eq!(cidrs["minItems"], 1);
        assert_eq!(
            cidrs["items"]["maxLength"], 64,
            "bounded for the CEL cost estimate"
        );
        assert!(
            cidrs["x-kubernetes-validations"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("isCIDR"),
            "{cidrs}"
        );
        assert_eq!(spec["properties"]["autoAssign"]["default"], true);
        assert_eq!(spec["properties"]["avoidBuggyIPs"]["default"], false);
    }

    #[test]
    fn parses_the_documented_example_with_defaults() {
        let yaml = r#"
apiVersion: caracal.dev/v1alpha1
kind: LoadBalancerPool
metadata: {name: public}
spec:
  cidrs: [192.0.2.0/24, "2001:db8:1::/120"]
  serviceSelector: {matchLabels: {exposure: public}}
  avoidBuggyIPs: true
"#;
        let pool: LoadBalancerPool = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(pool.name(), "public");
        assert_eq!(pool.spec.cidrs.len(), 2);
        assert!(pool.spec.avoid_buggy_ips);
        assert!(pool.spec.auto_assign, "autoAssign defaults to true");
        assert!(!pool.spec.disabled);
        let no_cidrs =
            "apiVersion: caracal.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: a}\nspec: {}";
        assert!(serde_yaml::from_str::<LoadBalancerPool>(no_cidrs).is_err());
    }
}
