//! The CNI exec protocol's environment (SPEC.md "Parameters"): which variables each command needs.

use crate::error::{Code, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_COMMAND: unknown command {other:?} (expected ADD, DEL, CHECK, GC, STATUS or VERSION)"
                    ),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// The invocation's parameters, validated for the command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    pub container_id: String,
    /// Empty on DEL when the runtime no longer knows the namespace.
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub path: Vec<String>,
}

impl Env {
    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` from `CNI_ARGS`, when both are present.
    pub fn pod(&self) -> Option<(String, String)> {
        let get = |k: &str| {
            self.args
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        Some((get("K8S_POD_NAMESPACE")?, get("K8S_POD_NAME")?))
    }
}

/// Reads the command and its parameters through `get` (the process environment in `main`).
pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<(Command, Env)> {
    let command = get("CNI_COMMAND")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::new(Code::InvalidEnv, "CNI_COMMAND is not set"))?;
    let command = Command::parse(&command)?;
    let need = |k: &str| -> Result<String> {
        get(k).filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::new(
                Code::InvalidEnv,
                format!("{k} is not set (required for {})", command.as_str()),
            )
        })
    };
    let opt = |k: &str| get(k).unwrap_or_default();
    let mut env = Env::default();
    match command {
        Command::Add | Command::Check => {
            env.container_id = need("CNI_CONTAINERID")?;
            env.netns = need("CNI_NETNS")?;
            env.ifname = need("CNI_IFNAME")?;
        }
        Command::Del => {
            env.container_id = need("CNI_CONTAINERID")?;
            env.netns = opt("CNI_NETNS");
            env.ifname = need("CNI_IFNAME")?;
        }
        Command::Gc | Command::Status | Command::Version => {}
    }
    if !env.container_id.is_empty() {
        validate_container_id(&env.container_id)?;
    }
    if !env.ifname.is_empty() {
        validate_ifname(&env.ifname)?;
    }
    env.args = parse_args(&opt("CNI_ARGS"))?;
    env.path = opt("CNI_PATH")
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((command, env))
}

/// SPEC.md: a container ID is `[A-Za-z0-9][A-Za-z0-9_.-]*`.
fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_CONTAINERID: invalid characters in {id:?}"),
        ));
    }
    Ok(())
}

/// The kernel's rules for interface names (dev_valid_name).
fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_IFNAME: {name:?} is not a valid interface name"),
        ));
    }
    Ok(())
}

/// `CNI_ARGS` is `K=V;K2=V2`.
fn parse_args(s: &str) -> Result<Vec<(String, String)>> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::new(Code::InvalidEnv, format!("CNI_ARGS: {kv:?} is not KEY=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn add_without_netns_names_the_variable() {
        let e = parse(env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidEnv);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
    }

    #[test]
    fn del_accepts_missing_netns_and_parses_k8s_args() {
        let (cmd, e) = parse(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]))
        .unwrap();
        assert_eq!(cmd, Command::Del);
        assert_eq!(e.pod(), Some(("ns".into(), "p".into())));
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn unknown_command_and_bad_ids_are_invalid_env() {
        assert_eq!(
            parse(env(&[("CNI_COMMAND", "FROB")])).unwrap_err().code,
            Code::InvalidEnv
        );
        let e = parse(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "-bad/id"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap_err();
        assert!(e.msg.contains("CNI_CONTAINERID"));
        let e = parse(env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "ok"),
            ("CNI_IFNAME", "way-too-long-ifname"),
        ]))
        .unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
    }
}
