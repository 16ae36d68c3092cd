//! Running commands and closures inside a network namespace.
//!
//! A thread can enter a network namespace on its own (`setns(CLONE_NEWNET)` affects only the
//! calling thread), and processes and sockets it creates stay in that namespace. So instead of
//! `ip netns exec` (which also remounts /sys) each call runs on a short-lived thread that first
//! enters the namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};

use super::{Error, Result};

/// Where `ip netns add NAME` keeps the namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Runs `f` on a thread inside namespace `name` (or on a plain thread when `None`).
pub fn in_netns<T: Send>(name: Option<&str>, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(name) = name {
                let file = std::fs::File::open(netns_path(name)).map_err(|e| Error::Netns {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                    name: name.to_owned(),
                    reason: format!("setns: {e}"),
                })?;
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Netns {
                name: name.unwrap_or("(current)").to_owned(),
                reason: "worker thread panicked".into(),
            })
        })
    })
}

/// Runs `program args...` in namespace `ns`, feeding `stdin`; returns stdout, or an error with
/// stderr when the command fails.
pub fn run(ns: Option<&str>, program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let cmd_line = || format!("{} {}", program.display(), args.join(" "));
    let output = in_netns(ns, || -> Result<std::process::Output> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: cmd_line(),
                source,
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A tool that fails early closes its stdin; its stderr says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output().map_err(|source| Error::Spawn {
            cmd: cmd_line(),
            source,
        })
    })??;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            cmd: cmd_line(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Finds a tool in the usual system directories, then in PATH.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn tool(name: &str) -> Result<PathBuf> {
    find_tool(name).ok_or_else(|| Error::MissingTool(name.to_owned()))
}

/// A network namespace created with `ip netns add`, deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            return Err(Error::Netns {
                name: name.to_owned(),
                reason: "invalid name".into(),
            });
        }
        run(None, &tool("ip")?, &["netns", "add", name], None)?;
        let ns = Netns {
            name: name.to_owned(),
        };
        // Loopback up: servers and probes inside use it, and iptables does not care.
        run(Some(name), &tool("ip")?, &["link", "set", "lo", "up"], None)?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(ip) = tool("ip") {
            let _ = run(None, &ip, &["netns", "del", &self.name], None);
        }
    }
}

/// True when running as root (namespaces, iptables and ipset need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A name unique to this process and call, for namespaces, links, chains and sets in tests.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}", std::process::id())
}
