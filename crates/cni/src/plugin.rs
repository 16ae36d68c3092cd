//! The commands: what ADD, DEL, CHECK, GC, STATUS and VERSION do, and the rollback of a failed
//! ADD. `main` only reads the process environment and stdin and prints what this returns.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::config::{Ipam, NetConf, peek_version};
use crate::dataplane::{self, GATEWAY_V4, GATEWAY_V6, HOST_MAC, Netlink, Spec};
use crate::endpoint::{self, Endpoint, PodKey};
use crate::env::{self, Command, Env};
use crate::error::{Code, Error, Result};
use crate::ipam::{delegate, pool::AllocError};
use crate::netns;
use crate::spec::{Interface, IpConfig, Route, SUPPORTED_VERSIONS, Version};

/// Test-only hook: `CARACAL_CNI_TEST_PAUSE=<stage>:<file>` makes ADD create `<file>` when it
/// reaches `<stage>` (`after-ipam` or `after-veth`) and then sleep for 30 s, so that a test can
/// kill the plugin in the middle of ADD. Without the variable, nothing happens.
pub const TEST_PAUSE_ENV: &str = "CARACAL_CNI_TEST_PAUSE";

/// What the process should print and exit with.
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: String,
}

/// Runs one invocation. `get` reads the environment; `stdin` is the configuration.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = peek_version(stdin)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".into());
    match dispatch(&get, stdin) {
        Ok(Some(v)) => Outcome {
            exit_code: 0,
            stdout: v.to_string(),
        },
        Ok(None) => Outcome {
            exit_code: 0,
            stdout: String::new(),
        },
        Err(e) => Outcome {
            // Well-known codes double as the exit status; runtimes only test for non-zero.
            exit_code: if e.code.as_u32() < 256 {
                e.code.as_u32() as i32
            } else {
                1
            },
            stdout: e.to_json(&version).to_string(),
        },
    }
}

fn dispatch(get: &impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<Value>> {
    let (command, env) = env::parse(get)?;
    if command == Command::Version {
        let v = peek_version(stdin).unwrap_or_else(|| "1.1.0".into());
        return Ok(Some(
            json!({"cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS}),
        ));
    }
    let conf = NetConf::parse(stdin)?;
    match command {
        Command::Check if conf.version < Version::V0_4_0 => {
            return Err(Error::new(
                Code::IncompatibleVersion,
                "config version does not allow CHECK",
            ));
        }
        Command::Gc | Command::Status if conf.version < Version::V1_1_0 => {
            return Err(Error::new(
                Code::IncompatibleVersion,
                format!(
                    "config version {} does not allow {}",
                    conf.cni_version,
                    command.as_str()
                ),
            ));
        }
        _ => {}
    }
    if command == Command::Status {
        return status(&conf, &env, stdin).map(|()| None);
    }
    let pause = get(TEST_PAUSE_ENV);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("cannot start runtime", e))?;
    rt.block_on(async {
        match command {
            Command::Add => add(&conf, &env, stdin, pause.as_deref()).await.map(Some),
            Command::Del => del(&conf, &env, stdin).await.map(|()| None),
            Command::Check => check(&conf, &env, stdin).await.map(|()| None),
            Command::Gc => gc(&conf, &env, stdin).await.map(|()| None),
            Command::Status | Command::Version => Ok(None),
        }
    })
}

fn host_if(env: &Env) -> String {
    let pod = env.pod();
    caracal_contract::host_veth_name(
        pod.as_ref().map(|(n, p)| (n.as_str(), p.as_str())),
        &env.container_id,
        &env.ifname,
    )
}

fn owner(conf: &NetConf, env: &Env) -> String {
    dataplane::owner_mark(&conf.name, &env.container_id, &env.ifname)
}

fn test_pause(pause: Option<&str>, stage: &str) {
    let Some((at, file)) = pause.and_then(|p| p.split_once(':')) else {
        return;
    };
    if at == stage {
        let _ = std::fs::write(file, stage);
        std::thread::sleep(Duration::from_secs(30));
    }
}

fn allocate(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(Vec<IpAddr>, Option<Value>)> {
    match &conf.ipam {
        Ipam::Builtin(b) => {
            let mut store = b.open(&conf.name)?;
            let ips = store
                .state
                .allocate(&b.pools, &env.container_id, &env.ifname)
                .map_err(|AllocError::Exhausted(set)| {
                    Error::new(
                        Code::Internal,
                        format!("no free address left in pool {set} of network {}", conf.name),
                    )
                })?;
            store.commit()?;
            Ok((ips, None))
        }
        Ipam::Delegate { plugin } => {
            let r = delegate::add(plugin, env, stdin)?;
            Ok((r.ips.iter().map(|i| i.address.addr()).collect(), r.dns))
        }
    }
}

fn release(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<()> {
    match &conf.ipam {
        Ipam::Builtin(b) => {
            let mut store = b.open(&conf.name)?;
            if !store.state.release(&env.container_id, &env.ifname).is_empty() {
                store.commit()?;
            }
            Ok(())
        }
        Ipam::Delegate { plugin } => delegate::exec(plugin, Command::Del, env, stdin).map(|_| ()),
    }
}

/// What a failed ADD must undo; each step is recorded as soon as it may have happened.
#[derive(Default)]
struct Rollback {
    ipam: bool,
    veth: Option<String>,
    endpoint: bool,
}

impl Rollback {
    async fn undo(self, conf: &NetConf, env: &Env, stdin: &[u8], host: &Netlink) {
        // Best effort: the ADD's own error is what the runtime must see.
        if self.endpoint {
            let _ = endpoint::remove(&conf.endpoints_dir, &env.container_id, &env.ifname);
        }
        if let Some(h) = &self.veth {
            let _ = dataplane::delete_host_veth(host, h, &owner(conf, env)).await;
        }
        if self.ipam {
            let _ = release(conf, env, stdin);
        }
    }
}

async fn add(conf: &NetConf, env: &Env, stdin: &[u8], pause: Option<&str>) -> Result<Value> {
    let pod_ns = netns::open(&env.netns)?;
    let host = Netlink::connect()?;
    let pod = Netlink::connect_in(&pod_ns)?;
    dataplane::ensure_absent(&pod, &env.ifname).await?;
    let host_if = host_if(env);
    let owner = owner(conf, env);
    let mut rb = Rollback::default();
    let built = async {
        rb.ipam = true;
        let (ips, dns) = allocate(conf, env, stdin)?;
        test_pause(pause, "after-ipam");
        let spec = Spec {
            host_if: &host_if,
            ifname: &env.ifname,
            mtu: conf.mtu,
            ips: &ips,
            owner: &owner,
        };
        rb.veth = Some(host_if.clone());
        let host_index = dataplane::create_veth(&host, &pod_ns, &spec).await?;
        test_pause(pause, "after-veth");
        dataplane::setup_host(&host, host_index, &spec).await?;
        let b = dataplane::setup_pod(&pod, &pod_ns, &spec).await?;
        rb.endpoint = true;
        let ep = Endpoint {
            pod: env.pod().map(|(namespace, name)| PodKey { namespace, name }),
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
            iface: host_if.clone(),
            mac: b.pod_mac.clone(),
            ips: ips.clone(),
            netns: env.netns.clone(),
            network: conf.name.clone(),
        };
        endpoint::write(&conf.endpoints_dir, &ep)?;
        Ok::<_, Error>((ips, dns, b.pod_mac))
    }
    .await;
    let (ips, dns, pod_mac) = match built {
        Ok(v) => v,
        Err(e) => {
            rb.undo(conf, env, stdin, &host).await;
            return Err(e);
        }
    };
    let mut res = conf.prev_result.clone().unwrap_or_default();
    let base = res.interfaces.len();
    res.interfaces.push(Interface {
        name: host_if,
        mac: dataplane::mac_string(&HOST_MAC),
        mtu: Some(conf.mtu),
        sandbox: String::new(),
    });
    res.interfaces.push(Interface {
        name: env.ifname.clone(),
        mac: pod_mac,
        mtu: Some(conf.mtu),
        sandbox: env.netns.clone(),
    });
    for ip in &ips {
        let (len, gw): (u8, IpAddr) = if ip.is_ipv4() {
            (32, GATEWAY_V4.into())
        } else {
            (128, GATEWAY_V6.into())
        };
        res.ips.push(IpConfig {
            address: IpNet::new(*ip, len).map_err(|e| Error::internal(e.to_string()))?,
            gateway: Some(gw),
            interface: Some(base + 1),
        });
        let dst: IpNet = if ip.is_ipv4() {
            "0.0.0.0/0".parse()
        } else {
            "::/0".parse()
        }
        .map_err(|e: ipnet::AddrParseError| Error::internal(e.to_string()))?;
        res.routes.push(Route { dst, gw: Some(gw) });
    }
    if res.dns.is_none() {
        res.dns = dns;
    }
    Ok(res.to_json(&conf.cni_version))
}

async fn del(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<()> {
    let record = endpoint::read(&conf.endpoints_dir, &env.container_id, &env.ifname);
    let host_if = record.map(|r| r.iface).unwrap_or_else(|| host_if(env));
    let host = Netlink::connect()?;
    let deleted = dataplane::delete_host_veth(&host, &host_if, &owner(conf, env)).await?;
    if !deleted && !env.netns.is_empty() {
        // A vanished namespace took its interfaces with it: nothing left to do there.
        if let Ok(ns) = netns::open(&env.netns) {
            let pod = Netlink::connect_in(&ns)?;
            dataplane::delete_pod_if(&pod, &env.ifname).await?;
        }
    }
    release(conf, env, stdin)?;
    endpoint::remove(&conf.endpoints_dir, &env.container_id, &env.ifname)
}

async fn check(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<()> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| Error::config("CHECK needs prevResult (the result of ADD)"))?;
    let idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && (i.sandbox.is_empty() || i.sandbox == env.netns))
        .ok_or_else(|| {
            Error::config(format!(
                "prevResult has no interface {} in {}",
                env.ifname, env.netns
            ))
        })?;
    let ips: Vec<IpAddr> = prev
        .ips
        .iter()
        .filter(|i| i.interface == Some(idx))
        .map(|i| i.address.addr())
        .collect();
    let host_if = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name.starts_with(caracal_contract::IFACE_PREFIX))
        .map(|i| i.name.clone())
        .unwrap_or_else(|| host_if(env));
    let mut problems = Vec::new();
    match &conf.ipam {
        Ipam::Builtin(b) => {
            let store = b.open(&conf.name)?;
            let held: BTreeSet<IpAddr> = store
                .state
                .held_by(&env.container_id, &env.ifname)
                .into_iter()
                .collect();
            if held != ips.iter().copied().collect() {
                problems.push(format!(
                    "IPAM holds {held:?} for this attachment, prevResult says {ips:?}"
                ));
            }
        }
        Ipam::Delegate { plugin } => {
            delegate::exec(plugin, Command::Check, env, stdin)?;
        }
    }
    let pod_ns = netns::open(&env.netns)?;
    let host = Netlink::connect()?;
    let pod = Netlink::connect_in(&pod_ns)?;
    problems.extend(dataplane::check(&host, &pod, &host_if, &env.ifname, &ips).await?);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            Code::Internal,
            format!("CHECK failed: {}", problems.join("; ")),
        ))
    }
}

async fn gc(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<()> {
    let valid: BTreeSet<(String, String)> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| Error::config("GC needs cni.dev/valid-attachments"))?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    // Spec: GC goes on after an error and reports the first one at the end.
    let mut first_err = match &conf.ipam {
        Ipam::Builtin(b) => {
            let r = b.open(&conf.name).and_then(|mut store| {
                if !store.state.gc(&valid).is_empty() {
                    store.commit()?;
                }
                Ok(())
            });
            r.err()
        }
        Ipam::Delegate { plugin } => delegate::exec(plugin, Command::Gc, env, stdin).err(),
    };
    let host = Netlink::connect()?;
    for ep in endpoint::list(&conf.endpoints_dir) {
        if ep.network != conf.name || valid.contains(&(ep.container_id.clone(), ep.ifname.clone())) {
            continue;
        }
        let r = async {
            let mark = dataplane::owner_mark(&conf.name, &ep.container_id, &ep.ifname);
            dataplane::delete_host_veth(&host, &ep.iface, &mark).await?;
            endpoint::remove(&conf.endpoints_dir, &ep.container_id, &ep.ifname)
        }
        .await;
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    // Veths of ADDs that died before writing their record: found by their owner mark.
    match dataplane::owned_links(&host).await {
        Ok(links) => {
            for (index, mark) in links {
                let Some((net, cid, ifname)) = dataplane::parse_owner_mark(&mark) else {
                    continue;
                };
                if net == conf.name
                    && !valid.contains(&(cid.to_owned(), ifname.to_owned()))
                    && let Err(e) = host.del_link(index).await
                {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(e) => {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn status(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<()> {
    if let Some(f) = &conf.readiness_file
        && !f.exists()
    {
        return Err(Error::new(
            Code::NotAvailable,
            format!("caracal agent not ready: {} does not exist", f.display()),
        ));
    }
    match &conf.ipam {
        Ipam::Builtin(b) => {
            b.open(&conf.name)
                .map_err(|e| Error::new(Code::NotAvailable, format!("IPAM store unusable: {e}")))?;
            Ok(())
        }
        Ipam::Delegate { plugin } => delegate::exec(plugin, Command::Status, env, stdin).map(|_| ()),
    }
}
