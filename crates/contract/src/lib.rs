//! caracal-contract: the one definition of everything the CNI plugin (`caracal-cni`), the
//! policy compiler (`caracal-policy`) and the node agent (`caracal`) must agree on without
//! talking to each other:
//!
//! - [`veth`]: the host-side veth's prefix (the policy dispatch chains match `cara+`) and its
//!   name, computed from the pod alone, so the compiler names the interface the plugin created;
//! - [`endpoint`]: the endpoint record the plugin writes for each attachment and the agent reads;
//! - [`route`]: the kernel route protocol numbers that mark who owns a route.
//!
//! No I/O beyond reading and writing the record's bytes; no policy or Kubernetes types, so the
//! plugin binary stays lean.
#![forbid(unsafe_code)]

pub mod endpoint;
pub mod route;
pub mod veth;

pub use endpoint::{Endpoint, PodKey};
pub use route::{BGP_ROUTE_PROTOCOL, CNI_ROUTE_PROTOCOL};
pub use veth::{IFACE_PREFIX, host_veth_name, pod_veth_name};
