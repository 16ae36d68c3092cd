//! The conformance runner: runs cases in the format of `shared/conformance/FORMAT.md` against a
//! [`Prober`]: [`offline::OfflineProber`] (compiler + evaluator, no kernel) or a real one that
//! programs nodes and sends packets (the node mode, in the agent crate).
//!
//! The runner owns the case semantics (state carried across steps, change order, tables); a
//! prober only programs a cluster state and reports what it observes.

pub mod case;
pub mod offline;
pub mod table;

use std::path::PathBuf;

use serde::Serialize;

pub use caracal_policy::manifests::collect_files;
pub use case::{Case, Expect, Step};
pub use table::Table;

use caracal_policy::{model::ClusterState, program::Protocol};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("case: {0}")]
    Case(String),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("prober: {0}")]
    Prober(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a prober saw for one expectation.
#[derive(Clone, Debug)]
pub struct Observation {
    pub table: Table,
    /// The prober cannot probe this protocol here (SCTP without kernel support).
    pub skipped: bool,
}

/// Programs a cluster and probes it. Offline: compile and evaluate. Node mode: apply to real
/// namespaces and send packets.
pub trait Prober {
    /// Makes the dataplane reflect `state` (called after each step's changes, before probing).
    fn sync(&mut self, case: &Case, state: &ClusterState) -> Result<()>;

    /// Probes every (source, destination) pair of the case on one port and protocol. `expected`
    /// lets a real prober retry until it matches or 10 seconds pass.
    fn probe(
        &mut self,
        case: &Case,
        state: &ClusterState,
        port: u16,
        protocol: Protocol,
        expected: &Table,
    ) -> Result<Observation>;

    /// Called once when a case ends (pass or fail), to tear down what it built.
    fn finish(&mut self, _case: &Case) {}
}

/// One probe's result, as in `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// 1-based step number.
    pub step: usize,
    pub port: u16,
    pub protocol: String,
    pub passed: bool,
    pub skipped: bool,
    /// The observed truth table, in the case format.
    pub observed: String,
    #[serde(skip)]
    pub expected: String,
}

/// One case's result.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub probes: Vec<ProbeResult>,
    /// Why the case could not run to its end (bad case file, prober failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run, as printed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

fn protocol_name(p: Protocol) -> String {
    p.name().to_uppercase()
}

/// Runs one case through `prober`.
pub fn run_case(case: &Case, prober: &mut dyn Prober) -> CaseResult {
    let mut state = case.initial.clone();
    let mut probes = Vec::new();
    let mut error = None;
    'steps: for (si, step) in case.steps.iter().enumerate() {
        if let Err(e) = case::apply_step(&mut state, step).and_then(|()| prober.sync(case, &state)) {
            error = Some(format!("step {}: {e}", si + 1));
            break;
        }
        for exp in &step.expect {
            match prober.probe(case, &state, exp.port, exp.protocol, &exp.table) {
                Ok(obs) => probes.push(ProbeResult {
                    step: si + 1,
                    port: exp.port,
                    protocol: protocol_name(exp.protocol),
                    passed: !obs.skipped && exp.table.mismatches(&obs.table).is_empty(),
                    skipped: obs.skipped,
                    observed: obs.table.render(),
                    expected: exp.table.render(),
                }),
                Err(e) => {
                    error = Some(format!("step {}: {e}", si + 1));
                    break 'steps;
                }
            }
        }
    }
    prober.finish(case);
    CaseResult {
        name: case.name.clone(),
        passed: error.is_none() && probes.iter().all(|p| p.passed || p.skipped),
        probes,
        error,
    }
}

/// Runs every case file; a file that does not parse is a failed case named after the file.
pub fn run_files(files: &[PathBuf], prober: &mut dyn Prober) -> Report {
    run_files_reporting(files, prober, &mut |_| {})
}

/// [`run_files`], calling `done` after each case (for progress on long runs).
pub fn run_files_reporting(
    files: &[PathBuf],
    prober: &mut dyn Prober,
    done: &mut dyn FnMut(&CaseResult),
) -> Report {
    let mut cases = Vec::new();
    for path in files {
        let parsed = std::fs::read_to_string(path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })
            .and_then(|text| Case::parse(&text));
        match parsed {
            Ok(case) => cases.push(run_case(&case, prober)),
            Err(e) => cases.push(CaseResult {
                name: path.display().to_string(),
                passed: false,
                probes: Vec::new(),
                error: Some(e.to_string()),
            }),
        }
        done(cases.last().expect("just pushed"));
    }
    report(cases)
}

/// Totals over probes (a case that failed before probing counts as one failed probe).
pub fn report(cases: Vec<CaseResult>) -> Report {
    let mut passed = 0;
    let mut failed = 0;
    let mut skipped = 0;
    for c in &cases {
        for p in &c.probes {
            if p.skipped {
                skipped += 1;
            } else if p.passed {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        if c.error.is_some() {
            failed += 1;
        }
    }
    Report {
        cases,
        passed,
        failed,
        skipped,
    }
}

impl Report {
    /// The readable report: each case's status, expected and observed tables of each failing
    /// probe, ending with `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let status = if c.passed { "PASS" } else { "FAIL" };
            out.push_str(&format!("{status} {}\n", c.name));
            if let Some(e) = &c.error {
                out.push_str(&format!("  error: {e}\n"));
            }
            for p in c.probes.iter().filter(|p| !p.passed) {
                if p.skipped {
                    out.push_str(&format!("  step {} {}/{}: skipped\n", p.step, p.port, p.protocol));
                    continue;
                }
                out.push_str(&format!(
                    "  step {} {}/{}: expected\n",
                    p.step, p.port, p.protocol
                ));
                out.push_str(&indent(&p.expected));
                out.push_str("  observed\n");
                out.push_str(&indent(&p.observed));
            }
        }
        if self.skipped > 0 {
            out.push_str(&format!("{} skipped\n", self.skipped));
        }
        out.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        out
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
