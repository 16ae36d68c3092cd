//! Service IP advertisement on the real cluster (tests/topologies/k8s, whose ConfigMap
//! configures `services:` ranges): every node announces the Service CIDR, the ToR's RIB holds it
//! with both nodes as next hops and no node installs it; an `externalTrafficPolicy: Local`
//! LoadBalancer Service with an external IP and an ingress IP (given by caracal's LB IPAM from a
//! LoadBalancerPool) is announced as /32s by exactly the
//! nodes with a ready endpoint, reachable from the ToR through them, and its routes follow the
//! endpoint to the other node within a second of the old one's deletion. A host outside the
//! cluster (`ext`, behind the ToR) reaches the Service with its source address kept, and a
//! NetworkPolicy on the backends blocks it too. With the lab's `pod_pools` (outgoing NAT on) a
//! pod's connection to the outside host comes from its node's address; with NAT turned off,
//! from the pod's own.
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
/// The host outside the cluster, behind the ToR (tests/topologies/k8s).
const EXT: &str = "203.0.113.10";
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

/// `GET http://<ip>:8080/<path>` from the outside host (agnhost netexec); empty on failure.
fn ext_get(c: &Cluster, ip: &str, path: &str) -> String {
    let url = format!("http://{ip}:8080/{path}");
    c.lab()
        .exec("ext", &["curl", "-sS", "-m", "2", &url])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The source address the outside host sees when `pod` connects to it.
fn ext_sees(c: &Cluster, ns: &str, pod: &str) -> IpAddr {
    let listener = in_netns(Some(c.lab().netns("ext").unwrap()), || {
        TcpListener::bind(format!("{EXT}:0"))
    })
    .unwrap()
    .unwrap();
    let port = listener.local_addr().unwrap().port();
    c.wait(&format!("{pod} connects to the outside host"), 30, |c| {
        Ok(c.connect(ns, pod, &format!("{EXT}:{port}")) == "ok")
    });
    let (_conn, peer) = listener.accept().unwrap();
    peer.ip()
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
    // caracal's LoadBalancer IPAM (one agent, elected over a Lease) gives the Service the
    // lowest address of the pool (`.10/31`: .10 and .11), inside the advertised LB range.
    c.apply(
        "apiVersion: caracal.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {name: lab}\nspec: {cidrs: [198.18.1.10/31]}\n",
    );
    c.wait(
        "the Service gets its LoadBalancer address from the pool",
        30,
        |c| {
            let ip = c.kubectl(&[
                "-n",
                ns,
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ])?;
            Ok(ip.trim() == INGRESS_IP)
        },
    );
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
    // From the host outside the cluster, through the ToR and the announced address; with
    // `externalTrafficPolicy: Local` the pod sees the outside host's own address.
    c.wait(
        "the outside host reaches web-1 through the external IP",
        30,
        |c| Ok(ext_get(c, EXTERNAL_IP, "hostname") == "web-1"),
    );
    let client = ext_get(&c, EXTERNAL_IP, "clientip");
    assert!(
        client.starts_with(&format!("{EXT}:")),
        "the source address is kept through the Service: {client}"
    );

    // A second endpoint on node2: both nodes announce.
    c.run_pods(ns, &web_pod(ns, "web-2", "node2"));
    c.wait("the ToR holds the /32s from both nodes", 30, |c| {
        Ok(all_from(c, &[NODE1, NODE2]))
    });

    // NetworkPolicy sees the pod after kube-proxy's DNAT: denying ingress to the backends
    // blocks the outside host too, and lifting it lets it back.
    c.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-web, namespace: {ns}}}\nspec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Ingress]}}\n"
    ));
    c.wait("the deny policy blocks the outside host", 30, |c| {
        Ok(ext_get(c, EXTERNAL_IP, "hostname").is_empty())
    });
    c.kubectl_ok(&["-n", ns, "delete", "networkpolicy", "deny-web"]);
    c.wait("the outside host is let back in", 30, |c| {
        Ok(!ext_get(c, EXTERNAL_IP, "hostname").is_empty())
    });

    // Outgoing NAT on (the lab's pool): web-2 (node2) reaches the outside host from node2's
    // address.
    assert_eq!(
        ext_sees(&c, ns, "web-2"),
        NODE2.parse::<IpAddr>().unwrap(),
        "masqueraded to node2's address"
    );
    // And off: the outside host sees the pod's own address (the ToR routes the reply back to
    // the pod CIDR it learned from the nodes).
    let config =
        std::fs::read_to_string(k8s_support::repo().join("tests/topologies/k8s/caracal-config.yaml"))
            .unwrap();
    assert!(config.contains("nat_outgoing: true"));
    c.apply(&config.replace("nat_outgoing: true", "nat_outgoing: false"));
    c.kubectl_ok(&[
        "-n",
        "kube-system",
        "rollout",
        "restart",
        "daemonset/caracal-node",
    ]);
    c.kubectl_ok(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/caracal-node",
        "--timeout=180s",
    ]);
    c.wait_agents_ready();
    let pod_ip: IpAddr = c.pod_ip(ns, "web-2").parse().unwrap();
    c.wait("without NAT the outside host sees the pod's address", 60, |c| {
        Ok(ext_sees(c, ns, "web-2") == pod_ip)
    });

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

    // Reached from outside through the LoadBalancer address too.
    c.wait(
        "the outside host reaches the Service through its LoadBalancer address",
        30,
        |c| Ok(!ext_get(c, INGRESS_IP, "hostname").is_empty()),
    );

    // The Service gone: only the ranges stay.
    c.kubectl_ok(&["-n", ns, "delete", "service", "web"]);
    c.wait("the /32s are withdrawn with the Service", 30, |c| {
        Ok(prefixes.iter().all(|p| tor_next_hops(c, p).is_empty()))
    });
    assert_eq!(tor_next_hops(&c, "10.96.0.0/16"), hops(&[NODE1, NODE2]));
    c.lab.take().unwrap().down().expect("teardown");
}
