//! caracal-bgp: a BGP-4 speaker.
//!
//! The protocol core (`wire`, `fsm`, `rib`) is plain functions over data with no I/O; the tokio
//! driver that owns sockets and timers sits at the edge.
#![deny(unsafe_code)]

pub mod config;
pub mod control;
pub mod fsm;
pub mod gr;
pub mod kernel;
pub mod md5;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod wire;
