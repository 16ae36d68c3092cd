//! caracal-cni: point-to-point /32 pod networking with crash-safe IPAM.
//!
//! Pure core: `env`, `config`, `spec`, `ipam::pool`. Thin shell: `ipam::store`
//! (files and locks), `ipam::delegate` (other plugins), `dataplane` (netlink), `endpoint`.
//! What the node agent relies on (the host veth name, the endpoint record, the route protocol)
//! is defined once in `caracal_contract`.
#![forbid(unsafe_code)]

pub mod config;
pub mod dataplane;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod fsutil;
pub mod install;
pub mod ipam;
pub mod netns;
pub mod plugin;
pub mod spec;

pub use error::{Code, Error, Result};
