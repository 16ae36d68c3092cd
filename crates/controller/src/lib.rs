//! caracal: the node agent and CLI.
//!
//! - [`lab`]: brings containerlab-format topologies up as network namespaces on one machine.
//! - [`bgpapi`]: BGP configured with Kubernetes objects (BGPConfiguration, BGPPeer) and peer
//!   selection.
//! - [`cmd`]: one module per `caracal` subcommand.
//! - [`dataplane`]: programs the compiled policy into iptables and ipset; the node test bed.
//! - [`datastore`]: the desired-state model, from the Kubernetes API or a manifest directory.
//! - [`lbipam`]: LoadBalancer IP allocation from LoadBalancerPools, by the elected agent.
//! - [`metrics`]: the agent's Prometheus metrics and the small HTTP server of its endpoints.
//! - [`nodestatus`]: the CaracalNodeStatus each agent writes, and its BGP session events.
//! - [`nat`]: outgoing NAT for pods' traffic leaving the cluster's ranges.
//! - [`services`]: which Service prefixes a node advertises over BGP.
//! - [`testbed`]: test beds, not the agent: a real kube-apiserver, the node lab, the node-mode
//!   conformance prober.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bgpapi;
pub mod cmd;
pub mod crds;
pub mod dataplane;
pub mod datastore;
pub mod lab;
pub mod lbipam;
pub mod logging;
pub mod metrics;
pub mod nat;
pub mod nodestatus;
pub mod services;
pub mod testbed;
