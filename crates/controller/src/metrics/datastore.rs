//! The Kubernetes datastore's metrics: complete lists (the first one and every re-list) and
//! watches that failed and were restarted, per kind.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The datastore's handle; cloning shares the metrics. The default one counts into a registry
/// nobody reads until [`super::Metrics`] registers it.
#[derive(Clone, Debug, Default)]
pub struct DatastoreMetrics {
    lists: Family<KindLabels, Counter>,
    watch_restarts: Family<KindLabels, Counter>,
}

impl DatastoreMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "datastore_lists",
            "Complete lists of a kind from the API server (the first one and every re-list)",
            self.lists.clone(),
        );
        r.register(
            "datastore_watch_restarts",
            "Watches that failed and are being retried with backoff",
            self.watch_restarts.clone(),
        );
    }

    /// A complete list of `kind` arrived.
    pub fn listed(&self, kind: impl std::fmt::Debug) {
        self.lists.get_or_create(&labels(kind)).inc();
    }

    /// The watch of `kind` failed; the watcher retries.
    pub fn watch_restarted(&self, kind: impl std::fmt::Debug) {
        self.watch_restarts.get_or_create(&labels(kind)).inc();
    }
}

fn labels(kind: impl std::fmt::Debug) -> KindLabels {
    KindLabels {
        kind: format!("{kind:?}"),
    }
}
