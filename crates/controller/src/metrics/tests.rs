//! The metrics endpoint scraped over HTTP while the state behind it changes: a policy apply
//! through the real reconciler (a fake dataplane), and a BGP session between two in-process
//! speakers on loopback coming up and going down.

use std::time::Duration;

use caracal_policy::{
    compile::{Delta, iface_name},
    model::{ClusterState, Key, LocalEndpoint, Pod},
    program::Program,
};

use super::{Metrics, scrape};
use crate::{
    agent::PolicyReconciler,
    dataplane::{self, ApplyStats, Dataplane},
};

/// A dataplane that takes every program, or fails in `ipset` when told to.
struct Fake {
    fail: bool,
}

impl Dataplane for Fake {
    fn apply(&mut self, _program: &Program) -> dataplane::Result<ApplyStats> {
        if self.fail {
            return Err(dataplane::Error::Command {
                cmd: "/usr/sbin/ipset restore -exist".into(),
                status: "exit status: 1".into(),
                stderr: "ipset v7.22: Kernel error".into(),
            });
        }
        Ok(ApplyStats {
            restores: 2,
            ipset_calls: 1,
            ..Default::default()
        })
    }

    fn apply_delta(&mut self, program: &Program, _delta: &Delta) -> dataplane::Result<ApplyStats> {
        self.apply(program)
    }

    fn resync(&mut self) {}
}

async fn serve(metrics: &Metrics) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(super::server::serve_metrics(metrics.clone(), listener));
    addr
}

async fn scrape(addr: std::net::SocketAddr) -> scrape::Exposition {
    let (status, body) = super::server::get(addr, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{body}");
    scrape::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn cluster() -> (ClusterState, Vec<LocalEndpoint>) {
    let mut state = ClusterState::default();
    caracal_policy::manifests::load(
        &mut state,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]\n",
    )
    .unwrap();
    let db = Key::new("x", "db");
    state.pods.insert(
        db.clone(),
        Pod {
            namespace: "x".into(),
            name: "db".into(),
            labels: [("app".to_string(), "db".to_string())].into(),
            ips: vec!["10.0.0.1".parse().unwrap()],
            node: Some("n1".into()),
            ports: vec![],
        },
    );
    let eps = vec![LocalEndpoint {
        iface: iface_name(&db),
        ips: state.pods[&db].ips.clone(),
        pod: db,
    }];
    (state, eps)
}

#[tokio::test]
async fn a_policy_apply_shows_in_the_scrape_and_a_failure_is_counted_by_tool() {
    let metrics = Metrics::new();
    let addr = serve(&metrics).await;
    let before = scrape(addr).await;
    assert_eq!(before.types["caracal_iptables_restore_calls"], "counter");
    assert_eq!(before.get("caracal_iptables_restore_calls_total", &[]), Some(0.0));
    assert_eq!(
        before.get("caracal_policy_applies_total", &[("result", "success")]),
        None
    );

    let (state, eps) = cluster();
    let mut r = PolicyReconciler::new(Fake { fail: false }).with_metrics(metrics.policy.clone());
    r.step(&state, &eps, false).unwrap();
    let after = scrape(addr).await;
    assert_eq!(after.types["caracal_policy_applies"], "counter");
    assert_eq!(after.types["caracal_policy_apply_duration_seconds"], "histogram");
    let one = |name, labels: &[(&str, &str)]| after.get(name, labels);
    assert_eq!(
        one(
            "caracal_policy_applies_total",
            &[("mode", "full"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(one("caracal_iptables_restore_calls_total", &[]), Some(2.0));
    assert_eq!(one("caracal_ipset_calls_total", &[]), Some(1.0));
    assert_eq!(one("caracal_policy_local_endpoints", &[]), Some(1.0));
    assert_eq!(
        one("caracal_cluster_policies", &[("kind", "NetworkPolicy")]),
        Some(1.0)
    );
    let chains = one("caracal_iptables_chains", &[("ip_version", "4")]).unwrap();
    assert!(chains >= 4.0, "dispatch and endpoint chains at least: {chains}");
    // IPv6 has the fixed chains only: the pod and its policy are IPv4.
    let v6 = one("caracal_iptables_chains", &[("ip_version", "6")]).unwrap();
    assert!(v6 >= 1.0 && v6 < chains, "{v6} IPv6 chains, {chains} IPv4 ones");
    assert!(one("caracal_iptables_rules", &[("ip_version", "4")]).unwrap() > chains);
    assert_eq!(
        one("caracal_policy_compile_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        one("caracal_policy_apply_duration_seconds_count", &[("mode", "full")]),
        Some(1.0)
    );
    assert_eq!(one("caracal_policy_last_apply_success", &[]), Some(1.0));
    let last = metrics.policy.last_apply().unwrap();
    assert_eq!((last.endpoints, last.network_policies, last.error), (1, 1, None));

    // The same model again: the delta is empty, nothing is applied or counted.
    r.step(&state, &eps, false).unwrap();
    let again = scrape(addr).await;
    assert_eq!(
        again.get("caracal_policy_applies_total", &[("result", "success")]),
        Some(1.0)
    );

    let mut broken = PolicyReconciler::new(Fake { fail: true }).with_metrics(metrics.policy.clone());
    assert!(broken.step(&state, &eps, false).is_err());
    let failed = scrape(addr).await;
    assert_eq!(failed.get("caracal_ipset_failures_total", &[]), Some(1.0));
    assert_eq!(failed.get("caracal_ipset_calls_total", &[]), Some(2.0));
    assert_eq!(
        failed.get("caracal_iptables_restore_failures_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        failed.get(
            "caracal_policy_applies_total",
            &[("mode", "full"), ("result", "failure")]
        ),
        Some(1.0)
    );
    assert_eq!(failed.get("caracal_policy_last_apply_success", &[]), Some(0.0));
    assert!(
        metrics
            .policy
            .last_apply()
            .unwrap()
            .error
            .unwrap()
            .contains("ipset"),
        "the last error is kept for the node status"
    );
}

#[tokio::test]
async fn datastore_lists_and_watch_restarts_are_counted_by_kind() {
    let metrics = Metrics::new();
    metrics.datastore.listed(crate::datastore::model::Kind::Pod);
    metrics.datastore.listed(crate::datastore::model::Kind::Pod);
    metrics
        .datastore
        .watch_restarted(crate::datastore::model::Kind::Node);
    let e = scrape::parse(&metrics.encode()).unwrap();
    assert_eq!(
        e.get("caracal_datastore_lists_total", &[("kind", "Pod")]),
        Some(2.0)
    );
    assert_eq!(
        e.get("caracal_datastore_watch_restarts_total", &[("kind", "Node")]),
        Some(1.0)
    );
}

fn speakers(
    port: u16,
) -> (
    caracal_bgp::config::SpeakerConfig,
    caracal_bgp::config::SpeakerConfig,
) {
    let a = format!(
        "{{router_id: 10.0.0.1, local_as: 65001, listen_address: 127.0.0.1, listen_port: {port},
          originate: [10.1.0.0/24],
          peers: [{{address: 127.0.0.2, remote_as: 65002, passive: true, hold_time: 9, families: [ipv4_unicast]}}]}}"
    );
    let b = format!(
        "{{router_id: 10.0.0.2, local_as: 65002, listen_port: 0,
          peers: [{{address: 127.0.0.1, port: {port}, remote_as: 65001, source_address: 127.0.0.2,
                   hold_time: 9, connect_retry_time: 1, families: [ipv4_unicast]}}]}}"
    );
    (
        caracal_bgp::config::SpeakerConfig::parse(&a).unwrap(),
        caracal_bgp::config::SpeakerConfig::parse(&b).unwrap(),
    )
}

/// Polls (as the agent's observer does) and scrapes until `check` holds.
async fn scrape_until(
    metrics: &Metrics,
    addr: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&scrape::Exposition) -> bool,
) -> scrape::Exposition {
    let start = tokio::time::Instant::now();
    loop {
        metrics.bgp.poll().await;
        let e = scrape(addr).await;
        if check(&e) {
            return e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}: {:#?}",
            metrics.bgp.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bgp_session_coming_up_and_going_down_shows_in_the_scrape() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ca, cb) = speakers(port);
    let (a, _ta) = caracal_bgp::speaker::start(ca.clone(), None).await.unwrap();
    let (b, _tb) = caracal_bgp::speaker::start(cb, None).await.unwrap();
    let metrics = Metrics::new();
    let addr = serve(&metrics).await;
    metrics.bgp.publish(
        &a,
        super::bgp::peer_types(&ca, &ca),
        ca.originate.iter().map(|o| o.prefix).collect(),
    );
    let peer = [("peer", "127.0.0.2"), ("peer_as", "65002"), ("type", "global")];
    let up = scrape_until(&metrics, addr, "the session up", |e| {
        e.get("caracal_bgp_session_up", &peer) == Some(1.0)
    })
    .await;
    assert_eq!(up.get("caracal_bgp_session_state", &peer), Some(6.0));
    assert_eq!(up.types["caracal_bgp_session_uptime_seconds"], "gauge");
    assert_eq!(up.get("caracal_bgp_originated_prefixes", &[]), Some(1.0));
    let v4 = [("peer", "127.0.0.2"), ("afi", "ipv4"), ("safi", "unicast")];
    // b announces nothing; a advertises its originated prefix once its MRAI lets it.
    assert_eq!(up.get("caracal_bgp_prefixes_received", &v4), Some(0.0));
    assert_eq!(
        up.get("caracal_bgp_prefixes_received", &[("afi", "ipv6")]),
        None,
        "only the families the peer is configured for"
    );
    scrape_until(&metrics, addr, "the originated prefix advertised", |e| {
        e.get("caracal_bgp_prefixes_advertised", &v4) == Some(1.0)
    })
    .await;

    // b goes away: its Cease / Administrative Shutdown goes out as a Hard Reset (6/9, RFC 8538
    // §3, both sides having the N bit), which is what a counts.
    b.shutdown().await.unwrap();
    let cease = [("peer", "127.0.0.2"), ("code", "6"), ("subcode", "9")];
    let down = scrape_until(&metrics, addr, "the session down with 6/9", |e| {
        e.get("caracal_bgp_notifications_received_total", &cease) == Some(1.0)
    })
    .await;
    assert_eq!(down.get("caracal_bgp_session_up", &peer), Some(0.0));
    assert_eq!(down.get("caracal_bgp_session_uptime_seconds", &peer), Some(0.0));
    assert_eq!(down.types["caracal_bgp_notifications_received"], "counter");
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_observer_counts_the_cni_plugins_endpoint_records() {
    let metrics = Metrics::new();
    let d = tempfile::tempdir().unwrap();
    let record = |id: &str| {
        format!(
            r#"{{"pod":{{"namespace":"x","name":"{id}"}},"containerID":"{id}","ifname":"eth0","iface":"cara{id}","mac":"ee:ee:ee:ee:ee:ee","ips":["10.244.1.2"],"netns":"/x","network":"caracal"}}"#
        )
    };
    std::fs::write(d.path().join("c1_eth0.json"), record("c1")).unwrap();
    std::fs::write(d.path().join("c2_eth0.json"), record("c2")).unwrap();
    std::fs::write(d.path().join("c3_eth0.json"), "{half written").unwrap();
    super::observe::once(&metrics, d.path()).await;
    let e = scrape::parse(&metrics.encode()).unwrap();
    assert_eq!(e.get("caracal_cni_endpoints", &[]), Some(2.0));
    assert_eq!(
        e.get("caracal_bgp_session_up", &[]),
        None,
        "no speaker, no BGP figures"
    );
}
