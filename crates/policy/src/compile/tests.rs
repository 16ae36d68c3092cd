//! The compiler's unit tests: layout, dispatch, families, sets, and the incremental engine.

use super::*;
use crate::eval::{self, Packet};
use crate::model::NamedPort;

fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ips: &[&str]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        node: Some("n".into()),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn state(policies: &str) -> ClusterState {
    let mut s = ClusterState::default();
    for (k, p) in [
        (
            Key::new("x", "a"),
            pod("x", "a", &[("app", "web")], &["10.0.0.1", "fd00::1"]),
        ),
        (
            Key::new("x", "b"),
            pod("x", "b", &[("app", "db")], &["10.0.0.2", "fd00::2"]),
        ),
        (
            Key::new("y", "c"),
            pod("y", "c", &[("app", "web")], &["10.0.1.3", "fd00::1:3"]),
        ),
    ] {
        s.pods.insert(k, p);
    }
    crate::manifests::load(&mut s, policies).unwrap();
    s
}

fn endpoints(s: &ClusterState, keys: &[Key]) -> Vec<LocalEndpoint> {
    keys.iter()
        .map(|k| LocalEndpoint {
            pod: k.clone(),
            iface: iface_name(k),
            ips: s.pods[k].ips.clone(),
        })
        .collect()
}

fn fwd(p: &Program, src: &str, dst: &str, in_if: &str, out_if: &str, port: u16) -> eval::Verdict {
    eval::run(
        p,
        "FORWARD",
        &Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: Protocol::Tcp,
            dport: port,
            in_iface: Some(in_if.into()),
            out_iface: Some(out_if.into()),
            ct: CtState::New,
        },
    )
    .unwrap()
}

const DENY_DB: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n";

#[test]
fn hooks_static_chains_and_endpoint_chains_exist_for_both_families() {
    let s = state(DENY_DB);
    let eps = endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")]);
    let p = compile(&s, &eps).program;
    for f in [Family::V4, Family::V6] {
        for name in [
            CHAIN_FORWARD,
            CHAIN_INPUT,
            CHAIN_OUTPUT,
            CHAIN_FW_DISPATCH,
            CHAIN_TW_DISPATCH,
        ] {
            assert!(
                p.chains.contains_key(&(f, Table::Filter, name.to_string())),
                "{f:?} {name}"
            );
        }
        for ep in &eps {
            assert!(
                p.chains
                    .contains_key(&(f, Table::Filter, to_workload_chain(&ep.iface)))
            );
            assert!(
                p.chains
                    .contains_key(&(f, Table::Filter, from_workload_chain(&ep.iface)))
            );
        }
        let hooks: Vec<_> = p.hooks.iter().filter(|(hf, _)| *hf == f).collect();
        assert_eq!(hooks.len(), 4);
    }
    for (_, _, name) in p.chains.keys() {
        assert!(
            name.len() <= MAX_CHAIN_NAME && name.starts_with(CHAIN_PREFIX),
            "{name}"
        );
    }
    for name in p.sets.keys() {
        assert!(
            name.len() <= MAX_SET_NAME && name.starts_with(SET_PREFIX),
            "{name}"
        );
    }
    let no_rejects = p
        .chains
        .values()
        .flat_map(|c| &c.rules)
        .all(|r| !matches!(&r.action, Action::Jump(t) | Action::Goto(t) if t.contains("REJECT")));
    assert!(no_rejects);
}

#[test]
fn unknown_pod_interfaces_are_dropped_both_ways() {
    let s = state("");
    let p = compile(&s, &endpoints(&s, &[Key::new("x", "a")])).program;
    let v = fwd(&p, "10.0.0.9", "10.0.0.1", "caranew0000001", "eth0", 80);
    assert!(!v.accepted, "traffic from an interface without chains is dropped");
    let v = fwd(&p, "10.9.9.9", "10.0.0.9", "eth0", "caranew0000001", 80);
    assert!(!v.accepted, "traffic to an interface without chains is dropped");
    let v = fwd(
        &p,
        "10.9.9.9",
        "10.0.0.1",
        "eth0",
        &iface_name(&Key::new("x", "a")),
        80,
    );
    assert!(v.accepted, "a known pod without policy is open");
    let v = fwd(&p, "10.9.9.9", "10.9.9.8", "eth0", "eth1", 80);
    assert!(v.accepted, "traffic not touching a pod is left alone");
}

#[test]
fn same_node_traffic_passes_source_egress_and_destination_ingress() {
    let egress_deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: x}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}\n";
    let s = state(&format!("{DENY_DB}---\n{egress_deny}"));
    let (a, b) = (Key::new("x", "a"), Key::new("x", "b"));
    let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
    // a's egress denies everything, although b's ingress admits a on the named port.
    let v = fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080);
    assert!(!v.accepted);
    assert!(
        v.reasons().iter().any(|r| r.contains("x/a egress")),
        "{:?}",
        v.reasons()
    );
    // Without the egress policy the named port opens the flow, other ports stay closed.
    let s = state(DENY_DB);
    let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
    assert!(fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080).accepted);
    assert!(!fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8081).accepted);
    // Established replies pass even where a new flow would not.
    let mut pkt = Packet {
        src: "10.0.0.2".parse().unwrap(),
        dst: "10.0.0.1".parse().unwrap(),
        protocol: Protocol::Tcp,
        dport: 40000,
        in_iface: Some(iface_name(&b)),
        out_iface: Some(iface_name(&a)),
        ct: CtState::Established,
    };
    assert!(eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
    pkt.ct = CtState::Invalid;
    assert!(!eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
}

#[test]
fn policy_chains_and_sets_are_shared_between_endpoints() {
    let all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]\n";
    let s = state(all);
    let p = compile(&s, &endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")])).program;
    let policy_chains: Vec<_> = p
        .chains
        .keys()
        .filter(|(f, _, n)| *f == Family::V4 && n.starts_with("cara-pi-"))
        .collect();
    assert_eq!(policy_chains.len(), 1);
    let v4_sets: Vec<_> = p.sets.values().filter(|s| s.family == Family::V4).collect();
    assert_eq!(v4_sets.len(), 1);
    // Only x/a matches (podSelector without namespaceSelector: own namespace).
    assert_eq!(
        v4_sets[0].members,
        BTreeSet::from([SetMember::Net("10.0.0.1/32".parse().unwrap())])
    );
}

#[test]
fn ipv6_uses_its_own_sets_and_cidrs_of_the_other_family_never_match() {
    let cidr = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.1/32]}}, {podSelector: {matchLabels: {app: web}}}]}]\n";
    let s = state(cidr);
    let b = Key::new("x", "b");
    let p = compile(&s, &endpoints(&s, std::slice::from_ref(&b))).program;
    let bi = iface_name(&b);
    assert!(
        fwd(&p, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
        "excepted, but a is web: the pod peer admits it"
    );
    let p2 = compile(
        &state(&cidr.replace(", {podSelector: {matchLabels: {app: web}}}", "")),
        &endpoints(&s, std::slice::from_ref(&b)),
    )
    .program;
    assert!(
        !fwd(&p2, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
        "excepted address"
    );
    assert!(
        fwd(&p2, "10.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
        "inside the CIDR"
    );
    assert!(
        !fwd(&p2, "11.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
        "outside the CIDR"
    );
    assert!(
        !fwd(&p2, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
        "v4 CIDR never matches v6"
    );
    assert!(
        fwd(&p, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
        "v6 pod set holds a's v6 address"
    );
    let nomatch = p2
        .sets
        .values()
        .find(|s| s.members.iter().any(|m| matches!(m, SetMember::NoMatch(_))));
    assert!(nomatch.is_some_and(|s| s.family == Family::V4 && s.kind == SetKind::HashNet));
}

#[test]
fn large_dispatch_is_split_into_child_chains_and_still_finds_every_endpoint() {
    let mut s = ClusterState::default();
    let mut keys = Vec::new();
    for i in 0..200 {
        let k = Key::new("x", format!("p{i}"));
        s.pods.insert(
            k.clone(),
            pod(
                "x",
                &format!("p{i}"),
                &[],
                &[&format!("10.1.{}.{}", i / 200, i % 200 + 1)],
            ),
        );
        keys.push(k);
    }
    let p = compile(&s, &endpoints(&s, &keys)).program;
    let top = &p.chains[&(Family::V4, Table::Filter, CHAIN_TW_DISPATCH.to_string())];
    assert!(
        top.rules.len() <= 18,
        "top dispatch has {} rules",
        top.rules.len()
    );
    for k in &keys {
        let ip = s.pods[k].ips[0].to_string();
        assert!(
            fwd(&p, "10.9.9.9", &ip, "eth0", &iface_name(k), 80).accepted,
            "{k}"
        );
    }
}

#[test]
fn many_ports_are_split_into_multiport_blocks_of_fifteen_slots() {
    // `-m multiport` takes at most 15 ports, a range counting as two.
    const MULTIPORT_SLOTS: usize = 15;
    let ports: Vec<String> = (1..=20).map(|p| format!("{{port: {}}}", 1000 + p)).collect();
    let np = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  ingress: [{{ports: [{}, {{port: 2000, endPort: 2010}}]}}]\n",
        ports.join(", ")
    );
    let s = state(&np);
    let a = Key::new("x", "a");
    let p = compile(&s, &endpoints(&s, std::slice::from_ref(&a))).program;
    let (name, chain) = p
        .chains
        .iter()
        .find(|((f, _, n), _)| *f == Family::V4 && n.starts_with("cara-pi-"))
        .map(|((_, _, n), c)| (n.clone(), c))
        .unwrap();
    // The compiler keeps one list per protocol; the iptables renderer packs it into multiport
    // matches of at most fifteen slots (a range is two).
    assert!(chain.rules.iter().any(|r| {
        r.matches
            .iter()
            .any(|m| matches!(m, Match::DestPorts(l) if l.len() == 21))
    }));
    let tables = crate::render::iptables::render_program(&p).unwrap();
    let rendered = &tables[&(Family::V4, Table::Filter)].chains[&name];
    let mut groups = 0;
    for r in rendered {
        if let Some((_, list)) = r.body.split_once("--dports ") {
            let list = list.split_whitespace().next().unwrap();
            let slots: usize = list.split(',').map(|i| if i.contains(':') { 2 } else { 1 }).sum();
            assert!(slots <= MULTIPORT_SLOTS, "{}", r.body);
            groups += 1;
        }
    }
    assert!(groups >= 1);
    let ai = iface_name(&a);
    for port in [1001, 1020, 2005] {
        assert!(
            fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, port).accepted,
            "{port}"
        );
    }
    assert!(!fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, 1021).accepted);
}

#[test]
fn compile_is_deterministic_and_renders() {
    let s = state(DENY_DB);
    let eps = endpoints(&s, &[Key::new("x", "b"), Key::new("x", "a")]);
    let mut rev = eps.clone();
    rev.reverse();
    let p1 = compile(&s, &eps).program;
    assert_eq!(p1, compile(&s, &rev).program);
    crate::render::iptables::render_program(&p1).unwrap();
    crate::render::ipset::render_sets(&p1.sets).unwrap();
}

#[test]
fn invalid_policies_are_reported_and_ignored() {
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: nonsense}}]}]\n";
    let s = state(bad);
    let a = Key::new("x", "a");
    let c = compile(&s, &endpoints(&s, std::slice::from_ref(&a)));
    assert_eq!(c.errors.len(), 1);
    assert!(c.errors[0].to_string().contains("ipBlock.cidr"));
    assert!(fwd(&c.program, "10.0.1.3", "10.0.0.1", "eth0", &iface_name(&a), 80).accepted);
}

#[test]
fn a_remote_label_change_touches_only_set_members() {
    let mut state = ClusterState::default();
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]}]\n";
    crate::manifests::load(&mut state, text).unwrap();
    for (name, node) in [("local", "n1"), ("remote", "n2")] {
        let pod = Pod {
            namespace: "x".into(),
            name: name.into(),
            ips: vec![
                if name == "local" { "10.0.0.1" } else { "10.0.0.2" }
                    .parse()
                    .unwrap(),
            ],
            node: Some(node.into()),
            ..Default::default()
        };
        state.pods.insert(Key::new("x", name), pod);
    }
    let local = Key::new("x", "local");
    let eps = vec![LocalEndpoint {
        iface: iface_name(&local),
        ips: state.pods[&local].ips.clone(),
        pod: local,
    }];
    let mut c = Compiler::new(state.clone(), &eps);
    let mut remote = state.pods[&Key::new("x", "remote")].clone();
    remote.labels.insert("role".into(), "client".into());
    let d = c.set_pod(remote.clone());
    assert!(d.chains_changed.is_empty() && d.chains_removed.is_empty() && d.sets_added.is_empty());
    assert_eq!(d.members_added.len(), 1);
    assert_eq!(
        d.members_added[0].1,
        SetMember::Net("10.0.0.2/32".parse().unwrap())
    );
    state.pods.insert(Key::new("x", "remote"), remote);
    assert_eq!(c.program(), &compile(&state, &eps).program);
    let d = c.remove_pod(&Key::new("x", "remote"));
    assert_eq!(d.members_removed.len(), 1);
}
