//! The core/v1 Events the agent records: `BGPSessionDown` on its Node, `Invalid` on an object
//! it ignores (a GlobalPolicy; the BGP objects can use the same). Events about cluster-scoped
//! objects go to namespace `default`, as the kubelet's about Nodes do.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

/// The namespace of events about cluster-scoped objects.
pub const NAMESPACE: &str = "default";
/// The `source.component` and field manager of everything the agent writes.
pub const COMPONENT: &str = "caracal-agent";

/// A Warning about `object` (a cluster-scoped object), reported by the agent on `node`.
pub fn warning(object: ObjectReference, reason: &str, message: String, node: &str, now: SystemTime) -> Event {
    let name = object.name.clone().unwrap_or_default().to_lowercase();
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.{}.", reason.to_lowercase())),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        involved_object: object,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(super::report::time(now)),
        last_timestamp: Some(super::report::time(now)),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: Some(node.into()),
        }),
        reporting_component: Some(format!("caracal.dev/{COMPONENT}")),
        reporting_instance: Some(node.into()),
        ..Default::default()
    }
}

/// Records `event`; a failure is logged, never fatal.
pub async fn record(client: Client, event: Event) {
    let api: Api<Event> = Api::namespaced(client, NAMESPACE);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        let reason = event.reason.as_deref().unwrap_or("");
        tracing::warn!(%reason, "cannot record an event: {e}");
    }
}

/// The agent's node name, for `source.host` of events the datastore records ($NODE_NAME, as
/// the DaemonSet sets it).
pub fn this_node() -> String {
    std::env::var("NODE_NAME").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_names_the_object_the_reason_and_the_reporting_node() {
        let object = ObjectReference {
            api_version: Some("caracal.dev/v1alpha1".into()),
            kind: Some("GlobalPolicy".into()),
            name: Some("Deny-All".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let e = warning(
            object,
            "Invalid",
            "bad CIDR".into(),
            "node-a",
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(e.metadata.generate_name.as_deref(), Some("deny-all.invalid."));
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("GlobalPolicy"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.source.unwrap().host.as_deref(), Some("node-a"));
    }
}
