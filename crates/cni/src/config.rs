//! The network configuration on stdin: the standard keys plus caracal's own.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "caracal", "type": "caracal-cni", "mtu": 1500,
//!  "endpointsDir": "/var/run/caracal/endpoints", "readinessFile": "/var/run/caracal/ready",
//!  "ipam": {"ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]],
//!           "dataDir": "/var/lib/caracal/ipam", "fsync": false}}
//! ```
//! `ipam.type` absent or `"caracal"` selects the built-in IPAM; any other type (for example
//! `host-local`) is executed from `CNI_PATH` with the same configuration. `ipam.fsync: true`
//! makes every IPAM write durable against power loss (fsync), at a few milliseconds per write.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Code, Error, Result};
use crate::fsutil::Durability;
use crate::ipam::pool::{Range, RangeSet};
use crate::ipam::store::Store;
use crate::spec::{self, CniResult, Version};

pub const DEFAULT_ENDPOINTS_DIR: &str = "/var/run/caracal/endpoints";
pub const DEFAULT_IPAM_DIR: &str = "/var/lib/caracal/ipam";
pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 15_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    mtu: Option<u32>,
    ipam: Option<RawIpam>,
    endpoints_dir: Option<PathBuf>,
    readiness_file: Option<PathBuf>,
    prev_result: Option<Value>,
    ip_masq: Option<bool>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    kind: Option<String>,
    subnet: Option<String>,
    ranges: Option<Vec<Vec<RawRange>>>,
    data_dir: Option<PathBuf>,
    fsync: Option<bool>,
    lock_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: String,
    range_start: Option<String>,
    range_end: Option<String>,
}

/// One `{containerID, ifname}` of a GC's valid attachments.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The built-in allocator's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Builtin {
    pub pools: Vec<RangeSet>,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// How long to wait for another invocation's lock before answering "try again later" (11).
    pub lock_timeout: Duration,
}

impl Builtin {
    pub fn open(&self, network: &str) -> Result<Store> {
        Store::open(&self.data_dir, network, self.durability, self.lock_timeout)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ipam {
    /// The built-in allocator over these pools (one range set per address family).
    Builtin(Builtin),
    /// Another IPAM plugin, executed from `CNI_PATH`.
    Delegate { plugin: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub version: Version,
    pub name: String,
    pub mtu: u32,
    pub ipam: Ipam,
    pub endpoints_dir: PathBuf,
    pub readiness_file: Option<PathBuf>,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Option<BTreeSet<Attachment>>,
}

/// Only the version, for VERSION and for error results before the rest is validated.
pub fn peek_version(raw: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

impl NetConf {
    pub fn parse(raw: &[u8]) -> Result<NetConf> {
        let c: RawConf = serde_json::from_slice(raw)
            .map_err(|e| Error::with_details(Code::Decode, "cannot decode network configuration", e))?;
        let cni_version = c.cni_version.ok_or_else(|| {
            Error::new(
                Code::IncompatibleVersion,
                "network configuration has no cniVersion",
            )
        })?;
        let version = spec::check_version(&cni_version)?;
        let name = c
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::config("network configuration has no name"))?;
        if name.contains('/') || name.starts_with('.') {
            return Err(Error::config(format!(
                "name {name:?} must not contain '/' or start with '.'"
            )));
        }
        if c.ip_masq == Some(true) {
            return Err(Error::new(
                Code::UnsupportedField,
                "unsupported field ipMasq=true: caracal routes pod addresses, masquerading is the agent's job",
            ));
        }
        let mtu = c.mtu.unwrap_or(DEFAULT_MTU);
        if !(576..=65535).contains(&mtu) {
            return Err(Error::config(format!("mtu {mtu} is outside 576..=65535")));
        }
        let ipam = match c.ipam {
            None => return Err(Error::config("network configuration has no ipam section")),
            Some(i) => parse_ipam(i)?,
        };
        let prev_result = c.prev_result.as_ref().map(CniResult::from_value).transpose()?;
        let valid_attachments = c
            .valid_attachments
            .or(c.attachments)
            .map(|v| v.into_iter().collect());
        Ok(NetConf {
            cni_version,
            version,
            name,
            mtu,
            ipam,
            endpoints_dir: c.endpoints_dir.unwrap_or_else(|| DEFAULT_ENDPOINTS_DIR.into()),
            readiness_file: c.readiness_file,
            prev_result,
            valid_attachments,
        })
    }
}

fn parse_ipam(i: RawIpam) -> Result<Ipam> {
    match i.kind.as_deref() {
        None | Some("caracal") | Some("") => {}
        Some(other) => {
            if other.contains('/') {
                return Err(Error::config(format!(
                    "ipam.type {other:?} must be a plugin name, not a path"
                )));
            }
            return Ok(Ipam::Delegate {
                plugin: other.to_owned(),
            });
        }
    }
    let mut raw_sets = i.ranges.unwrap_or_default();
    if let Some(s) = i.subnet {
        raw_sets.push(vec![RawRange {
            subnet: s,
            range_start: None,
            range_end: None,
        }]);
    }
    if raw_sets.is_empty() {
        return Err(Error::config("ipam: no ranges and no subnet"));
    }
    let mut pools = Vec::new();
    for set in raw_sets {
        let mut ranges = Vec::new();
        for r in set {
            let subnet: IpNet = r.subnet.parse().map_err(|e| {
                Error::with_details(Code::InvalidConfig, format!("ipam: bad subnet {:?}", r.subnet), e)
            })?;
            let addr = |s: Option<String>, what: &str| {
                s.map(|s| {
                    s.parse().map_err(|e| {
                        Error::with_details(Code::InvalidConfig, format!("ipam: bad {what} {s:?}"), e)
                    })
                })
                .transpose()
            };
            let range = Range::new(
                subnet,
                addr(r.range_start, "rangeStart")?,
                addr(r.range_end, "rangeEnd")?,
            )
            .map_err(|e| Error::config(format!("ipam: {e}")))?;
            ranges.push(range);
        }
        let set = RangeSet::new(ranges).map_err(|e| Error::config(format!("ipam: {e}")))?;
        if pools.iter().any(|p: &RangeSet| p.is_ipv4() == set.is_ipv4()) {
            return Err(Error::config(
                "ipam: more than one range set of the same address family",
            ));
        }
        pools.push(set);
    }
    Ok(Ipam::Builtin(Builtin {
        pools,
        data_dir: i.data_dir.unwrap_or_else(|| DEFAULT_IPAM_DIR.into()),
        durability: if i.fsync == Some(true) {
            Durability::Durable
        } else {
            Durability::Atomic
        },
        lock_timeout: Duration::from_millis(i.lock_timeout_ms.unwrap_or(DEFAULT_LOCK_TIMEOUT_MS)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_config_parses_with_defaults() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"k","type":"caracal-cni","unknownKey":1,
                 "ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/120"}]]}}"#,
        )
        .unwrap();
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.endpoints_dir, PathBuf::from(DEFAULT_ENDPOINTS_DIR));
        match c.ipam {
            Ipam::Builtin(b) => {
                assert_eq!(b.durability, Durability::Atomic);
                assert_eq!(b.pools.len(), 2);
                assert_eq!(b.data_dir, PathBuf::from(DEFAULT_IPAM_DIR));
                assert_eq!(b.lock_timeout, Duration::from_millis(DEFAULT_LOCK_TIMEOUT_MS));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_configs_get_the_right_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{not json"), Code::Decode);
        assert_eq!(
            code(r#"{"name":"k","ipam":{"subnet":"10.0.0.0/24"}}"#),
            Code::IncompatibleVersion
        );
        assert_eq!(
            code(r#"{"cniVersion":"0.2.0","name":"k","ipam":{"subnet":"10.0.0.0/24"}}"#),
            Code::IncompatibleVersion
        );
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"k"}"#), Code::InvalidConfig);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"a/b","ipam":{"subnet":"10.0.0.0/24"}}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"k","ipam":{"subnet":"10.0.0/24"}}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"k","ipMasq":true,"ipam":{"subnet":"10.0.0.0/24"}}"#),
            Code::UnsupportedField
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"k","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}"#
            ),
            Code::InvalidConfig
        );
    }

    #[test]
    fn other_ipam_types_are_delegated_and_gc_lists_read_both_keys() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"k","ipam":{"type":"host-local","subnet":"10.0.0.0/24"},
                 "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.ipam,
            Ipam::Delegate {
                plugin: "host-local".into()
            }
        );
        assert_eq!(c.valid_attachments.unwrap().len(), 1);
    }
}
