//! The policy applier and the node lab against the real kernel: iptables (legacy and nft
//! backends) and ipset, inside namespaces these tests create and remove.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use caracal::dataplane::applier::Applier;
use caracal::dataplane::backend::{self, Backend};
use caracal::dataplane::netns::{Netns, run, tool, unique_suffix};
use caracal::testbed::nodelab::{NodeLab, Outcome, Probe};
use caracal_policy::model::Key;
use caracal_policy::program::*;

macro_rules! require_root {
    () => {
        if !caracal_testkit::require::root() {
            return;
        }
    };
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule {
        matches,
        action,
        comment: None,
    }
}

fn mark(bit: u32, set: bool) -> Match {
    Match::Mark {
        value: if set { bit } else { 0 },
        mask: bit,
        negated: false,
    }
}

/// A hand-built program in the compiler's shape: dispatch chains, per-endpoint chains, and for
/// each restricted endpoint one policy chain admitting `(protocol, port)` from set `allow`.
struct Spec {
    /// (iface, restricted ingress)
    endpoints: Vec<(String, bool)>,
    allow_from: Vec<Ipv4Addr>,
    ports: Vec<(Protocol, u16)>,
}

fn build(spec: &Spec) -> Program {
    let mut p = Program::default();
    let f = Family::V4;
    let mut chain = |name: &str, rules: Vec<Rule>| {
        p.chains
            .insert((f, Table::Filter, name.to_owned()), Chain { rules });
    };
    chain(
        "cara-FORWARD",
        vec![
            rule(
                vec![],
                Action::SetMark {
                    value: 0,
                    mask: MARK_ACCEPT | MARK_PASS,
                },
            ),
            rule(
                vec![Match::InInterface("cara+".into())],
                Action::Jump("cara-from-wl-dispatch".into()),
            ),
            rule(
                vec![Match::OutInterface("cara+".into())],
                Action::Jump("cara-to-wl-dispatch".into()),
            ),
            rule(vec![mark(MARK_ACCEPT, true)], Action::Accept),
        ],
    );
    let mut to = Vec::new();
    let mut from = Vec::new();
    let conntrack = || {
        vec![
            rule(
                vec![Match::CtState(vec![CtState::Related, CtState::Established])],
                Action::Accept,
            ),
            rule(vec![Match::CtState(vec![CtState::Invalid])], Action::Drop),
            rule(
                vec![],
                Action::SetMark {
                    value: 0,
                    mask: MARK_ACCEPT | MARK_PASS,
                },
            ),
        ]
    };
    let accept = Action::SetMark {
        value: MARK_ACCEPT,
        mask: MARK_ACCEPT,
    };
    for (iface, restricted) in &spec.endpoints {
        let tw = format!("cara-tw-{iface}");
        let fw = format!("cara-fw-{iface}");
        to.push(rule(
            vec![Match::OutInterface(iface.clone())],
            Action::Goto(tw.clone()),
        ));
        from.push(rule(
            vec![Match::InInterface(iface.clone())],
            Action::Goto(fw.clone()),
        ));
        let mut f_rules = conntrack();
        f_rules.push(rule(vec![], accept.clone()));
        chain(&fw, f_rules);
        let mut t_rules = conntrack();
        if *restricted {
            let pi = format!("cara-pi-{iface}");
            t_rules.push(rule(vec![mark(MARK_PASS, false)], Action::Jump(pi.clone())));
            t_rules.push(rule(vec![mark(MARK_ACCEPT, true)], Action::Return));
            t_rules.push(rule(vec![], Action::Drop));
            let pi_rules = spec
                .ports
                .iter()
                .map(|(proto, port)| {
                    rule(
                        vec![
                            Match::Protocol(*proto),
                            Match::Set {
                                name: "cara-s-allow".into(),
                                dir: SetDir::Src,
                                negated: false,
                            },
                            Match::DestPorts(vec![(*port, *port)]),
                        ],
                        accept.clone(),
                    )
                })
                .collect();
            chain(&pi, pi_rules);
        } else {
            t_rules.push(rule(vec![], accept.clone()));
        }
        chain(&tw, t_rules);
    }
    to.push(rule(vec![], Action::Drop));
    from.push(rule(vec![], Action::Drop));
    chain("cara-to-wl-dispatch", to);
    chain("cara-from-wl-dispatch", from);
    p.hooks.push((
        f,
        Hook {
            table: Table::Filter,
            builtin: "FORWARD".into(),
            rule: rule(vec![], Action::Jump("cara-FORWARD".into())),
            append: false,
        },
    ));
    p.sets.insert(
        "cara-s-allow".into(),
        IpSet {
            family: f,
            kind: SetKind::HashIp,
            members: spec
                .allow_from
                .iter()
                .map(|a| SetMember::Net(ipnet::IpNet::from(std::net::IpAddr::V4(*a))))
                .collect(),
        },
    );
    p
}

fn small_spec() -> Spec {
    Spec {
        endpoints: vec![("cara0000000001".into(), true), ("cara0000000002".into(), false)],
        allow_from: vec![Ipv4Addr::new(10, 0, 0, 1)],
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)],
    }
}

fn save(ns: &str, backend: Backend) -> String {
    run(
        Some(ns),
        &backend::tools(backend, Family::V4).unwrap().save,
        &["-t", "filter"],
        None,
    )
    .unwrap()
}

fn ipset_names(ns: &str) -> BTreeSet<String> {
    run(Some(ns), &tool("ipset").unwrap(), &["list", "-n"], None)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn iptables(ns: &str, backend: Backend, args: &[&str]) {
    let bin = tool(&format!(
        "iptables-{}",
        if backend == Backend::Nft { "nft" } else { "legacy" }
    ))
    .unwrap();
    run(Some(ns), &bin, args, None).unwrap();
}

#[test]
fn applied_program_reads_back_in_sync_and_keeps_foreign_rules_on_both_backends() {
    require_root!();
    for backend in [Backend::Legacy, Backend::Nft] {
        let ns = Netns::create(&format!("pn-apply-{}", unique_suffix())).unwrap();
        iptables(ns.name(), backend, &["-N", "KUBE-FORWARD"]);
        iptables(ns.name(), backend, &["-A", "FORWARD", "-j", "KUBE-FORWARD"]);
        let mut applier = Applier::new(Some(ns.name()), Some(backend)).unwrap();
        let program = build(&small_spec());
        let stats = applier.apply(&program).unwrap();
        assert_eq!(stats.restores, 1, "{backend:?}");
        assert_eq!(stats.sets_created, 1);
        assert_eq!(
            applier.drift(&program).unwrap(),
            Vec::<String>::new(),
            "{backend:?}"
        );
        let text = save(ns.name(), backend);
        let forward: Vec<&str> = text.lines().filter(|l| l.starts_with("-A FORWARD")).collect();
        assert_eq!(forward.len(), 2, "{text}");
        assert!(forward[0].contains("cara-FORWARD"), "hook must be on top: {text}");
        assert!(forward[1].contains("KUBE-FORWARD"));
        assert!(ipset_names(ns.name()).contains("cara-s-allow"));

        // Applying the same program again changes nothing.
        let again = applier.apply(&program).unwrap();
        assert_eq!((again.restores, again.ipset_calls), (0, 0), "{backend:?}");

        applier.clear().unwrap();
        let text = save(ns.name(), backend);
        assert!(!text.contains("cara"), "{backend:?} left caracal rules: {text}");
        assert!(text.contains("-A FORWARD -j KUBE-FORWARD"));
        assert!(!ipset_names(ns.name()).iter().any(|n| n.starts_with("cara-")));
    }
}

#[test]
fn one_changed_policy_chain_is_the_only_chain_written() {
    require_root!();
    let ns = Netns::create(&format!("pn-incr-{}", unique_suffix())).unwrap();
    let mut applier = Applier::new(Some(ns.name()), Some(Backend::Nft)).unwrap();
    let mut spec = small_spec();
    applier.apply(&build(&spec)).unwrap();

    spec.ports.push((Protocol::Tcp, 8080));
    let program = build(&spec);
    let stats = applier.apply(&program).unwrap();
    assert_eq!(stats.restores, 1);
    assert_eq!(stats.chains_written, 1);
    assert_eq!(stats.hooks_rewritten, 0);
    assert_eq!(stats.ipset_calls, 0);
    assert_eq!(applier.drift(&program).unwrap(), Vec::<String>::new());

    // A label change elsewhere in the cluster is a set member change: no iptables at all.
    spec.allow_from = vec![Ipv4Addr::new(10, 0, 0, 9)];
    let program = build(&spec);
    let stats = applier.apply(&program).unwrap();
    assert_eq!(
        (stats.restores, stats.ipset_calls, stats.members_changed),
        (0, 1, 2)
    );
    assert_eq!(applier.drift(&program).unwrap(), Vec::<String>::new());

    // An endpoint going away deletes its chains after the dispatch rules to them are gone.
    spec.endpoints.pop();
    let program = build(&spec);
    let stats = applier.apply(&program).unwrap();
    assert_eq!(stats.chains_deleted, 2);
    assert_eq!(applier.drift(&program).unwrap(), Vec::<String>::new());
}

/// Only a chain's first rule carries its hash; a rule replaced in place (same length, same
/// hash) is caught by comparing the printed chain with how it was printed at the last read back.
#[test]
fn a_rule_replaced_in_place_behind_the_appliers_back_is_restored_after_resync() {
    require_root!();
    for backend in [Backend::Legacy, Backend::Nft] {
        let ns = Netns::create(&format!("pn-inplace-{}", unique_suffix())).unwrap();
        let mut applier = Applier::new(Some(ns.name()), Some(backend)).unwrap();
        let program = build(&small_spec());
        applier.apply(&program).unwrap();
        // A resync reads the kernel back and learns how it prints caracal's chains.
        applier.resync();
        assert_eq!(applier.apply(&program).unwrap().restores, 0, "{backend:?}");
        let listed = save(ns.name(), backend);
        let n = listed
            .lines()
            .filter(|l| l.starts_with("-A cara-to-wl-dispatch "))
            .count();
        assert!(n >= 2, "{listed}");
        let last = n.to_string();
        iptables(
            ns.name(),
            backend,
            &["-R", "cara-to-wl-dispatch", &last, "-j", "ACCEPT"],
        );
        assert_eq!(applier.drift(&program).unwrap().len(), 1, "{backend:?}");
        applier.resync();
        let stats = applier.apply(&program).unwrap();
        assert_eq!(stats.chains_written, 1, "{backend:?}: {stats:?}");
        assert_eq!(
            applier.drift(&program).unwrap(),
            Vec::<String>::new(),
            "{backend:?}"
        );
        let restored = save(ns.name(), backend);
        assert!(
            !restored.contains("-A cara-to-wl-dispatch -j ACCEPT"),
            "{backend:?}: {restored}"
        );
        applier.clear().unwrap();
    }
}

#[test]
fn rules_removed_behind_the_appliers_back_are_restored_after_resync() {
    require_root!();
    for backend in [Backend::Legacy, Backend::Nft] {
        let ns = Netns::create(&format!("pn-drift-{}", unique_suffix())).unwrap();
        let mut applier = Applier::new(Some(ns.name()), Some(backend)).unwrap();
        let program = build(&small_spec());
        applier.apply(&program).unwrap();
        iptables(ns.name(), backend, &["-F", "FORWARD"]);
        iptables(ns.name(), backend, &["-F", "cara-to-wl-dispatch"]);
        iptables(ns.name(), backend, &["-N", "cara-leftover"]);
        assert_eq!(applier.drift(&program).unwrap().len(), 1);
        applier.resync();
        let stats = applier.apply(&program).unwrap();
        assert_eq!(
            (stats.hooks_rewritten, stats.chains_written, stats.chains_deleted),
            (1, 1, 1),
            "{backend:?}"
        );
        assert_eq!(
            applier.drift(&program).unwrap(),
            Vec::<String>::new(),
            "{backend:?}"
        );
    }
}

#[test]
fn invalid_program_is_an_error_and_changes_nothing() {
    require_root!();
    let ns = Netns::create(&format!("pn-bad-{}", unique_suffix())).unwrap();
    let mut applier = Applier::new(Some(ns.name()), Some(Backend::Nft)).unwrap();
    let good = build(&small_spec());
    applier.apply(&good).unwrap();
    let mut bad = good.clone();
    bad.chains
        .get_mut(&(Family::V4, Table::Filter, "cara-FORWARD".into()))
        .unwrap()
        .rules
        .push(rule(vec![], Action::Jump("cara-nowhere".into())));
    let e = applier.apply(&bad).unwrap_err();
    assert!(e.to_string().contains("cara-nowhere"), "{e}");
    assert_eq!(applier.drift(&good).unwrap(), Vec::<String>::new());
}

#[test]
fn backend_detection_follows_the_kubelet_canary() {
    require_root!();
    let ns = Netns::create(&format!("pn-detect-{}", unique_suffix())).unwrap();
    // Fresh namespace: no rules anywhere, nft wins the tie.
    assert_eq!(backend::detect(Some(ns.name())).unwrap(), Backend::Nft);
    if std::path::Path::new("/proc/net/ip_tables_names").exists() {
        let legacy = tool("iptables-legacy").unwrap();
        run(
            Some(ns.name()),
            &legacy,
            &["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"],
            None,
        )
        .unwrap();
        assert_eq!(backend::detect(Some(ns.name())).unwrap(), Backend::Legacy);
    } else {
        caracal_testkit::require::unavailable(
            caracal_testkit::require::Need::Root,
            "the legacy half: ip_tables is not loaded",
        );
    }
}

fn key(ns: &str, name: &str) -> Key {
    Key::new(ns, name)
}

#[test]
fn node_lab_probes_follow_the_applied_program() {
    require_root!();
    let pods = [key("x", "a"), key("x", "b"), key("x", "c")];
    let services = [(80, Protocol::Tcp), (81, Protocol::Tcp), (80, Protocol::Udp)];
    let lab = NodeLab::up(&pods, &services).unwrap();
    let eps = lab.local_endpoints();
    let iface = |k: &Key| eps.iter().find(|e| &e.pod == k).unwrap().iface.clone();
    let ip = |k: &Key| lab.pod_ip(k).unwrap();
    // b admits only a, on TCP 80 and UDP 80; a and c admit everyone.
    let mut spec = Spec {
        endpoints: pods.iter().map(|k| (iface(k), k.name == "b")).collect(),
        allow_from: vec![ip(&pods[0])],
        ports: vec![(Protocol::Tcp, 80), (Protocol::Udp, 80)],
    };
    let mut applier = Applier::new(Some(lab.node_netns()), None).unwrap();
    applier.apply(&build(&spec)).unwrap();

    let probe = |from: usize, to: usize, port: u16, protocol: Protocol| Probe {
        from: pods[from].clone(),
        to: pods[to].clone(),
        port,
        protocol,
    };
    let probes = vec![
        probe(0, 1, 80, Protocol::Tcp),
        probe(2, 1, 80, Protocol::Tcp),
        probe(0, 1, 81, Protocol::Tcp),
        probe(0, 1, 80, Protocol::Udp),
        probe(2, 1, 80, Protocol::Udp),
        probe(1, 0, 81, Protocol::Tcp),
        probe(2, 0, 80, Protocol::Udp),
    ];
    let expect = [true, false, false, true, false, true, true];
    let got = lab
        .probe_until(&probes, &expect, Duration::from_secs(10))
        .unwrap();
    let want: Vec<Outcome> = expect
        .iter()
        .map(|&c| if c { Outcome::Connected } else { Outcome::TimedOut })
        .collect();
    assert_eq!(got, want);

    // c joins the allowed set: one ipset change opens b to it.
    spec.allow_from.push(ip(&pods[2]));
    let stats = applier.apply(&build(&spec)).unwrap();
    assert_eq!(stats.restores, 0);
    let got = lab
        .probe(&[probe(2, 1, 80, Protocol::Tcp), probe(2, 1, 80, Protocol::Udp)])
        .unwrap();
    assert_eq!(got, vec![Outcome::Connected, Outcome::Connected]);

    // A pod whose interface the dispatch chains do not know yet carries no traffic at all.
    spec.endpoints.retain(|(i, _)| *i != iface(&pods[2]));
    applier.apply(&build(&spec)).unwrap();
    let got = lab
        .probe(&[probe(2, 0, 81, Protocol::Tcp), probe(0, 2, 81, Protocol::Tcp)])
        .unwrap();
    assert_eq!(got, vec![Outcome::TimedOut, Outcome::TimedOut]);
}

#[test]
fn node_lab_reports_sctp_as_skipped_or_probes_it() {
    require_root!();
    let pods = [key("x", "a"), key("x", "b")];
    let lab = NodeLab::up(&pods, &[(80, Protocol::Sctp)]).unwrap();
    let probe = Probe {
        from: pods[0].clone(),
        to: pods[1].clone(),
        port: 80,
        protocol: Protocol::Sctp,
    };
    let got = lab.probe(&[probe]).unwrap();
    match &got[0] {
        Outcome::Skipped(why) => eprintln!("SCTP probe skipped: {why}"),
        other => assert_eq!(
            other,
            &Outcome::Connected,
            "no program applied: SCTP must connect"
        ),
    }
}

#[test]
fn node_lab_removes_its_namespaces_on_drop() {
    require_root!();
    let before: BTreeMap<String, ()> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), ()))
                .collect()
        })
        .unwrap_or_default();
    let lab = NodeLab::up(&[key("y", "a")], &[(80, Protocol::Tcp)]).unwrap();
    let node = lab.node_netns().to_owned();
    assert!(std::path::Path::new("/run/netns").join(&node).exists());
    drop(lab);
    assert!(!std::path::Path::new("/run/netns").join(&node).exists());
    let suffix = node.trim_start_matches("cn-");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(suffix) && !before.contains_key(n))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn apply_changes_touches_only_the_listed_chains_and_sets() {
    require_root!();
    use caracal::dataplane::applier::Changes;
    let ns = Netns::create(&format!("pn-delta-{}", unique_suffix())).unwrap();
    let mut applier = Applier::new(Some(ns.name()), Some(Backend::Nft)).unwrap();
    let mut spec = small_spec();
    applier.apply(&build(&spec)).unwrap();

    spec.ports.push((Protocol::Udp, 5353));
    spec.allow_from.push(Ipv4Addr::new(10, 0, 0, 7));
    let program = build(&spec);
    let pi = (Family::V4, Table::Filter, "cara-pi-cara0000000001".to_owned());
    let changes = Changes {
        chains: BTreeSet::from([pi]),
        sets: BTreeSet::from(["cara-s-allow".to_owned()]),
    };
    let stats = applier.apply_changes(&program, &changes).unwrap();
    assert_eq!(
        (
            stats.restores,
            stats.chains_written,
            stats.ipset_calls,
            stats.members_changed
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(applier.drift(&program).unwrap(), Vec::<String>::new());

    // A removed endpoint: its chains and the dispatch chains that named it are listed.
    spec.endpoints.pop();
    let program = build(&spec);
    let changes = Changes {
        chains: [
            "cara-tw-cara0000000002",
            "cara-fw-cara0000000002",
            "cara-to-wl-dispatch",
            "cara-from-wl-dispatch",
        ]
        .into_iter()
        .map(|n| (Family::V4, Table::Filter, n.to_owned()))
        .collect(),
        sets: BTreeSet::new(),
    };
    let stats = applier.apply_changes(&program, &changes).unwrap();
    assert_eq!((stats.chains_written, stats.chains_deleted), (2, 2));
    assert_eq!(applier.drift(&program).unwrap(), Vec::<String>::new());
}

/// The agent's policy reconciler in a namespace of its own: the first step compiles and
/// applies whole, later steps apply only the compiler's delta, a changed set of local endpoints
/// compiles whole again, and a resync puts right what was changed behind its back.
#[test]
fn agent_policy_steps_apply_deltas_and_a_resync_heals_drift() {
    use caracal::agent::PolicyReconciler;
    use caracal_policy::compile::compile;
    use caracal_testkit::synthetic::{self, Spec};
    require_root!();
    let ns = Netns::create(&format!("pn-agent-{}", unique_suffix())).unwrap();
    let syn = synthetic::generate(&Spec {
        pods: 600,
        namespaces: 20,
        network_policies: 40,
        global_policies: 10,
        local_endpoints: 12,
    });
    let mut state = syn.state.clone();
    let eps = syn.endpoints.clone();
    // One local pod the API reports without addresses yet: the agent uses the CNI record's.
    state.pods.get_mut(&eps[1].pod).unwrap().ips.clear();
    let applier = Applier::new(Some(ns.name()), None).unwrap();
    let mut r = PolicyReconciler::new(applier);
    let in_sync = |r: &PolicyReconciler, state: &caracal_policy::model::ClusterState, eps: &[_]| {
        let cluster = caracal::agent::with_local_addresses(state, eps);
        r.applier().drift(&compile(&cluster, eps).program).unwrap()
    };

    let first = r.step(&state, &eps, false).unwrap();
    assert!(first.full && !first.resynced, "{first:?}");
    assert!(first.stats.rules_written > 0, "{first:?}");
    assert_eq!(in_sync(&r, &state, &eps), Vec::<String>::new());

    // A NetworkPolicy added in a local endpoint's namespace, selecting it: a delta.
    let ns_name = &eps[0].pod.namespace;
    let np: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml::from_str(&format!(
        "{{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy,
          metadata: {{name: extra, namespace: {ns_name}}},
          spec: {{podSelector: {{}}, ingress: [{{ports: [{{port: 1234}}]}}]}}}}"
    ))
    .unwrap();
    state
        .network_policies
        .insert(caracal_policy::model::Key::new(ns_name.clone(), "extra"), np);
    let step = r.step(&state, &eps, false).unwrap();
    assert!(!step.full, "{step:?}");
    assert!(step.stats.chains_written > 0, "{step:?}");
    assert_eq!(in_sync(&r, &state, &eps), Vec::<String>::new());

    // Nothing changed: nothing written (the addressless pod's CNI addresses cause no churn).
    let idle = r.step(&state, &eps, false).unwrap();
    assert!(!idle.full, "{idle:?}");
    assert_eq!(idle.stats, Default::default());
    let program = r.compiled_program().unwrap();
    let ip = ipnet::IpNet::from(eps[1].ips[0]);
    assert!(
        program
            .sets
            .values()
            .any(|s| s.members.contains(&SetMember::Net(ip))),
        "the CNI address of the pod without addresses in the API is in its sets"
    );

    // A pod removed behind the agent's back from every set: a plain step does not see it, a
    // resync does and puts it back.
    let set = r
        .compiled_program()
        .unwrap()
        .sets
        .iter()
        .find(|(_, s)| s.family == Family::V4 && !s.members.is_empty())
        .map(|(n, s)| (n.clone(), s.members.iter().next().unwrap().clone()))
        .unwrap();
    let member = match &set.1 {
        SetMember::Net(net) => net.to_string(),
        SetMember::NoMatch(net) => format!("{net} nomatch"),
        SetMember::IpPort { ip, protocol, port } => format!("{ip},{}:{port}", protocol.name()),
    };
    let ipset = tool("ipset").unwrap();
    let entry = member.split(' ').next().unwrap();
    run(Some(ns.name()), &ipset, &["del", &set.0, entry], None).unwrap();
    assert!(
        !in_sync(&r, &state, &eps).is_empty(),
        "the member is gone from the kernel"
    );
    let plain = r.step(&state, &eps, false).unwrap();
    assert_eq!(plain.stats, Default::default());
    let resync = r.step(&state, &eps, true).unwrap();
    assert!(resync.full && resync.resynced, "{resync:?}");
    assert_eq!(in_sync(&r, &state, &eps), Vec::<String>::new());

    // A local endpoint gone: compiled whole again, its chains removed.
    let fewer = &eps[1..];
    let step = r.step(&state, fewer, false).unwrap();
    assert!(step.full, "{step:?}");
    assert_eq!(in_sync(&r, &state, fewer), Vec::<String>::new());
    r.applier_mut().clear().unwrap();
}
