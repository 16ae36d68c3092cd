//! The node status writer against a real kube-apiserver and etcd (see
//! `caracal::testbed::kubetest`), as the agent's ServiceAccount with only `deploy/rbac.yaml`'s
//! grants: it creates its CaracalNodeStatus owned by the Node, writes only what changed, and
//! records a `BGPSessionDown` event on the Node when a session drops; `caracal status` renders
//! what it wrote.

use std::time::SystemTime;

use caracal::{
    cmd::status::render,
    metrics::{
        Metrics,
        policy::{Mode, StepRecord},
    },
    nodestatus::{CaracalNodeStatus, writer::Writer},
    testbed::kubetest::{self, KubeApi},
};
use caracal_bgp::control::{PeerStatus, Status};
use kube::{Api, api::ListParams};

const NODE: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
";

fn status(state: &str, last_error: Option<&str>) -> Status {
    Status {
        router_id: "192.0.2.1".parse().unwrap(),
        local_as: 64512,
        peers: vec![PeerStatus {
            address: "192.0.2.2".parse().unwrap(),
            remote_as: 64512,
            state: state.into(),
            uptime_secs: 0,
            capabilities: vec![],
            prefixes_received: 1,
            prefixes_accepted: 1,
            prefixes_advertised: 1,
            updates_attribute_discard: 0,
            updates_treated_as_withdraw: 0,
            updates_own_next_hop: 0,
            last_error: last_error.map(str::to_string),
            state_secs: 3,
            families: vec![],
            notifications_sent: vec![],
            notifications_received: vec![],
        }],
    }
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_writes_its_node_status_on_change_and_an_event_when_a_session_drops() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.install_crds().await;
    api.install_rbac().await;
    api.kubectl_ok(&["apply", "-f", "-"], NODE).await;

    let metrics = Metrics::new();
    metrics.bgp.set_status(status("Established", None));
    let cluster = caracal_policy::model::ClusterState::default();
    metrics.policy.record(&StepRecord {
        mode: Mode::Full,
        compile: Default::default(),
        apply: Default::default(),
        result: Ok(&Default::default()),
        program: &Default::default(),
        endpoints: 2,
        cluster: &cluster,
    });
    let agent = api.client(kubetest::NODE_AGENT).await;
    let mut w = Writer::new(agent, "node-a".into());
    assert!(
        w.step(&metrics)
            .await
            .expect("first write, as the agent's ServiceAccount")
    );

    let o = json(
        &api.kubectl_ok(&["get", "caracalnodestatus", "node-a", "-o", "json"], "")
            .await,
    );
    assert_eq!(o["spec"]["node"], "node-a");
    assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Node", "{o}");
    let s = &o["status"];
    assert_eq!(s["bgp"]["numberEstablished"], 1, "{o}");
    assert_eq!(s["bgp"]["peers"][0]["peerIP"], "192.0.2.2");
    assert_eq!(s["bgp"]["peers"][0]["state"], "Established");
    assert_eq!(s["policy"]["endpoints"], 2);
    assert_eq!(s["policy"]["lastApplyResult"], "Succeeded");
    let version = o["metadata"]["resourceVersion"].clone();

    // Nothing changed: nothing is written.
    assert!(!w.step(&metrics).await.unwrap());
    let o = json(&api.kubectl_ok(&["get", "cns", "node-a", "-o", "json"], "").await);
    assert_eq!(o["metadata"]["resourceVersion"], version);

    // The session drops: a new status and one Warning event on the Node.
    metrics.bgp.set_status(status(
        "Active",
        Some("received NOTIFICATION Cease/Hard Reset (6/9)"),
    ));
    assert!(w.step(&metrics).await.unwrap());
    let o = json(&api.kubectl_ok(&["get", "cns", "node-a", "-o", "json"], "").await);
    assert_eq!(o["status"]["bgp"]["numberNotEstablished"], 1, "{o}");
    let events = json(
        &api.kubectl_ok(
            &[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=BGPSessionDown",
                "-o",
                "json",
            ],
            "",
        )
        .await,
    );
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["involvedObject"]["kind"], "Node");
    assert_eq!(items[0]["involvedObject"]["name"], "node-a");
    assert_eq!(items[0]["type"], "Warning");
    let message = items[0]["message"].as_str().unwrap();
    assert!(
        message.contains("192.0.2.2") && message.contains("6/9"),
        "{message}"
    );
    // Still down at the next look: no second event.
    w.step(&metrics).await.unwrap();
    let events = json(
        &api.kubectl_ok(
            &[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                "reason=BGPSessionDown",
                "-o",
                "json",
            ],
            "",
        )
        .await,
    );
    assert_eq!(events["items"].as_array().unwrap().len(), 1);

    // What `caracal status` prints of it.
    let admin: Api<CaracalNodeStatus> = Api::all(api.client(kubetest::ADMIN).await);
    let list = admin.list(&ListParams::default()).await.unwrap().items;
    let text = render(&list, SystemTime::now());
    assert!(text.starts_with("Node node-a: updated "), "{text}");
    assert!(
        text.contains("| 192.0.2.2    | global    | 64512   | down  |"),
        "{text}"
    );
    assert!(text.contains("Policy: 2 endpoints"), "{text}");
}
