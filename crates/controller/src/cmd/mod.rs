//! One module per `caracal` subcommand: its arguments and its entry point.

pub mod agent;
pub mod bgp;
pub mod conformance;
pub mod lab;
pub mod policy;
pub mod status;
