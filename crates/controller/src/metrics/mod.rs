//! The agent's Prometheus metrics: one registry, one small handle per reconciler, served as
//! OpenMetrics text at `/metrics` on `metrics_listen`.
//!
//! Names follow the ecosystem's conventions (Felix for the dataplane, GoBGP/FRR/Cilium for BGP;
//! `shared/research/next-features.md` §4.3), all under `caracal_`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `caracal_bgp_session_up` | gauge 0/1 | `peer, peer_as, type` |
//! | `caracal_bgp_session_state` | gauge, BGP4-MIB `bgpPeerState` (1 idle … 6 established) | `peer, peer_as, type` |
//! | `caracal_bgp_session_uptime_seconds` | gauge | `peer, peer_as, type` |
//! | `caracal_bgp_prefixes_{received,accepted,advertised}` | gauge | `peer, afi, safi` |
//! | `caracal_bgp_notifications_{sent,received}_total` | counter | `peer, code, subcode` |
//! | `caracal_bgp_malformed_updates_total` | counter | `peer, treatment` |
//! | `caracal_bgp_originated_prefixes` | gauge | — |
//! | `caracal_policy_compile_duration_seconds` | histogram | — |
//! | `caracal_policy_apply_duration_seconds` | histogram | `mode` (full, delta) |
//! | `caracal_policy_applies_total` | counter | `mode, result` |
//! | `caracal_policy_last_apply_timestamp_seconds`, `caracal_policy_last_apply_success` | gauge | — |
//! | `caracal_iptables_restore_calls_total`, `…_failures_total` | counter | — |
//! | `caracal_ipset_calls_total`, `…_failures_total` | counter | — |
//! | `caracal_iptables_chains`, `caracal_iptables_rules` | gauge | `ip_version` |
//! | `caracal_ipsets` | gauge | `ip_version` |
//! | `caracal_policy_local_endpoints` | gauge | — |
//! | `caracal_cluster_policies` | gauge | `kind` |
//! | `caracal_datastore_lists_total`, `caracal_datastore_watch_restarts_total` | counter | `kind` |
//! | `caracal_cni_endpoints` | gauge | — |
//!
//! Reconcilers update their handle as they go; the BGP figures are the speaker's status, polled
//! every few seconds by [`observe::run`] and encoded at scrape time by a collector.

pub mod bgp;
pub mod datastore;
pub mod observe;
pub mod policy;
pub mod scrape;
pub mod server;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::{metrics::gauge::Gauge, registry::Registry};

pub use self::{
    bgp::{BgpMetrics, PeerType},
    datastore::DatastoreMetrics,
    policy::PolicyMetrics,
};

/// The agent's registry and every handle on it. Cloning shares the same metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub policy: PolicyMetrics,
    pub datastore: DatastoreMetrics,
    pub bgp: BgpMetrics,
    /// Endpoint records the CNI plugin has written on this node.
    pub cni_endpoints: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("caracal");
        let policy = PolicyMetrics::default();
        policy.register(&mut registry);
        let datastore = DatastoreMetrics::default();
        datastore.register(&mut registry);
        let bgp = BgpMetrics::default();
        bgp.register(&mut registry);
        let cni_endpoints = Gauge::default();
        registry.register(
            "cni_endpoints",
            "Endpoint records the CNI plugin has written on this node",
            cni_endpoints.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            policy,
            datastore,
            bgp,
            cni_endpoints,
        }
    }

    /// Every metric as OpenMetrics text, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
