//! caracal-policy: Kubernetes NetworkPolicy and the GlobalPolicy CRD, compiled into per-endpoint
//! iptables chains and ipsets, with an evaluator that explains any verdict. No I/O.
#![forbid(unsafe_code)]

pub mod apply;
pub mod globalpolicy;
pub mod model;
pub mod program;
pub mod render;
