//! Service IP advertisement on the real cluster (tests/topologies/k8s, whose ConfigMap
//! configures `services:` ranges): every node announces the Service CIDR, the ToR's RIB holds it
//! with both nodes as next hops and no node installs it; an `externalTrafficPolicy: Local`
//! LoadBalancer Service with an external IP and an ingress IP is announced as /32s by exactly the
//! nodes with a ready endpoint, reachable from the ToR through them, and its routes follow the
//! endpoint to the other node within a second of the old one's deletion. With the lab's
//! `pod_pools` (outgoing NAT on), a pod's connection to the ToR comes from its node's address.
//!
//! Needs what k8s_smoke.rs needs; skipped (passing) without it unless `CARACAL_REQUIRE_K8S=1`.

mod k8s_support;

use std::{
    collections::BTreeSet,
    net::{IpAddr, TcpListener},
    time::{Duration, Instant},
};

use caracal::dataplane::netns::in_netns;

use k8s_support::{Cluster, agnhost_pod, skip_or_fail};

const NODE1: &str = "10.0.0.11";
const NODE2: &str = "10.0.0.12";
const EXTERNAL_IP: &str = "198.18.0.10";
const INGRESS_IP: &str = "198.18.1.10";

/// The next hops of every path the ToR's BIRD holds for `prefix` (`birdc show route <prefix>`).
fn tor_next_hops(c: &Cluster, prefix: &str) -> BTreeSet<String> {
    let out = c.lab().cli("tor", &["show", "route", prefix]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("via "))
        .filter_map(|v| v.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn hops(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The routes the speaker installed on `node` (proto 201).
fn bgp_kernel_routes(c: &Cluster, node: &str) -> String {
    let out = c.node_exec(node, &["ip", "route", "show", "proto", "201"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn service(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: web}}
  externalIPs: [{EXTERNAL_IP}]
  ports: [{{port: 8080, targetPort: 8080, protocol: TCP}}]
"#
    )
}

fn web_pod(ns: &str, name: &str, node: &str) -> String {
    agnhost_pod(ns, name, node).replace(&format!("app: {name}"), "app: web")
}

#[test]
fn service_routes_follow_local_endpoints_and_stay_out_of_the_kernel() {
    if skip_or_fail() {
        return;
    }
    let mut c = Cluster::up();
    c.install_caracal();

    // The Service CIDR from both nodes, in no node's kernel table.
    c.wait("the ToR holds 10.96.0.0/16 from both nodes", 60, |c| {
        Ok(tor_next_hops(c, "10.96.0.0/16") == hops(&[NODE1, NODE2]))
    });
    for node in ["node1", "node2"] {
        let routes = bgp_kernel_routes(&c, node);
        assert!(
            !routes.contains("10.96."),
            "{node} installed a Service route: {routes}"
        );
    }

    let ns = "svc";
    c.kubectl_ok(&["create", "namespace", ns]);
    c.run_pods(ns, &web_pod(ns, "web-1", "node1"));
    c.apply(&service(ns));
    // No LoadBalancer controller in the lab: the address is written as one would.
    c.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "service",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{INGRESS_IP}"}}]}}}}}}"#),
    ]);
    let cluster_ip = c.kubectl_ok(&[
        "-n",
        ns,
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let cluster_ip = cluster_ip.trim();
    let prefixes = [
        format!("{EXTERNAL_IP}/32"),
        format!("{INGRESS_IP}/32"),
        format!("{cluster_ip}/32"),
    ];
    let all_from = |c: &Cluster, want: &[&str]| prefixes.iter().all(|p| tor_next_hops(c, p) == hops(want));
    c.wait("the ToR holds the Service's /32s from node1 only", 30, |c| {
        Ok(all_from(c, &[NODE1]))
    });
    // node2 learned them over the mesh but neither installs nor passes them on.
    let routes = bgp_kernel_routes(&c, "node2");
    assert!(
        !routes.contains("198.18."),
        "node2 installed a Service route: {routes}"
    );
    // From outside the cluster (the ToR's own namespace) through the announced address.
    c.wait("the ToR reaches web-1 through the external IP", 30, |c| {
        let url = format!("http://{EXTERNAL_IP}:8080/hostname");
        let out = c.lab().exec("tor", &["curl", "-sS", "-m", "2", &url])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "web-1")
    });

    // A second endpoint on node2: both nodes announce.
    c.run_pods(ns, &web_pod(ns, "web-2", "node2"));
    c.wait("the ToR holds the /32s from both nodes", 30, |c| {
        Ok(all_from(c, &[NODE1, NODE2]))
    });

    // Outgoing NAT: web-2 (node2) reaches a listener on the ToR, outside every range, from
    // node2's address.
    let listener = in_netns(Some(c.lab().netns("tor").unwrap()), || {
        TcpListener::bind("10.0.0.1:0")
    })
    .unwrap()
    .unwrap();
    let port = listener.local_addr().unwrap().port();
    c.wait("web-2 connects to the ToR", 30, |c| {
        Ok(c.connect(ns, "web-2", &format!("10.0.0.1:{port}")) == "ok")
    });
    let (_conn, peer) = listener.accept().unwrap();
    assert_eq!(
        peer.ip(),
        NODE2.parse::<IpAddr>().unwrap(),
        "masqueraded to node2's address"
    );

    // The endpoint leaves node1: node1's announcements go within a second.
    c.kubectl_ok(&["-n", ns, "delete", "pod", "web-1", "--wait=false"]);
    let deleted = Instant::now();
    loop {
        if all_from(&c, &[NODE2]) {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "node1 still announces after {:?}: {:?}",
            deleted.elapsed(),
            prefixes
                .iter()
                .map(|p| (p, tor_next_hops(&c, p)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!("withdrawn at the ToR {:?} after the deletion", deleted.elapsed());

    // The Service gone: only the ranges stay.
    c.kubectl_ok(&["-n", ns, "delete", "service", "web"]);
    c.wait("the /32s are withdrawn with the Service", 30, |c| {
        Ok(prefixes.iter().all(|p| tor_next_hops(c, p).is_empty()))
    });
    assert_eq!(tor_next_hops(&c, "10.96.0.0/16"), hops(&[NODE1, NODE2]));
    c.lab.take().unwrap().down().expect("teardown");
}
