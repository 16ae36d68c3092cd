//! caracal: the node agent and CLI.
//!
//! - [`lab`]: brings containerlab-format topologies up as network namespaces on one machine.
//! - [`cmd`]: one module per `caracal` subcommand.
#![forbid(unsafe_code)]

pub mod cmd;
pub mod dataplane;
pub mod lab;
pub mod logging;
