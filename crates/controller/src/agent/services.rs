//! The services reconciler: on every snapshot, the Service prefixes this node advertises
//! ([`crate::services::routes`]), handed to the BGP reconciler through a watch channel, which
//! originates them and keeps the configured ranges out of the kernel.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Result;
use tokio::sync::watch;

use super::reconcile::{self, Next, Reconcile, Schedule, Wake};
use super::{AgentConfig, health};
use crate::{
    datastore::Snapshot,
    services::{self, ServiceAdvertisement, ServiceRoutes},
};

/// The configured ranges: the BGPConfiguration `default`'s when it sets any (as the BGP objects
/// win over the agent config for peers), else the agent config's `services:` section. A
/// BGPConfiguration whose ranges do not parse advertises none of its ranges (and says why).
pub fn service_ranges(config: &AgentConfig, snapshot: &Snapshot) -> ServiceAdvertisement {
    let from_object = snapshot
        .bgp_configurations
        .get(crate::bgpapi::types::DEFAULT_CONFIGURATION)
        .and_then(ServiceAdvertisement::from_bgp_configuration);
    match from_object {
        None => config.services.clone(),
        Some(Ok(ranges)) => ranges,
        Some(Err(e)) => {
            tracing::warn!("BGPConfiguration default: service ranges ignored: {e}");
            ServiceAdvertisement::default()
        }
    }
}

/// The Service routes of this node for `snapshot`.
pub fn service_routes(config: &AgentConfig, snapshot: &Snapshot) -> ServiceRoutes {
    let no_labels = BTreeMap::new();
    let labels = snapshot
        .nodes
        .get(&config.node_name)
        .map_or(&no_labels, |n| &n.labels);
    services::routes(
        &service_ranges(config, snapshot),
        &snapshot.services,
        &snapshot.endpoint_slices,
        &config.node_name,
        labels,
    )
}

/// Publishes [`service_routes`] to `routes` whenever they change, until `snapshots` closes.
pub async fn reconcile_services(
    config: Arc<AgentConfig>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    routes: watch::Sender<ServiceRoutes>,
    health: health::LoopHealth,
) -> Result<()> {
    let schedule = Schedule {
        tick: Duration::from_secs(10),
        resync: None,
    };
    let r = ServicesReconciler { config, routes };
    reconcile::run("services", r, snapshots, health, schedule).await
}

struct ServicesReconciler {
    config: Arc<AgentConfig>,
    routes: watch::Sender<ServiceRoutes>,
}

impl Reconcile for ServicesReconciler {
    async fn reconcile(&mut self, snapshot: &Arc<Snapshot>, _: Wake) -> Result<Next> {
        let next = service_routes(&self.config, snapshot);
        self.routes.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            let added: Vec<_> = next.advertise.difference(&current.advertise).collect();
            let withdrawn: Vec<_> = current.advertise.difference(&next.advertise).collect();
            tracing::info!(
                ?added,
                ?withdrawn,
                total = next.advertise.len(),
                "service routes changed"
            );
            *current = next;
            true
        });
        Ok(Next::Wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{Endpoint, EndpointSlice, Node, Service, ServiceType, model::Object};

    fn config() -> AgentConfig {
        serde_yaml::from_str(
            "{node_name: n1, services: {cluster_ips: [10.96.0.0/16], external_ips: [192.0.2.0/24]}}",
        )
        .unwrap()
    }

    fn snapshot(endpoint_node: &str, ready: bool) -> Snapshot {
        Snapshot::from_objects([
            Object::Node(Node {
                name: "n1".into(),
                ..Default::default()
            }),
            Object::Service(Service {
                namespace: "shop".into(),
                name: "web".into(),
                type_: ServiceType::LoadBalancer,
                cluster_ips: vec!["10.96.0.10".parse().unwrap()],
                external_ips: vec!["192.0.2.10".parse().unwrap()],
                external_traffic_local: true,
                ip_families: vec!["IPv4".into()],
                ..Default::default()
            }),
            Object::EndpointSlice(EndpointSlice {
                namespace: "shop".into(),
                name: "web-1".into(),
                service: Some("web".into()),
                address_type: "IPv4".into(),
                endpoints: vec![Endpoint {
                    ready,
                    node_name: Some(endpoint_node.into()),
                }],
            }),
        ])
    }

    #[test]
    fn a_bgp_configuration_with_service_ranges_wins_over_the_agent_config() {
        let config = config();
        let mut snap = snapshot("n1", true);
        assert_eq!(
            service_ranges(&config, &snap),
            config.services,
            "no object: the agent config"
        );
        let spec: crate::bgpapi::types::BgpConfigurationSpec =
            serde_json::from_value(serde_json::json!({"asNumber": 64512})).unwrap();
        snap.bgp_configurations.insert("default".into(), spec);
        assert_eq!(
            service_ranges(&config, &snap),
            config.services,
            "an object without ranges leaves them to the agent config"
        );
        let spec: crate::bgpapi::types::BgpConfigurationSpec = serde_json::from_value(serde_json::json!({
            "serviceClusterIPs": [{"cidr": "10.97.0.0/16"}],
            "serviceLoadBalancerAggregation": "Disabled"
        }))
        .unwrap();
        snap.bgp_configurations.insert("default".into(), spec);
        let ranges = service_ranges(&config, &snap);
        assert_eq!(
            ranges.cluster_ips,
            ["10.97.0.0/16".parse::<ipnet::IpNet>().unwrap()]
        );
        assert!(ranges.external_ips.is_empty(), "the object's lists, not a merge");
        assert_eq!(ranges.load_balancer_aggregation, services::Aggregation::Disabled);
        let routes = service_routes(&config, &snap);
        assert!(
            routes.advertise.contains(&"10.97.0.0/16".parse().unwrap())
                && !routes.advertise.contains(&"10.96.0.0/16".parse().unwrap()),
            "{routes:?}"
        );
        let spec: crate::bgpapi::types::BgpConfigurationSpec = serde_json::from_value(serde_json::json!({
            "serviceClusterIPs": [{"cidr": "10.97.0.1/16"}]
        }))
        .unwrap();
        snap.bgp_configurations.insert("default".into(), spec);
        assert!(
            service_ranges(&config, &snap).is_empty(),
            "host bits set: none of its ranges"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_local_endpoint_going_unready_withdraws_at_once() {
        let config = Arc::new(config());
        let (snap_tx, snap_rx) = watch::channel(Arc::new(snapshot("n1", true)));
        let (tx, mut rx) = watch::channel(ServiceRoutes::default());
        let h = health::Health::default().register("services", "starting");
        let task = tokio::spawn(reconcile_services(config, snap_rx, tx, h));
        let with_local: Vec<String> = rx
            .wait_for(|r| !r.advertise.is_empty())
            .await
            .unwrap()
            .advertise
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            with_local,
            ["10.96.0.0/16", "10.96.0.10/32", "192.0.2.0/24", "192.0.2.10/32"]
        );
        assert_eq!(rx.borrow().ranges.len(), 2);
        let t = tokio::time::Instant::now();
        snap_tx.send(Arc::new(snapshot("n1", false))).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().advertise.len(), 2, "only the ranges");
        assert!(t.elapsed() < Duration::from_millis(10));
        // The endpoint moving to another node publishes nothing new for this one.
        snap_tx.send(Arc::new(snapshot("n2", true))).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap());
        drop(snap_tx);
        task.await.unwrap().unwrap();
    }
}
