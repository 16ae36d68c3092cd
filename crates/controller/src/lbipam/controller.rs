//! The LB IPAM controller's I/O: while this agent leads, watches Services and
//! LoadBalancerPools (as triggers only), and at each trigger (debounced) or resync lists both
//! afresh, runs the allocator and writes what changed: `status.loadBalancer.ingress`, Events on
//! the Services, the pools' status.
//!
//! Every reconcile reads the Services from the API server rather than from a cache, so a
//! reconcile always sees the controller's own earlier writes: a stale cache could hand an
//! address just written to one Service to another. Status patches carry the resourceVersion
//! read, so a write based on an outdated Service fails with 409 and is redone.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::{
    api::{core::v1::Service, events::v1::Event as K8sEvent},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{ListParams, PartialObjectMeta, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::sync::watch;

use super::{
    allocate::{self, ServiceEvent},
    crd::LoadBalancerPool,
    election::{Elector, Identity, Timing},
    lease,
    pool::check_pools,
    report::{self, Said},
    service::{ServiceKey, ServiceView},
};
use crate::agent::health::LoopHealth;

/// Where and under which names the controller works.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's name: the Lease's holderIdentity and the Events' reporting instance.
    pub node: String,
    /// The Lease's namespace (the agent's: `$POD_NAMESPACE`, else `kube-system`).
    pub namespace: String,
    pub lease_name: String,
    pub timing: Timing,
    /// Gather watch events this long before reconciling.
    pub debounce: Duration,
    /// Reconcile at least this often.
    pub resync: Duration,
}

impl Settings {
    pub fn for_node(node: &str) -> Settings {
        Settings {
            node: node.to_string(),
            namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "kube-system".into()),
            lease_name: super::LEASE_NAME.to_string(),
            timing: Timing::default(),
            debounce: Duration::from_millis(100),
            resync: Duration::from_secs(60),
        }
    }
}

/// A process-unique instance name: the node, the PID and the start time.
fn instance(node: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{node}-{}-{nanos:x}", std::process::id())
}

/// Runs the election and, while leading, the controller, until `stop`. Never fails: API
/// errors are logged and retried.
pub async fn run(
    client: Client,
    settings: Settings,
    stop: watch::Receiver<bool>,
    health: LoopHealth,
) -> anyhow::Result<()> {
    health.ready();
    let elector = Elector::new(
        Identity {
            holder: settings.node.clone(),
            instance: instance(&settings.node),
        },
        settings.timing,
    );
    let (leader_tx, mut leader) = watch::channel(false);
    let election = tokio::spawn(lease::run(
        client.clone(),
        settings.namespace.clone(),
        settings.lease_name.clone(),
        elector,
        leader_tx,
        stop.clone(),
        health,
    ));
    let recorder = Recorder {
        client: client.clone(),
        instance: settings.node.clone(),
    };
    loop {
        // Until we lead (or the election ends: we are stopping).
        if leader.wait_for(|l| *l).await.is_err() {
            break;
        }
        tracing::info!(node = %settings.node, "lb-ipam: leading, allocating LoadBalancer addresses");
        tokio::select! {
            _ = leader.wait_for(|l| !*l) => tracing::info!("lb-ipam: no longer leading, stopped allocating"),
            () = lead(&client, &recorder, &settings) => {}
        }
    }
    let _ = election.await;
    Ok(())
}

/// Reconciles at every (debounced) change of a Service or pool, and every `resync`.
async fn lead(client: &Client, recorder: &Recorder, settings: &Settings) {
    let config = watcher::Config::default().any_semantic();
    // Metadata only: the watches are triggers, each reconcile lists the objects afresh.
    let services = watcher(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        config.clone(),
    )
    .default_backoff()
    .map(|e| e.map(|_| ()).map_err(|e| format!("Services: {e}")));
    let pools = watcher(
        Api::<PartialObjectMeta<LoadBalancerPool>>::all(client.clone()),
        config,
    )
    .default_backoff()
    .map(|e| e.map(|_| ()).map_err(|e| format!("LoadBalancerPools: {e}")));
    let mut triggers = stream::select(services.boxed(), pools.boxed());
    let mut said = Said::default();
    loop {
        let started = Instant::now();
        let retry = match reconcile(client, recorder, &mut said).await {
            Ok(r) => {
                if r.changed > 0 || r.conflicts > 0 {
                    tracing::info!(
                        changed = r.changed,
                        conflicts = r.conflicts,
                        took_ms = started.elapsed().as_millis() as u64,
                        "lb-ipam: reconciled"
                    );
                }
                if r.conflicts > 0 { Retry::Soon } else { Retry::No }
            }
            Err(e) => {
                tracing::warn!("lb-ipam: reconcile failed, retrying in 5 s: {e:#}");
                Retry::Later
            }
        };
        let wait = match retry {
            Retry::No => settings.resync,
            Retry::Soon => Duration::from_secs(1),
            Retry::Later => Duration::from_secs(5),
        };
        // The next trigger, then whatever else arrives within the debounce.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            t = triggers.next() => {
                match t {
                    Some(Err(e)) => tracing::warn!("lb-ipam: watch failed, retrying: {e}"),
                    None => return,
                    Some(Ok(())) => {}
                }
                let deadline = tokio::time::sleep(settings.debounce);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        t = triggers.next() => if t.is_none() { return },
                    }
                }
            }
        }
    }
}

/// When to reconcile again without a trigger.
enum Retry {
    /// At the resync.
    No,
    /// A write met a changed Service: in a second.
    Soon,
    /// The lists failed (API server away, CRD missing): in five.
    Later,
}

/// Writes Events (events.k8s.io/v1), each once: [`Said`] keeps repeats away, so there are no
/// series to patch.
struct Recorder {
    client: Client,
    /// The reporting instance: this node.
    instance: String,
}

/// What one reconcile did.
#[derive(Debug, Default)]
struct Reconciled {
    changed: usize,
    conflicts: usize,
}

async fn reconcile(client: &Client, recorder: &Recorder, said: &mut Said) -> anyhow::Result<Reconciled> {
    use anyhow::Context as _;
    let pools_api = Api::<LoadBalancerPool>::all(client.clone());
    let pools = pools_api
        .list(&ListParams::default())
        .await
        .context("list LoadBalancerPools (is crds/loadbalancerpool.yaml installed?)")?
        .items;
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("list Services")?
        .items;
    let checked = check_pools(&pools);
    let views: Vec<ServiceView> = services.iter().map(ServiceView::from_k8s).collect();
    let plan = allocate::allocate(&checked, &views);
    let by_key: BTreeMap<ServiceKey, &Service> =
        views.iter().map(|v| v.key.clone()).zip(services.iter()).collect();

    let mut done = Reconciled::default();
    let mut written: Vec<&ServiceKey> = Vec::new();
    for (key, ips) in &plan.changes {
        let Some(svc) = by_key.get(key) else { continue };
        match patch_ingress(client, key, svc, ips).await {
            Ok(()) => {
                tracing::info!(service = %key, addresses = ?ips, "lb-ipam: wrote status.loadBalancer.ingress");
                written.push(key);
                done.changed += 1;
            }
            Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 409) => {
                tracing::debug!(service = %key, "lb-ipam: the Service changed meanwhile; redoing");
                done.conflicts += 1;
            }
            Err(e) => {
                tracing::warn!(service = %key, "lb-ipam: could not write status.loadBalancer.ingress: {e}");
                done.conflicts += 1;
            }
        }
    }
    // Normal events only for writes that happened; warnings once each.
    let events: Vec<ServiceEvent> = plan
        .events
        .iter()
        .filter(|e| e.warning || written.contains(&&e.service))
        .cloned()
        .collect();
    for e in said.news(&events) {
        let Some(svc) = by_key.get(&e.service) else {
            continue;
        };
        if e.warning {
            tracing::warn!(service = %e.service, reason = e.reason, "lb-ipam: {}", e.message);
        }
        let event = report::event_object(e, svc.object_ref(&()), &recorder.instance, Timestamp::now());
        let api = Api::<K8sEvent>::namespaced(recorder.client.clone(), &e.service.namespace);
        if let Err(err) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(service = %e.service, "lb-ipam: could not write an Event ({}): {err}", e.reason);
            said.forget(e);
        }
    }
    let now = Timestamp::now();
    for pool in &pools {
        let Some(r) = plan.pools.get(pool.name()) else {
            continue;
        };
        let status = report::pool_status(r, pool.status.as_ref(), pool.metadata.generation, now);
        if pool.status.as_ref() == Some(&status) {
            continue;
        }
        let patch = json!({"status": status});
        if let Err(e) = pools_api
            .patch_status(pool.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(
                pool = pool.name(),
                "lb-ipam: could not write the pool's status: {e}"
            );
        }
    }
    Ok(done)
}

/// Replaces `status.loadBalancer.ingress` if the Service is still at the version read.
async fn patch_ingress(client: &Client, key: &ServiceKey, svc: &Service, ips: &[IpAddr]) -> kube::Result<()> {
    let api = Api::<Service>::namespaced(client.clone(), &key.namespace);
    let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let patch = json!({
        "metadata": {"resourceVersion": svc.metadata.resource_version},
        "status": {"loadBalancer": {"ingress": ingress}},
    });
    api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
