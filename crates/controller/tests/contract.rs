//! The agent's side of the contracts in `caracal_contract`: it reads the endpoint records the
//! plugin writes, and its BGP routes carry the protocol number the contract gives them. No root.

use caracal_cni::endpoint::{self, Endpoint, PodKey};
use caracal_policy::model::{Key, LocalEndpoint};

fn record(ns: &str, name: &str, container: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        pod: Some(PodKey {
            namespace: ns.into(),
            name: name.into(),
        }),
        container_id: container.into(),
        ifname: "eth0".into(),
        iface: caracal_contract::host_veth_name(Some((ns, name)), container, "eth0"),
        mac: "02:00:00:00:00:01".into(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        netns: format!("/run/netns/{container}"),
        network: "caracal".into(),
    }
}

#[test]
fn the_agent_reads_the_records_the_plugin_writes() {
    let dir = tempfile::tempdir().unwrap();
    let web = record("default", "web-0", "c1", &["10.244.1.7", "fd00::7"]);
    let db = record("prod", "db-0", "c2", &["10.244.1.8"]);
    let mut podless = record("x", "y", "c3", &["10.244.1.9"]);
    podless.pod = None;
    for ep in [&web, &db, &podless] {
        endpoint::write(dir.path(), ep).unwrap();
    }
    let eps = caracal::agent::read_endpoints(dir.path());
    assert_eq!(
        eps,
        vec![
            LocalEndpoint {
                pod: Key::new("default", "web-0"),
                iface: web.iface.clone(),
                ips: web.ips.clone(),
            },
            LocalEndpoint {
                pod: Key::new("prod", "db-0"),
                iface: db.iface.clone(),
                ips: db.ips.clone(),
            },
        ],
        "a record without a pod is not a policy endpoint"
    );
    // The compiler names the same interface for the pod, so its dispatch rule matches the veth.
    assert_eq!(caracal_policy::compile::iface_name(&eps[0].pod), web.iface);
}

#[test]
fn the_speakers_route_protocol_is_the_contracts() {
    let c = caracal_bgp::config::SpeakerConfig::parse("{local_as: 64512, router_id: 192.0.2.1}").unwrap();
    assert_eq!(c.route_protocol, caracal_contract::BGP_ROUTE_PROTOCOL);
    assert_eq!(
        caracal_cni::dataplane::ROUTE_PROTOCOL,
        caracal_contract::CNI_ROUTE_PROTOCOL
    );
}
