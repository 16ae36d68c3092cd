//! Table tests of [`super::advertised`]: one row per rule of Calico's semantics.

use super::*;
use crate::datastore::Endpoint;

const NODE: &str = "n1";

fn cfg(aggregation: Aggregation) -> ServiceAdvertisement {
    ServiceAdvertisement {
        cluster_ips: nets("10.96.0.0/16 fd00:96::/112"),
        // A range and a single-IP entry of each kind.
        external_ips: nets("192.0.2.0/24 203.0.113.9/32"),
        load_balancer_ips: nets("198.51.100.0/24 100.64.0.7/32"),
        load_balancer_aggregation: aggregation,
    }
}

fn nets(text: &str) -> Vec<IpNet> {
    text.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

fn ips(text: &str) -> Vec<IpAddr> {
    text.split_whitespace().map(|n| n.parse().unwrap()).collect()
}

/// The ranges every non-excluded node advertises with [`cfg`] (aggregation Enabled).
const RANGES: &str = "10.96.0.0/16 fd00:96::/112 192.0.2.0/24 198.51.100.0/24";

#[derive(Clone)]
struct Svc {
    name: &'static str,
    type_: ServiceType,
    cluster: &'static str,
    external: &'static str,
    lb_spec: Option<&'static str>,
    ingress: &'static str,
    local: bool,
}

const LB_LOCAL: Svc = Svc {
    name: "web",
    type_: ServiceType::LoadBalancer,
    cluster: "10.96.0.10",
    external: "192.0.2.10",
    lb_spec: None,
    ingress: "198.51.100.10",
    local: true,
};

const LB_CLUSTER: Svc = Svc {
    local: false,
    ..LB_LOCAL
};

impl Svc {
    fn model(&self) -> Service {
        let cluster_ips = ips(self.cluster);
        Service {
            namespace: "shop".into(),
            name: self.name.into(),
            type_: self.type_,
            ip_families: cluster_ips
                .iter()
                .map(|ip| if ip.is_ipv4() { "IPv4" } else { "IPv6" }.to_string())
                .collect(),
            cluster_ips,
            external_ips: ips(self.external),
            load_balancer_ip: self.lb_spec.map(|ip| ip.parse().unwrap()),
            ingress_ips: ips(self.ingress),
            external_traffic_local: self.local,
            load_balancer_class: None,
        }
    }
}

/// A slice of service `svc` with `(ready, node)` endpoints.
fn slice(svc: &str, family: &str, eps: &[(bool, &str)]) -> EndpointSlice {
    EndpointSlice {
        namespace: "shop".into(),
        name: format!("{svc}-{family}-{}", eps.len()),
        service: Some(svc.into()),
        address_type: family.into(),
        endpoints: eps
            .iter()
            .map(|(ready, node)| Endpoint {
                ready: *ready,
                node_name: Some(node.to_string()),
            })
            .collect(),
    }
}

struct Case {
    name: &'static str,
    config: ServiceAdvertisement,
    labels: &'static [(&'static str, &'static str)],
    services: Vec<Svc>,
    slices: Vec<EndpointSlice>,
    /// Advertised besides [`RANGES`] (or instead of them, when `only` is set).
    extra: &'static str,
    only: bool,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        config: cfg(Aggregation::Enabled),
        labels: &[],
        services: vec![],
        slices: vec![],
        extra: "",
        only: false,
    }
}

fn run(c: Case) {
    let services = c
        .services
        .iter()
        .map(|s| (Key::new("shop", s.name), s.model()))
        .collect();
    let slices = c
        .slices
        .into_iter()
        .map(|s| (Key::new(s.namespace.clone(), s.name.clone()), s))
        .collect();
    let labels = c
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let got = advertised(&c.config, &services, &slices, NODE, &labels);
    let mut want: BTreeSet<IpNet> = nets(c.extra).into_iter().collect();
    if !c.only {
        want.extend(nets(RANGES));
    }
    assert_eq!(got, want, "case: {}", c.name);
}

#[test]
fn the_ranges_alone_without_services_and_single_ip_entries_only_with_a_service() {
    run(case("nothing but the ranges"));
    run(Case {
        config: cfg(Aggregation::Disabled),
        extra: "10.96.0.0/16 fd00:96::/112 192.0.2.0/24",
        only: true,
        ..case("aggregation Disabled: no LoadBalancer range")
    });
    run(Case {
        config: ServiceAdvertisement::default(),
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        only: true,
        ..case("nothing configured: nothing advertised, even with a local endpoint")
    });
}

#[test]
fn an_excluded_node_advertises_nothing() {
    let kubeadm: &[(&str, &str)] = &[(EXCLUDE_LABEL, "")];
    let calico_docs: &[(&str, &str)] = &[(EXCLUDE_LABEL, "true")];
    for labels in [kubeadm, calico_docs] {
        run(Case {
            labels,
            services: vec![LB_LOCAL, LB_CLUSTER],
            slices: vec![slice("web", "IPv4", &[(true, NODE)])],
            only: true,
            ..case("excluded node")
        });
    }
    run(Case {
        labels: &[(EXCLUDE_LABEL, "false"), ("zone", "a")],
        ..case("the label set to false does not exclude")
    });
}

#[test]
fn local_policy_advertises_host_routes_only_from_nodes_with_a_ready_local_endpoint() {
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(false, "n2"), (true, NODE)])],
        extra: "10.96.0.10/32 192.0.2.10/32 198.51.100.10/32",
        ..case("Local, ready endpoint here: cluster, external and LB /32s")
    });
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(true, "n2"), (true, "n3")])],
        ..case("Local, endpoints only elsewhere")
    });
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(false, NODE), (true, "n2")])],
        ..case("Local, the local endpoint is not ready (terminating)")
    });
    run(Case {
        services: vec![LB_LOCAL],
        ..case("Local, no slices at all")
    });
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![slice("other", "IPv4", &[(true, NODE)])],
        ..case("Local, a local endpoint of another Service")
    });
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv6", &[(true, NODE)])],
        ..case("Local, the local endpoint is in a family the Service does not have")
    });
    run(Case {
        services: vec![LB_LOCAL],
        slices: vec![
            slice("web", "IPv4", &[(true, "n2")]),
            slice("web", "IPv4", &[(true, "n3"), (true, NODE)]),
        ],
        extra: "10.96.0.10/32 192.0.2.10/32 198.51.100.10/32",
        ..case("Local, the local endpoint is in the second slice")
    });
    run(Case {
        config: cfg(Aggregation::Disabled),
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        extra: "10.96.0.0/16 fd00:96::/112 192.0.2.0/24 10.96.0.10/32 192.0.2.10/32 198.51.100.10/32",
        only: true,
        ..case("Local with aggregation Disabled: the same /32s, no LB range")
    });
    run(Case {
        services: vec![Svc {
            type_: ServiceType::NodePort,
            external: "",
            ingress: "",
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        extra: "10.96.0.10/32",
        ..case("Local NodePort: its cluster IP")
    });
}

#[test]
fn addresses_outside_the_ranges_are_never_advertised() {
    run(Case {
        services: vec![Svc {
            cluster: "10.100.0.10",
            external: "192.0.2.11 203.0.113.50",
            lb_spec: Some("198.51.100.11"),
            ingress: "172.16.0.1 198.51.100.12",
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        extra: "192.0.2.11/32 198.51.100.11/32 198.51.100.12/32",
        ..case("only the addresses inside a range of their kind")
    });
    run(Case {
        config: ServiceAdvertisement {
            cluster_ips: vec![],
            ..cfg(Aggregation::Enabled)
        },
        services: vec![LB_LOCAL],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        extra: "192.0.2.0/24 198.51.100.0/24 192.0.2.10/32 198.51.100.10/32",
        only: true,
        ..case("no cluster ranges: no cluster IP /32 either")
    });
    run(Case {
        services: vec![Svc {
            external: "198.51.100.20",
            ingress: "192.0.2.20",
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        extra: "10.96.0.10/32",
        ..case("an external IP in the LB range and an LB IP in the external range: neither")
    });
}

#[test]
fn cluster_policy_advertises_host_routes_only_for_single_ip_entries_or_without_aggregation() {
    run(Case {
        services: vec![LB_CLUSTER],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        ..case("Cluster, IPs inside the ranges: nothing more")
    });
    run(Case {
        services: vec![Svc {
            ingress: "100.64.0.7",
            ..LB_CLUSTER
        }],
        extra: "10.96.0.10/32 192.0.2.10/32 100.64.0.7/32",
        ..case("Cluster, the LB IP equals a single-IP entry: from every node, no endpoint needed")
    });
    run(Case {
        services: vec![Svc {
            ingress: "",
            lb_spec: Some("100.64.0.7"),
            ..LB_CLUSTER
        }],
        extra: "10.96.0.10/32 192.0.2.10/32 100.64.0.7/32",
        ..case("Cluster, the requested spec.loadBalancerIP equals a single-IP entry")
    });
    run(Case {
        services: vec![Svc {
            type_: ServiceType::ClusterIP,
            external: "203.0.113.9",
            ingress: "",
            ..LB_CLUSTER
        }],
        extra: "10.96.0.10/32 203.0.113.9/32",
        ..case("Cluster, an external IP equals a single-IP entry")
    });
    run(Case {
        config: cfg(Aggregation::Disabled),
        services: vec![LB_CLUSTER],
        slices: vec![slice("web", "IPv4", &[(false, NODE), (true, "n2")])],
        extra: "10.96.0.0/16 fd00:96::/112 192.0.2.0/24 10.96.0.10/32 192.0.2.10/32 198.51.100.10/32",
        only: true,
        ..case("Cluster, Disabled: from every node while any endpoint is ready")
    });
    run(Case {
        config: cfg(Aggregation::Disabled),
        services: vec![LB_CLUSTER],
        slices: vec![slice("web", "IPv4", &[(false, NODE), (false, "n2")])],
        extra: "10.96.0.0/16 fd00:96::/112 192.0.2.0/24",
        only: true,
        ..case("Cluster, Disabled, no ready endpoint: withdrawn")
    });
}

#[test]
fn headless_external_name_and_dual_stack_services() {
    run(Case {
        services: vec![Svc {
            cluster: "",
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        ..case("headless: nothing")
    });
    run(Case {
        services: vec![Svc {
            type_: ServiceType::ExternalName,
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv4", &[(true, NODE)])],
        ..case("ExternalName: nothing")
    });
    run(Case {
        services: vec![Svc {
            cluster: "10.96.0.10 fd00:96::10",
            ..LB_LOCAL
        }],
        slices: vec![slice("web", "IPv6", &[(true, NODE)])],
        extra: "10.96.0.10/32 fd00:96::10/128 192.0.2.10/32 198.51.100.10/32",
        ..case("dual stack, a local IPv6 endpoint: /32 and /128")
    });
}

#[test]
fn a_shared_address_stays_while_any_service_advertises_it() {
    let other = Svc {
        name: "web-b",
        cluster: "10.96.0.11",
        ..LB_LOCAL
    };
    run(Case {
        services: vec![LB_LOCAL, other.clone()],
        slices: vec![
            slice("web", "IPv4", &[(true, "n2")]),
            slice("web-b", "IPv4", &[(true, NODE)]),
        ],
        extra: "10.96.0.11/32 192.0.2.10/32 198.51.100.10/32",
        ..case("two Services share the external and LB IPs, one has a local endpoint")
    });
}

#[test]
fn routes_carry_every_range_for_the_speaker() {
    let r = routes(
        &cfg(Aggregation::Disabled),
        &BTreeMap::new(),
        &BTreeMap::new(),
        NODE,
        &BTreeMap::new(),
    );
    assert_eq!(
        r.ranges,
        nets("10.96.0.0/16 100.64.0.7/32 192.0.2.0/24 198.51.100.0/24 203.0.113.9/32 fd00:96::/112")
    );
    assert!(!r.advertise.contains(&"198.51.100.0/24".parse().unwrap()));
}
