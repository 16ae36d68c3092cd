//! Delegation to another IPAM plugin (for example `host-local`) found on `CNI_PATH`, the way
//! reference plugins call theirs: same environment but the command, same stdin configuration.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Proc, Stdio};

use serde_json::Value;

use crate::env::{Command, Env};
use crate::error::{Code, Error, Result};
use crate::spec::CniResult;

fn find(plugin: &str, env: &Env) -> Result<PathBuf> {
    if env.path.is_empty() {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_PATH is not set (needed to find IPAM plugin {plugin:?})"),
        ));
    }
    env.path
        .iter()
        .map(|d| PathBuf::from(d).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::config(format!(
                "IPAM plugin {plugin:?} not found in CNI_PATH {}",
                env.path.join(":")
            ))
        })
}

/// Runs the delegate; `Ok(stdout)` on exit status 0, its own error (code and message) otherwise.
pub fn exec(plugin: &str, cmd: Command, env: &Env, stdin: &[u8]) -> Result<Vec<u8>> {
    let bin = find(plugin, env)?;
    let mut child = Proc::new(&bin)
        .env("CNI_COMMAND", cmd.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io(format!("cannot run IPAM plugin {}", bin.display()), e))?;
    if let Some(mut s) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe; its exit status tells more.
        let _ = s.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("IPAM plugin {} failed", bin.display()), e))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let msg = v["msg"].as_str().unwrap_or("no error message").to_owned();
    let code = match v["code"].as_u64() {
        Some(1) => Code::IncompatibleVersion,
        Some(2) => Code::UnsupportedField,
        Some(3) => Code::UnknownContainer,
        Some(4) => Code::InvalidEnv,
        Some(5) => Code::Io,
        Some(6) => Code::Decode,
        Some(7) => Code::InvalidConfig,
        Some(11) => Code::TryAgainLater,
        Some(50) => Code::NotAvailable,
        _ => Code::Internal,
    };
    Err(Error::with_details(
        code,
        format!("IPAM plugin {plugin} {} failed: {msg}", cmd.as_str()),
        v["details"].as_str().unwrap_or(""),
    ))
}

/// ADD through the delegate: its result's addresses.
pub fn add(plugin: &str, env: &Env, stdin: &[u8]) -> Result<CniResult> {
    let out = exec(plugin, Command::Add, env, stdin)?;
    let v: Value = serde_json::from_slice(&out).map_err(|e| {
        Error::with_details(
            Code::Decode,
            format!("cannot decode IPAM plugin {plugin} result"),
            e,
        )
    })?;
    let r = CniResult::from_value(&v)?;
    if r.ips.is_empty() {
        return Err(Error::internal(format!(
            "IPAM plugin {plugin} returned no addresses"
        )));
    }
    Ok(r)
}
