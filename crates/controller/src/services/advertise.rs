//! The prefixes a node advertises for Services: a pure function, Calico's semantics
//! (`confd/pkg/backends/calico/routes.go`; `../shared/research/next-features.md` §2.1, §2.6).
//!
//! | case | advertised | from |
//! |---|---|---|
//! | each `cluster_ips` range, each `external_ips` range that is not a single IP | the range | every node not excluded |
//! | each `load_balancer_ips` range that is not a single IP, aggregation Enabled | the range | every node not excluded |
//! | `externalTrafficPolicy: Local` | /32 (/128) of each cluster IP, allowed external IP, allowed LB IP | nodes with a ready local endpoint |
//! | Cluster, an external or LB IP equal to a single-IP entry | the same /32s | every node |
//! | Cluster, aggregation Disabled | the same /32s | every node, while any endpoint is ready |
//! | Cluster, aggregation Enabled, IPs inside a range | nothing more | — |
//!
//! A node labelled `node.kubernetes.io/exclude-from-external-load-balancers` advertises
//! nothing. An address is only ever advertised inside a configured range of its kind.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use caracal_policy::model::Key;
use ipnet::IpNet;

use super::{Aggregation, ServiceAdvertisement};
use crate::datastore::{EndpointSlice, Service, ServiceType};

/// Nodes carrying this label advertise no service prefix (unless its value is `false`).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the services reconciler hands to the BGP reconciler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRoutes {
    /// The prefixes this node originates.
    pub advertise: BTreeSet<IpNet>,
    /// Every configured range: the same prefixes learned from other nodes are neither
    /// installed in the kernel (kube-proxy answers for them on every node) nor passed on.
    pub ranges: Vec<IpNet>,
}

/// [`advertised`] together with the ranges.
pub fn routes(
    config: &ServiceAdvertisement,
    services: &BTreeMap<Key, Service>,
    slices: &BTreeMap<Key, EndpointSlice>,
    node: &str,
    node_labels: &BTreeMap<String, String>,
) -> ServiceRoutes {
    ServiceRoutes {
        advertise: advertised(config, services, slices, node, node_labels),
        ranges: config.ranges(),
    }
}

/// Whether a node's labels exclude it from advertising (kubeadm sets the label with an empty
/// value, Calico's docs with `true`; both count).
pub fn excluded(node_labels: &BTreeMap<String, String>) -> bool {
    node_labels.get(EXCLUDE_LABEL).is_some_and(|v| v != "false")
}

/// The prefixes `node` advertises for the Services.
pub fn advertised(
    config: &ServiceAdvertisement,
    services: &BTreeMap<Key, Service>,
    slices: &BTreeMap<Key, EndpointSlice>,
    node: &str,
    node_labels: &BTreeMap<String, String>,
) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    if excluded(node_labels) {
        return out;
    }
    out.extend(config.cluster_ips.iter().copied());
    out.extend(config.external_ips.iter().filter(|n| !single(n)).copied());
    if config.load_balancer_aggregation == Aggregation::Enabled {
        out.extend(config.load_balancer_ips.iter().filter(|n| !single(n)).copied());
    }
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices.values() {
        if let Some(svc) = &slice.service {
            by_service
                .entry((slice.namespace.as_str(), svc.as_str()))
                .or_default()
                .push(slice);
        }
    }
    for svc in services.values() {
        let slices = by_service
            .get(&(svc.namespace.as_str(), svc.name.as_str()))
            .map_or(&[][..], Vec::as_slice);
        if advertise_service(config, svc, slices, node) {
            out.extend(service_prefixes(config, svc));
        }
    }
    out
}

/// Calico's `advertiseThisService`, for a node that is not excluded.
fn advertise_service(
    config: &ServiceAdvertisement,
    svc: &Service,
    slices: &[&EndpointSlice],
    node: &str,
) -> bool {
    if !matches!(
        svc.type_,
        ServiceType::ClusterIP | ServiceType::NodePort | ServiceType::LoadBalancer
    ) || svc.cluster_ips.is_empty()
    {
        return false;
    }
    if !svc.external_traffic_local {
        let lb_single = lb_ips(svc).any(|ip| config.load_balancer_ips.contains(&IpNet::from(ip)));
        let ext_single = svc
            .external_ips
            .iter()
            .any(|ip| config.external_ips.contains(&IpNet::from(*ip)));
        if lb_single || ext_single {
            return true;
        }
        if config.load_balancer_aggregation == Aggregation::Enabled {
            return false;
        }
    }
    slices
        .iter()
        .filter(|s| svc.ip_families.contains(&s.address_type))
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.ready)
        .any(|e| !svc.external_traffic_local || e.node_name.as_deref() == Some(node))
}

/// Calico's `getAllRoutesForService`, each address only inside a configured range of its kind.
fn service_prefixes<'a>(
    config: &'a ServiceAdvertisement,
    svc: &'a Service,
) -> impl Iterator<Item = IpNet> + 'a {
    let inside = |ranges: &[IpNet], ip: &IpAddr| ranges.iter().any(|r| r.contains(ip));
    let cluster = svc
        .cluster_ips
        .iter()
        .copied()
        .filter(move |ip| inside(&config.cluster_ips, ip));
    let external = svc
        .external_ips
        .iter()
        .copied()
        .filter(move |ip| inside(&config.external_ips, ip));
    let lb = lb_ips(svc).filter(move |ip| inside(&config.load_balancer_ips, ip));
    cluster.chain(external).chain(lb).map(IpNet::from)
}

/// `spec.loadBalancerIP` and `status.loadBalancer.ingress[].ip`.
fn lb_ips(svc: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    svc.load_balancer_ip.iter().chain(&svc.ingress_ips).copied()
}

fn single(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

#[cfg(test)]
mod tests;
