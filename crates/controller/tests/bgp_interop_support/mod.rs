//! Shared harness for the BGP interop tests: reading routes and sessions from each daemon,
//! changing what a peer announces, freezing and restarting daemons, and the interop scenario
//! that runs the same checks against every peer daemon.
#![allow(dead_code)]

pub mod parse;
pub mod scenario;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use caracal::lab::{Kind, Lab};
use ipnet::IpNet;
pub use parse::{Route, Session};

/// True when the lab can run here; prints why a test is skipped otherwise.
pub fn lab_available(test: &str) -> bool {
    if !caracal::lab::available() {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            &format!("{test}: needs root and iproute2 (network namespaces)"),
        );
        return false;
    }
    for bin in ["bird", "birdc", "vtysh", "gobgpd", "gobgp", "exabgp"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
        if !found {
            caracal_testkit::require::unavailable(
                caracal_testkit::require::Need::Root,
                &format!("{test}: {bin} is not installed (scripts/install-deps.sh)"),
            );
            return false;
        }
    }
    true
}

/// `tests/topologies/<name>` in the repository.
pub fn topology(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/topologies")
        .join(name)
}

pub fn p(s: &str) -> IpNet {
    s.parse().expect("prefix literal")
}

pub fn a(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

/// A node running a BGP daemon of some kind (a peer, or the speaker under test).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub name: &'a str,
    pub kind: Kind,
}

impl Node<'_> {
    /// Every path the daemon holds (both address families).
    pub fn routes(&self, lab: &Lab) -> Result<Vec<Route>> {
        match self.kind {
            Kind::Bird => parse::bird_routes(&lab.cli(self.name, &["show", "route", "all"])?),
            Kind::Frr => {
                let mut r = parse::frr_routes(&lab.cli(self.name, &["show bgp ipv4 unicast json"])?)?;
                r.extend(parse::frr_routes(
                    &lab.cli(self.name, &["show bgp ipv6 unicast json"])?,
                )?);
                Ok(r)
            }
            Kind::Gobgp => {
                let mut r =
                    parse::gobgp_routes(&lab.cli(self.name, &["global", "rib", "-a", "ipv4", "-j"])?)?;
                r.extend(parse::gobgp_routes(
                    &lab.cli(self.name, &["global", "rib", "-a", "ipv6", "-j"])?,
                )?);
                Ok(r)
            }
            Kind::Exabgp => Ok(parse::exabgp_log(&self.exabgp_received(lab)).1),
            Kind::Caracal => parse::caracal_routes(&lab.cli(self.name, &["--json", "--routes"])?),
            Kind::Linux | Kind::K8sControlPlane | Kind::K8sNode => {
                bail!("a {:?} node has no BGP daemon", self.kind)
            }
        }
    }

    pub fn sessions(&self, lab: &Lab) -> Result<Vec<Session>> {
        match self.kind {
            Kind::Bird => Ok(parse::bird_sessions(
                &lab.cli(self.name, &["show", "protocols", "all"])?,
            )),
            Kind::Frr => parse::frr_sessions(&lab.cli(self.name, &["show bgp neighbors json"])?),
            Kind::Gobgp => parse::gobgp_sessions(&lab.cli(self.name, &["neighbor", "-j"])?),
            Kind::Exabgp => Ok(parse::exabgp_log(&self.exabgp_received(lab)).0),
            Kind::Caracal => parse::caracal_sessions(&lab.cli(self.name, &["--json"])?),
            Kind::Linux | Kind::K8sControlPlane | Kind::K8sNode => {
                bail!("a {:?} node has no BGP daemon", self.kind)
            }
        }
    }

    pub fn session(&self, lab: &Lab, neighbor: &str) -> Result<Session> {
        let n = a(neighbor);
        self.sessions(lab)?
            .into_iter()
            .find(|s| s.neighbor == Some(n))
            .with_context(|| format!("{}: no session with {neighbor}", self.name))
    }

    pub fn established(&self, lab: &Lab, neighbor: &str) -> Result<bool> {
        Ok(self.session(lab, neighbor)?.established)
    }

    /// The learned paths to `prefix`.
    pub fn learned(&self, lab: &Lab, prefix: &str) -> Result<Vec<Route>> {
        let pfx = p(prefix);
        Ok(self
            .routes(lab)?
            .into_iter()
            .filter(|r| r.prefix == pfx && r.learned)
            .collect())
    }

    /// True when the daemon holds a learned path to `prefix` via `next_hop` (when given) with
    /// exactly `as_path` (when given).
    pub fn has_route(
        &self,
        lab: &Lab,
        prefix: &str,
        next_hop: Option<&str>,
        as_path: Option<&[u32]>,
    ) -> Result<bool> {
        Ok(self.learned(lab, prefix)?.iter().any(|r| {
            next_hop.is_none_or(|nh| r.next_hops.contains(&a(nh))) && as_path.is_none_or(|ap| r.as_path == ap)
        }))
    }

    fn exabgp_received(&self, lab: &Lab) -> String {
        lab.node_dir(self.name)
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join("received.jsonl")).ok())
            .unwrap_or_default()
    }

    /// Sends ExaBGP an API command through the FIFO its API process reads.
    pub fn exabgp_command(&self, lab: &Lab, command: &str) -> Result<()> {
        let fifo = lab.node_dir(self.name)?.join("api.fifo");
        // Opening a FIFO for writing blocks until the reader is there: open it off-thread
        // with a deadline so a dead ExaBGP fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let line = format!("{command}\n");
        std::thread::spawn(move || {
            let r = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
            let _ = tx.send(r);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .context("ExaBGP API FIFO: no reader")?
            .context("writing to the ExaBGP API FIFO")
    }

    /// vtysh with several commands in one session (configuration mode).
    pub fn vtysh(&self, lab: &Lab, commands: &[&str]) -> Result<String> {
        let dir = lab.node_dir(self.name)?.display().to_string();
        let mut argv = vec!["vtysh", "--vty_socket", &dir];
        for c in commands {
            argv.push("-c");
            argv.push(c);
        }
        lab.exec_ok(self.name, &argv)
    }

    /// Every process in the node's namespace.
    pub fn pids(&self, lab: &Lab) -> Result<Vec<String>> {
        let out = Command::new("ip")
            .args(["netns", "pids", lab.netns(self.name)?])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    fn signal(&self, lab: &Lab, sig: &str) -> Result<()> {
        let pids = self.pids(lab)?;
        if pids.is_empty() {
            bail!("{}: no process to signal", self.name);
        }
        let st = Command::new("kill").arg(format!("-{sig}")).args(&pids).status()?;
        if !st.success() {
            bail!("{}: kill -{sig} failed", self.name);
        }
        Ok(())
    }

    /// Freezes the daemon (SIGSTOP): its sessions go silent, so the other side's hold timer
    /// expires.
    pub fn freeze(&self, lab: &Lab) -> Result<()> {
        self.signal(lab, "STOP")
    }

    pub fn thaw(&self, lab: &Lab) -> Result<()> {
        self.signal(lab, "CONT")
    }

    /// Kills the daemon without warning (SIGKILL: no NOTIFICATION, the kernel closes its
    /// sockets) and waits until it is gone.
    pub fn kill(&self, lab: &Lab) -> Result<()> {
        self.signal(lab, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids(lab)?.is_empty() {
            if Instant::now() > deadline {
                bail!("{}: processes survive SIGKILL", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the daemon again from its rendered config `config` (the startup-config's file
    /// name) the way the lab does, and waits until its control channel answers. BIRD is started
    /// with `-R` (graceful restart recovery). The returned guard reaps the process.
    pub fn start(&self, lab: &Lab, config: &str) -> Result<Respawned> {
        let d = lab.node_dir(self.name)?.to_path_buf();
        // The same command line the lab starts the node with.
        let argv = caracal::lab::daemon_argv(self.kind, &d.join(config), &d, None)?
            .ok_or_else(|| anyhow::anyhow!("a linux node has no daemon"))?;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(d.join("daemon.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", lab.netns(self.name)?]).args(&argv);
        if self.kind == Kind::Exabgp {
            cmd.env("exabgp.daemon.user", "root")
                .env("exabgp.daemon.drop", "false")
                .env("exabgp.api.cli", "false")
                .env("exabgp.log.destination", "stdout")
                .env("exabgp.daemon.daemonize", "false");
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: starting {}", self.name, argv[0]))?;
        let guard = Respawned(child);
        let probe: &[&str] = match self.kind {
            Kind::Bird => &["show", "status"],
            Kind::Frr => &["show version"],
            Kind::Gobgp => &["global"],
            Kind::Caracal => &["--json"],
            _ => &[],
        };
        if !probe.is_empty() {
            lab.wait_for(
                &format!("{} to answer after a restart", self.name),
                Duration::from_secs(20),
                |l| Ok(l.cli(self.name, probe).is_ok()),
            )?;
        }
        Ok(guard)
    }
}

/// A daemon the test started itself; killed (if still running) and reaped on drop. The lab's
/// teardown also kills everything in its namespaces.
pub struct Respawned(Child);

impl Drop for Respawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The kernel's route to `prefix` in `node` (`ip -j route show exact`): its gateways, or None.
pub fn kernel_route(lab: &Lab, node: &str, prefix: &str) -> Result<Option<Vec<IpAddr>>> {
    let fam = if p(prefix).addr().is_ipv6() { "-6" } else { "-4" };
    parse::kernel_route(&lab.exec_ok(node, &["ip", "-j", fam, "route", "show", "exact", prefix])?)
}

/// Waits up to `secs` for `check`, naming `what` in the error.
pub fn wait(lab: &Lab, what: &str, secs: u64, check: impl FnMut(&Lab) -> Result<bool>) -> Result<()> {
    lab.wait_for(what, Duration::from_secs(secs), check)
}

/// Asserts `check` stays true for `secs` (polled every 250 ms).
pub fn holds(lab: &Lab, what: &str, secs: f64, mut check: impl FnMut(&Lab) -> Result<bool>) -> Result<()> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if !check(lab).with_context(|| format!("checking that {what}"))? {
            bail!("expected {what} to hold for {secs} s, but it stopped");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The tail of every node's daemon log, for a failure message.
pub fn logs(lab: &Lab) -> String {
    let mut out = String::new();
    for node in lab.state().nodes.keys() {
        let log = lab.log(node);
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(25)..];
        out.push_str(&format!(
            "--- {node} (last {} lines)\n{}\n",
            tail.len(),
            tail.join("\n")
        ));
    }
    out
}
