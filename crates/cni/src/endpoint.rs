//! The endpoint record the node agent reads: one JSON file per attachment in the endpoints
//! directory, written atomically, so the agent learns a pod's interface without asking the API.
//!
//! The record's type and place are `caracal_contract::endpoint`, shared with the agent; this
//! module adds the plugin's atomic write and removal.

use std::path::Path;

pub use caracal_contract::endpoint::{Endpoint, PodKey, path, read, read_dir as list};

use crate::error::Result;
use crate::fsutil::{self, Durability};

pub fn write(dir: &Path, ep: &Endpoint) -> Result<()> {
    fsutil::ensure_dir(dir)?;
    // The directory is under /run (tmpfs): a record needs no fsync, only atomic replacement.
    fsutil::write_atomic(
        &path(dir, &ep.container_id, &ep.ifname),
        &ep.encode(),
        Durability::Atomic,
    )
}

pub fn remove(dir: &Path, container_id: &str, ifname: &str) -> Result<()> {
    fsutil::remove_if_exists(&path(dir, container_id, ifname))
}
