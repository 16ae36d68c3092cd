//! Rendering a [`crate::program::Program`] to the text the kernel tools read, and parsing what
//! they print back.
//!
//! - [`iptables`]: `iptables-restore` input per family and table, with a hash comment
//!   (`cara:<hash>`) on the first rule of every caracal chain and on each of caracal's rules in
//!   built-in chains, so that read-back never has to parse rule text; and a parser for
//!   `iptables-save` output that extracts chains and those hashes.
//! - [`ipset`]: `ipset restore` input, and a parser for `ipset save` output.
//!
//! Everything here is pure: the applier in the controller runs the tools.

pub mod ipset;
pub mod iptables;

use crate::program::Family;

/// Why a program cannot be rendered. Each variant names the chain, rule or set at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("chain name {name:?} must start with {prefix:?} and be at most {max} bytes")]
    ChainName {
        name: String,
        prefix: &'static str,
        max: usize,
    },
    #[error("set name {name:?} must start with {prefix:?} and be at most {max} bytes")]
    SetName {
        name: String,
        prefix: &'static str,
        max: usize,
    },
    #[error("chain {chain:?} rule {index}: {reason}")]
    Rule {
        chain: String,
        index: usize,
        reason: String,
    },
    #[error("hook into {builtin:?}: {reason}")]
    Hook { builtin: String, reason: String },
    #[error("set {set:?}: {reason}")]
    Set { set: String, reason: String },
    #[error("cannot parse {tool} output line {line}: {text:?}")]
    Parse {
        tool: &'static str,
        line: usize,
        text: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The rule both kinds of kernel object name follow here: caracal's prefix, the kernel's length
/// limit, and printable characters other than quotes (they are written unquoted into
/// `iptables-restore` and `ipset restore` input).
fn valid_name(name: &str, prefix: &str, max: usize) -> bool {
    name.starts_with(prefix)
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'')
}

/// The `ipset` family keyword and the `iptables-restore` binary stem of a family.
pub fn family_names(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("inet", "iptables"),
        Family::V6 => ("inet6", "ip6tables"),
    }
}
