//! The datastore's pure core: the objects it tracks, the [`Store`] that applies watcher events
//! to them (a re-list is swapped in whole, so the model never passes through empty), and the
//! [`Snapshot`] handed to the reconcilers.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use caracal_policy::{
    globalpolicy::GlobalPolicy,
    model::{ClusterState, Key, Namespace, Pod},
};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

use crate::bgpapi::types::{BgpConfigurationSpec, BgpPeerSpec};

/// A cluster node, as routing and BGP need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// `spec.podCIDRs` (or the older `spec.podCIDR`): the blocks this node's pods are numbered from.
    pub pod_cidrs: Vec<IpNet>,
    /// `status.addresses` that are IP addresses (host names are left out).
    pub addresses: Vec<NodeAddress>,
    pub labels: BTreeMap<String, String>,
    /// The node's own AS number from the `caracal.dev/bgp-asn` annotation, if set and valid.
    pub asn: Option<u32>,
    /// The route-reflector cluster ID from the `caracal.dev/bgp-rr-cluster-id` annotation, if
    /// set and an IPv4 address: the node is then a route reflector.
    #[serde(default)]
    pub rr_cluster_id: Option<Ipv4Addr>,
}

impl Node {
    /// `InternalIP` addresses, the ones BGP peers on by default.
    pub fn internal_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses
            .iter()
            .filter(|a| a.kind == "InternalIP")
            .map(|a| a.ip)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP` or `ExternalIP`.
    pub kind: String,
    pub ip: IpAddr,
}

/// A Service, as service IP advertisement needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub type_: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for a headless (`None`) Service.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    /// `spec.loadBalancerIP`, the requested address.
    pub load_balancer_ip: Option<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`, the assigned addresses.
    pub ingress_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy: Local`.
    pub external_traffic_local: bool,
    /// `spec.ipFamilies` (`IPv4`, `IPv6`); when absent, the families of the cluster IPs.
    pub ip_families: Vec<String>,
    pub load_balancer_class: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
    /// A type this version does not know.
    Other,
}

/// An EndpointSlice (`discovery.k8s.io/v1`), as service IP advertisement needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label: the Service (same namespace) it belongs to.
    pub service: Option<String>,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `conditions.ready`, where absent means ready (as the API documents it).
    pub ready: bool,
    pub node_name: Option<String>,
}

/// The desired state handed to the reconcilers: the policy model plus the nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub cluster: ClusterState,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<Key, Service>,
    pub endpoint_slices: BTreeMap<Key, EndpointSlice>,
    /// GlobalPolicies ignored as a whole, by name, with the reason.
    pub rejected: BTreeMap<String, String>,
    /// Valid BGPConfigurations (only `default` is ever valid), by name.
    #[serde(default)]
    pub bgp_configurations: BTreeMap<String, BgpConfigurationSpec>,
    /// Valid BGPPeers, by name.
    #[serde(default)]
    pub bgp_peers: BTreeMap<String, BgpPeerSpec>,
    /// BGP objects ignored as a whole, as `BGPPeer/<name>` or `BGPConfiguration/<name>`, with
    /// the reason.
    #[serde(default)]
    pub rejected_bgp: BTreeMap<String, String>,
    /// Opaque Secrets of the agent's namespace, by name (BGP passwords).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
}

/// An Opaque Secret: its keys and their UTF-8 values (others are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub data: BTreeMap<String, SecretValue>,
}

/// A secret value, kept out of `Debug` output (snapshots are logged).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Snapshot {
    /// Builds a snapshot from a full set of objects (later duplicates win).
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut s = Snapshot::default();
        for object in objects {
            s.insert(object);
        }
        s
    }

    fn insert(&mut self, object: Object) {
        match object {
            Object::Node(n) => {
                self.nodes.insert(n.name.clone(), n);
            }
            Object::Namespace(ns) => {
                self.cluster.namespaces.insert(ns.name.clone(), ns);
            }
            Object::Pod(p) => {
                self.cluster
                    .pods
                    .insert(Key::new(p.namespace.clone(), p.name.clone()), p);
            }
            Object::NetworkPolicy(key, np) => {
                self.cluster.network_policies.insert(key, *np);
            }
            Object::GlobalPolicy(name, Ok(gp)) => {
                self.rejected.remove(&name);
                self.cluster.global_policies.insert(name, *gp);
            }
            Object::GlobalPolicy(name, Err(reason)) => {
                self.cluster.global_policies.remove(&name);
                self.rejected.insert(name, reason);
            }
            Object::Service(svc) => {
                self.services
                    .insert(Key::new(svc.namespace.clone(), svc.name.clone()), svc);
            }
            Object::EndpointSlice(slice) => {
                self.endpoint_slices
                    .insert(Key::new(slice.namespace.clone(), slice.name.clone()), slice);
            }
            Object::BgpConfiguration(name, parsed) => {
                let key = format!("BGPConfiguration/{name}");
                self.bgp_configurations.remove(&name);
                self.rejected_bgp.remove(&key);
                match parsed {
                    Ok(spec) => {
                        self.bgp_configurations.insert(name, *spec);
                    }
                    Err(reason) => {
                        self.rejected_bgp.insert(key, reason);
                    }
                }
            }
            Object::BgpPeer(name, parsed) => {
                let key = format!("BGPPeer/{name}");
                self.bgp_peers.remove(&name);
                self.rejected_bgp.remove(&key);
                match parsed {
                    Ok(spec) => {
                        self.bgp_peers.insert(name, *spec);
                    }
                    Err(reason) => {
                        self.rejected_bgp.insert(key, reason);
                    }
                }
            }
            Object::Secret(secret) => {
                self.secrets.insert(secret.name.clone(), secret);
            }
        }
    }

    /// Object counts for logs: `nodes=3 namespaces=5 pods=40 netpols=2 globalpolicies=1 rejected=0
    /// services=4 endpointslices=4`.
    pub fn summary(&self) -> String {
        format!(
            "nodes={} namespaces={} pods={} netpols={} globalpolicies={} rejected={} services={} endpointslices={} bgpconfigs={} bgppeers={} rejected_bgp={}",
            self.nodes.len(),
            self.cluster.namespaces.len(),
            self.cluster.pods.len(),
            self.cluster.network_policies.len(),
            self.cluster.global_policies.len(),
            self.rejected.len(),
            self.services.len(),
            self.endpoint_slices.len(),
            self.bgp_configurations.len(),
            self.bgp_peers.len(),
            self.rejected_bgp.len()
        )
    }
}

/// The kinds the datastore watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Namespace,
    Pod,
    NetworkPolicy,
    GlobalPolicy,
    Service,
    EndpointSlice,
    BgpConfiguration,
    BgpPeer,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Node,
        Kind::Namespace,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::GlobalPolicy,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::BgpConfiguration,
        Kind::BgpPeer,
        Kind::Secret,
    ];
}

/// One tracked object, already converted to the model's types.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Node(Node),
    Namespace(Namespace),
    Pod(Pod),
    NetworkPolicy(Key, Box<NetworkPolicy>),
    /// A GlobalPolicy, or the reason it is ignored.
    GlobalPolicy(String, Result<Box<GlobalPolicy>, String>),
    Service(Service),
    EndpointSlice(EndpointSlice),
    /// A BGPConfiguration's spec, or the reason it is ignored.
    BgpConfiguration(String, Result<Box<BgpConfigurationSpec>, String>),
    /// A BGPPeer's spec, or the reason it is ignored.
    BgpPeer(String, Result<Box<BgpPeerSpec>, String>),
    /// An Opaque Secret of the agent's namespace.
    Secret(Secret),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::NetworkPolicy(..) => Kind::NetworkPolicy,
            Object::GlobalPolicy(..) => Kind::GlobalPolicy,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::BgpConfiguration(..) => Kind::BgpConfiguration,
            Object::BgpPeer(..) => Kind::BgpPeer,
            Object::Secret(_) => Kind::Secret,
        }
    }

    /// `name` for cluster-scoped objects, `namespace/name` for namespaced ones.
    pub fn key(&self) -> String {
        match self {
            Object::Node(n) => n.name.clone(),
            Object::Namespace(n) => n.name.clone(),
            Object::Pod(p) => format!("{}/{}", p.namespace, p.name),
            Object::NetworkPolicy(k, _) => k.to_string(),
            Object::GlobalPolicy(name, _) => name.clone(),
            Object::Service(s) => format!("{}/{}", s.namespace, s.name),
            Object::EndpointSlice(s) => format!("{}/{}", s.namespace, s.name),
            Object::BgpConfiguration(name, _) | Object::BgpPeer(name, _) => name.clone(),
            Object::Secret(s) => s.name.clone(),
        }
    }
}

/// A watcher event for one kind, with objects already converted.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Apply(Object),
    Delete(Kind, String),
    /// A (re-)list starts: the following `ListItem`s replace the kind's objects at `ListDone`.
    ListStart(Kind),
    ListItem(Object),
    ListDone(Kind),
}

#[derive(Default)]
struct Table {
    live: BTreeMap<String, Object>,
    /// The list in progress; the live objects stay in force until it completes.
    listing: Option<BTreeMap<String, Object>>,
    synced: bool,
}

/// Every watched kind's objects, as the watchers last reported them.
#[derive(Default)]
pub struct Store {
    tables: BTreeMap<Kind, Table>,
}

impl Store {
    /// Applies one change; returns whether the live objects changed.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Apply(object) => {
                let table = self.tables.entry(object.kind()).or_default();
                let key = object.key();
                if table.live.get(&key) == Some(&object) {
                    return false;
                }
                table.live.insert(key, object);
                true
            }
            Change::Delete(kind, key) => self.tables.entry(kind).or_default().live.remove(&key).is_some(),
            Change::ListStart(kind) => {
                self.tables.entry(kind).or_default().listing = Some(BTreeMap::new());
                false
            }
            Change::ListItem(object) => {
                let table = self.tables.entry(object.kind()).or_default();
                table
                    .listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(object.key(), object);
                false
            }
            Change::ListDone(kind) => {
                let table = self.tables.entry(kind).or_default();
                let listed = table.listing.take().unwrap_or_default();
                let changed = !table.synced || table.live != listed;
                table.live = listed;
                table.synced = true;
                changed
            }
        }
    }

    /// Whether every kind has completed its first list: before that, a snapshot would be
    /// missing objects (an empty policy set would open everything).
    pub fn synced(&self) -> bool {
        Kind::ALL
            .iter()
            .all(|k| self.tables.get(k).is_some_and(|t| t.synced))
    }

    /// Kinds that have not completed their first list yet.
    pub fn unsynced(&self) -> BTreeSet<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| !self.tables.get(k).is_some_and(|t| t.synced))
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_objects(self.tables.values().flat_map(|t| t.live.values().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Object {
        Object::Namespace(Namespace {
            name: name.into(),
            labels: BTreeMap::new(),
        })
    }

    fn list(store: &mut Store, kind: Kind, objects: Vec<Object>) -> bool {
        store.apply(Change::ListStart(kind));
        for o in objects {
            store.apply(Change::ListItem(o));
        }
        store.apply(Change::ListDone(kind))
    }

    #[test]
    fn not_synced_until_every_kind_listed_once() {
        let mut store = Store::default();
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::GlobalPolicy) {
            list(&mut store, kind, vec![]);
        }
        assert!(!store.synced());
        assert_eq!(store.unsynced(), BTreeSet::from([Kind::GlobalPolicy]));
        list(&mut store, Kind::GlobalPolicy, vec![]);
        assert!(store.synced());
    }

    #[test]
    fn relist_keeps_old_objects_until_done_then_swaps_whole() {
        let mut store = Store::default();
        assert!(list(&mut store, Kind::Namespace, vec![ns("a"), ns("b")]));
        store.apply(Change::ListStart(Kind::Namespace));
        store.apply(Change::ListItem(ns("b")));
        // Mid-list (e.g. the API server went away): the model still has both.
        assert_eq!(store.snapshot().cluster.namespaces.len(), 2);
        store.apply(Change::ListItem(ns("c")));
        assert!(store.apply(Change::ListDone(Kind::Namespace)));
        let names: Vec<_> = store.snapshot().cluster.namespaces.into_keys().collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn identical_relist_and_reapply_report_no_change() {
        let mut store = Store::default();
        list(&mut store, Kind::Namespace, vec![ns("a")]);
        assert!(!list(&mut store, Kind::Namespace, vec![ns("a")]));
        assert!(!store.apply(Change::Apply(ns("a"))));
        assert!(store.apply(Change::Delete(Kind::Namespace, "a".into())));
        assert!(!store.apply(Change::Delete(Kind::Namespace, "a".into())));
    }

    #[test]
    fn rejected_global_policy_is_reported_not_modelled() {
        let s = Snapshot::from_objects([Object::GlobalPolicy(
            "bad".into(),
            Err("priority: out of range".into()),
        )]);
        assert!(s.cluster.global_policies.is_empty());
        assert_eq!(s.rejected["bad"], "priority: out of range");
    }

    #[test]
    fn bgp_objects_are_modelled_or_rejected_by_kind_and_name() {
        let peer = |ok: bool| {
            Object::BgpPeer(
                "tor".into(),
                if ok {
                    Ok(Box::default())
                } else {
                    Err("spec.peerIP: bad".into())
                },
            )
        };
        // A GlobalPolicy of the same name is another object.
        let s = Snapshot::from_objects([
            peer(true),
            Object::GlobalPolicy("tor".into(), Err("priority".into())),
        ]);
        assert!(s.bgp_peers.contains_key("tor"));
        assert!(s.rejected_bgp.is_empty());
        assert_eq!(s.rejected["tor"], "priority");
        let s = Snapshot::from_objects([peer(true), peer(false)]);
        assert!(s.bgp_peers.is_empty());
        assert_eq!(s.rejected_bgp["BGPPeer/tor"], "spec.peerIP: bad");
        let secret = Secret {
            name: "bgp".into(),
            data: [("pw".to_string(), SecretValue::new("hunter2"))].into(),
        };
        let s = Snapshot::from_objects([Object::Secret(secret)]);
        assert_eq!(s.secrets["bgp"].data["pw"].expose(), "hunter2");
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "secret values stay out of logs"
        );
    }
}
