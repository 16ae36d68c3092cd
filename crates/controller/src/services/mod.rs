//! Service IP advertisement: which Service prefixes this node announces over BGP.
//!
//! - [`ServiceAdvertisement`]: the configured ranges (Calico's `serviceClusterIPs`,
//!   `serviceExternalIPs`, `serviceLoadBalancerIPs` and `serviceLoadBalancerAggregation`), read
//!   from the BGPConfiguration `default` when it sets any of them ([`ServiceAdvertisement::from_bgp_configuration`]),
//!   else from the agent config's `services:` section;
//! - [`advertise`]: the pure function from the ranges, the Services, their EndpointSlices and
//!   this node to the prefixes it advertises (Calico's semantics);
//! - the reconciler that runs it on every snapshot is [`crate::agent::services`].
//!
//! kube-proxy does the forwarding; the routes only bring the traffic to a node that can take it.

pub mod advertise;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use advertise::{ServiceRoutes, advertised, routes};

/// Whether LoadBalancer ranges are advertised whole (Enabled, Calico's default) or only as the
/// /32 (/128) of each LoadBalancer IP in use (Disabled: anycast failover per address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Aggregation {
    #[default]
    Enabled,
    Disabled,
}

/// The configured service ranges, IPv4 and IPv6. Empty lists advertise nothing of that kind;
/// addresses outside every range are never advertised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAdvertisement")]
pub struct ServiceAdvertisement {
    /// `serviceClusterIPs`: the cluster's Service CIDR(s), advertised whole from every node.
    pub cluster_ips: Vec<IpNet>,
    /// `serviceExternalIPs`: the ranges `spec.externalIPs` may come from.
    pub external_ips: Vec<IpNet>,
    /// `serviceLoadBalancerIPs`: the ranges LoadBalancer addresses may come from.
    pub load_balancer_ips: Vec<IpNet>,
    /// `serviceLoadBalancerAggregation`.
    pub load_balancer_aggregation: Aggregation,
}

/// What the YAML says, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvertisement {
    #[serde(default)]
    cluster_ips: Vec<IpNet>,
    #[serde(default)]
    external_ips: Vec<IpNet>,
    #[serde(default)]
    load_balancer_ips: Vec<IpNet>,
    #[serde(default)]
    load_balancer_aggregation: Aggregation,
}

impl TryFrom<RawAdvertisement> for ServiceAdvertisement {
    type Error = String;

    fn try_from(raw: RawAdvertisement) -> Result<Self, String> {
        let a = ServiceAdvertisement {
            cluster_ips: raw.cluster_ips,
            external_ips: raw.external_ips,
            load_balancer_ips: raw.load_balancer_ips,
            load_balancer_aggregation: raw.load_balancer_aggregation,
        };
        a.validate()?;
        Ok(a)
    }
}

impl ServiceAdvertisement {
    /// The ranges a BGPConfiguration sets, or `None` when it sets none (the agent config's
    /// then apply); an unparsable or invalid range is an error naming the field (the object's
    /// validation refuses those before they get here).
    pub fn from_bgp_configuration(
        spec: &crate::bgpapi::types::BgpConfigurationSpec,
    ) -> Option<Result<ServiceAdvertisement, String>> {
        let parse = |field: &str, list: &[crate::bgpapi::types::ServiceCidr]| {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    c.cidr
                        .parse::<IpNet>()
                        .map_err(|e| format!("spec.{field}[{i}].cidr: {:?}: {e}", c.cidr))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        if spec.service_cluster_ips.is_empty()
            && spec.service_external_ips.is_empty()
            && spec.service_load_balancer_ips.is_empty()
        {
            return None;
        }
        Some((|| {
            let a = ServiceAdvertisement {
                cluster_ips: parse("serviceClusterIPs", &spec.service_cluster_ips)?,
                external_ips: parse("serviceExternalIPs", &spec.service_external_ips)?,
                load_balancer_ips: parse("serviceLoadBalancerIPs", &spec.service_load_balancer_ips)?,
                load_balancer_aggregation: spec.service_load_balancer_aggregation,
            };
            a.validate()?;
            Ok(a)
        })())
    }

    /// Checks what the types cannot; the message names the field (`services.cluster_ips[1]`).
    pub fn validate(&self) -> Result<(), String> {
        for (field, list) in self.lists() {
            for (i, net) in list.iter().enumerate() {
                if net.trunc() != *net {
                    return Err(format!(
                        "services.{field}[{i}]: {net} has host bits set (did you mean {}?)",
                        net.trunc()
                    ));
                }
                if let Some(j) = list[..i].iter().position(|n| n == net) {
                    return Err(format!(
                        "services.{field}[{i}]: {net} is already services.{field}[{j}]"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether anything is configured at all.
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|(_, l)| l.is_empty())
    }

    /// Every configured range: learned routes inside these never go into the kernel (kube-proxy
    /// handles the traffic locally) and are not passed on to other peers.
    pub fn ranges(&self) -> Vec<IpNet> {
        let mut all: Vec<IpNet> = self.lists().iter().flat_map(|(_, l)| l.iter().copied()).collect();
        all.sort();
        all.dedup();
        all
    }

    fn lists(&self) -> [(&'static str, &Vec<IpNet>); 3] {
        [
            ("cluster_ips", &self.cluster_ips),
            ("external_ips", &self.external_ips),
            ("load_balancer_ips", &self.load_balancer_ips),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceAdvertisement, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn ranges_parse_v4_and_v6_with_aggregation_enabled_by_default() {
        let a = parse(
            "{cluster_ips: [10.96.0.0/16, 'fd00:96::/112'], external_ips: [192.0.2.0/24],
              load_balancer_ips: [198.51.100.0/24, 198.51.100.7/32]}",
        )
        .unwrap();
        assert_eq!(a.load_balancer_aggregation, Aggregation::Enabled);
        assert_eq!(a.cluster_ips.len(), 2);
        assert_eq!(a.ranges().len(), 5);
        assert!(!a.is_empty());
        assert!(parse("{}").unwrap().is_empty());
        let d = parse("{load_balancer_aggregation: Disabled}").unwrap();
        assert_eq!(d.load_balancer_aggregation, Aggregation::Disabled);
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let e = parse("{external_ips: [192.0.2.0/24, 192.0.2.1/24]}").unwrap_err();
        assert!(
            e.contains("services.external_ips[1]") && e.contains("host bits"),
            "{e}"
        );
        let e = parse("{cluster_ips: [10.96.0.0/16, 10.96.0.0/16]}").unwrap_err();
        assert!(e.contains("services.cluster_ips[1]"), "{e}");
        let e = parse("{load_balancer_ips: [300.0.0.0/8]}").unwrap_err();
        assert!(e.contains("load_balancer_ips"), "{e}");
        let e = parse("{load_balancer_aggregation: Sometimes}").unwrap_err();
        assert!(
            e.contains("load_balancer_aggregation") || e.contains("Sometimes"),
            "{e}"
        );
        let e = parse("{cluster_ip: [10.96.0.0/16]}").unwrap_err();
        assert!(e.contains("cluster_ip"), "{e}");
    }
}
