//! The Kubernetes datastore: one watcher per kind feeding a [`Store`], debounced into snapshots.
//! Services and EndpointSlices are watched for service IP advertisement.
//!
//! Every watcher event is converted at once and sent to a single task that owns the store, so
//! the model is only ever touched in one place. A watcher that loses the API server keeps
//! retrying with backoff while the store keeps the last state; a re-list replaces a kind's
//! objects only once it is complete.

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::{
    Datastore, convert,
    model::{Change, Kind, Object, Snapshot, Store},
};

pub const GLOBALPOLICY_GROUP: &str = "caracal.dev";
pub const GLOBALPOLICY_VERSION: &str = "v1alpha1";
/// The status condition the agent sets on each GlobalPolicy it reads.
pub const VALID_CONDITION: &str = "Valid";

#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// How long to gather events into one snapshot after the first one arrives.
    pub debounce: Duration,
    /// Write an `Valid` condition to each GlobalPolicy's, BGPConfiguration's and BGPPeer's
    /// status (needs `patch` on their `status`).
    pub report_status: bool,
    /// The agent's own namespace, whose Opaque Secrets hold BGP passwords (the DaemonSet sets
    /// `POD_NAMESPACE`; default `kube-system`).
    pub namespace: String,
    /// Watch BGPConfigurations, BGPPeers and Secrets (the agent does; `caracal policy explain`
    /// needs none of them, nor the BGP CRDs installed).
    pub bgp: bool,
    /// Counts lists and watch restarts (the agent's `/metrics`).
    pub metrics: crate::metrics::DatastoreMetrics,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            debounce: Duration::from_millis(50),
            report_status: true,
            namespace: DEFAULT_NAMESPACE.to_string(),
            bgp: true,
            metrics: Default::default(),
        }
    }
}

/// Where the agent runs when nothing says otherwise (`deploy/`).
pub const DEFAULT_NAMESPACE: &str = "kube-system";

fn globalpolicy_resource() -> ApiResource {
    caracal_resource("GlobalPolicy", "globalpolicies")
}

fn caracal_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GLOBALPOLICY_GROUP, GLOBALPOLICY_VERSION, kind),
        plural,
    )
}

/// A watcher of a caracal CRD read untyped, so one object the agent cannot parse (an older or
/// newer schema) is rejected alone instead of failing the whole list; each verdict goes to the
/// object's `Valid` condition.
fn untyped_watcher(
    client: &Client,
    options: &KubeOptions,
    kind: Kind,
    (crd_kind, plural): (&'static str, &'static str),
    convert: fn(&Value) -> (Object, Option<String>),
    tx: mpsc::UnboundedSender<Change>,
) -> tokio::task::JoinHandle<()> {
    let api = Api::<DynamicObject>::all_with(client.clone(), &caracal_resource(crd_kind, plural));
    let status_api = options.report_status.then(|| api.clone());
    tokio::spawn(run_watcher(
        api,
        kind,
        move |o: &DynamicObject| {
            let value = serde_json::to_value(o).unwrap_or(Value::Null);
            let (object, note) = convert(&value);
            let problem = match &object {
                Object::BgpConfiguration(_, Err(r)) | Object::BgpPeer(_, Err(r)) => Some(r.as_str()),
                _ => None,
            };
            if let Some(api) = &status_api {
                report_status(api, crd_kind, o, problem, note.as_deref());
            }
            if let Some(reason) = problem {
                tracing::warn!(kind = crd_kind, name = %object.key(), "ignored: {reason}");
            } else if let Some(note) = &note {
                tracing::warn!(kind = crd_kind, name = %object.key(), "accepted; not applied: {note}");
            }
            object
        },
        tx,
        options.metrics.clone(),
    ))
}

/// A BGPConfiguration as the model holds it, and what of it is not applied.
fn bgp_configuration(value: &Value) -> (Object, Option<String>) {
    let (name, parsed) = crate::bgpapi::configuration_from_json(value);
    let note = parsed
        .as_ref()
        .ok()
        .filter(|(_, notes)| !notes.is_empty())
        .map(|(_, notes)| notes.join("; "));
    (
        Object::BgpConfiguration(name, parsed.map(|(spec, _)| Box::new(spec))),
        note,
    )
}

fn bgp_peer(value: &Value) -> (Object, Option<String>) {
    (convert::bgp_peer(value), None)
}

/// Starts the watchers and returns once every kind has been listed, with the first complete
/// snapshot in the datastore. Until then (the API server unreachable, the GlobalPolicy CRD not
/// installed) it waits and logs why: a partial model would open traffic it should not.
pub async fn watch_kube(client: Client, options: KubeOptions) -> Datastore {
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let mut tasks = vec![
        tokio::spawn(run_watcher(
            Api::<Node>::all(client.clone()),
            Kind::Node,
            |n| Object::Node(convert::node(n)),
            changes_tx.clone(),
            options.metrics.clone(),
        )),
        tokio::spawn(run_watcher(
            Api::<Namespace>::all(client.clone()),
            Kind::Namespace,
            |n| Object::Namespace(convert::namespace(n)),
            changes_tx.clone(),
            options.metrics.clone(),
        )),
        tokio::spawn(run_watcher(
            Api::<Pod>::all(client.clone()),
            Kind::Pod,
            |p| Object::Pod(convert::pod(p)),
            changes_tx.clone(),
            options.metrics.clone(),
        )),
        tokio::spawn(run_watcher(
            Api::<NetworkPolicy>::all(client.clone()),
            Kind::NetworkPolicy,
            |np| {
                let (key, np) = convert::network_policy(np);
                Object::NetworkPolicy(key, Box::new(np))
            },
            changes_tx.clone(),
            options.metrics.clone(),
        )),
        tokio::spawn(run_watcher(
            Api::<Service>::all(client.clone()),
            Kind::Service,
            |s| Object::Service(convert::service(s)),
            changes_tx.clone(),
            options.metrics.clone(),
        )),
        tokio::spawn(run_watcher(
            Api::<EndpointSlice>::all(client.clone()),
            Kind::EndpointSlice,
            |s| Object::EndpointSlice(convert::endpoint_slice(s)),
            changes_tx.clone(),
            options.metrics.clone(),
        )),
    ];
    // GlobalPolicies are read untyped, so one object the agent cannot parse (an older or newer
    // schema) is rejected alone instead of failing the whole list.
    if options.bgp {
        tasks.push(untyped_watcher(
            &client,
            &options,
            Kind::BgpConfiguration,
            ("BGPConfiguration", "bgpconfigurations"),
            bgp_configuration,
            changes_tx.clone(),
        ));
        tasks.push(untyped_watcher(
            &client,
            &options,
            Kind::BgpPeer,
            ("BGPPeer", "bgppeers"),
            bgp_peer,
            changes_tx.clone(),
        ));
        // Only Opaque Secrets, and only in the agent's namespace (a Role, not a ClusterRole, grants
        // them): BGP passwords.
        tasks.push(tokio::spawn(run_secret_watcher(
            Api::<Secret>::namespaced(client.clone(), &options.namespace),
            changes_tx.clone(),
            options.metrics.clone(),
        )));
    } else {
        // Not watched: listed once, empty, so the store is complete without them.
        for kind in [Kind::BgpConfiguration, Kind::BgpPeer, Kind::Secret] {
            let _ = changes_tx.send(Change::ListStart(kind));
            let _ = changes_tx.send(Change::ListDone(kind));
        }
    }
    let gp_api = Api::<DynamicObject>::all_with(client, &globalpolicy_resource());
    let status_api = options.report_status.then(|| gp_api.clone());
    tasks.push(tokio::spawn(run_watcher(
        gp_api,
        Kind::GlobalPolicy,
        move |o: &DynamicObject| {
            let value = serde_json::to_value(o).unwrap_or(Value::Null);
            let (name, parsed) = convert::global_policy(&value);
            if let Some(api) = &status_api {
                report_status(
                    api,
                    "GlobalPolicy",
                    o,
                    parsed.as_ref().err().map(String::as_str),
                    None,
                );
            }
            if let Err(reason) = &parsed {
                tracing::warn!(globalpolicy = %name, "GlobalPolicy ignored: {reason}");
            }
            Object::GlobalPolicy(name, parsed.map(Box::new))
        },
        changes_tx,
        options.metrics.clone(),
    )));

    let (snapshot_tx, mut snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let lists = Arc::new(AtomicU64::new(0));
    let merger = tokio::spawn(merge(
        changes_rx,
        snapshot_tx,
        options.debounce,
        synced_tx,
        lists.clone(),
        options.metrics.clone(),
    ));
    tasks.push(merger);
    let guard = TaskGuard(tasks);
    // The merger only drops this sender unsent if all watchers ended, which they never do.
    let _ = synced_rx.await;
    snapshot_rx.borrow_and_update();
    Datastore::from_guard(snapshot_rx, guard, lists)
}

/// Aborts the datastore's tasks when the datastore is dropped.
pub(super) struct TaskGuard(pub(super) Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn run_watcher<K>(
    api: Api<K>,
    kind: Kind,
    convert: impl Fn(&K) -> Object + Send + 'static,
    tx: mpsc::UnboundedSender<Change>,
    metrics: crate::metrics::DatastoreMetrics,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    // Lists are served from the API server's watch cache (resourceVersion=0), as client-go
    // informers do: every node re-listing after an outage must not all go to etcd.
    let config = watcher::Config::default().any_semantic();
    run_watcher_with(api, config, kind, move |o| Some(convert(o)), tx, metrics).await
}

/// Opaque Secrets only (a field selector, so the API server never sends the others), kept as
/// their UTF-8 values.
async fn run_secret_watcher(
    api: Api<Secret>,
    tx: mpsc::UnboundedSender<Change>,
    metrics: crate::metrics::DatastoreMetrics,
) {
    let config = watcher::Config::default().any_semantic().fields("type=Opaque");
    run_watcher_with(
        api,
        config,
        Kind::Secret,
        |s| convert::secret(s).map(Object::Secret),
        tx,
        metrics,
    )
    .await
}

/// A watcher whose `convert` may leave objects out (`None`): they are neither listed nor
/// applied, and their deletion is a no-op.
async fn run_watcher_with<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    convert: impl Fn(&K) -> Option<Object> + Send + 'static,
    tx: mpsc::UnboundedSender<Change>,
    metrics: crate::metrics::DatastoreMetrics,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let change = match event {
            Ok(watcher::Event::Apply(o)) => match convert(&o) {
                Some(object) => Change::Apply(object),
                None => continue,
            },
            Ok(watcher::Event::Delete(o)) => match convert(&o) {
                Some(object) => Change::Delete(kind, object.key()),
                None => continue,
            },
            Ok(watcher::Event::Init) => {
                tracing::debug!(?kind, "listing");
                Change::ListStart(kind)
            }
            Ok(watcher::Event::InitApply(o)) => match convert(&o) {
                Some(object) => Change::ListItem(object),
                None => continue,
            },
            Ok(watcher::Event::InitDone) => {
                tracing::debug!(?kind, "listed");
                Change::ListDone(kind)
            }
            Err(e) => {
                // The model keeps its last state; the backoff paces the retries.
                tracing::warn!(?kind, "watch failed, retrying: {e}");
                metrics.watch_restarted(kind);
                continue;
            }
        };
        if tx.send(change).is_err() {
            return;
        }
    }
}

/// Owns the store: applies changes, and after the first one of a burst waits `debounce` for
/// more before publishing one snapshot (only when it differs from the last one).
async fn merge(
    mut rx: mpsc::UnboundedReceiver<Change>,
    tx: watch::Sender<Arc<Snapshot>>,
    debounce: Duration,
    synced: tokio::sync::oneshot::Sender<()>,
    lists: Arc<AtomicU64>,
    metrics: crate::metrics::DatastoreMetrics,
) {
    let apply = |store: &mut Store, change: Change| {
        if let Change::ListDone(kind) = change {
            lists.fetch_add(1, Ordering::Relaxed);
            metrics.listed(kind);
        }
        store.apply(change)
    };
    let mut store = Store::default();
    let mut synced = Some(synced);
    let mut waiting_logged = false;
    while let Some(first) = rx.recv().await {
        let mut changed = apply(&mut store, first);
        let deadline = tokio::time::Instant::now() + debounce;
        loop {
            tokio::select! {
                change = rx.recv() => match change {
                    Some(c) => changed |= apply(&mut store, c),
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !store.synced() {
            if !waiting_logged {
                tracing::info!(waiting_for = ?store.unsynced(), "waiting for the first list of every kind");
                waiting_logged = true;
            }
            continue;
        }
        if !changed {
            continue;
        }
        let snapshot = store.snapshot();
        if **tx.borrow() == snapshot {
            continue;
        }
        tracing::debug!("model changed: {}", snapshot.summary());
        tx.send_replace(Arc::new(snapshot));
        if let Some(s) = synced.take() {
            let _ = s.send(());
        }
    }
}

/// Sets the `Valid` condition (`problem`: why it is ignored; `note`: what of an accepted object
/// is not applied) unless the object already carries the same verdict for its current
/// generation, so every agent writing it converges to no writes at all.
fn report_status(
    api: &Api<DynamicObject>,
    kind: &'static str,
    object: &DynamicObject,
    problem: Option<&str>,
    note: Option<&str>,
) {
    let Some(name) = object.metadata.name.clone() else {
        return;
    };
    let generation = object.metadata.generation;
    let (status, reason, message) = match (problem, note) {
        (None, None) => ("True", "Valid", "accepted by caracal".to_string()),
        (None, Some(n)) => ("True", "Valid", format!("accepted by caracal; not applied: {n}")),
        (Some(p), _) => ("False", "Invalid", format!("ignored by caracal: {p}")),
    };
    let current = object
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(VALID_CONDITION))
        });
    if let Some(c) = current
        && c.get("status").and_then(Value::as_str) == Some(status)
        && c.get("message").and_then(Value::as_str) == Some(message.as_str())
        && c.get("observedGeneration").and_then(Value::as_i64) == generation
    {
        return;
    }
    let condition = json!({
        "type": VALID_CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now()
        ),
    });
    let api = api.clone();
    // The agent that turns the verdict to Invalid also says so in an event; the others find the
    // condition set and stay quiet.
    let event = problem.map(|_| invalid_event(object, kind, message));
    tokio::spawn(async move {
        let patch = Patch::Merge(json!({
            "status": {"conditions": [condition], "observedGeneration": generation}
        }));
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &patch).await {
            tracing::warn!(kind, %name, "cannot set the Valid condition: {e}");
        } else if let Some(event) = event {
            crate::nodestatus::events::record(api.into_client(), event).await;
        }
    });
}

/// The `Invalid` Warning about a GlobalPolicy the agent ignores.
/// The `Invalid` Warning on a caracal.dev object of `kind` (GlobalPolicy, BGPConfiguration,
/// BGPPeer) the agent ignores.
fn invalid_event(object: &DynamicObject, kind: &str, message: String) -> k8s_openapi::api::core::v1::Event {
    use crate::nodestatus::events;
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(format!("{GLOBALPOLICY_GROUP}/{GLOBALPOLICY_VERSION}")),
        kind: Some(kind.into()),
        name: object.metadata.name.clone(),
        uid: object.metadata.uid.clone(),
        ..Default::default()
    };
    let now = std::time::SystemTime::now();
    events::warning(reference, "Invalid", message, &events::this_node(), now)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use caracal_policy::model::Namespace;

    use super::*;

    fn ns(name: &str) -> Object {
        Object::Namespace(Namespace {
            name: name.into(),
            labels: BTreeMap::new(),
        })
    }

    struct Merger {
        tx: mpsc::UnboundedSender<Change>,
        rx: watch::Receiver<Arc<Snapshot>>,
        synced: tokio::sync::oneshot::Receiver<()>,
        lists: Arc<AtomicU64>,
        _task: TaskGuard,
    }

    fn merger() -> Merger {
        let (tx, changes) = mpsc::unbounded_channel();
        let (snapshots, rx) = watch::channel(Arc::new(Snapshot::default()));
        let (synced_tx, synced) = tokio::sync::oneshot::channel();
        let lists = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(merge(
            changes,
            snapshots,
            Duration::from_millis(50),
            synced_tx,
            lists.clone(),
            Default::default(),
        ));
        Merger {
            tx,
            rx,
            synced,
            lists,
            _task: TaskGuard(vec![task]),
        }
    }

    fn list_all(m: &Merger, namespaces: &[&str]) {
        for kind in Kind::ALL {
            m.tx.send(Change::ListStart(kind)).unwrap();
            if kind == Kind::Namespace {
                for n in namespaces {
                    m.tx.send(Change::ListItem(ns(n))).unwrap();
                }
            }
            m.tx.send(Change::ListDone(kind)).unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_published_until_every_kind_is_listed() {
        let mut m = merger();
        m.tx.send(Change::ListStart(Kind::Namespace)).unwrap();
        m.tx.send(Change::ListItem(ns("a"))).unwrap();
        m.tx.send(Change::ListDone(Kind::Namespace)).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!m.rx.has_changed().unwrap());
        assert!(m.synced.try_recv().is_err());
        list_all(&m, &["a"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(m.rx.has_changed().unwrap());
        assert!(m.rx.borrow_and_update().cluster.namespaces.contains_key("a"));
        assert!(m.synced.try_recv().is_ok());
        // Every kind's list plus the namespaces' first one.
        assert_eq!(m.lists.load(Ordering::Relaxed), Kind::ALL.len() as u64 + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_within_the_debounce_window_is_one_snapshot() {
        let mut m = merger();
        list_all(&m, &[]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        m.rx.borrow_and_update();
        for i in 0..20 {
            m.tx.send(Change::Apply(ns(&format!("ns-{i}")))).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        m.rx.changed().await.unwrap();
        assert_eq!(m.rx.borrow_and_update().cluster.namespaces.len(), 20);
        // No second, partial-then-complete publication of the same burst.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!m.rx.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_relist_publishes_nothing() {
        let mut m = merger();
        list_all(&m, &["a"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        m.rx.borrow_and_update();
        list_all(&m, &["a"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!m.rx.has_changed().unwrap());
        m.tx.send(Change::Delete(Kind::Namespace, "a".into())).unwrap();
        m.rx.changed().await.unwrap();
        assert!(m.rx.borrow().cluster.namespaces.is_empty());
    }
}
