//! Test beds: real systems the tests, the lab and `caracal conformance --mode node` run against.
//! Not the agent and not an API: nothing in the agent uses them, and they may change with the
//! tests.
//!
//! - [`kubetest`]: a real etcd and kube-apiserver on loopback (skipped unless built, see
//!   `CARACAL_REQUIRE_KUBE`).
//! - [`nodelab`]: a node namespace with one namespace per pod, servers and real probes.
//! - [`prober`]: the node-mode conformance prober on top of the node lab and the applier.

pub mod kubetest;
pub mod nodelab;
pub mod prober;
