//! Which iptables backend the node uses.
//!
//! Both backends can be loaded at once and each sees only its own rules, so caracal must write
//! to the one kube-proxy and the kubelet use. Detection follows kubernetes-sigs/iptables-wrappers
//! and Felix (`felix/environment/feature_detect_linux.go`): the kubelet's canary chains
//! (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY` in mangle) decide first, nft before legacy;
//! otherwise the backend with more rules wins, nft on a tie (the distribution default here).
//! Legacy is probed only when `ip_tables` is already loaded, so detection never loads it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use caracal_policy::program::Family;

use super::netns::{in_netns, run, tool};
use super::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    fn word(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "legacy" => Ok(Backend::Legacy),
            "nft" => Ok(Backend::Nft),
            other => Err(Error::Lab(format!(
                "unknown iptables backend {other:?} (legacy or nft)"
            ))),
        }
    }
}

/// The save and restore binaries of one backend and family.
#[derive(Clone, Debug)]
pub struct Tools {
    pub save: PathBuf,
    pub restore: PathBuf,
}

/// `ip[6]tables-<backend>-{save,restore}`, falling back to the plain names.
pub fn tools(backend: Backend, family: Family) -> Result<Tools> {
    let stem = caracal_policy::render::family_names(family).1;
    let pick = |op: &str| {
        tool(&format!("{stem}-{}-{op}", backend.word())).or_else(|_| tool(&format!("{stem}-{op}")))
    };
    Ok(Tools {
        save: pick("save")?,
        restore: pick("restore")?,
    })
}

/// The backend to use in namespace `ns` (the given one, else the detected one) and its tools
/// for both families.
pub fn resolve(ns: Option<&str>, backend: Option<Backend>) -> Result<(Backend, BTreeMap<Family, Tools>)> {
    let backend = match backend {
        Some(b) => b,
        None => detect(ns)?,
    };
    let mut all = BTreeMap::new();
    for family in [Family::V4, Family::V6] {
        all.insert(family, tools(backend, family)?);
    }
    Ok((backend, all))
}

/// Detects the backend in namespace `ns` (the current one when `None`).
pub fn detect(ns: Option<&str>) -> Result<Backend> {
    let legacy_loaded = in_netns(ns, || {
        std::path::Path::new("/proc/thread-self/net/ip_tables_names").exists()
    })?;
    let mut candidates = vec![Backend::Nft];
    if legacy_loaded {
        candidates.push(Backend::Legacy);
    }
    for &backend in &candidates {
        for family in [Family::V4, Family::V6] {
            let Ok(t) = tools(backend, family) else { continue };
            let out = run(ns, &t.save, &["-t", "mangle"], None).unwrap_or_default();
            if out.contains("KUBE-IPTABLES-HINT") || out.contains("KUBE-KUBELET-CANARY") {
                return Ok(backend);
            }
        }
    }
    let count = |backend: Backend| -> usize {
        [Family::V4, Family::V6]
            .into_iter()
            .filter_map(|f| tools(backend, f).ok())
            .filter_map(|t| run(ns, &t.save, &[], None).ok())
            .map(|out| out.lines().filter(|l| l.starts_with('-')).count())
            .sum()
    };
    if legacy_loaded && count(Backend::Legacy) > count(Backend::Nft) {
        Ok(Backend::Legacy)
    } else {
        Ok(Backend::Nft)
    }
}
