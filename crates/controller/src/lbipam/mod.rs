//! LoadBalancer IP allocation (LB IPAM): hands addresses out of [`crd::LoadBalancerPool`]s to
//! `type: LoadBalancer` Services and writes them to `status.loadBalancer.ingress`.
//!
//! ```text
//!  Lease election (one agent leads) ─► while leading:
//!    watch Services, LoadBalancerPools (triggers) ─► list both ─► pool::check_pools
//!        ─► allocate::allocate (pure) ─► patch Service status, Events, pool status
//! ```
//!
//! - [`crd`]: the LoadBalancerPool type, which derives `crds/loadbalancerpool.yaml`.
//! - [`pool`], [`service`]: pools and Services as the allocator sees them.
//! - [`allocate`]: the allocator (pure, table-tested).
//! - [`report`]: pool status conditions and once-only Warning Events (pure).
//! - [`election`]: the Lease election's state machine (pure); [`lease`] its I/O.
//! - [`controller`]: the loop that ties them together; the agent runs it with `lb_ipam: true`.
//!
//! The state is the Services' status: nothing about assignments lives in memory, so a
//! restarted or newly elected controller computes the same addresses and moves none.

pub mod allocate;
pub mod controller;
pub mod crd;
pub mod election;
pub mod lease;
pub mod pool;
pub mod report;
pub mod service;

pub use controller::{Settings, run};
pub use crd::{LoadBalancerPool, LoadBalancerPoolSpec, LoadBalancerPoolStatus};

/// The `spec.loadBalancerClass` caracal serves (as well as Services without a class).
pub const LB_CLASS: &str = "caracal.dev/lb";
/// The annotation requesting addresses: a comma list, at most one per family.
pub const LB_IPS_ANNOTATION: &str = "caracal.dev/loadBalancerIPs";
/// The Lease (in the agent's namespace) whose holder is the one allocating agent.
pub const LEASE_NAME: &str = "caracal-lb-ipam";
/// The Events' reporting controller.
pub const REPORTER: &str = "caracal.dev/lb-ipam";
