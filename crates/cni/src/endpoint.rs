//! The endpoint record the node agent reads: one JSON file per attachment in the endpoints
//! directory, written atomically, so the agent learns a pod's interface without asking the API.
//!
//! The `pod`, `iface` and `ips` keys have the shape of `caracal_policy::model::LocalEndpoint`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Code, Error, Result};
use crate::fsutil::{self, Durability};

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
    /// Host-side veth.
    pub iface: String,
    pub mac: String,
    pub ips: Vec<IpAddr>,
    pub netns: String,
    pub network: String,
}

pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}_{ifname}.json"))
}

pub fn write(dir: &Path, ep: &Endpoint) -> Result<()> {
    fsutil::ensure_dir(dir)?;
    let data = serde_json::to_vec_pretty(ep)
        .map_err(|e| Error::with_details(Code::Internal, "cannot encode endpoint", e))?;
    // The directory is under /run (tmpfs): a record needs no fsync, only atomic replacement.
    fsutil::write_atomic(
        &path(dir, &ep.container_id, &ep.ifname),
        &data,
        Durability::Atomic,
    )
}

/// The record of (container, ifname), if there is a readable one.
pub fn read(dir: &Path, container_id: &str, ifname: &str) -> Option<Endpoint> {
    let b = std::fs::read(path(dir, container_id, ifname)).ok()?;
    serde_json::from_slice(&b).ok()
}

pub fn remove(dir: &Path, container_id: &str, ifname: &str) -> Result<()> {
    fsutil::remove_if_exists(&path(dir, container_id, ifname))
}

/// All readable records (for GC).
pub fn list(dir: &Path) -> Vec<Endpoint> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}
