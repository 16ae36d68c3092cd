//! Benchmark of the policy applier against the kernel tools alone, in the same run.
//!
//! `cargo run --release -p caracal --example policy_apply_bench [-- legacy|nft] [handbuilt]`
//! (as root).
//!
//! By default the program is compiled from policy's synthetic cluster (100,000 pods, 1,000
//! namespaces, 2,000 NetworkPolicies, 100 GlobalPolicies, 250 local endpoints) with the
//! incremental compiler, and changes go through its deltas. With `handbuilt`:
//!
//! The program has the shape the cluster compiles to on one node: 250 local endpoints
//! (a to- and a from-workload chain each, 8 policies per direction), 2,100 policy chains of 12
//! rules, 1,000 selector sets holding 100,000 pod addresses: about 35,700 rules. Measured:
//! - apply from scratch (wall, time inside iptables-restore/ipset, RSS growth) against
//!   `ipset restore` + `iptables-restore --noflush` of the same rendered text in a second
//!   namespace;
//! - one changed policy (one chain) and one remote pod's label change (one set member), median
//!   of 20 applies each, through the full diff and through `apply_changes` with the delta.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use caracal::dataplane::applier::{Applier, ApplyStats, Changes};
use caracal::dataplane::backend::{self, Backend};
use caracal::dataplane::netns::{Netns, is_root, run, tool, unique_suffix};
use caracal_policy::program::*;
use caracal_policy::render::{ipset, iptables};

const ENDPOINTS: usize = 250;
const POLICIES: usize = 2_100;
const RULES_PER_POLICY: usize = 12;
const POLICIES_PER_ENDPOINT: usize = 8;
const SETS: usize = 1_000;
const PODS: usize = 100_000;

fn pod_ip(i: usize) -> IpAddr {
    let n = i + 0x0a40_0000; // 10.64.0.0 upwards
    IpAddr::V4(Ipv4Addr::from(n as u32))
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule {
        matches,
        action,
        comment: None,
    }
}

fn set_name(i: usize) -> String {
    format!("cara-s4-{i:020x}")
}

fn policy_name(i: usize) -> String {
    format!("cara-pi-{i:020x}")
}

fn policy_chain(i: usize, extra_port: Option<u16>) -> Chain {
    let accept = Action::SetMark {
        value: MARK_ACCEPT,
        mask: MARK_ACCEPT,
    };
    let mut rules: Vec<Rule> = (0..RULES_PER_POLICY)
        .map(|r| {
            rule(
                vec![
                    Match::Protocol(if r % 2 == 0 { Protocol::Tcp } else { Protocol::Udp }),
                    Match::Set {
                        name: set_name((i * 7 + r) % SETS),
                        dir: SetDir::Src,
                        negated: false,
                    },
                    Match::DestPorts(vec![(8000 + r as u16, 8000 + r as u16), (9000, 9100)]),
                ],
                accept.clone(),
            )
        })
        .collect();
    if let Some(p) = extra_port {
        rules.push(rule(
            vec![Match::Protocol(Protocol::Tcp), Match::DestPorts(vec![(p, p)])],
            accept,
        ));
    }
    Chain { rules }
}

fn program() -> Program {
    let mut p = Program::default();
    let f = Family::V4;
    let key = |n: &str| (f, Table::Filter, n.to_owned());
    for i in 0..SETS {
        p.sets.insert(
            set_name(i),
            IpSet {
                family: f,
                kind: SetKind::HashIp,
                members: (0..PODS / SETS)
                    .map(|m| SetMember::Net(pod_ip(i * (PODS / SETS) + m).into()))
                    .collect(),
            },
        );
    }
    for i in 0..POLICIES {
        p.chains.insert(key(&policy_name(i)), policy_chain(i, None));
    }
    let mut to = Vec::new();
    let mut from = Vec::new();
    for e in 0..ENDPOINTS {
        let iface = format!("cara{e:011x}");
        for (dir, dispatch) in [("tw", &mut to), ("fw", &mut from)] {
            let chain = format!("cara-{dir}-{iface}");
            let m = if dir == "tw" {
                Match::OutInterface(iface.clone())
            } else {
                Match::InInterface(iface.clone())
            };
            dispatch.push(rule(vec![m], Action::Goto(chain.clone())));
            let mut rules = vec![
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
            ];
            for k in 0..POLICIES_PER_ENDPOINT {
                let pol = policy_name((e * 13 + k * 101 + if dir == "fw" { 7 } else { 0 }) % POLICIES);
                rules.push(rule(
                    vec![Match::Mark {
                        value: 0,
                        mask: MARK_PASS,
                        negated: false,
                    }],
                    Action::Jump(pol),
                ));
                rules.push(rule(
                    vec![Match::Mark {
                        value: MARK_ACCEPT,
                        mask: MARK_ACCEPT,
                        negated: false,
                    }],
                    Action::Return,
                ));
            }
            rules.push(rule(vec![], Action::Drop));
            p.chains.insert(key(&chain), Chain { rules });
        }
    }
    to.push(rule(vec![], Action::Drop));
    from.push(rule(vec![], Action::Drop));
    p.chains.insert(key("cara-to-wl-dispatch"), Chain { rules: to });
    p.chains
        .insert(key("cara-from-wl-dispatch"), Chain { rules: from });
    p.chains.insert(
        key("cara-FORWARD"),
        Chain {
            rules: vec![
                rule(
                    vec![Match::InInterface("cara+".into())],
                    Action::Jump("cara-from-wl-dispatch".into()),
                ),
                rule(
                    vec![Match::OutInterface("cara+".into())],
                    Action::Jump("cara-to-wl-dispatch".into()),
                ),
            ],
        },
    );
    p.hooks.push((
        f,
        Hook {
            table: Table::Filter,
            builtin: "FORWARD".into(),
            rule: rule(vec![], Action::Jump("cara-FORWARD".into())),
            append: false,
        },
    ));
    p
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend: Backend = args
        .iter()
        .find(|a| *a == "legacy" || *a == "nft")
        .map(|a| a.parse().expect("legacy or nft"))
        .unwrap_or(Backend::Nft);
    if args.iter().any(|a| a == "handbuilt") {
        handbuilt(backend);
    } else {
        synthetic(backend);
    }
}

/// Loads the rendered program with the kernel tools alone, in a fresh namespace.
fn tools_alone(prog: &Program, backend: Backend) -> (Duration, Duration) {
    let ns = Netns::create(&format!("pn-bench-base-{}", unique_suffix())).unwrap();
    let set_text = ipset::render_sets(&prog.sets).unwrap();
    let t = Instant::now();
    run(
        Some(ns.name()),
        &tool("ipset").unwrap(),
        &["restore"],
        Some(&set_text),
    )
    .unwrap();
    let base_ipset = t.elapsed();
    let t = Instant::now();
    for ((family, _), table) in iptables::render_program(prog).unwrap() {
        let restore = backend::tools(backend, family).unwrap().restore;
        run(
            Some(ns.name()),
            &restore,
            &["--noflush", "--wait", "10"],
            Some(&table.to_restore()),
        )
        .unwrap();
    }
    (base_ipset, t.elapsed())
}

/// An applier in a namespace of its own that has just applied `prog` from scratch, with the
/// time that took and the process's memory around it.
struct FromScratch {
    ns: Netns,
    applier: Applier,
    stats: ApplyStats,
    scratch: Duration,
    rss0: u64,
    rss1: u64,
    hwm: u64,
}

fn from_scratch(prog: &Program, backend: Backend) -> FromScratch {
    let ns = Netns::create(&format!("pn-bench-{}", unique_suffix())).unwrap();
    let mut applier = Applier::new(Some(ns.name()), Some(backend)).unwrap();
    let (rss0, _) = caracal_testkit::synthetic::memory_kib();
    let t = Instant::now();
    let stats = applier.apply(prog).unwrap();
    let scratch = t.elapsed();
    let (rss1, hwm) = caracal_testkit::synthetic::memory_kib();
    assert!(
        applier.drift(prog).unwrap().is_empty(),
        "kernel differs after apply"
    );
    FromScratch {
        ns,
        applier,
        stats,
        scratch,
        rss0,
        rss1,
        hwm,
    }
}

/// The cluster through policy's generator and incremental compiler.
fn synthetic(backend: Backend) {
    use caracal_policy::compile::Compiler;
    use caracal_testkit::synthetic::{self, Spec};
    let syn = synthetic::generate(&Spec::default());
    // The first compile's program is applied from scratch right away, so that the applier's
    // memory is measured before later compiles leave freed memory for it to reuse; two more
    // compiles follow for the median. The input's clone is never timed.
    let state = syn.state.clone();
    let t = Instant::now();
    let mut compiler = Compiler::new(state, &syn.endpoints);
    let mut runs = vec![t.elapsed()];
    let prog = compiler.program().clone();
    let FromScratch {
        ns: _ns,
        mut applier,
        stats,
        scratch,
        rss0,
        rss1,
        hwm,
    } = from_scratch(&prog, backend);
    for _ in 0..2 {
        let state = syn.state.clone();
        let t = Instant::now();
        let again = Compiler::new(state, &syn.endpoints);
        runs.push(t.elapsed());
        assert_eq!(again.program(), &prog, "compiling is deterministic");
    }
    let compile = median(runs);
    let rules: usize = iptables::render_program(&prog)
        .unwrap()
        .values()
        .map(|t| t.rule_count())
        .sum();
    let members: usize = prog.sets.values().map(|s| s.members.len()).sum();
    println!(
        "cluster: {} pods, {} namespaces, {} NetworkPolicies, {} GlobalPolicies, {} local endpoints",
        syn.state.pods.len(),
        syn.state.namespaces.len(),
        syn.state.network_policies.len(),
        syn.state.global_policies.len(),
        syn.endpoints.len()
    );
    println!(
        "program: {} chains, {rules} kernel rules, {} sets, {members} members; compiled in {}",
        prog.chains.len(),
        prog.sets.len(),
        ms(compile)
    );
    let (base_ipset, base_ipt) = tools_alone(&prog, backend);

    // Changed policies: NetworkPolicies of the local endpoints' namespaces, new port each time.
    let local_ns: BTreeSet<usize> = syn
        .endpoints
        .iter()
        .filter_map(|e| e.pod.namespace.trim_start_matches("ns-").parse().ok())
        .collect();
    let (mut pol_compile, mut pol_apply, mut pol_kernel) = (Vec::new(), Vec::new(), Vec::new());
    'policies: for (n, &i) in local_ns.iter().cycle().enumerate() {
        for k in 1..3 {
            if pol_apply.len() == 20 || n > 400 {
                break 'policies;
            }
            let np = synthetic::network_policy(i, k, 1 + n as u16);
            let key = caracal_policy::model::Key::new(
                np.metadata.namespace.clone().unwrap_or_default(),
                np.metadata.name.clone().unwrap_or_default(),
            );
            if !syn.state.network_policies.contains_key(&key) {
                continue;
            }
            let t = Instant::now();
            let delta = compiler.set_network_policy(np);
            let c = t.elapsed();
            if delta.chains_changed.is_empty() {
                continue;
            }
            let t = Instant::now();
            let s = applier
                .apply_changes(compiler.program(), &Changes::from(&delta))
                .unwrap();
            pol_apply.push(t.elapsed());
            pol_compile.push(c);
            pol_kernel.push(s.kernel_time);
        }
    }
    // Remote label changes: pods on other nodes switch tier (web <-> db), changing set members.
    let (mut lab_compile, mut lab_apply, mut lab_kernel) = (Vec::new(), Vec::new(), Vec::new());
    for pod in syn
        .state
        .pods
        .values()
        .filter(|p| p.node.as_deref() != Some(syn.node.as_str()))
        .step_by(997)
    {
        if lab_apply.len() == 20 {
            break;
        }
        let mut pod = pod.clone();
        let tier = if pod.labels.get("tier").map(String::as_str) == Some("web") {
            "db"
        } else {
            "web"
        };
        pod.labels.insert("tier".into(), tier.into());
        let t = Instant::now();
        let delta = compiler.set_pod(pod);
        let c = t.elapsed();
        if delta.members_added.is_empty() && delta.members_removed.is_empty() {
            continue;
        }
        let t = Instant::now();
        let s = applier
            .apply_changes(compiler.program(), &Changes::from(&delta))
            .unwrap();
        lab_apply.push(t.elapsed());
        lab_compile.push(c);
        lab_kernel.push(s.kernel_time);
    }
    assert!(
        applier.drift(compiler.program()).unwrap().is_empty(),
        "kernel differs after updates"
    );

    let alone = base_ipset + base_ipt;
    println!("backend: {backend:?}");
    println!("| operation | compile | apply (caracal) | of which kernel tools | kernel tools alone |");
    println!("|---|---|---|---|---|");
    println!(
        "| from scratch | {} ({:.3} of the kernel's load) | {} | {} | {} (ipset {} + iptables-restore {}) |",
        ms(compile),
        compile.as_secs_f64() / alone.as_secs_f64(),
        ms(scratch),
        ms(stats.kernel_time),
        ms(alone),
        ms(base_ipset),
        ms(base_ipt)
    );
    println!(
        "| one changed NetworkPolicy (median of {}) | {} | {} | {} | - |",
        pol_apply.len(),
        ms(median(pol_compile)),
        ms(median(pol_apply)),
        ms(median(pol_kernel))
    );
    println!(
        "| one remote pod's label change (median of {}) | {} | {} | {} | - |",
        lab_apply.len(),
        ms(median(lab_compile)),
        ms(median(lab_apply)),
        ms(median(lab_kernel))
    );
    println!(
        "memory: RSS {} MiB before apply, {} MiB after (+{} MiB for the applier's record), peak {} MiB",
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / 1024,
        hwm / 1024
    );
    applier.clear().unwrap();
}

/// A hand-built program of the same shape, without the compiler.
fn handbuilt(backend: Backend) {
    let started = Instant::now();
    let mut prog = program();
    let build = started.elapsed();
    let rendered = iptables::render_program(&prog).unwrap();
    let rules: usize = rendered.values().map(|t| t.rule_count()).sum();
    let members: usize = prog.sets.values().map(|s| s.members.len()).sum();
    println!(
        "program: {} chains, {rules} rules, {} sets, {members} members (built in {})",
        prog.chains.len(),
        prog.sets.len(),
        ms(build)
    );

    // The kernel tools alone, fed the fully rendered text.
    let (base_ipset, base_ipt) = tools_alone(&prog, backend);

    // The applier.
    let FromScratch {
        ns: _ns,
        mut applier,
        stats,
        scratch,
        rss0,
        rss1,
        hwm,
    } = from_scratch(&prog, backend);

    // Each change is applied twice over: through the full diff (`apply`), and through
    // `apply_changes` with the chain or set the compiler's delta names.
    let mut full = [Vec::new(), Vec::new()];
    let mut delta = [Vec::new(), Vec::new()];
    let mut kernel = [Vec::new(), Vec::new()];
    for i in 0..40 {
        let use_delta = i % 2 == 1;
        let k = (Family::V4, Table::Filter, policy_name(i * 37));
        prog.chains
            .insert(k.clone(), policy_chain(i * 37, Some(1000 + i as u16)));
        let changes = Changes {
            chains: BTreeSet::from([k]),
            sets: BTreeSet::new(),
        };
        let t = Instant::now();
        let s = if use_delta {
            applier.apply_changes(&prog, &changes)
        } else {
            applier.apply(&prog)
        }
        .unwrap();
        if use_delta { &mut delta[0] } else { &mut full[0] }.push(t.elapsed());
        kernel[0].push(s.kernel_time);
        assert_eq!((s.chains_written, s.restores), (1, 1));
    }
    for i in 0..40 {
        let use_delta = i % 2 == 1;
        // A pod elsewhere in the cluster gains the label of selector `i`.
        let name = set_name((i * 41) % SETS);
        let set = prog.sets.get_mut(&name).unwrap();
        set.members.insert(SetMember::Net(pod_ip(PODS + 10 + i).into()));
        let changes = Changes {
            chains: BTreeSet::new(),
            sets: BTreeSet::from([name]),
        };
        let t = Instant::now();
        let s = if use_delta {
            applier.apply_changes(&prog, &changes)
        } else {
            applier.apply(&prog)
        }
        .unwrap();
        if use_delta { &mut delta[1] } else { &mut full[1] }.push(t.elapsed());
        kernel[1].push(s.kernel_time);
        assert_eq!((s.restores, s.ipset_calls, s.members_changed), (0, 1, 1));
    }
    assert!(
        applier.drift(&prog).unwrap().is_empty(),
        "kernel differs after updates"
    );
    let [policy_full, label_full] = full;
    let [policy_delta, label_delta] = delta;
    let [policy_kernel, label_kernel] = kernel;

    println!("backend: {backend:?}");
    println!("| operation | caracal applier | kernel tools inside it | kernel tools alone | ratio |");
    println!("|---|---|---|---|---|");
    let alone = base_ipset + base_ipt;
    println!(
        "| apply from scratch | {} | {} | {} (ipset {} + iptables-restore {}) | {:.2}x |",
        ms(scratch),
        ms(stats.kernel_time),
        ms(alone),
        ms(base_ipset),
        ms(base_ipt),
        scratch.as_secs_f64() / alone.as_secs_f64()
    );
    println!(
        "| one changed policy, full diff / with delta (median of 20 each) | {} / {} | {} | - | - |",
        ms(median(policy_full)),
        ms(median(policy_delta)),
        ms(median(policy_kernel))
    );
    println!(
        "| remote label change, full diff / with delta (median of 20 each) | {} / {} | {} | - | - |",
        ms(median(label_full)),
        ms(median(label_delta)),
        ms(median(label_kernel))
    );
    println!(
        "memory: RSS {} MiB before apply, {} MiB after (+{} MiB), peak {} MiB",
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) / 1024,
        hwm / 1024
    );
    applier.clear().unwrap();
}
