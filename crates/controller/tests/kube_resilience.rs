//! The Kubernetes datastore across a kube-apiserver restart and an etcd restart: the model
//! keeps its last state while disconnected (never drops to empty) and converges after.

use std::{sync::Arc, time::Duration};

use caracal::{
    datastore::{self, KubeOptions, Snapshot},
    testbed::kubetest::{self, KubeApi},
};
use caracal_policy::model::Key;

const SETUP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: c, image: example.invalid/web}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: app}
spec: {podSelector: {matchLabels: {app: web}}}
---
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: baseline}
spec: {tier: Baseline, priority: 1, ingress: [{action: Deny}]}
";

async fn setup() -> Option<(KubeApi, datastore::Datastore)> {
    let api = KubeApi::start().await.expect("start etcd and kube-apiserver")?;
    api.install_crds().await;
    api.install_rbac().await;
    api.kubectl_ok(&["apply", "-f", "-"], SETUP).await;
    let client = api.client(kubetest::NODE_AGENT).await;
    let ds = tokio::time::timeout(
        Duration::from_secs(30),
        datastore::watch_kube(client, KubeOptions::default()),
    )
    .await
    .expect("datastore synced");
    let mut rx = ds.subscribe();
    kubetest::wait_model(&mut rx, Duration::from_secs(10), |s| {
        s.cluster.pods.contains_key(&Key::new("app", "web"))
            && s.cluster.network_policies.len() == 1
            && s.cluster.global_policies.len() == 1
    })
    .await
    .expect("the set-up is in the model");
    Some((api, ds))
}

/// While the control plane is down, every published snapshot still equals the last good one.
async fn assert_model_kept(
    rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
    before: &Snapshot,
    outage: Duration,
) {
    let end = tokio::time::Instant::now() + outage;
    loop {
        assert_eq!(
            **rx.borrow_and_update(),
            *before,
            "the model changed while disconnected"
        );
        tokio::select! {
            _ = rx.changed() => {}
            () = tokio::time::sleep_until(end) => break,
        }
    }
    assert_eq!(**rx.borrow(), *before);
}

async fn converges_after_change(api: &KubeApi, rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>) {
    api.kubectl_ok(&["label", "namespace", "app", "env=staging", "--overwrite"], "")
        .await;
    api.kubectl_ok(&["delete", "networkpolicy", "web", "-n", "app"], "")
        .await;
    // Reconnecting waits out the watchers' backoff (up to tens of seconds).
    let s = kubetest::wait_model(rx, Duration::from_secs(60), |s| {
        s.cluster.namespaces["app"].labels["env"] == "staging" && s.cluster.network_policies.is_empty()
    })
    .await
    .unwrap_or_else(|last| panic!("did not converge after the restart: {last:#?}"));
    assert!(s.cluster.pods.contains_key(&Key::new("app", "web")));
    assert_eq!(s.cluster.global_policies.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_keeps_the_model_and_converges_after() {
    let Some((mut api, ds)) = setup().await else {
        return;
    };
    let mut rx = ds.subscribe();
    // A write the pod watcher does not see, then etcd's history compacted past it: the pod
    // watcher's resourceVersion is gone, so after the restart it must re-list.
    api.kubectl_ok(&["label", "namespace", "app", "step=compacted"], "")
        .await;
    kubetest::wait_model(&mut rx, Duration::from_secs(5), |s| {
        s.cluster.namespaces["app"].labels.contains_key("step")
    })
    .await
    .expect("label seen");
    let revision = api.compact_etcd().expect("compact etcd");
    let before = (*ds.current()).clone();
    let lists = ds.lists();

    api.stop_apiserver();
    assert_model_kept(&mut rx, &before, Duration::from_secs(3)).await;
    api.start_apiserver().await.expect("kube-apiserver restarts");
    converges_after_change(&api, &mut rx).await;
    eprintln!(
        "etcd compacted at {revision}; lists completed: {lists} before, {} after the restart",
        ds.lists()
    );
    assert!(
        ds.lists() > lists,
        "the watchers re-listed after losing their history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_keeps_the_model_and_converges_after() {
    let Some((mut api, ds)) = setup().await else {
        return;
    };
    let mut rx = ds.subscribe();
    let before = (*ds.current()).clone();

    api.stop_etcd();
    assert_model_kept(&mut rx, &before, Duration::from_secs(3)).await;
    api.start_etcd().await.expect("etcd restarts");
    // The API server reconnects to etcd on its own.
    converges_after_change(&api, &mut rx).await;
}
