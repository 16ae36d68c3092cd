//! GlobalPolicy, the cluster-scoped CRD (`caracal.dev/v1alpha1`), as defined in
//! `shared/conformance/GLOBALPOLICY.md`. The type derives the CRD; `crds/` holds the generated YAML.

use serde::{Deserialize, Serialize};

/// Placeholder until the CRD type lands; replaced by the `kube::CustomResource` derive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalPolicy {}
