//! A synthetic cluster for benchmarks: by default 100,000 pods in 1,000 namespaces with 2,000
//! NetworkPolicies and 100 GlobalPolicies, and one node's 250 local endpoints.
//!
//! Shapes follow common practice: every namespace has an "allow own namespace + egress to the
//! cluster and DNS" policy and app policies admitting web pods of a partner team and everything
//! from production namespaces on numbered, ranged and named ports; GlobalPolicies are 60 % Admin
//! (deny dev to databases, pass a CIDR, accept DNS) and 40 % Baseline (deny by expression).
//! Everything is deterministic, so runs are comparable.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use caracal_policy::{
    compile::iface_name,
    globalpolicy::GlobalPolicy,
    model::{ClusterState, Key, LocalEndpoint, NAMESPACE_NAME_LABEL, NamedPort, Namespace, Pod},
    program::Protocol,
};

/// The size of the synthetic cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    pub pods: usize,
    pub namespaces: usize,
    pub network_policies: usize,
    pub global_policies: usize,
    /// Pods on the benchmarked node; the cluster has `pods / local_endpoints` nodes.
    pub local_endpoints: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            pods: 100_000,
            namespaces: 1_000,
            network_policies: 2_000,
            global_policies: 100,
            local_endpoints: 250,
        }
    }
}

/// The generated cluster and the benchmarked node.
pub struct Synthetic {
    pub state: ClusterState,
    pub node: String,
    pub endpoints: Vec<LocalEndpoint>,
}

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const TIERS: [&str; 3] = ["web", "api", "db"];

fn ns_name(i: usize) -> String {
    format!("ns-{i:04}")
}

/// The address of the `g`-th pod: 10.64.0.0/10 upwards.
pub fn pod_ip(g: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 64, 0, 0)) + g as u32 + 1,
    ))
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("synthetic manifest does not parse: {e}\n{text}"))
}

/// The NetworkPolicy number `k` of namespace `i`.
pub fn network_policy(i: usize, k: usize, variant: u16) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    let ns = ns_name(i);
    if k == 0 {
        return yaml(&format!(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-same-namespace, namespace: {ns}}}
spec:
  podSelector: {{}}
  policyTypes: [Ingress, Egress]
  ingress: [{{from: [{{podSelector: {{}}}}]}}]
  egress:
    - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.200.0.0/16]}}}}]
    - ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]
"
        ));
    }
    let app = (i + k) % 10;
    let team = (i * 7 + k) % 50;
    yaml(&format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-app-{k}, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: app-{app}}}}}
  ingress:
    - from:
        - namespaceSelector: {{matchLabels: {{team: team-{team}}}}}
          podSelector: {{matchLabels: {{tier: web}}}}
        - namespaceSelector: {{matchLabels: {{env: prod}}}}
      ports: [{{port: {}}}, {{port: metrics}}, {{port: 9000, endPort: 9100}}]
",
        8080 + variant
    ))
}

/// The GlobalPolicy number `i`.
pub fn global_policy(i: usize, variant: u16) -> GlobalPolicy {
    let priority = (i * 10) % 1000;
    let text = if i % 10 < 6 {
        format!(
            "apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {{name: admin-{i:03}}}
spec:
  tier: Admin
  priority: {priority}
  subject:
    namespaceSelector: {{matchLabels: {{env: {env}}}}}
    selector: \"tier == 'db' || app == 'app-{app}'\"
  ingress:
    - name: no-dev-to-db
      action: Deny
      from: [{{namespaceSelector: {{matchLabels: {{env: dev}}}}}}]
      ports: [{{port: {port}}}]
    - action: Pass
      from: [{{networks: [\"10.{net}.0.0/16\"]}}]
  egress:
    - action: Accept
      to: [{{networks: [\"0.0.0.0/0\"]}}]
      ports: [{{protocol: UDP, port: 53}}]
",
            env = ENVS[i % 3],
            app = i % 10,
            port = 5432 + variant,
            net = i % 200,
        )
    } else {
        format!(
            "apiVersion: caracal.dev/v1alpha1
kind: GlobalPolicy
metadata: {{name: baseline-{i:03}}}
spec:
  tier: Baseline
  priority: {priority}
  subject:
    podSelector: {{matchLabels: {{app: app-{app}}}}}
  ingress:
    - action: Deny
      from: [{{selector: \"version == 'v{v}' && tier in {{'web', 'api'}}\"}}]
      ports: [{{port: {port}}}]
",
            app = i % 10,
            v = i % 2,
            port = 8000 + variant,
        )
    };
    yaml(&text)
}

/// Generates the cluster.
pub fn generate(spec: &Spec) -> Synthetic {
    let mut state = ClusterState::default();
    let namespaces = spec.namespaces.max(1);
    for i in 0..namespaces {
        let name = ns_name(i);
        let labels: BTreeMap<String, String> = [
            (NAMESPACE_NAME_LABEL.to_string(), name.clone()),
            ("team".into(), format!("team-{}", i % 50)),
            ("env".into(), ENVS[i % 3].to_string()),
        ]
        .into();
        state.namespaces.insert(name.clone(), Namespace { name, labels });
    }
    let nodes = (spec.pods / spec.local_endpoints.max(1)).max(1);
    let per_ns = spec.pods.div_ceil(namespaces);
    let node = "node-0".to_string();
    let mut endpoints = Vec::new();
    for g in 0..spec.pods {
        let ns = ns_name(g / per_ns);
        let name = format!("pod-{:05}", g % per_ns);
        let j = g % per_ns;
        // A multiplicative hash, so that labels do not line up with node placement.
        let app = ((j as u64 * 2_654_435_761 + (g / per_ns) as u64 * 40_503) >> 8) % 10;
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), format!("app-{app}")),
            ("tier".into(), TIERS[j % 3].to_string()),
            ("version".into(), format!("v{}", j % 2)),
        ]
        .into();
        // Spread each namespace's pods over the nodes, so local pods have varied labels.
        let pod_node = format!("node-{}", (g + g / per_ns) % nodes);
        let key = Key::new(ns.clone(), name.clone());
        let ip = pod_ip(g);
        if pod_node == node && endpoints.len() < spec.local_endpoints {
            endpoints.push(LocalEndpoint {
                iface: iface_name(&key),
                pod: key.clone(),
                ips: vec![ip],
            });
        }
        state.pods.insert(
            key,
            Pod {
                namespace: ns,
                name,
                labels,
                ips: vec![ip],
                node: Some(pod_node),
                ports: vec![
                    NamedPort {
                        name: "http".into(),
                        protocol: Protocol::Tcp,
                        port: 8080,
                    },
                    NamedPort {
                        name: "metrics".into(),
                        protocol: Protocol::Tcp,
                        port: 9090,
                    },
                ],
            },
        );
    }
    let per_ns_policies = spec.network_policies.div_ceil(namespaces);
    let mut n = 0;
    'outer: for k in 0..per_ns_policies {
        for i in 0..namespaces {
            if n == spec.network_policies {
                break 'outer;
            }
            let np = network_policy(i, k, 0);
            let key = Key::new(ns_name(i), np.metadata.name.clone().unwrap_or_default());
            state.network_policies.insert(key, np);
            n += 1;
        }
    }
    for i in 0..spec.global_policies {
        let gp = global_policy(i, 0);
        state.global_policies.insert(gp.name().to_string(), gp);
    }
    Synthetic {
        state,
        node,
        endpoints,
    }
}

/// Figures of one benchmark run.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    pub lines: Vec<String>,
}

fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Runs the compile benchmark: from scratch (median of 3), one changed NetworkPolicy and
/// GlobalPolicy, one remote pod's label change (medians of `iterations`). `memory` returns the
/// process's (resident, peak) KiB, read by the caller.
pub fn bench(spec: &Spec, iterations: usize, memory: &dyn Fn() -> (u64, u64)) -> BenchReport {
    use caracal_policy::{compile::Compiler, render};
    use std::time::Instant;

    let mut out = Vec::new();
    let iterations = iterations.max(1);
    let t = Instant::now();
    let syn = generate(spec);
    out.push(format!(
        "cluster: {} pods, {} namespaces, {} NetworkPolicies, {} GlobalPolicies; {} with {} local endpoints (generated in {})",
        syn.state.pods.len(),
        syn.state.namespaces.len(),
        syn.state.network_policies.len(),
        syn.state.global_policies.len(),
        syn.node,
        syn.endpoints.len(),
        ms(t.elapsed())
    ));
    let mut scratch = Vec::new();
    let mut compiler = None;
    let mut mem = (0, 0, 0);
    for run in 0..3 {
        let state = syn.state.clone();
        drop(compiler.take());
        let (before, _) = memory();
        let t = Instant::now();
        let c = Compiler::new(state, &syn.endpoints);
        scratch.push(t.elapsed());
        if run == 0 {
            let (after, peak) = memory();
            mem = (before, after, peak);
        }
        compiler = Some(c);
    }
    let mut compiler = compiler.expect("compiled three times");
    let program = compiler.program();
    let rules: usize = program.chains.values().map(|c| c.rules.len()).sum();
    let members: usize = program.sets.values().map(|s| s.members.len()).sum();
    out.push(format!(
        "program: {} chains, {} rules, {} hooks, {} ipsets with {} members, {} rejected objects",
        program.chains.len(),
        rules,
        program.hooks.len(),
        program.sets.len(),
        members,
        compiler.errors().len()
    ));
    out.push(format!(
        "compile from scratch: median {} (runs {})",
        ms(median(scratch.clone())),
        scratch.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    ));
    out.push(format!(
        "memory of the first compile (index, caches and program; the input state excluded): {} MiB (RSS {} -> {} KiB, peak {} KiB)",
        mem.1.saturating_sub(mem.0) / 1024,
        mem.0,
        mem.1,
        mem.2
    ));
    let t = Instant::now();
    let rendered = render::iptables::render_program(compiler.program())
        .map(|t| t.values().map(|t| t.rule_count()).sum::<usize>());
    let sets = render::ipset::render_sets(&compiler.program().sets).map(|s| s.len());
    out.push(format!(
        "render of the whole program (policy-node's renderer): {} ({:?} rules, {:?} bytes of ipset input)",
        ms(t.elapsed()),
        rendered,
        sets
    ));

    // An active NetworkPolicy: the app policy that selects some local endpoint.
    let per_ns_policies = spec.network_policies.div_ceil(spec.namespaces.max(1));
    let target = syn.endpoints.iter().find_map(|ep| {
        let i: usize = ep.pod.namespace.trim_start_matches("ns-").parse().ok()?;
        let app: usize = syn
            .state
            .pods
            .get(&ep.pod)?
            .labels
            .get("app")?
            .trim_start_matches("app-")
            .parse()
            .ok()?;
        let k = (app + 10 - i % 10) % 10;
        (k >= 1 && k < per_ns_policies).then_some((i, k))
    });
    let (i, k) = target.unwrap_or((0, 0));
    let (time, changed) = toggled(
        &mut compiler,
        iterations,
        |port| network_policy(i, k, port),
        |c, np| c.set_network_policy(np).chains_changed.len(),
    );
    out.push(format!(
        "one changed NetworkPolicy (ns-{i:04}/allow-app-{k}, port toggled): median {} (up to {changed} chains changed)",
        ms(time),
    ));
    let (time, changed) = toggled(
        &mut compiler,
        iterations,
        |port| global_policy(0, port),
        |c, gp| c.set_global_policy(gp).chains_changed.len(),
    );
    out.push(format!(
        "one changed GlobalPolicy (admin-000, port toggled): median {} (up to {changed} chains changed)",
        ms(time),
    ));
    // A remote web pod of the partner team the changed policy admits, so that it is in a set.
    let team = format!("team-{}", (i * 7 + k) % 50);
    let remote = syn
        .state
        .pods
        .values()
        .find(|p| {
            p.node.as_deref() != Some(syn.node.as_str())
                && p.labels.get("tier").is_some_and(|t| t == "web")
                && syn.state.namespaces[&p.namespace].labels.get("team") == Some(&team)
        })
        .or_else(|| {
            syn.state.pods.values().find(|p| {
                p.node.as_deref() != Some(syn.node.as_str())
                    && p.labels.get("tier").is_some_and(|t| t == "web")
            })
        })
        .cloned();
    if let Some(remote) = remote {
        let mut times = Vec::new();
        let mut members = 0;
        let mut chains = 0;
        for n in 0..iterations {
            let mut pod = remote.clone();
            pod.labels
                .insert("tier".into(), if n % 2 == 0 { "api" } else { "web" }.into());
            let t = Instant::now();
            let d = compiler.set_pod(pod);
            times.push(t.elapsed());
            members = members.max(d.members_added.len() + d.members_removed.len());
            chains = chains.max(d.chains_changed.len());
        }
        out.push(format!(
            "one remote pod's label change ({}/{}, tier web <-> api): median {} (up to {members} set member changes, {chains} chains changed)",
            remote.namespace,
            remote.name,
            ms(median(times)),
        ));
    }
    BenchReport { lines: out }
}

/// One policy changed `iterations` times, its port toggled (built outside the timing): the
/// median time of a change and the most chains one change touched.
fn toggled<T>(
    compiler: &mut caracal_policy::compile::Compiler,
    iterations: usize,
    make: impl Fn(u16) -> T,
    apply: impl Fn(&mut caracal_policy::compile::Compiler, T) -> usize,
) -> (std::time::Duration, usize) {
    let mut times = Vec::new();
    let mut changed = 0;
    for n in 0..iterations {
        let policy = make((n % 2 + 1) as u16);
        let t = std::time::Instant::now();
        let chains = apply(compiler, policy);
        times.push(t.elapsed());
        changed = changed.max(chains);
    }
    (median(times), changed)
}

/// Resident and peak memory of this process, in KiB (from /proc/self/status), for the
/// benchmarks' memory figures.
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caracal_policy::compile::compile;

    #[test]
    fn small_synthetic_cluster_has_the_requested_shape_and_compiles_cleanly() {
        let spec = Spec {
            pods: 2_000,
            namespaces: 20,
            network_policies: 40,
            global_policies: 10,
            local_endpoints: 25,
        };
        let s = generate(&spec);
        assert_eq!(s.state.pods.len(), 2_000);
        assert_eq!(s.state.namespaces.len(), 20);
        assert_eq!(s.state.network_policies.len(), 40);
        assert_eq!(s.state.global_policies.len(), 10);
        assert_eq!(s.endpoints.len(), 25);
        let c = compile(&s.state, &s.endpoints);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert!(c.program.chains.len() > 2 * 25 * 2);
        caracal_policy::render::iptables::render_program(&c.program).unwrap();
    }

    #[test]
    fn bench_runs_on_a_small_cluster_and_changes_what_it_should() {
        let spec = Spec {
            pods: 2_000,
            namespaces: 20,
            network_policies: 40,
            global_policies: 10,
            local_endpoints: 25,
        };
        let r = bench(&spec, 2, &|| (0, 0));
        let text = r.lines.join("\n");
        assert!(text.contains("compile from scratch"), "{text}");
        assert!(
            !text.contains("(up to 0 chains changed)"),
            "changed policies must be active: {text}"
        );
        assert!(
            text.contains(" 0 chains changed)"),
            "remote label changes touch no chain: {text}"
        );
        assert!(text.contains("one remote pod's label change"), "{text}");
    }
}
