//! `caracal-cni install`: what the DaemonSet's init container runs on each node. It copies the
//! plugin binary into the runtime's CNI bin directory and writes the network configuration list,
//! rendered from `deploy/cni-conflist.json` with the node's pod CIDRs, both atomically (a
//! runtime reading the directory at that moment sees the old file or the new one).

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fsutil::{self, Durability};

/// The configuration list shipped in `deploy/`, the single source for what nodes get.
pub const TEMPLATE: &str = include_str!("../../../deploy/cni-conflist.json");
pub const CONFLIST_NAME: &str = "10-caracal.conflist";

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub pod_cidrs: Vec<IpNet>,
    pub mtu: Option<u32>,
}

pub const USAGE: &str = "usage: caracal-cni install --pod-cidr CIDR [--pod-cidr CIDR] [--mtu N] \
[--bin-dir /host/opt/cni/bin] [--conf-dir /host/etc/cni/net.d]";

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            bin_dir: "/host/opt/cni/bin".into(),
            conf_dir: "/host/etc/cni/net.d".into(),
            pod_cidrs: Vec::new(),
            mtu: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| Error::config(format!("{flag} needs a value; {USAGE}")))
            };
            match flag.as_str() {
                "--bin-dir" => o.bin_dir = value()?.into(),
                "--conf-dir" => o.conf_dir = value()?.into(),
                "--pod-cidr" => {
                    let v = value()?;
                    let cidr = v.parse().map_err(|e| {
                        Error::with_details(crate::Code::InvalidConfig, format!("--pod-cidr {v:?}"), e)
                    })?;
                    o.pod_cidrs.push(cidr);
                }
                "--mtu" => {
                    let v = value()?;
                    o.mtu = Some(
                        v.parse()
                            .map_err(|_| Error::config(format!("--mtu {v:?} is not a number")))?,
                    );
                }
                other => return Err(Error::config(format!("unknown argument {other:?}; {USAGE}"))),
            }
        }
        if o.pod_cidrs.is_empty() {
            return Err(Error::config(format!("no --pod-cidr; {USAGE}")));
        }
        Ok(o)
    }
}

/// The configuration list for a node: one IPAM range set per pod CIDR (at most one per family).
pub fn render(template: &str, pod_cidrs: &[IpNet], mtu: Option<u32>) -> Result<String> {
    let mut v: Value =
        serde_json::from_str(template).map_err(|e| Error::config(format!("bad conflist template: {e}")))?;
    let v4 = pod_cidrs.iter().filter(|c| c.addr().is_ipv4()).count();
    if v4 > 1 || pod_cidrs.len() - v4 > 1 {
        return Err(Error::config("at most one IPv4 and one IPv6 pod CIDR per node"));
    }
    let plugin = v["plugins"]
        .as_array_mut()
        .and_then(|p| p.iter_mut().find(|p| p["type"] == "caracal-cni"))
        .ok_or_else(|| Error::config("the conflist template has no caracal-cni plugin"))?;
    let ranges: Vec<Value> = pod_cidrs
        .iter()
        .map(|c| json!([{ "subnet": c.trunc().to_string() }]))
        .collect();
    plugin["ipam"]["ranges"] = Value::Array(ranges);
    if let Some(m) = mtu {
        plugin["mtu"] = m.into();
    }
    // Validate what the plugin will read, with the same parser it uses on stdin.
    let mut check = plugin.clone();
    check["cniVersion"] = v["cniVersion"].clone();
    check["name"] = v["name"].clone();
    crate::config::NetConf::parse(check.to_string().as_bytes())?;
    serde_json::to_string_pretty(&v).map_err(|e| Error::internal(e.to_string()))
}

/// Copies `self_exe` to `<bin_dir>/caracal-cni` and writes `<conf_dir>/10-caracal.conflist`.
pub fn install(o: &Options, self_exe: &Path) -> Result<()> {
    let conflist = render(TEMPLATE, &o.pod_cidrs, o.mtu)?;
    let bin =
        std::fs::read(self_exe).map_err(|e| Error::io(format!("cannot read {}", self_exe.display()), e))?;
    fsutil::ensure_dir(&o.bin_dir)?;
    let target = o.bin_dir.join("caracal-cni");
    fsutil::write_atomic(&target, &bin, Durability::Durable)?;
    set_executable(&target)?;
    fsutil::ensure_dir(&o.conf_dir)?;
    fsutil::write_atomic(
        &o.conf_dir.join(CONFLIST_NAME),
        conflist.as_bytes(),
        Durability::Durable,
    )
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("cannot chmod {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn renders_the_shipped_template_for_a_dual_stack_node() {
        let cidrs = [
            "10.244.3.0/24".parse().unwrap(),
            "fd00:10:244:3::/64".parse().unwrap(),
        ];
        let out = render(TEMPLATE, &cidrs, Some(1450)).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let p = &v["plugins"][0];
        assert_eq!(p["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(p["ipam"]["ranges"][1][0]["subnet"], "fd00:10:244:3::/64");
        assert_eq!(p["mtu"], 1450);
        assert!(!out.contains("__POD_CIDR"));
    }

    #[test]
    fn bad_arguments_are_refused_with_usage() {
        assert!(
            Options::parse(&args("--mtu 1400"))
                .unwrap_err()
                .msg
                .contains("--pod-cidr")
        );
        assert!(Options::parse(&args("--pod-cidr 10.0.0.0/33")).is_err());
        assert!(
            Options::parse(&args("--pod-cidr 10.0.0.0/24 --frob"))
                .unwrap_err()
                .msg
                .contains("--frob")
        );
        let two_v4 = ["10.0.0.0/24".parse().unwrap(), "10.1.0.0/24".parse().unwrap()];
        assert!(render(TEMPLATE, &two_v4, None).is_err());
    }

    #[test]
    fn install_writes_binary_and_conflist_atomically() {
        let d = tempfile::tempdir().unwrap();
        let fake_exe = d.path().join("exe");
        std::fs::write(&fake_exe, b"\x7fELF...").unwrap();
        let o = Options::parse(&args(&format!(
            "--pod-cidr 10.244.9.0/24 --bin-dir {0}/bin --conf-dir {0}/net.d",
            d.path().display()
        )))
        .unwrap();
        install(&o, &fake_exe).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("bin/caracal-cni")).unwrap(),
            b"\x7fELF..."
        );
        let conf = std::fs::read_to_string(d.path().join("net.d").join(CONFLIST_NAME)).unwrap();
        assert!(conf.contains("10.244.9.0/24"));
        // Running it again (a DaemonSet pod restart) just replaces both.
        install(&o, &fake_exe).unwrap();
        assert_eq!(std::fs::read_dir(d.path().join("net.d")).unwrap().count(), 1);
    }
}
