//! The endpoint record: one JSON file per attachment (`<containerID>_<ifname>.json`) in the
//! endpoints directory, written atomically by the CNI plugin, so the node agent learns a pod's
//! interface and addresses without asking the API. Both sides go through [`Endpoint`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The pod of an attachment, from the runtime's `K8S_POD_NAMESPACE` / `K8S_POD_NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Absent when the runtime passed no `K8S_POD_*` arguments.
    pub pod: Option<PodKey>,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    /// Host-side veth ([`crate::host_veth_name`]).
    pub iface: String,
    pub mac: String,
    pub ips: Vec<IpAddr>,
    pub netns: String,
    pub network: String,
}

impl Endpoint {
    /// The record's bytes, as written to [`path`].
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an endpoint record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> serde_json::Result<Endpoint> {
        serde_json::from_slice(bytes)
    }
}

/// Where the record of (container, ifname) lives in `dir`.
pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}_{ifname}.json"))
}

/// The record of (container, ifname), if there is a readable one.
pub fn read(dir: &Path, container_id: &str, ifname: &str) -> Option<Endpoint> {
    Endpoint::decode(&std::fs::read(path(dir, container_id, ifname)).ok()?).ok()
}

/// Every readable record in `dir`, in file-name order. A file that does not parse is skipped:
/// records are replaced atomically, so it is not one of ours or is being removed.
pub fn read_dir(dir: &Path) -> Vec<Endpoint> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| Endpoint::decode(&b).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Endpoint {
        Endpoint {
            pod: Some(PodKey {
                namespace: "default".into(),
                name: "web-0".into(),
            }),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            iface: crate::pod_veth_name("default", "web-0"),
            mac: "02:00:00:00:00:01".into(),
            ips: vec!["10.244.1.7".parse().unwrap(), "fd00::7".parse().unwrap()],
            netns: "/run/netns/x".into(),
            network: "caracal".into(),
        }
    }

    #[test]
    fn the_wire_keys_are_the_ones_released_plugins_write() {
        let v: serde_json::Value = serde_json::from_slice(&record().encode()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "containerID",
                "iface",
                "ifname",
                "ips",
                "mac",
                "netns",
                "network",
                "pod"
            ]
        );
        assert_eq!(v["pod"]["namespace"], "default");
    }

    #[test]
    fn read_dir_returns_parsable_records_and_skips_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let ep = record();
        std::fs::write(path(d.path(), "c1", "eth0"), ep.encode()).unwrap();
        std::fs::write(d.path().join("c2_eth0.json"), "{not json").unwrap();
        std::fs::write(d.path().join("c3_eth0.tmp"), ep.encode()).unwrap();
        assert_eq!(read_dir(d.path()), vec![ep.clone()]);
        assert_eq!(read(d.path(), "c1", "eth0"), Some(ep));
        assert_eq!(read(d.path(), "c2", "eth0"), None);
        assert!(read_dir(&d.path().join("missing")).is_empty());
    }
}
