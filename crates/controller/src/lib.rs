//! caracal: the node agent and CLI.
//!
//! - `lab`: brings containerlab-format topologies up as network namespaces on one machine.
#![forbid(unsafe_code)]

pub mod lab;
