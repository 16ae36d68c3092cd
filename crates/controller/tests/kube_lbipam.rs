//! The LoadBalancer IP allocator against a real kube-apiserver and etcd (see
//! `caracal::testbed::kubetest`), run as the agent's ServiceAccount with only
//! `deploy/rbac.yaml`'s grants: two agents elect one leader over the Lease, Services get
//! addresses (requested ones honoured), conflicts and exhaustion are Warning Events, pool status
//! says Valid/Conflict and the counts, and when the leader stops the other agent takes over
//! without moving any address.

use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};

use caracal::{
    agent::health::Health,
    lbipam::{self, Settings, election::Timing},
    testbed::kubetest::{self, KubeApi},
};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Service, events::v1::Event};
use kube::{Api, api::ListParams};
use tokio::sync::watch;

const NS: &str = "shop";

fn service(name: &str, extra_meta: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}{extra_meta}}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]{extra_spec}}}\n"
    )
}

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: caracal.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            eprintln!("{what}: after {:?}", start.elapsed());
            return v;
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every LoadBalancer Service's ingress addresses, by name.
async fn addresses(services: &Api<Service>) -> BTreeMap<String, Vec<String>> {
    services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let ips = s
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip)
                .collect();
            (s.metadata.name.unwrap_or_default(), ips)
        })
        .collect()
}

async fn warning(events: &Api<Event>, service: &str, reason: &str) -> Option<String> {
    events
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(service)
        })
        .and_then(|e| e.note)
}

struct Agent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_agent(api: &KubeApi, node: &str) -> Agent {
    let client = api.client(kubetest::NODE_AGENT).await;
    let settings = Settings {
        namespace: "kube-system".into(),
        // Short, so the takeover after a leader's crash fits a test; the order of the
        // periods is the DaemonSet's.
        timing: Timing {
            lease_duration: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(3),
            renew_every: Duration::from_millis(1000),
            retry_every: Duration::from_millis(300),
        },
        debounce: Duration::from_millis(50),
        ..Settings::for_node(node)
    };
    let (stop, stop_rx) = watch::channel(false);
    let health = Health::default().register("lb-ipam", "starting");
    let task = tokio::spawn(lbipam::run(client, settings, stop_rx, health));
    Agent { stop, task }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(lbipam::LEASE_NAME).await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_elected_agent_assigns_keeps_and_explains_load_balancer_addresses() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("caracal=info")
        .with_test_writer()
        .try_init();
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.install_crds().await;
    api.install_rbac().await;
    api.kubectl_ok(&["create", "namespace", NS], "").await;
    let admin = api.client(kubetest::ADMIN).await;
    let services: Api<Service> = Api::namespaced(admin.clone(), NS);
    let events: Api<Event> = Api::namespaced(admin.clone(), NS);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-system");
    let wait = Duration::from_secs(20);

    // The schema names the field of a malformed CIDR.
    let bad = api
        .kubectl(&["apply", "-f", "-"], &pool("bogus", "{cidrs: [not-a-cidr]}"))
        .await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("spec.cidrs"), "{stderr}");

    api.kubectl_ok(&["apply", "-f", "-"], &pool("main", "{cidrs: [10.10.0.0/30]}"))
        .await;
    let agents = [
        start_agent(&api, "node-a").await,
        start_agent(&api, "node-b").await,
    ];
    let first = eventually("a leader", wait, || holder(&leases)).await;
    assert!(first == "node-a" || first == "node-b", "{first}");

    // Automatic and requested addresses; other classes and ClusterIP Services are left alone.
    let manifests = [
        service("web", "", ""),
        service(
            "api",
            ", annotations: {caracal.dev/loadBalancerIPs: 10.10.0.3}",
            "",
        ),
        service("other", "", ", loadBalancerClass: example.com/lb"),
    ];
    for m in &manifests {
        api.kubectl_ok(&["apply", "-f", "-"], m).await;
    }
    api.kubectl_ok(
        &["create", "service", "clusterip", "plain", "-n", NS, "--tcp=80"],
        "",
    )
    .await;
    let got = eventually("web and api addressed", wait, || async {
        let a = addresses(&services).await;
        (a["web"] == ["10.10.0.0"] && a["api"] == ["10.10.0.3"]).then_some(a)
    })
    .await;
    assert!(got["other"].is_empty() && got["plain"].is_empty(), "{got:?}");

    // A requested address that is taken: a Warning, nothing assigned.
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &service(
            "dup",
            ", annotations: {caracal.dev/loadBalancerIPs: 10.10.0.0}",
            "",
        ),
    )
    .await;
    let note = eventually("RequestedIPInUse", wait, || {
        warning(&events, "dup", "RequestedIPInUse")
    })
    .await;
    assert!(note.contains("10.10.0.0 is held by shop/web"), "{note}");

    // Two more fill the pool; the third is told it is exhausted.
    for name in ["c1", "c2"] {
        api.kubectl_ok(&["apply", "-f", "-"], &service(name, "", ""))
            .await;
        let svc = name.to_string();
        eventually(&format!("{name} addressed"), wait, || async {
            (addresses(&services).await[&svc].len() == 1).then_some(())
        })
        .await;
    }
    api.kubectl_ok(&["apply", "-f", "-"], &service("c3", "", ""))
        .await;
    let note = eventually("PoolExhausted", wait, || warning(&events, "c3", "PoolExhausted")).await;
    assert!(note.contains("pool main"), "{note}");
    // Only the leader acted: every Event so far is its.
    let reporters: std::collections::BTreeSet<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(lbipam::REPORTER))
        .filter_map(|e| e.reporting_instance)
        .collect();
    let transitions = leases
        .get(lbipam::LEASE_NAME)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.lease_transitions);
    assert_eq!(
        reporters,
        [first.clone()].into(),
        "events by one agent only (lease transitions: {transitions:?})"
    );
    let before = addresses(&services).await;
    assert!(before["c3"].is_empty() && before["dup"].is_empty(), "{before:?}");

    // Pool status: valid, no conflict, four used, none available.
    let status = eventually("pool status counts", wait, || async {
        let out = api
            .kubectl(&["get", "lbpool", "main", "-o", "jsonpath={.status.used}/{.status.available}/{.status.conditions[?(@.type==\"Valid\")].status}"], "")
            .await;
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        (s == "4/0/True").then_some(s)
    })
    .await;
    assert_eq!(status, "4/0/True");

    // An overlapping newer pool is in conflict; a pool with host bits is invalid, by name.
    api.kubectl_ok(&["apply", "-f", "-"], &pool("newer", "{cidrs: [10.10.0.0/31]}"))
        .await;
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &pool("hostbits", "{cidrs: [10.20.0.5/24]}"),
    )
    .await;
    for (name, jsonpath, want) in [
        (
            "newer",
            "{.status.conditions[?(@.type==\"Conflict\")].message}",
            "older pool main",
        ),
        (
            "hostbits",
            "{.status.conditions[?(@.type==\"Valid\")].message}",
            "spec.cidrs[0]: 10.20.0.5/24 has host bits set",
        ),
    ] {
        eventually(&format!("{name} status"), wait, || async {
            let out = api
                .kubectl(
                    &["get", "lbpool", name, "-o", &format!("jsonpath={jsonpath}")],
                    "",
                )
                .await;
            String::from_utf8_lossy(&out.stdout).contains(want).then_some(())
        })
        .await;
    }

    // The leader stops (a rollout): it releases the Lease, the other agent takes over at once,
    // and no Service's address moves.
    let leader = &agents[usize::from(first == "node-b")];
    let takeover = Instant::now();
    leader.stop.send_replace(true);
    let second = eventually("the other agent leads", wait, || async {
        holder(&leases).await.filter(|h| *h != first)
    })
    .await;
    assert!(
        takeover.elapsed() < Duration::from_secs(5),
        "released, not expired: {:?}",
        takeover.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(addresses(&services).await, before, "a new leader moves nothing");

    // The new leader frees a deleted Service's address and hands it to the waiting one.
    api.kubectl_ok(&["delete", "service", "c1", "-n", NS], "").await;
    let freed = before["c1"].clone();
    eventually("c3 gets c1's address", wait, || async {
        (addresses(&services).await["c3"] == freed).then_some(())
    })
    .await;
    eprintln!("{first} handed over to {second}");

    // The agent's identity cannot do more than it needs.
    for (verb, resource) in [
        ("update", "services"),
        ("delete", "leases"),
        ("update", "loadbalancerpools"),
        ("patch", "services"),
    ] {
        let out = api
            .kubectl_as(
                kubetest::NODE_AGENT,
                &["auth", "can-i", verb, resource, "-n", "kube-system"],
                "",
            )
            .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "{verb} {resource}"
        );
    }
    for a in agents {
        a.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), a.task).await;
    }
}
