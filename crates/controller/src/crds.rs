//! The CRDs caracal's agent defines (BGPConfiguration, BGPPeer, LoadBalancerPool,
//! CaracalNodeStatus) as the YAML checked in under `crds/`, and the drift check their tests share:
//! the file must equal what the Rust type generates (`CARACAL_UPDATE_CRDS=1` rewrites it).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// `crd` as YAML under a header naming the `source` file and the `command` that regenerates it.
pub fn yaml(crd: &CustomResourceDefinition, source: &str, command: &str) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD always serializes");
    format!("# Generated from {source} by `{command}`; do not edit.\n{body}")
}

/// Fails unless `crds/<file>` holds `want`; with `CARACAL_UPDATE_CRDS` set, writes it first.
#[cfg(test)]
pub fn assert_checked_in(file: &str, want: &str, regenerate: &str) {
    let path = format!("{}/../../crds/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CARACAL_UPDATE_CRDS").is_some() {
        std::fs::write(&path, want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "crds/{file} drifted from its type; regenerate with CARACAL_UPDATE_CRDS=1 {regenerate}"
    );
}
