//! The node's policy dataplane: runs the kernel tools that program a compiled
//! [`caracal_policy::program::Program`].
//!
//! - [`netns`]: running a command or a closure inside a network namespace, and namespaces that
//!   remove themselves on drop.
//! - [`backend`]: which iptables backend (legacy or nft) the node uses, detected as Felix and
//!   kubernetes-sigs/iptables-wrappers do.
//! - [`applier`]: incremental apply: read back, diff, one `iptables-restore --noflush` per table
//!   and family, `ipset restore` before and after.
//! - [`nat`]: the outgoing-NAT chain and sets in the nat table ([`crate::nat`]), read back and
//!   repaired on every apply.
//!
//! The node lab and the node-mode conformance prober built on these are in
//! [`crate::testbed`].

pub mod applier;
pub mod backend;
pub mod nat;
pub mod netns;

use caracal_policy::{compile::Delta, program::Program};

pub use applier::{Applier, ApplyStats};

/// What the agent's policy reconciler needs from a policy dataplane: the compiled program goes
/// in whole or as the incremental compiler's delta, and the backend renders, diffs and programs
/// it its own way. iptables + ipset ([`Applier`]) is the one backend today; another (nftables)
/// implements this trait without touching the compiler or the reconciler.
pub trait Dataplane: Send {
    /// Programs `program`, changing only what differs from what the kernel holds.
    fn apply(&mut self, program: &Program) -> Result<ApplyStats>;
    /// Programs `program` when `delta` names everything that changed since the last apply.
    fn apply_delta(&mut self, program: &Program, delta: &Delta) -> Result<ApplyStats>;
    /// Forgets what was programmed: the next apply reads the kernel back first.
    fn resync(&mut self);
}

/// What failed while programming or probing the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("network namespace {name}: {reason}")]
    Netns { name: String, reason: String },
    #[error("no {0} binary found in /usr/sbin, /sbin, /usr/bin, /bin or PATH")]
    MissingTool(String),
    #[error(transparent)]
    Render(#[from] caracal_policy::render::Error),
    #[error("{0}")]
    Lab(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
