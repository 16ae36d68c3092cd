//! `caracal policy`: explain a decision from manifests, and the compile benchmark.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use caracal_policy::{
    compile::compile,
    eval,
    manifests::{self, Loaded, collect_files},
    model::{ClusterState, Key, LocalEndpoint},
    path::path_verdicts,
    program::{Program, Protocol},
};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Say whether a new connection from one pod to another is allowed, and which policy and
    /// rule decided, by compiling the manifests and running the packet through the program.
    Explain(ExplainArgs),
    /// Benchmark the compiler on a synthetic cluster: from scratch, one changed policy, one
    /// remote pod's label change (build with --release).
    Bench(BenchArgs),
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 100_000)]
    pub pods: usize,
    #[arg(long, default_value_t = 1_000)]
    pub namespaces: usize,
    #[arg(long, default_value_t = 2_000)]
    pub network_policies: usize,
    #[arg(long, default_value_t = 100)]
    pub global_policies: usize,
    #[arg(long, default_value_t = 250)]
    pub local_endpoints: usize,
    /// Repetitions of each incremental measurement (the median is reported).
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Source pod, `namespace/name`.
    pub src: String,
    /// Destination pod, `namespace/name`.
    pub dst: String,
    /// Destination port and protocol, `80/TCP` (protocol TCP, UDP or SCTP; default TCP).
    pub port: String,
    /// A folder (searched recursively) or file of manifests: Namespaces, Pods (addresses from
    /// status.podIPs, node from spec.nodeName), NetworkPolicies, GlobalPolicies.
    #[arg(long)]
    pub manifests: Vec<PathBuf>,
    /// Also print every rule the packet matched.
    #[arg(long)]
    pub trace: bool,
    /// Read the cluster from the API server instead of manifests, through the agent's own
    /// datastore (so the verdict is the one the agent enforces); `-` for $KUBECONFIG,
    /// ~/.kube/config or the in-cluster service account.
    #[arg(long, conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
}

/// The cluster as the agent on any node sees it: its datastore's first complete snapshot.
fn api_state(kubeconfig: &std::path::Path) -> anyhow::Result<ClusterState> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let path = (kubeconfig != std::path::Path::new("-")).then(|| kubeconfig.to_path_buf());
        let client = super::agent::kube_client(path.as_ref(), None).await?;
        let options = crate::datastore::KubeOptions {
            debounce: std::time::Duration::from_millis(10),
            report_status: false,
            bgp: false,
            ..Default::default()
        };
        let ds = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            crate::datastore::watch_kube(client, options),
        )
        .await
        .context("the API server gave no complete list in 30 s")?;
        let cluster = ds.subscribe().borrow().cluster.clone();
        Ok(cluster)
    })
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Explain(a) => explain(a),
        PolicyCommand::Bench(a) => bench(a),
    }
}

fn parse_key(s: &str) -> anyhow::Result<Key> {
    let (ns, name) = s
        .split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .with_context(|| format!("{s:?} is not namespace/pod"))?;
    Ok(Key::new(ns, name))
}

fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let src = parse_key(&args.src)?;
    let dst = parse_key(&args.dst)?;
    let (port, proto) = args.port.split_once('/').unwrap_or((args.port.as_str(), "TCP"));
    let port: u16 = port.parse().with_context(|| format!("bad port {port:?}"))?;
    let protocol =
        Protocol::from_k8s(Some(&proto.to_uppercase())).with_context(|| format!("bad protocol {proto:?}"))?;
    if args.manifests.is_empty() && args.kubeconfig.is_none() {
        anyhow::bail!("give --manifests <folder or file>, or --kubeconfig <file or ->");
    }
    // The same converter as the agent's datastores, so the model is the one the agent enforces.
    let mut state = match &args.kubeconfig {
        Some(k) => api_state(k)?,
        None => ClusterState::default(),
    };
    let mut loaded = Loaded::default();
    for file in collect_files(&args.manifests)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        manifests::load_into(&mut state, &mut loaded, &text).with_context(|| file.display().to_string())?;
        for s in loaded.skipped.drain(..) {
            tracing::debug!(file = %file.display(), object = %s, "skipped");
        }
    }
    for note in &loaded.notes {
        println!("note: {note}");
    }
    for (name, reason) in &loaded.rejected {
        println!("ignored (invalid): GlobalPolicy {name}: {reason}");
    }
    for pod in [&src, &dst] {
        if let Some(why) = loaded.unpoliced.get(pod) {
            anyhow::bail!("{pod} {why}: caracal does not police its traffic, there is no verdict to explain");
        }
    }
    // Pods written without status get addresses of their own, so that explain still works
    // (not the pods the agent leaves out: they must stay without addresses, as in the agent).
    let mut next = 0u32;
    for (key, pod) in state.pods.iter_mut() {
        if pod.node.is_none() {
            pod.node = Some("node".into());
        }
        if pod.ips.is_empty() && !loaded.unpoliced.contains_key(key) {
            next += 1;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 255, 0, 0)) + next);
            println!(
                "note: {}/{} has no status.podIP; using {ip}",
                pod.namespace, pod.name
            );
            pod.ips.push(IpAddr::V4(ip));
        }
    }
    let src_pod = state
        .pods
        .get(&src)
        .with_context(|| format!("no pod {src} in the manifests"))?;
    let dst_pod = state
        .pods
        .get(&dst)
        .with_context(|| format!("no pod {dst} in the manifests"))?;

    let mut programs: BTreeMap<String, Program> = BTreeMap::new();
    for node in [
        src_pod.node.clone().unwrap_or_default(),
        dst_pod.node.clone().unwrap_or_default(),
    ] {
        if programs.contains_key(&node) {
            continue;
        }
        let endpoints: Vec<LocalEndpoint> = state
            .pods
            .iter()
            .filter(|(_, p)| p.node.as_deref() == Some(node.as_str()))
            .map(|(k, p)| LocalEndpoint {
                pod: k.clone(),
                iface: caracal_policy::compile::iface_name(k),
                ips: p.ips.clone(),
            })
            .collect();
        let compiled = compile(&state, &endpoints);
        for e in &compiled.errors {
            println!("ignored (invalid): {e}");
        }
        programs.insert(node, compiled.program);
    }
    let verdicts = path_verdicts(&programs, src_pod, dst_pod, protocol, port)?;
    let allowed = verdicts.iter().all(|v| v.accepted);
    println!(
        "{src} -> {dst} {port}/{}: {}",
        proto.to_uppercase(),
        if allowed { "ALLOWED" } else { "DENIED" }
    );
    let hops = if verdicts.len() == 1 {
        vec![format!(
            "node {} (FORWARD, same node)",
            src_pod.node.as_deref().unwrap_or("")
        )]
    } else {
        vec![
            format!(
                "node {} (FORWARD, leaving {src})",
                src_pod.node.as_deref().unwrap_or("")
            ),
            format!(
                "node {} (FORWARD, entering {dst})",
                dst_pod.node.as_deref().unwrap_or("")
            ),
        ]
    };
    for (hop, v) in hops.iter().zip(&verdicts) {
        println!("  {hop}: {}", if v.accepted { "accepted" } else { "dropped" });
        for r in v.reasons() {
            println!("    {r}");
        }
        if args.trace {
            println!("    trace:");
            for s in &v.trace {
                println!(
                    "      {}[{}] {:?} {}",
                    s.chain,
                    s.index,
                    s.action,
                    s.comment.as_deref().unwrap_or("")
                );
            }
        }
    }
    let (e, i) = eval::reference::allowed(&state, src_pod, dst_pod, protocol, port);
    println!(
        "  model: egress of {src}: {} ({})",
        if e.allowed { "allowed" } else { "denied" },
        e.reason
    );
    println!(
        "  model: ingress of {dst}: {} ({})",
        if i.allowed { "allowed" } else { "denied" },
        i.reason
    );
    if allowed != (e.allowed && i.allowed) {
        anyhow::bail!("the compiled program and the model disagree: this is a caracal bug");
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use caracal_testkit::synthetic;

    if cfg!(debug_assertions) {
        println!("warning: a debug build; run with --release for meaningful figures");
    }
    let spec = synthetic::Spec {
        pods: args.pods,
        namespaces: args.namespaces,
        network_policies: args.network_policies,
        global_policies: args.global_policies,
        local_endpoints: args.local_endpoints,
    };
    anyhow::ensure!(
        spec.pods > 0 && spec.namespaces > 0 && spec.local_endpoints > 0,
        "sizes must be positive"
    );
    let report = synthetic::bench(&spec, args.iterations, &synthetic::memory_kib);
    for line in report.lines {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
