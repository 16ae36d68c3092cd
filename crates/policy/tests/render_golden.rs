//! Golden files for rendered programs: `tests/golden/<name>.rules` (iptables-restore input, one
//! section per family and table) and `<name>.ipset` (ipset restore input).
//! `UPDATE_GOLDEN=1 cargo test -p caracal-policy --test render_golden` rewrites them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use caracal_policy::program::*;
use caracal_policy::render::{ipset, iptables};

fn r(matches: Vec<Match>, action: Action, comment: Option<&str>) -> Rule {
    Rule {
        matches,
        action,
        comment: comment.map(str::to_owned),
    }
}

fn mark(bit: u32, set: bool) -> Match {
    Match::Mark {
        value: if set { bit } else { 0 },
        mask: bit,
        negated: false,
    }
}

/// A Felix-shaped program for one endpoint `cara0a1b2c3d4e5` with one ingress policy that admits
/// TCP 80 and a named port from a selector set, and an ipBlock with an except.
fn one_endpoint() -> Program {
    let mut p = Program::default();
    for family in [Family::V4, Family::V6] {
        let (pod, selector, named, block) = match family {
            Family::V4 => (
                "10.65.0.2/32",
                "cara-s4-app-web",
                "cara-n4-web-http",
                "cara-b4-office",
            ),
            Family::V6 => (
                "fd65::2/128",
                "cara-s6-app-web",
                "cara-n6-web-http",
                "cara-b6-office",
            ),
        };
        let pod: ipnet::IpNet = pod.parse().unwrap();
        let mut chain = |name: &str, rules: Vec<Rule>| {
            p.chains
                .insert((family, Table::Filter, name.to_owned()), Chain { rules });
        };
        chain(
            "cara-FORWARD",
            vec![
                r(
                    vec![],
                    Action::SetMark {
                        value: 0,
                        mask: MARK_PASS,
                    },
                    None,
                ),
                r(
                    vec![Match::InInterface("cara+".into())],
                    Action::Jump("cara-from-wl-dispatch".into()),
                    None,
                ),
                r(
                    vec![Match::OutInterface("cara+".into())],
                    Action::Jump("cara-to-wl-dispatch".into()),
                    None,
                ),
            ],
        );
        chain(
            "cara-to-wl-dispatch",
            vec![
                r(
                    vec![Match::OutInterface("cara0a1b2c3d4e5".into())],
                    Action::Goto("cara-tw-cara0a1b2c3d4e5".into()),
                    None,
                ),
                r(vec![], Action::Drop, Some("Unknown interface")),
            ],
        );
        chain(
            "cara-from-wl-dispatch",
            vec![
                r(
                    vec![Match::InInterface("cara0a1b2c3d4e5".into())],
                    Action::Goto("cara-fw-cara0a1b2c3d4e5".into()),
                    None,
                ),
                r(vec![], Action::Drop, Some("Unknown interface")),
            ],
        );
        let conntrack = vec![
            r(
                vec![Match::CtState(vec![CtState::Related, CtState::Established])],
                Action::Accept,
                None,
            ),
            r(vec![Match::CtState(vec![CtState::Invalid])], Action::Drop, None),
            r(
                vec![],
                Action::SetMark {
                    value: 0,
                    mask: MARK_ACCEPT | MARK_PASS,
                },
                None,
            ),
        ];
        let mut tw = conntrack.clone();
        tw.extend([
            r(
                vec![mark(MARK_PASS, false)],
                Action::Jump("cara-pi-x-allow-web".into()),
                None,
            ),
            r(
                vec![mark(MARK_ACCEPT, true)],
                Action::Return,
                Some("Return if policy accepted"),
            ),
            r(vec![], Action::Drop, Some("Drop if no policies passed packet")),
        ]);
        chain("cara-tw-cara0a1b2c3d4e5", tw);
        let mut fw = conntrack;
        fw.push(r(
            vec![Match::Source {
                net: pod,
                negated: true,
            }],
            Action::Drop,
            Some("anti-spoof"),
        ));
        fw.push(r(
            vec![],
            Action::SetMark {
                value: MARK_ACCEPT,
                mask: MARK_ACCEPT,
            },
            None,
        ));
        chain("cara-fw-cara0a1b2c3d4e5", fw);
        let accept = Action::SetMark {
            value: MARK_ACCEPT,
            mask: MARK_ACCEPT,
        };
        chain(
            "cara-pi-x-allow-web",
            vec![
                r(
                    vec![
                        Match::Protocol(Protocol::Tcp),
                        Match::Set {
                            name: selector.into(),
                            dir: SetDir::Src,
                            negated: false,
                        },
                        Match::DestPorts(vec![(80, 80), (8000, 8080)]),
                    ],
                    accept.clone(),
                    Some("NetworkPolicy x/allow-web ingress rule 0"),
                ),
                r(
                    vec![
                        Match::Protocol(Protocol::Tcp),
                        Match::Set {
                            name: selector.into(),
                            dir: SetDir::Src,
                            negated: false,
                        },
                        Match::Set {
                            name: named.into(),
                            dir: SetDir::Dst,
                            negated: false,
                        },
                    ],
                    accept.clone(),
                    None,
                ),
                r(
                    vec![
                        Match::Protocol(Protocol::Udp),
                        Match::Set {
                            name: block.into(),
                            dir: SetDir::Src,
                            negated: false,
                        },
                    ],
                    accept,
                    Some("ipBlock with except"),
                ),
            ],
        );
        p.hooks.push((
            family,
            Hook {
                table: Table::Filter,
                builtin: "FORWARD".into(),
                rule: r(vec![], Action::Jump("cara-FORWARD".into()), None),
                append: false,
            },
        ));
        p.hooks.push((
            family,
            Hook {
                table: Table::Filter,
                builtin: "FORWARD".into(),
                rule: r(
                    vec![mark(MARK_ACCEPT, true)],
                    Action::Accept,
                    Some("Policy explicitly accepted packet"),
                ),
                append: true,
            },
        ));
        let (web, office, except): (Vec<&str>, &str, &str) = match family {
            Family::V4 => (vec!["10.65.0.7", "10.65.1.9"], "192.0.2.0/24", "192.0.2.128/25"),
            Family::V6 => (
                vec!["fd65::7", "fd65:0:0:1::9"],
                "2001:db8::/32",
                "2001:db8:1::/48",
            ),
        };
        let host = |a: &str| ipnet::IpNet::from(a.parse::<std::net::IpAddr>().unwrap());
        p.sets.insert(
            selector.into(),
            IpSet {
                family,
                kind: SetKind::HashIp,
                members: web.iter().map(|a| SetMember::Net(host(a))).collect(),
            },
        );
        p.sets.insert(
            named.into(),
            IpSet {
                family,
                kind: SetKind::HashIpPort,
                members: BTreeSet::from([SetMember::IpPort {
                    ip: pod.addr(),
                    protocol: Protocol::Tcp,
                    port: 8443,
                }]),
            },
        );
        p.sets.insert(
            block.into(),
            IpSet {
                family,
                kind: SetKind::HashNet,
                members: BTreeSet::from([
                    SetMember::Net(office.parse().unwrap()),
                    SetMember::NoMatch(except.parse().unwrap()),
                ]),
            },
        );
    }
    p
}

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    assert_eq!(
        expected,
        actual,
        "{} differs from the rendered output",
        path.display()
    );
}

fn render_all(p: &Program) -> String {
    iptables::render_program(p)
        .unwrap()
        .iter()
        .map(|((family, _), t)| format!("# {family:?}\n{}", t.to_restore()))
        .collect()
}

#[test]
fn one_endpoint_program_renders_as_golden_rules() {
    check_golden("one_endpoint.rules", &render_all(&one_endpoint()));
}

#[test]
fn one_endpoint_sets_render_as_golden_ipset_input() {
    check_golden(
        "one_endpoint.ipset",
        &ipset::render_sets(&one_endpoint().sets).unwrap(),
    );
}

#[test]
fn rendering_is_deterministic_and_hashes_are_unique_per_chain() {
    let p = one_endpoint();
    assert_eq!(render_all(&p), render_all(&p.clone()));
    let mut chain_hashes = BTreeSet::new();
    let tables = iptables::render_program(&p).unwrap();
    for t in tables.values() {
        for rules in t.chains.values() {
            // One hash per chain, on its first rule.
            let hashed: Vec<&str> = rules.iter().filter_map(|r| r.hash.as_deref()).collect();
            assert_eq!(hashed.len(), usize::from(!rules.is_empty()));
            assert!(rules.first().is_none_or(|r| r.hash.is_some()));
            chain_hashes.extend(hashed);
        }
        for hooks in t.hooks.values() {
            let all: Vec<&RenderedRuleAlias> = hooks.inserts.iter().chain(&hooks.appends).collect();
            let hashes: BTreeSet<&str> = all.iter().filter_map(|r| r.hash.as_deref()).collect();
            assert_eq!(hashes.len(), all.len(), "every hook rule has its own hash");
        }
    }
    assert!(chain_hashes.len() > 1);
}

type RenderedRuleAlias = iptables::RenderedRule;

/// Namespace `x` with pods `a` (10.0.0.1, local) and `b` (10.0.0.2, local), `c` (10.0.1.3, on
/// another node); one NetworkPolicy admits TCP 80 to `b` from `a`.
fn compiled_two_pods() -> Program {
    use caracal_policy::model::*;
    let mut state = ClusterState::default();
    state.namespaces.insert(
        "x".into(),
        Namespace {
            name: "x".into(),
            labels: [(NAMESPACE_NAME_LABEL.to_string(), "x".to_string())].into(),
        },
    );
    let mut endpoints = Vec::new();
    for (name, ip, node) in [
        ("a", "10.0.0.1", "n1"),
        ("b", "10.0.0.2", "n1"),
        ("c", "10.0.1.3", "n2"),
    ] {
        let key = Key::new("x", name);
        let ip: std::net::IpAddr = ip.parse().unwrap();
        state.pods.insert(
            key.clone(),
            Pod {
                namespace: "x".into(),
                name: name.into(),
                labels: [("pod".to_string(), name.to_string())].into(),
                ips: vec![ip],
                node: Some(node.into()),
                ports: vec![],
            },
        );
        if node == "n1" {
            endpoints.push(LocalEndpoint {
                iface: caracal_policy::compile::iface_name(&key),
                pod: key,
                ips: vec![ip],
            });
        }
    }
    let np: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml::from_str(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{protocol: TCP, port: 80}]}]
",
    )
    .unwrap();
    state.network_policies.insert(Key::new("x", "allow-a"), np);
    let compiled = caracal_policy::compile::compile(&state, &endpoints);
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    compiled.program
}

#[test]
fn compiled_program_renders_as_golden_rules_and_sets() {
    let p = compiled_two_pods();
    check_golden("compiled_two_pods.rules", &render_all(&p));
    check_golden("compiled_two_pods.ipset", &ipset::render_sets(&p.sets).unwrap());
}
