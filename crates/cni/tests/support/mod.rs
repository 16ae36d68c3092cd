//! Test support: namespaces that clean up after themselves, and a small CNI runtime that speaks
//! the exec protocol (environment, stdin configuration, stdout result) the way containerd and
//! CRI-O do through libcni: it keeps each ADD's result and hands it back as `prevResult` to
//! CHECK and DEL.
//!
//! Every plugin runs with its "host" being a node namespace the test created, never the real
//! root namespace: the driver enters the node namespace on a fresh thread and forks the plugin
//! from there, so the child starts inside it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

pub const OURS: &str = env!("CARGO_BIN_EXE_caracal-cni");
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Root is needed for namespaces; say so and let the caller return (a failure with
/// `CARACAL_REQUIRE_ROOT=1`).
#[macro_export]
macro_rules! require_root {
    () => {
        if !caracal_testkit::require::root() {
            return;
        }
    };
}

pub fn have_debian_plugins() -> bool {
    Path::new(DEBIAN_CNI_DIR).join("ptp").is_file() && Path::new(DEBIAN_CNI_DIR).join("host-local").is_file()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine for this run: tests in other processes run at the same time.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let o = ip(args);
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
pub struct Netns {
    pub name: String,
    alive: bool,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        ip_ok(&["netns", "add", &name]);
        let ns = Netns { name, alive: true };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside, returning its output.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Runs a command inside and insists that it succeeds; returns stdout.
    pub fn sh(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "in {}: {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let f_ns = File::open(&path).expect("open netns");
                setns(&f_ns, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("thread in netns")
        })
    }

    /// Deletes the namespace now (to simulate a vanished sandbox).
    pub fn delete(&mut self) {
        if self.alive {
            let _ = ip(&["netns", "del", &self.name]);
            self.alive = false;
        }
    }

    pub fn links(&self) -> Vec<String> {
        self.sh(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect()
    }

    pub fn routes(&self, v6: bool) -> String {
        self.sh(&["ip", if v6 { "-6" } else { "-4" }, "route", "show"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A node: a namespace standing in for the host, with forwarding on and an uplink holding a
/// default route (as a real node has; proxy ARP answers only for destinations it can route).
/// The uplink is a veth whose peer stays down, so nothing sent there goes anywhere.
pub struct Node {
    pub ns: Netns,
}

impl Node {
    pub fn new() -> Node {
        let ns = Netns::new("cnin");
        ns.sh(&[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ]);
        ns.sh(&["ip", "link", "set", "uplink0", "up"]);
        // The node's own address (TEST-NET-1), the source of node-to-pod traffic.
        ns.sh(&["ip", "addr", "add", "192.0.2.1/32", "dev", "uplink0"]);
        ns.sh(&["ip", "route", "add", "default", "dev", "uplink0"]);
        ns.sh(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        Node { ns }
    }

    /// Host-side interfaces a plugin created (ours: `cara*`, ptp: `veth*`).
    pub fn pod_links(&self) -> Vec<String> {
        self.ns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("cara") || l.starts_with("veth"))
            .collect()
    }
}

/// Which plugin a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Caracal,
    /// Debian's `ptp` with `host-local` IPAM.
    Ptp,
}

/// A plugin's answer.
#[derive(Debug)]
pub struct Reply {
    pub exit: i32,
    /// From spawning the plugin to its exit.
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    pub fn ok(&self) -> bool {
        self.exit == 0
    }

    /// The error code of an error result.
    pub fn code(&self) -> Option<u64> {
        self.json()["code"].as_u64()
    }

    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_owned()
    }
}

/// One invocation's parameters.
#[derive(Clone, Debug, Default)]
pub struct Call {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    /// Extra variables (the test pause hook); `None` values are removed from the environment.
    pub extra: Vec<(String, Option<String>)>,
}

/// Runs a plugin binary as a runtime does, inside `node`'s namespace.
pub fn exec_plugin(node: &Netns, bin: &str, cni_path: &str, call: &Call, stdin: &[u8]) -> Reply {
    node.run_in(|| {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", &call.command)
            .env("CNI_PATH", cni_path);
        for (k, v) in [
            ("CNI_CONTAINERID", &call.container_id),
            ("CNI_NETNS", &call.netns),
            ("CNI_IFNAME", &call.ifname),
            ("CNI_ARGS", &call.args),
        ] {
            if !v.is_empty() {
                cmd.env(k, v);
            }
        }
        for (k, v) in &call.extra {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        let o = child.wait_with_output().expect("wait plugin");
        Reply {
            exit: o.status.code().unwrap_or(-1),
            elapsed: start.elapsed(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    })
}

/// A network of one plugin on one node, with its state directories, as a runtime sees it.
pub struct Net {
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub dir: tempfile::TempDir,
    pub conf: Value,
    /// The cached ADD results, by (container, ifname), as libcni keeps them.
    cache: Mutex<HashMap<(String, String), Value>>,
}

impl Net {
    /// `v4` (and optionally `v6`) are the node's pod CIDRs.
    pub fn new(kind: Kind, version: &str, v4: &str, v6: Option<&str>) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = unique("net");
        let mut ranges = vec![json!([{ "subnet": v4 }])];
        if let Some(v6) = v6 {
            ranges.push(json!([{ "subnet": v6 }]));
        }
        let conf = match kind {
            Kind::Caracal => json!({
                "cniVersion": version, "name": name, "type": "caracal-cni", "mtu": 1500,
                "endpointsDir": dir.path().join("endpoints"),
                "ipam": { "ranges": ranges, "dataDir": dir.path().join("ipam") },
            }),
            Kind::Ptp => json!({
                "cniVersion": version, "name": name, "type": "ptp", "mtu": 1500, "ipMasq": false,
                "ipam": {
                    "type": "host-local", "ranges": ranges, "dataDir": dir.path().join("ipam"),
                    "routes": [{ "dst": "0.0.0.0/0" }],
                },
            }),
        };
        Net {
            kind,
            name,
            version: version.into(),
            dir,
            conf,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn bin(&self) -> String {
        match self.kind {
            Kind::Caracal => OURS.into(),
            Kind::Ptp => format!("{DEBIAN_CNI_DIR}/ptp"),
        }
    }

    pub fn cni_path(&self) -> String {
        DEBIAN_CNI_DIR.into()
    }

    pub fn endpoints_dir(&self) -> PathBuf {
        self.dir.path().join("endpoints")
    }

    /// The IPAM's view: how many addresses are held (ours: state.json; host-local: one file per IP).
    pub fn held_addresses(&self) -> usize {
        match self.kind {
            Kind::Caracal => {
                let p = self.dir.path().join("ipam").join(&self.name).join("state.json");
                std::fs::read(p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["allocations"].as_array().map(Vec::len))
                    .unwrap_or(0)
            }
            Kind::Ptp => std::fs::read_dir(self.dir.path().join("ipam").join(&self.name))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
                        .count()
                })
                .unwrap_or(0),
        }
    }

    pub fn call(&self, node: &Netns, call: &Call, conf: &Value) -> Reply {
        exec_plugin(
            node,
            &self.bin(),
            &self.cni_path(),
            call,
            conf.to_string().as_bytes(),
        )
    }

    fn pod_call(&self, command: &str, pod: &Pod) -> Call {
        Call {
            command: command.into(),
            container_id: pod.container_id.clone(),
            netns: pod.ns.as_ref().map(|n| n.path()).unwrap_or_default(),
            ifname: pod.ifname.clone(),
            args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME={}", pod.name),
            extra: Vec::new(),
        }
    }

    pub fn add(&self, node: &Netns, pod: &Pod) -> Reply {
        let r = self.call(node, &self.pod_call("ADD", pod), &self.conf);
        if r.ok() {
            self.cache
                .lock()
                .unwrap()
                .insert((pod.container_id.clone(), pod.ifname.clone()), r.json());
        }
        r
    }

    pub fn add_with(&self, node: &Netns, pod: &Pod, extra: Vec<(String, Option<String>)>) -> Reply {
        let mut c = self.pod_call("ADD", pod);
        c.extra = extra;
        self.call(node, &c, &self.conf)
    }

    fn with_prev(&self, pod: &Pod) -> Value {
        let mut conf = self.conf.clone();
        if let Some(prev) = self
            .cache
            .lock()
            .unwrap()
            .get(&(pod.container_id.clone(), pod.ifname.clone()))
        {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    pub fn check(&self, node: &Netns, pod: &Pod) -> Reply {
        self.call(node, &self.pod_call("CHECK", pod), &self.with_prev(pod))
    }

    pub fn del(&self, node: &Netns, pod: &Pod) -> Reply {
        let r = self.call(node, &self.pod_call("DEL", pod), &self.with_prev(pod));
        if r.ok() {
            self.cache
                .lock()
                .unwrap()
                .remove(&(pod.container_id.clone(), pod.ifname.clone()));
        }
        r
    }

    pub fn gc(&self, node: &Netns, valid: &[&Pod]) -> Reply {
        let mut conf = self.conf.clone();
        let list: Vec<Value> = valid
            .iter()
            .map(|p| json!({"containerID": p.container_id, "ifname": p.ifname}))
            .collect();
        conf["cni.dev/valid-attachments"] = Value::Array(list);
        let call = Call {
            command: "GC".into(),
            ..Call::default()
        };
        self.call(node, &call, &conf)
    }
}

/// A pod sandbox: its namespace and identity.
pub struct Pod {
    pub name: String,
    pub container_id: String,
    pub ifname: String,
    pub ns: Option<Netns>,
}

impl Pod {
    pub fn new() -> Pod {
        let ns = Netns::new("cnip");
        let name = ns.name.clone();
        Pod {
            container_id: format!("ctr{name}"),
            name,
            ifname: "eth0".into(),
            ns: Some(ns),
        }
    }

    pub fn ns(&self) -> &Netns {
        self.ns.as_ref().expect("pod namespace")
    }

    /// The pod's addresses as the plugin's result reports them.
    pub fn result_ips(result: &Value) -> Vec<IpAddr> {
        result["ips"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["address"].as_str())
                    .filter_map(|s| s.split('/').next()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A real TCP exchange: `server` listens on `addr` inside its namespace, `client` connects from
/// inside its own, sends a line and expects it echoed. Returns whether that worked within 5 s.
pub fn tcp_reachable(client: &Netns, server: &Netns, addr: IpAddr) -> bool {
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    std::thread::scope(|s| {
        let srv = s.spawn(|| {
            server.run_in(move || {
                let l = TcpListener::bind(SocketAddr::new(addr, 0)).expect("bind in server pod");
                tx.send(l.local_addr().unwrap().port()).unwrap();
                l.set_nonblocking(true).unwrap();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok((mut c, _)) = l.accept() {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 5];
                        if c.read_exact(&mut buf).is_ok() {
                            let _ = c.write_all(&buf);
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        });
        let port = rx.recv().expect("server port");
        let ok = client.run_in(move || {
            let Ok(mut c) = TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(4))
            else {
                return false;
            };
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 5];
            c.write_all(b"hello").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"hello"
        });
        srv.join().expect("server thread");
        ok
    })
}
