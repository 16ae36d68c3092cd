//! The figures nobody pushes: every few seconds, the BGP speaker's status and the CNI plugin's
//! endpoint records are read and kept for scrapes (and for the node status).

use std::{path::PathBuf, time::Duration};

use tokio::sync::watch;

use super::Metrics;

/// How often the speaker's status and the endpoint records are read.
pub const PERIOD: Duration = Duration::from_secs(5);

/// Reads the figures once.
pub async fn once(metrics: &Metrics, endpoints_dir: &std::path::Path) {
    let records = caracal_contract::endpoint::read_dir(endpoints_dir).len();
    metrics
        .cni_endpoints
        .set(i64::try_from(records).unwrap_or(i64::MAX));
    metrics.bgp.poll().await;
}

/// Reads the figures every `period` until `stop` turns true or closes.
pub async fn run(
    metrics: Metrics,
    endpoints_dir: PathBuf,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => once(&metrics, &endpoints_dir).await,
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}
