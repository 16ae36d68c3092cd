//! The desired-state model: everything the compiler needs, as plain data.
//!
//! Datastores (the Kubernetes watchers, the manifest directory, the conformance runner) build a
//! [`ClusterState`]; the node agent adds its [`LocalEndpoint`]s; the compiler turns both into a
//! [`crate::program::Program`].

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `namespace/name` of a pod or a namespaced policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A namespace and its labels (including `kubernetes.io/metadata.name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A named container port of a pod (`serve-80-tcp`), for named-port resolution.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub protocol: crate::program::Protocol,
    pub port: u16,
}

/// A pod anywhere in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Pod IPs (IPv4 and/or IPv6); a pod without addresses matches no peer set.
    pub ips: Vec<IpAddr>,
    /// The node the pod runs on, if scheduled.
    pub node: Option<String>,
    pub ports: Vec<NamedPort>,
}

/// The cluster as the datastore sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<Key, Pod>,
    pub network_policies: BTreeMap<Key, NetworkPolicy>,
    pub global_policies: BTreeMap<String, crate::globalpolicy::GlobalPolicy>,
}

/// A pod on this node, with the host-side interface the CNI plugin created for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    pub pod: Key,
    /// Host-side veth name (starts with [`crate::program::IFACE_PREFIX`]).
    pub iface: String,
    pub ips: Vec<IpAddr>,
}
