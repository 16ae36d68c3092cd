//! `caracal conformance [--mode offline|node|kube] [--json] <case files or folders>...`: runs policy
//! conformance cases (`shared/conformance/FORMAT.md`) and exits non-zero when any probe fails.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use caracal_testkit::conformance::{self, Prober, offline::OfflineProber};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Through the compiler and the evaluator, no kernel.
    Offline,
    /// For real on this machine: namespaces, veths, iptables, ipsets, real probes (needs root).
    Node,
    /// On a real cluster with caracal installed, through kubectl: agnhost pods, real probes.
    Kube,
}

#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// How to run the probes.
    #[arg(long, value_enum, default_value = "offline")]
    pub mode: Mode,
    /// Print the machine-readable report instead of the readable one.
    #[arg(long)]
    pub json: bool,
    /// Offline only: also decide every probe with the reference evaluator and fail on disagreement.
    #[arg(long)]
    pub cross_check: bool,
    /// Kube only: the cluster's kubeconfig (default: $KUBECONFIG).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Case files, or folders searched recursively for `*.yaml`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The prober of a mode.
pub fn prober(mode: Mode, cross_check: bool, kubeconfig: Option<&Path>) -> anyhow::Result<Box<dyn Prober>> {
    match mode {
        Mode::Offline => Ok(Box::new(OfflineProber::new(cross_check))),
        Mode::Node => {
            if !crate::dataplane::netns::is_root() {
                anyhow::bail!(
                    "--mode node needs root (it creates namespaces, veths, iptables rules and ipsets)"
                );
            }
            Ok(Box::new(crate::testbed::prober::NodeProber::new(None)))
        }
        Mode::Kube => {
            let kubeconfig = kubeconfig
                .map(Path::to_path_buf)
                .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
                .context("--mode kube needs --kubeconfig or $KUBECONFIG")?;
            Ok(Box::new(crate::lab::k8s::prober::KubeProber::new(&kubeconfig)?))
        }
    }
}

pub fn run(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let files = conformance::collect_files(&args.paths).context("finding case files")?;
    if files.is_empty() {
        anyhow::bail!("no case files (*.yaml) under {:?}", args.paths);
    }
    let mut prober = prober(args.mode, args.cross_check, args.kubeconfig.as_deref())?;
    let total = files.len();
    let mut finished = 0;
    let started = std::time::Instant::now();
    let report = conformance::run_files_reporting(&files, prober.as_mut(), &mut |case| {
        finished += 1;
        // Progress on stderr: a kube run takes about a minute a case.
        eprintln!(
            "[{finished}/{total} {:>5.0} s] {} {}",
            started.elapsed().as_secs_f64(),
            if case.passed { "pass" } else { "FAIL" },
            case.name
        );
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
