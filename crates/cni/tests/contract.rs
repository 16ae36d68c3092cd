//! The plugin and the compiler meet at the host veth: the compiler names a pod's interface
//! itself and its dispatch chains match the prefix. Both come from `caracal_contract`; this
//! checks that each side really uses it. (The agent's side of the endpoint record is checked in
//! the controller's `agent` tests.) No root needed.

use caracal_cni::endpoint::{self, Endpoint, PodKey};
use caracal_policy::model::Key;

#[test]
fn the_compiler_names_the_veth_the_plugin_creates() {
    assert_eq!(
        caracal_policy::program::IFACE_PREFIX,
        caracal_contract::IFACE_PREFIX
    );
    for (ns, name) in [("default", "web-0"), ("kube-system", "coredns-5d78c9869d-abcde")] {
        let plugin = caracal_contract::host_veth_name(Some((ns, name)), "c1", "eth0");
        assert_eq!(caracal_policy::compile::iface_name(&Key::new(ns, name)), plugin);
        assert!(plugin.starts_with(caracal_policy::program::IFACE_PREFIX));
        assert!(plugin.len() <= 15);
    }
}

#[test]
fn the_plugin_writes_records_that_list_back() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        pod: Some(PodKey {
            namespace: "default".into(),
            name: "web-0".into(),
        }),
        container_id: "c1".into(),
        ifname: "eth0".into(),
        iface: caracal_contract::host_veth_name(Some(("default", "web-0")), "c1", "eth0"),
        mac: "02:00:00:00:00:01".into(),
        ips: vec!["10.244.1.7".parse().unwrap(), "fd00::7".parse().unwrap()],
        netns: "/run/netns/x".into(),
        network: "caracal".into(),
    };
    endpoint::write(dir.path(), &ep).unwrap();
    assert_eq!(endpoint::read(dir.path(), "c1", "eth0"), Some(ep.clone()));
    assert_eq!(endpoint::list(dir.path()), vec![ep]);
    endpoint::remove(dir.path(), "c1", "eth0").unwrap();
    assert!(endpoint::list(dir.path()).is_empty());
}
