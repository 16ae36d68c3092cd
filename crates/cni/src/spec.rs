//! CNI result types (SPEC.md "Success", spec 1.1.0) and their conversion to older versions.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Code, Error, Result};

/// Versions this plugin speaks. 0.1.0/0.2.0 results have another shape and are not supported.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A spec version as (major, minor, patch), comparable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }
}

/// Checks that `s` is a version we support; error code 1 otherwise.
pub fn check_version(s: &str) -> Result<Version> {
    if SUPPORTED_VERSIONS.contains(&s) {
        Version::parse(s).ok_or_else(|| Error::internal("unparsable supported version"))
    } else {
        Err(Error::new(
            Code::IncompatibleVersion,
            format!(
                "incompatible CNI version {s:?}: this plugin supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Spec 1.1.0; dropped when converting to older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// A success result in the 1.x shape. Unknown fields (dns, route extras) are kept verbatim so that
/// a chained plugin passes through what it does not understand.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

impl CniResult {
    /// Reads a result (a `prevResult` or a delegate's output) of any supported version.
    pub fn from_value(v: &Value) -> Result<CniResult> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::with_details(Code::Decode, "cannot decode CNI result", e))
    }

    /// Renders the result in the shape of version `ver` (SPEC.md "Version considerations").
    pub fn to_json(&self, ver: &str) -> Value {
        let v = Version::parse(ver).unwrap_or(Version::V1_1_0);
        let mut out = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut out {
            m.insert("cniVersion".into(), Value::String(ver.to_owned()));
            if v < Version::V1_1_0
                && let Some(Value::Array(ifs)) = m.get_mut("interfaces")
            {
                for i in ifs.iter_mut().filter_map(Value::as_object_mut) {
                    i.remove("mtu");
                }
            }
            // 0.3.x and 0.4.0 carry an explicit IP version per address; 1.0.0 removed it.
            if v < Version::V1_0_0
                && let Some(Value::Array(ips)) = m.get_mut("ips")
            {
                for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                    let fam = if cfg.address.addr().is_ipv4() { "4" } else { "6" };
                    if let Value::Object(o) = ip {
                        o.insert("version".into(), Value::String(fam.into()));
                    }
                }
            }
            if !m.contains_key("dns") {
                m.insert("dns".into(), serde_json::json!({}));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                mtu: Some(1400),
                sandbox: "/run/netns/x".into(),
            }],
            ips: vec![
                IpConfig {
                    address: "10.0.0.5/32".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::5/128".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("169.254.1.1".parse().unwrap()),
            }],
            dns: None,
        }
    }

    #[test]
    fn old_versions_get_ip_version_and_lose_interface_mtu() {
        let v = sample().to_json("0.3.1");
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
        assert!(v["interfaces"][0].get("mtu").is_none());
        let v = sample().to_json("1.0.0");
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["interfaces"][0].get("mtu").is_none());
        let v = sample().to_json("1.1.0");
        assert_eq!(v["interfaces"][0]["mtu"], 1400);
    }

    #[test]
    fn results_round_trip_through_any_version() {
        for ver in SUPPORTED_VERSIONS {
            let back = CniResult::from_value(&sample().to_json(ver)).unwrap();
            assert_eq!(back.ips, sample().ips, "{ver}");
            assert_eq!(back.routes, sample().routes, "{ver}");
        }
    }

    #[test]
    fn unsupported_versions_are_code_1() {
        for v in ["0.1.0", "0.2.0", "2.0.0", "", "1.1"] {
            assert_eq!(
                check_version(v).unwrap_err().code,
                Code::IncompatibleVersion,
                "{v}"
            );
        }
        assert_eq!(check_version("0.4.0").unwrap(), Version::V0_4_0);
    }
}
