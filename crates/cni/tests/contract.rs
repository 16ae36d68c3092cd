//! The plugin and the node agent meet in two places: the host veth's prefix (the policy dispatch
//! chains match `cara+`) and the endpoint record. Both are checked against the policy crate's
//! own types here, so neither side can drift alone. No root needed.

use caracal_cni::endpoint::{self, Endpoint, PodKey};
use caracal_cni::naming;
use caracal_policy::model::{Key, LocalEndpoint};

#[test]
fn host_veth_prefix_is_the_policy_dispatch_prefix() {
    assert_eq!(naming::IFACE_PREFIX, caracal_policy::program::IFACE_PREFIX);
    let name = naming::host_veth_name(Some(("default", "web-0")), "c1", "eth0");
    assert!(name.starts_with(caracal_policy::program::IFACE_PREFIX));
    assert!(name.len() <= 15);
}

#[test]
fn an_endpoint_record_reads_as_the_policy_local_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        pod: Some(PodKey {
            namespace: "default".into(),
            name: "web-0".into(),
        }),
        container_id: "c1".into(),
        ifname: "eth0".into(),
        iface: naming::host_veth_name(Some(("default", "web-0")), "c1", "eth0"),
        mac: "02:00:00:00:00:01".into(),
        ips: vec!["10.244.1.7".parse().unwrap(), "fd00::7".parse().unwrap()],
        netns: "/run/netns/x".into(),
        network: "caracal".into(),
    };
    endpoint::write(dir.path(), &ep).unwrap();
    let bytes = std::fs::read(endpoint::path(dir.path(), "c1", "eth0")).unwrap();
    let local: LocalEndpoint = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(local.pod, Key::new("default", "web-0"));
    assert_eq!(local.iface, ep.iface);
    assert_eq!(local.ips, ep.ips);
    assert_eq!(endpoint::list(dir.path()), vec![ep]);
}
