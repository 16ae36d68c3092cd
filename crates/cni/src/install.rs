//! `caracal-cni install`: what the DaemonSet's init container runs on each node (as its
//! command, with no shell: the caracal image has none). It copies the plugin binary into the
//! runtime's CNI bin directory and, given `--pod-cidr`, writes the network configuration list
//! rendered from `crates/cni/cni-conflist.json` with the node's pod CIDRs; each file atomically
//! (a runtime reading the directory at that moment sees the old file or the new one). Without
//! `--pod-cidr` only the binary is installed: the agent writes the list once it knows the
//! node's pod CIDRs.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fsutil::{self, Durability};

/// The configuration list template (also copied into the caracal image as
/// `/etc/caracal/cni-conflist.json`), the single source for what nodes get.
pub const TEMPLATE: &str = include_str!("../cni-conflist.json");
pub const CONFLIST_NAME: &str = "10-caracal.conflist";

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub pod_cidrs: Vec<IpNet>,
    pub mtu: Option<u32>,
}

pub const USAGE: &str = "usage: caracal-cni install [--pod-cidr CIDR [--pod-cidr CIDR] [--mtu N]] \
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
        if o.pod_cidrs.is_empty() && o.mtu.is_some() {
            return Err(Error::config(format!(
                "--mtu without --pod-cidr writes nothing; {USAGE}"
            )));
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

/// Copies `self_exe` to `<bin_dir>/caracal-cni` and, when there are pod CIDRs, writes
/// `<conf_dir>/10-caracal.conflist`. Returns the paths written.
pub fn install(o: &Options, self_exe: &Path) -> Result<Vec<PathBuf>> {
    // Rendered first: a bad template or CIDR set leaves the node untouched.
    let conflist = if o.pod_cidrs.is_empty() {
        None
    } else {
        Some(render(TEMPLATE, &o.pod_cidrs, o.mtu)?)
    };
    let bin =
        std::fs::read(self_exe).map_err(|e| Error::io(format!("cannot read {}", self_exe.display()), e))?;
    fsutil::ensure_dir(&o.bin_dir)?;
    let target = o.bin_dir.join("caracal-cni");
    fsutil::write_atomic_mode(&target, &bin, Durability::Durable, Some(0o755))?;
    let mut written = vec![target];
    if let Some(conflist) = conflist {
        fsutil::ensure_dir(&o.conf_dir)?;
        let path = o.conf_dir.join(CONFLIST_NAME);
        fsutil::write_atomic(&path, conflist.as_bytes(), Durability::Durable)?;
        written.push(path);
    }
    Ok(written)
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
        assert!(Options::parse(&[]).unwrap().pod_cidrs.is_empty());
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

    #[test]
    fn install_without_pod_cidr_installs_only_the_binary_executable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let fake_exe = d.path().join("exe");
        std::fs::write(&fake_exe, b"\x7fELF new").unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        // An older plugin in place, as a read-only file (a rename replaces it anyway).
        let target = d.path().join("bin/caracal-cni");
        std::fs::write(&target, b"\x7fELF old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o555)).unwrap();
        let o = Options::parse(&args(&format!(
            "--bin-dir {0}/bin --conf-dir {0}/net.d",
            d.path().display()
        )))
        .unwrap();
        assert_eq!(install(&o, &fake_exe).unwrap(), std::slice::from_ref(&target));
        assert_eq!(std::fs::read(&target).unwrap(), b"\x7fELF new");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(
            !d.path().join("net.d").exists(),
            "no config list without a pod CIDR"
        );
        // Nothing but the binary in the bin folder: the temporary file was renamed into place.
        let names: Vec<_> = std::fs::read_dir(d.path().join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["caracal-cni"]);
    }
}
