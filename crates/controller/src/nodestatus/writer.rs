//! Writes this node's CaracalNodeStatus and the Node's `BGPSessionDown` events: every 10 s the
//! status is rebuilt from the metrics and written only if it changed (or 5 minutes passed, so
//! `updated` tells a live agent from a dead one). Server-side apply, field manager
//! `caracal-agent`; the object is owned by the Node, so it goes when the node does.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{
    crd::{CaracalNodeStatus, NodeStatus, PeerKind, PeerSession},
    events, report,
};
use crate::metrics::Metrics;

/// At most one status write this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// At least one status write this often, changed or not.
pub const HEARTBEAT: Duration = Duration::from_secs(300);
const MANAGER: &str = events::COMPONENT;

/// Keeps writing the status of `node` until the task is dropped.
pub async fn run(client: Client, node: String, metrics: Metrics) {
    let mut w = Writer::new(client, node);
    let mut warned = false;
    let mut tick = tokio::time::interval(MIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match w.step(&metrics).await {
            Ok(_) => warned = false,
            // The CRD may not be installed yet, or the API server away: again at the next tick.
            Err(e) if !warned => {
                tracing::warn!(node = %w.node, "cannot write the CaracalNodeStatus: {e}");
                warned = true;
            }
            Err(e) => tracing::debug!(node = %w.node, "cannot write the CaracalNodeStatus: {e}"),
        }
    }
}

/// The writer of one node's status; [`run`] steps it every [`MIN_INTERVAL`].
pub struct Writer {
    client: Client,
    statuses: Api<CaracalNodeStatus>,
    nodes: Api<Node>,
    node: String,
    node_uid: Option<String>,
    /// What was last written.
    written: Option<NodeStatus>,
    /// What the last step saw (written or not), to tell which sessions went down since.
    seen: Option<NodeStatus>,
    last_write: Option<Instant>,
    since: report::Since,
}

impl Writer {
    pub fn new(client: Client, node: String) -> Writer {
        Writer {
            statuses: Api::all(client.clone()),
            nodes: Api::all(client.clone()),
            client,
            node,
            node_uid: None,
            written: None,
            seen: None,
            last_write: None,
            since: Default::default(),
        }
    }

    /// Rebuilds the status from `metrics`, records an event for every session that went down
    /// since the last step, and writes the status if it changed or is due; `Ok(true)` if it
    /// wrote.
    pub async fn step(&mut self, metrics: &Metrics) -> kube::Result<bool> {
        let now = SystemTime::now();
        let next = report::build(
            &metrics.bgp.snapshot(),
            metrics.policy.last_apply().as_ref(),
            now,
            &mut self.since,
        );
        let down: Vec<PeerSession> = report::went_down(self.seen.as_ref(), &next)
            .into_iter()
            .cloned()
            .collect();
        for p in &down {
            self.session_down_event(p, now).await;
        }
        self.seen = Some(next.clone());
        let due = self.last_write.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if !due && !report::changed(self.written.as_ref(), &next) {
            return Ok(false);
        }
        let mut status = next;
        status.updated = Some(report::time(now));
        self.write(&status).await?;
        self.written = Some(status);
        self.last_write = Some(Instant::now());
        Ok(true)
    }

    /// The Node's UID, for the status object's owner and the events (once found).
    async fn node_uid(&mut self) -> Option<String> {
        if self.node_uid.is_none() {
            let lp = ListParams::default().fields(&format!("metadata.name={}", self.node));
            self.node_uid = match self.nodes.list(&lp).await {
                Ok(list) => list.items.into_iter().next().and_then(|n| n.metadata.uid),
                Err(e) => {
                    tracing::debug!(node = %self.node, "cannot look the Node up: {e}");
                    None
                }
            };
        }
        self.node_uid.clone()
    }

    async fn write(&mut self, status: &NodeStatus) -> kube::Result<()> {
        let owner = self
            .node_uid()
            .await
            .map(|uid| json!([{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": uid}]));
        let mut metadata = json!({"name": self.node});
        if let Some(owner) = owner {
            metadata["ownerReferences"] = owner;
        }
        let object = json!({
            "apiVersion": "caracal.dev/v1alpha1",
            "kind": "CaracalNodeStatus",
            "metadata": metadata,
            "spec": {"node": self.node},
        });
        let pp = PatchParams::apply(MANAGER).force();
        self.statuses
            .patch(&self.node, &pp, &Patch::Apply(&object))
            .await?;
        let body = json!({
            "apiVersion": "caracal.dev/v1alpha1",
            "kind": "CaracalNodeStatus",
            "metadata": {"name": self.node},
            "status": status,
        });
        self.statuses
            .patch_status(&self.node, &pp, &Patch::Apply(&body))
            .await?;
        Ok(())
    }

    async fn session_down_event(&mut self, p: &PeerSession, now: SystemTime) {
        let kind = match p.kind {
            PeerKind::NodeMesh => "node-to-node mesh",
            PeerKind::GlobalPeer => "global",
            PeerKind::NodePeer => "node specific",
        };
        let why = p.last_error.as_deref().unwrap_or("no reason given");
        let message = format!(
            "BGP session with {} (AS {}, {kind}) is {}: {why}",
            p.peer_ip, p.peer_as, p.state
        );
        tracing::warn!(node = %self.node, peer = %p.peer_ip, "{message}");
        let node = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            uid: self.node_uid().await,
            ..Default::default()
        };
        let event = events::warning(node, "BGPSessionDown", message, &self.node, now);
        events::record(self.client.clone(), event).await;
    }
}
