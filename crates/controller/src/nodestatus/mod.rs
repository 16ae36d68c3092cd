//! The node status a user reads with kubectl: each agent writes a CaracalNodeStatus named
//! after its node (BGP sessions, originated routes, policy state) at a bounded rate, and an
//! Event on the Node when a BGP session goes down. `caracal status` reads them all.
//!
//! - [`crd`]: the CRD's types (`crds/caracalnodestatus.yaml` is generated from them);
//! - [`events`]: the core/v1 Events the agent records (`BGPSessionDown`, `Invalid`);
//! - [`report`]: the status built from the agent's metrics, compared, sessions gone down (pure);
//! - [`writer`]: the task that writes it through the API server.

pub mod crd;
pub mod events;
pub mod report;
pub mod writer;

pub use crd::{CaracalNodeStatus, NodeStatus};
