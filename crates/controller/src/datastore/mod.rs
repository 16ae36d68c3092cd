//! The datastore: where the agent's desired state comes from.
//!
//! Two sources feed the same [`Snapshot`] (the policy model plus the nodes):
//! - [`watch_kube`]: kube-rs watchers on Nodes, Namespaces, Pods, NetworkPolicies,
//!   GlobalPolicies, Services, EndpointSlices, BGPConfigurations, BGPPeers and the Opaque
//!   Secrets of the agent's namespace, debounced into batches;
//! - [`watch_dir`]: a directory of manifests, as one would give to `kubectl apply -f`,
//!   rescanned for changes.
//!
//! Both hand out a [`Datastore`]: a `tokio::sync::watch` channel of snapshots that always holds
//! a complete model (never a partial list, never an empty model after a disconnect).
//! [`convert`] and [`model`] are the pure core; [`kube`] and [`dir`] are the I/O around it.

pub mod convert;
pub mod dir;
pub mod kube;
pub mod model;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::watch;

pub use self::{
    dir::{DirSource, load_dir, watch_dir},
    kube::{KubeOptions, watch_kube},
    model::{Endpoint, EndpointSlice, Node, NodeAddress, Service, ServiceType, Snapshot},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read manifest directory {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("invalid manifests: {0}")]
    Manifests(String),
    #[error("datastore task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running datastore. The latest snapshot is always complete; dropping the datastore stops
/// its watchers.
pub struct Datastore {
    rx: watch::Receiver<Arc<Snapshot>>,
    lists: Arc<AtomicU64>,
    _tasks: kube::TaskGuard,
}

impl Datastore {
    fn new(rx: watch::Receiver<Arc<Snapshot>>, task: tokio::task::JoinHandle<()>) -> Self {
        Self::from_guard(rx, kube::TaskGuard(vec![task]), Arc::default())
    }

    fn from_guard(rx: watch::Receiver<Arc<Snapshot>>, tasks: kube::TaskGuard, lists: Arc<AtomicU64>) -> Self {
        Datastore {
            rx,
            lists,
            _tasks: tasks,
        }
    }

    /// How many complete lists (first lists and re-lists, all kinds) the watchers have done.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// The latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver that sees every new snapshot (`changed().await`), for as long as the
    /// datastore lives.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.rx.clone()
    }
}
