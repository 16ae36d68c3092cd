//! The Kubernetes datastore against a real kube-apiserver and etcd (see `caracal::testbed::kubetest`):
//! kubectl changes (Services and EndpointSlices too) reach the model within a second, the model
//! equals the directory datastore's for the same manifests, and the agent's ServiceAccount needs nothing more than
//! `deploy/rbac.yaml` grants.

use std::{collections::BTreeMap, fs, sync::Arc, time::Duration, time::Instant};

use caracal::{
    datastore::{self, KubeOptions, Snapshot},
    testbed::kubetest::{self, KubeApi},
};
use caracal_policy::model::Key;

const NS: &str = "shop";

const NAMESPACE: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
";

const NODE: &str = "
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {zone: z1}
  annotations: {caracal.dev/bgp-asn: '64512'}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
";
const NODE_STATUS: &str = r#"{"status":{"addresses":[{"type":"InternalIP","address":"192.168.50.10"},{"type":"Hostname","address":"node-a"}]}}"#;

fn pod_manifest(name: &str, labels: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {labels}}}
spec:
  nodeName: node-a
  containers:
  - name: app
    image: example.invalid/app
    ports: [{{name: http, containerPort: 8080}}]
"
    )
}

fn pod_status(ip: &str) -> String {
    format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#)
}

const NETPOL_WEB: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: 8080}]
";

const NETPOL_DENY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
";

const GLOBAL_DB: &str = "
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: deny-db-from-dev}
spec:
  priority: 10
  subject: {podSelector: {matchLabels: {app: db}}}
  ingress:
  - name: from-dev
    action: Deny
    from: [{namespaceSelector: {matchLabels: {env: dev}}}]
";

const GLOBAL_DNS: &str = "
apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {name: allow-dns}
spec:
  tier: Baseline
  priority: 100
  egress:
  - action: Accept
    to: [{networks: [10.0.0.0/8]}]
    ports: [{protocol: UDP, port: 53}]
";

// An ExternalName Service: the API server allocates it no cluster IP, so the directory model of
// the same manifest is equal.
const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: ExternalName, externalName: web.example.invalid}
";

const ENDPOINT_SLICE: &str = "
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  nodeName: node-a
- addresses: [10.244.1.7]
  nodeName: node-a
  conditions: {ready: false, terminating: true}
ports: [{name: http, port: 8080, protocol: TCP}]
";

/// Starts the control plane with the CRDs and the agent's RBAC installed, or `None` to skip.
async fn cluster() -> Option<KubeApi> {
    let api = KubeApi::start().await.expect("start etcd and kube-apiserver")?;
    api.install_crds().await;
    api.install_rbac().await;
    Some(api)
}

async fn apply(api: &KubeApi, yaml: &str) {
    api.kubectl_ok(&["apply", "-f", "-"], yaml).await;
}

async fn patch_status(api: &KubeApi, resource: &str, patch: &str) {
    let mut args = vec!["patch"];
    args.extend(resource.split(' '));
    args.extend(["--subresource=status", "--type=merge", "-p", patch]);
    api.kubectl_ok(&args, "").await;
}

async fn start_datastore(api: &KubeApi, context: &str) -> datastore::Datastore {
    let client = api.client(context).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        datastore::watch_kube(client, KubeOptions::default()),
    )
    .await
    .expect("the datastore lists every kind within 30 s")
}

/// Waits for `pred` after a kubectl change and asserts it held within one second.
async fn within_a_second(
    rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
    what: &str,
    pred: impl FnMut(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let start = Instant::now();
    match kubetest::wait_model(rx, Duration::from_secs(1), pred).await {
        Ok(s) => {
            eprintln!("{what}: in the model after {:?}", start.elapsed());
            s
        }
        Err(last) => panic!("{what}: not in the model within 1 s; model: {last:#?}"),
    }
}

/// What both datastores can know: the kube-apiserver's own namespaces (and its Service) exist
/// in any cluster but not in a manifest directory.
fn without_system_namespaces(s: &Snapshot) -> Snapshot {
    let mut s = s.clone();
    let system = |ns: &str| ns == "default" || ns.starts_with("kube-");
    s.cluster.namespaces.retain(|name, _| !system(name));
    // The API server's own `kubernetes` Service and its EndpointSlice.
    s.services.retain(|key, _| !system(&key.namespace));
    s.endpoint_slices.retain(|key, _| !system(&key.namespace));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_changes_reach_the_model_within_a_second_and_end_equal_to_the_directory_model() {
    let Some(api) = cluster().await else { return };
    // The watchers run as the agent's ServiceAccount, with only deploy/rbac.yaml's grants.
    let ds = start_datastore(&api, kubetest::NODE_AGENT).await;
    let mut rx = ds.subscribe();

    apply(&api, NAMESPACE).await;
    within_a_second(&mut rx, "namespace", |s| {
        s.cluster
            .namespaces
            .get(NS)
            .is_some_and(|n| n.labels.get("env").map(String::as_str) == Some("prod"))
    })
    .await;

    apply(&api, NODE).await;
    patch_status(&api, "node node-a", NODE_STATUS).await;
    let s = within_a_second(&mut rx, "node with addresses", |s| {
        s.nodes
            .get("node-a")
            .is_some_and(|n| n.internal_ips().count() == 1)
    })
    .await;
    let node = &s.nodes["node-a"];
    assert_eq!(node.pod_cidrs, ["10.244.1.0/24".parse().unwrap()]);
    assert_eq!(node.asn, Some(64512));
    assert_eq!(node.labels["zone"], "z1");

    for (name, labels, ip) in [
        ("web-1", "{app: web}", "10.244.1.5"),
        ("db-1", "{app: db}", "10.244.1.6"),
    ] {
        apply(&api, &pod_manifest(name, labels)).await;
        patch_status(&api, &format!("pod {name} -n {NS}"), &pod_status(ip)).await;
        let ip: std::net::IpAddr = ip.parse().unwrap();
        within_a_second(&mut rx, &format!("pod {name} with its IP"), |s| {
            s.cluster
                .pods
                .get(&Key::new(NS, name))
                .is_some_and(|p| p.ips == [ip] && p.node.as_deref() == Some("node-a"))
        })
        .await;
    }

    apply(&api, NETPOL_WEB).await;
    apply(&api, NETPOL_DENY).await;
    within_a_second(&mut rx, "two network policies", |s| {
        s.cluster.network_policies.len() == 2
    })
    .await;

    apply(&api, GLOBAL_DB).await;
    apply(&api, GLOBAL_DNS).await;
    within_a_second(&mut rx, "two global policies", |s| {
        s.cluster.global_policies.len() == 2
    })
    .await;

    apply(&api, SERVICE).await;
    apply(&api, ENDPOINT_SLICE).await;
    within_a_second(&mut rx, "a Service and its EndpointSlice", |s| {
        s.services.contains_key(&Key::new(NS, "web"))
            && s.endpoint_slices
                .get(&Key::new(NS, "web-abc"))
                .is_some_and(|e| e.endpoints.iter().map(|e| e.ready).eq([true, false]))
    })
    .await;

    api.kubectl_ok(&["label", "pod", "web-1", "-n", NS, "tier=front"], "")
        .await;
    within_a_second(&mut rx, "pod label added", |s| {
        s.cluster.pods[&Key::new(NS, "web-1")].labels.get("tier") == Some(&"front".to_string())
    })
    .await;

    api.kubectl_ok(&["label", "namespace", NS, "env=staging", "--overwrite"], "")
        .await;
    within_a_second(&mut rx, "namespace label changed", |s| {
        s.cluster.namespaces[NS].labels.get("env") == Some(&"staging".to_string())
    })
    .await;

    api.kubectl_ok(&["delete", "networkpolicy", "default-deny", "-n", NS], "")
        .await;
    within_a_second(&mut rx, "network policy deleted", |s| {
        s.cluster.network_policies.len() == 1
    })
    .await;

    api.kubectl_ok(&["delete", "globalpolicy", "allow-dns"], "").await;
    let s = within_a_second(&mut rx, "global policy deleted", |s| {
        s.cluster.global_policies.len() == 1
    })
    .await;

    // A scheduled pod waits for its kubelet to confirm termination; there is none, so force.
    api.kubectl_ok(
        &["delete", "pod", "db-1", "-n", NS, "--grace-period=0", "--force"],
        "",
    )
    .await;
    let s2 = within_a_second(&mut rx, "pod deleted", |s| {
        !s.cluster.pods.contains_key(&Key::new(NS, "db-1"))
    })
    .await;
    assert_eq!(s.cluster.global_policies, s2.cluster.global_policies);

    // The same end state, written as manifests, through the directory datastore.
    let dir = tempfile::tempdir().unwrap();
    let end_state = [
        NAMESPACE.replace("env: prod", "env: staging"),
        format!("{NODE}status:\n  addresses:\n  - {{type: InternalIP, address: 192.168.50.10}}\n"),
        format!(
            "{}status: {{phase: Running, podIPs: [{{ip: 10.244.1.5}}]}}\n",
            pod_manifest("web-1", "{app: web, tier: front}")
        ),
        NETPOL_WEB.to_string(),
        GLOBAL_DB.to_string(),
        SERVICE.to_string(),
        ENDPOINT_SLICE.to_string(),
    ];
    fs::write(dir.path().join("cluster.yaml"), end_state.join("---\n")).unwrap();
    let from_dir = datastore::load_dir(dir.path()).unwrap();
    let from_api = without_system_namespaces(&s2);
    assert_eq!(from_api.cluster.namespaces, from_dir.cluster.namespaces);
    assert_eq!(from_api.cluster.pods, from_dir.cluster.pods);
    assert_eq!(
        from_api.cluster.network_policies,
        from_dir.cluster.network_policies
    );
    assert_eq!(from_api.cluster.global_policies, from_dir.cluster.global_policies);
    assert_eq!(from_api.nodes, from_dir.nodes);
    assert_eq!(from_api.services, from_dir.services);
    assert_eq!(from_api.endpoint_slices, from_dir.endpoint_slices);
    assert_eq!(from_api, from_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_serviceaccount_can_list_and_watch_but_not_write() {
    let Some(api) = cluster().await else { return };
    apply(&api, NAMESPACE).await;
    apply(&api, GLOBAL_DB).await;

    let ds = start_datastore(&api, kubetest::NODE_AGENT).await;
    let s = ds.current();
    assert!(s.cluster.namespaces.contains_key(NS));
    assert!(s.cluster.global_policies.contains_key("deny-db-from-dev"));

    // The one write it has: the Valid condition on GlobalPolicy status.
    let mut condition = String::new();
    for _ in 0..50 {
        condition = api
            .kubectl_ok(
                &[
                    "get",
                    "globalpolicy",
                    "deny-db-from-dev",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Valid\")].status}",
                ],
                "",
            )
            .await;
        if condition == "True" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(condition, "True", "the agent marks a valid GlobalPolicy Valid");

    // A policy the schema accepts but caracal cannot use (an expression that does not parse)
    // is left out of the model whole, and says why in its status.
    let mut rx = ds.subscribe();
    apply(
        &api,
        "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {name: bad-expr}\n\
         spec: {priority: 5, subject: {selector: \"app == \"}, ingress: [{action: Deny}]}\n",
    )
    .await;
    let s = within_a_second(&mut rx, "invalid policy rejected", |s| {
        s.rejected.contains_key("bad-expr")
    })
    .await;
    assert!(!s.cluster.global_policies.contains_key("bad-expr"));
    assert!(s.rejected["bad-expr"].contains("spec.subject.selector"), "{s:?}");
    let mut status = String::new();
    for _ in 0..50 {
        status = api
            .kubectl_ok(
                &[
                    "get",
                    "globalpolicy",
                    "bad-expr",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Valid\")].status} \
                     {.status.conditions[?(@.type==\"Valid\")].message}",
                ],
                "",
            )
            .await;
        if status.starts_with("False") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.starts_with("False"), "{status}");
    assert!(status.contains("spec.subject.selector"), "{status}");
    // The agent that set the condition also recorded an Invalid Warning event on the policy.
    let mut events = String::new();
    for _ in 0..50 {
        events = api
            .kubectl_ok(
                &[
                    "get",
                    "events",
                    "-n",
                    "default",
                    "--field-selector",
                    "reason=Invalid,involvedObject.name=bad-expr",
                    "-o",
                    "jsonpath={.items[*].involvedObject.kind} {.items[*].message}",
                ],
                "",
            )
            .await;
        if events.starts_with("GlobalPolicy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(events.starts_with("GlobalPolicy "), "{events}");
    assert!(events.contains("spec.subject.selector"), "{events}");

    // Any other write is refused.
    let denied = api
        .kubectl_as(kubetest::NODE_AGENT, &["apply", "-f", "-"], NETPOL_DENY)
        .await;
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("forbidden"), "{stderr}");
    let client = api.client(kubetest::NODE_AGENT).await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let err = namespaces
        .delete(NS, &Default::default())
        .await
        .expect_err("the agent cannot delete a namespace");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 403),
        "{err}"
    );
    for (verb, resource) in [
        ("patch", "pods"),
        ("create", "networkpolicies"),
        ("update", "globalpolicies"),
        ("get", "secrets"),
    ] {
        let out = api
            .kubectl_as(kubetest::NODE_AGENT, &["auth", "can-i", verb, resource], "")
            .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "{verb} {resource}"
        );
    }

    // And without the binding nothing can be read: the datastore never becomes ready.
    let nobody = api.client(kubetest::NOBODY).await;
    let stuck = tokio::time::timeout(
        Duration::from_secs(3),
        datastore::watch_kube(nobody, KubeOptions::default()),
    )
    .await;
    assert!(stuck.is_err(), "a user without RBAC grants must not sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_global_policy_in_a_manifest_is_ignored_whole_with_its_reason() {
    // The API server's schema refuses such objects (kube_crds.rs); a manifest directory has
    // no schema, so the datastore must catch them itself.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("gp.yaml"),
        format!(
            "{GLOBAL_DB}---\n{}",
            GLOBAL_DNS.replace("priority: 100", "priority: 5000")
        ),
    )
    .unwrap();
    let ds = datastore::watch_dir(dir.path(), Duration::from_millis(50))
        .await
        .unwrap();
    let s = ds.current();
    assert_eq!(
        s.cluster.global_policies.keys().collect::<Vec<_>>(),
        ["deny-db-from-dev"]
    );
    let reasons: BTreeMap<_, _> = s.rejected.clone();
    assert!(reasons["allow-dns"].contains("priority"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_waits_for_the_globalpolicy_crd_instead_of_publishing_a_partial_model() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.kubectl_ok(&["apply", "-f", "-"], NAMESPACE).await;
    let client = api.client(kubetest::ADMIN).await;
    let ds = tokio::spawn(datastore::watch_kube(client, KubeOptions::default()));
    // Without GlobalPolicies the model would lack every Admin-tier deny: no snapshot yet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ds.is_finished(), "synced without the GlobalPolicy CRD");
    api.install_crds().await;
    api.kubectl_ok(&["apply", "-f", "-"], GLOBAL_DB).await;
    // The GlobalPolicy watcher retries with backoff, so this takes a few seconds.
    let ds = tokio::time::timeout(Duration::from_secs(60), ds)
        .await
        .expect("synced once the CRD exists")
        .unwrap();
    let mut rx = ds.subscribe();
    let s = kubetest::wait_model(&mut rx, Duration::from_secs(5), |s| {
        s.cluster.global_policies.contains_key("deny-db-from-dev")
    })
    .await
    .expect("the GlobalPolicy is in the model");
    assert!(s.cluster.namespaces.contains_key(NS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_objects_and_their_secret_reach_the_model_and_a_bad_peer_says_which_field() {
    let Some(api) = cluster().await else { return };
    let ds = start_datastore(&api, kubetest::NODE_AGENT).await;
    let mut rx = ds.subscribe();
    apply(
        &api,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: kube-system}\n\
         type: Opaque\nstringData: {rack-a: s3cret}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: elsewhere, namespace: default}\n\
         type: Opaque\nstringData: {x: other}\n---\n\
         apiVersion: caracal.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: rack-a}\n\
         spec: {peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\", \
         password: {secretKeyRef: {name: bgp, key: rack-a}}}\n",
    )
    .await;
    let s = within_a_second(&mut rx, "BGPPeer and its Secret", |s| {
        s.bgp_peers.contains_key("rack-a") && s.secrets.contains_key("bgp")
    })
    .await;
    assert_eq!(s.secrets["bgp"].data["rack-a"].expose(), "s3cret");
    assert!(!s.secrets.contains_key("elsewhere"), "only the agent's namespace");

    // The schema accepts it, caracal does not: ignored whole, with the field in its status.
    apply(
        &api,
        "apiVersion: caracal.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: bad-ip}\n\
         spec: {peerIP: 10.0.0.300, asNumber: 65001}\n",
    )
    .await;
    let s = within_a_second(&mut rx, "invalid BGPPeer rejected", |s| {
        s.rejected_bgp.contains_key("BGPPeer/bad-ip")
    })
    .await;
    assert!(!s.bgp_peers.contains_key("bad-ip"));
    let mut status = String::new();
    for _ in 0..50 {
        status = api
            .kubectl_ok(
                &[
                    "get",
                    "bgppeer",
                    "bad-ip",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Valid\")].status} \
                     {.status.conditions[?(@.type==\"Valid\")].message}",
                ],
                "",
            )
            .await;
        if status.starts_with("False") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.starts_with("False") && status.contains("spec.peerIP: \"10.0.0.300\" is not an IP address"),
        "{status}"
    );
    // And an Invalid Warning event on the BGPPeer, naming the field.
    let mut events = String::new();
    for _ in 0..50 {
        events = api
            .kubectl_ok(
                &[
                    "get",
                    "events",
                    "-n",
                    "default",
                    "--field-selector",
                    "reason=Invalid,involvedObject.name=bad-ip",
                    "-o",
                    "jsonpath={.items[*].involvedObject.kind} {.items[*].message}",
                ],
                "",
            )
            .await;
        if events.starts_with("BGPPeer") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        events.starts_with("BGPPeer ") && events.contains("spec.peerIP"),
        "{events}"
    );

    // The agent may read Secrets only in its own namespace, and write none.
    for (verb, namespace, want) in [
        ("get", "kube-system", "yes"),
        ("watch", "kube-system", "yes"),
        ("get", "default", "no"),
        ("create", "kube-system", "no"),
    ] {
        let out = api
            .kubectl_as(
                kubetest::NODE_AGENT,
                &["auth", "can-i", verb, "secrets", "-n", namespace],
                "",
            )
            .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "{verb} secrets in {namespace}"
        );
    }
}
