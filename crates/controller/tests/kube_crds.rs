//! The CRDs in `crds/` and the manifests in `deploy/` against a real kube-apiserver: accepted,
//! structural, validating, documented, and applicable with `--dry-run=server`.

use caracal::testbed::kubetest::{self, KubeApi};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn global_policy(name: &str, spec: &str) -> String {
    format!("apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_structural_validate_globalpolicies_and_are_documented() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.install_crds().await;

    // build.sh stamps the real version (module zips carry a placeholder), so kubectl's skew
    // check and the gcloud kubectl dispatcher see a 1.34 server.
    let version = api.kubectl_ok(&["version", "-o", "json"], "").await;
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(server.starts_with("v1.34."), "server version {server}");
    eprintln!(
        "kubectl {} against kube-apiserver {server}",
        version["clientVersion"]["gitVersion"]
    );

    // Every CRD is Established and none is flagged NonStructuralSchema.
    let names = api
        .kubectl_ok(&["get", "crd", "-o", "jsonpath={.items[*].metadata.name}"], "")
        .await;
    let files = std::fs::read_dir(kubetest::repo_root().join("crds"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    assert_eq!(
        names.split_whitespace().count(),
        files,
        "one CRD per file in crds/: {names}"
    );
    assert!(names.contains("globalpolicies.caracal.dev"), "{names}");
    for name in names.split_whitespace() {
        let conditions = api
            .kubectl_ok(
                &["get", "crd", name, "-o", "jsonpath={.status.conditions[*].type}"],
                "",
            )
            .await;
        assert!(conditions.contains("Established"), "{name}: {conditions}");
        assert!(
            !conditions.contains("NonStructuralSchema"),
            "{name}: {conditions}"
        );
    }

    // A valid object is stored, with the schema default for tier.
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &global_policy(
            "ok",
            "  priority: 10\n  ingress:\n  - action: Deny\n    from: [{networks: [10.0.0.0/8]}]\n",
        ),
    )
    .await;
    let tier = api
        .kubectl_ok(&["get", "gp", "ok", "-o", "jsonpath={.spec.tier}"], "")
        .await;
    assert_eq!(tier, "Admin");

    // Bad objects are refused, with a message naming the field and what is wrong.
    let cases = [
        (
            "priority-high",
            "  priority: 5000\n",
            &["spec.priority", "1000"][..],
        ),
        (
            "priority-negative",
            "  priority: -1\n",
            &["spec.priority", "0"][..],
        ),
        (
            "priority-missing",
            "  tier: Admin\n",
            &["spec.priority", "Required"][..],
        ),
        (
            "unknown-tier",
            "  priority: 1\n  tier: Gold\n",
            &["spec.tier", "Unsupported value", "Gold"][..],
        ),
        (
            "unknown-action",
            "  priority: 1\n  ingress:\n  - action: Allow\n",
            &["spec.ingress[0].action", "Unsupported value", "Allow"][..],
        ),
    ];
    for (name, spec, expected) in cases {
        let out = api
            .kubectl(&["apply", "-f", "-"], &global_policy(name, spec))
            .await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{name} was accepted");
        for e in expected {
            assert!(err.contains(e), "{name}: expected {e:?} in: {err}");
        }
    }
    let stored = api
        .kubectl_ok(&["get", "gp", "-o", "jsonpath={.items[*].metadata.name}"], "")
        .await;
    assert_eq!(stored, "ok", "only the valid object is stored");

    // kubectl explain shows the documented fields, from the published OpenAPI schema.
    let explain = api.kubectl_ok(&["explain", "globalpolicy.spec"], "").await;
    for field in ["priority", "tier", "subject", "ingress", "egress"] {
        assert!(explain.contains(field), "explain lacks {field}: {explain}");
    }
    assert!(explain.contains("lower is evaluated first"), "{explain}");
    let explain_rule = api
        .kubectl_ok(&["explain", "globalpolicy.spec.ingress.action"], "")
        .await;
    assert!(explain_rule.contains("Accept"), "{explain_rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_crds_apply_with_server_side_dry_run() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    let root = kubetest::repo_root();
    let crds = root.join("crds");
    // The CRDs first: the server can only dry-run objects of kinds it knows.
    api.kubectl_ok(&["apply", "--dry-run=server", "-f", crds.to_str().unwrap()], "")
        .await;
    api.install_crds().await;
    // Everything in deploy/ is a Kubernetes object, so the folder applies as it is.
    for e in std::fs::read_dir(root.join("deploy")).unwrap() {
        let p = e.unwrap().path();
        assert!(
            p.extension().is_some_and(|x| x == "yaml"),
            "{} in deploy/ is not a manifest",
            p.display()
        );
    }
    let deploy = root.join("deploy");
    let out = api
        .kubectl_ok(&["apply", "--dry-run=server", "-f", deploy.to_str().unwrap()], "")
        .await;
    for kind in [
        "daemonset.apps/caracal-node",
        "clusterrole.rbac.authorization.k8s.io/caracal-node",
    ] {
        assert!(out.contains(kind), "{kind} not applied: {out}");
    }
    // A dry run stores nothing.
    let out = api
        .kubectl(&["get", "daemonset", "caracal-node", "-n", "kube-system"], "")
        .await;
    assert!(!out.status.success());
}

fn bgp_object(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: caracal.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_crds_store_calico_shaped_objects_and_refuse_bad_ones_with_the_field() {
    let Some(api) = KubeApi::start().await.expect("start etcd and kube-apiserver") else {
        return;
    };
    api.install_crds().await;
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &bgp_object(
            "BGPConfiguration",
            "default",
            "{asNumber: 64512, nodeToNodeMeshEnabled: false, nodeMeshMaxRestartTime: 120s, \
             serviceClusterIPs: [{cidr: 10.96.0.0/12}]}",
        ),
    )
    .await;
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &bgp_object(
            "BGPPeer",
            "rack-a",
            "{peerIP: 10.0.1.254, asNumber: 65001, nodeSelector: \"rack == 'a'\", \
             password: {secretKeyRef: {name: bgp, key: rack-a}}, \
             importFilter: [{cidr: 10.0.0.0/8, prefixLength: {max: 24}, action: Accept}]}",
        ),
    )
    .await;
    api.kubectl_ok(
        &["apply", "-f", "-"],
        &bgp_object(
            "BGPPeer",
            "to-rr",
            "{peerSelector: \"route-reflector == 'true'\"}",
        ),
    )
    .await;
    // The schema's defaults, and the short names.
    let mesh = api
        .kubectl_ok(
            &["get", "bgpp", "to-rr", "-o", "jsonpath={.spec.sourceAddress}"],
            "",
        )
        .await;
    assert_eq!(mesh, "UseNodeIP");
    let peers = api
        .kubectl_ok(
            &["get", "bgppeers", "-o", "jsonpath={.items[*].metadata.name}"],
            "",
        )
        .await;
    assert_eq!(peers, "rack-a to-rr");
    api.kubectl_ok(&["get", "bgpconfig", "default"], "").await;

    let cases = [
        (
            "BGPPeer",
            "both-peer-fields",
            "{peerIP: 10.0.0.1, asNumber: 1, peerSelector: all()}",
            &["exactly one of peerIP and peerSelector"][..],
        ),
        (
            "BGPPeer",
            "node-and-selector",
            "{peerIP: 10.0.0.1, asNumber: 1, node: a, nodeSelector: all()}",
            &["node and nodeSelector are mutually exclusive"][..],
        ),
        (
            "BGPPeer",
            "no-as",
            "{peerIP: 10.0.0.1}",
            &["asNumber is required with peerIP"][..],
        ),
        (
            "BGPPeer",
            "bad-source",
            "{peerIP: 10.0.0.1, asNumber: 1, sourceAddress: Elsewhere}",
            &["spec.sourceAddress", "Unsupported value"][..],
        ),
        (
            "BGPPeer",
            "bad-ttl",
            "{peerIP: 10.0.0.1, asNumber: 1, ebgpMultihop: 300}",
            &["spec.ebgpMultihop"][..],
        ),
        (
            "BGPConfiguration",
            "default",
            "{listenPort: 70000}",
            &["spec.listenPort", "65535"][..],
        ),
        (
            "BGPConfiguration",
            "default",
            "{serviceLoadBalancerAggregation: Sometimes}",
            &["spec.serviceLoadBalancerAggregation", "Unsupported value"][..],
        ),
    ];
    for (kind, name, spec, expected) in cases {
        let out = api
            .kubectl(&["apply", "-f", "-"], &bgp_object(kind, name, spec))
            .await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{kind} {name} {spec} was accepted");
        for e in expected {
            assert!(err.contains(e), "{kind} {name}: expected {e:?} in: {err}");
        }
    }
    let explain = api.kubectl_ok(&["explain", "bgppeer.spec"], "").await;
    for field in [
        "peerIP",
        "nodeSelector",
        "peerSelector",
        "password",
        "maxRestartTime",
    ] {
        assert!(explain.contains(field), "explain lacks {field}: {explain}");
    }
}
