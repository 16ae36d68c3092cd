//! caracal-policy: Kubernetes NetworkPolicy and the GlobalPolicy CRD, compiled into per-endpoint
//! iptables chains and ipsets, with an evaluator that explains any verdict. No I/O.
//!
//! Flow: [`model`] (desired state) → [`validate`] (into the normalized [`policy`] form, using
//! [`selector`] and [`expr`]) → [`compile`] (into a [`program::Program`]) → [`render`]ed and
//! [`apply`]-planned for the kernel by the node agent, or run packet by packet by [`eval`].
//! [`k8s`] is the one converter from Kubernetes objects to the model; [`manifests`] loads
//! manifest files through it and [`path`] runs a pod-to-pod packet through the nodes' programs,
//! for `caracal policy explain`. The conformance harness and the synthetic benchmark cluster are
//! in `caracal-testkit`.
#![forbid(unsafe_code)]

pub mod apply;
pub mod compile;
pub mod eval;
pub mod expr;
pub mod globalpolicy;
pub mod k8s;
pub mod manifests;
pub mod model;
pub mod path;
pub mod policy;
pub mod program;
pub mod render;
pub mod selector;
pub mod validate;
