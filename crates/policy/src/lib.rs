//! caracal-policy: Kubernetes NetworkPolicy and the GlobalPolicy CRD, compiled into per-endpoint
//! iptables chains and ipsets, with an evaluator that explains any verdict. No I/O.
//!
//! Flow: [`model`] (desired state) → [`validate`] (into the normalized [`policy`] form, using
//! [`selector`] and [`expr`]) → [`compile`] (into a [`program::Program`]) → rendered and applied
//! by the node agent, or run packet by packet by [`eval`].
#![forbid(unsafe_code)]

pub mod apply;
pub mod expr;
pub mod globalpolicy;
pub mod model;
pub mod policy;
pub mod program;
pub mod render;
pub mod selector;
pub mod validate;
