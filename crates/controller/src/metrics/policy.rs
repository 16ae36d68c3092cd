//! The policy reconciler's metrics: compile and apply durations, the kernel tools' calls and
//! failures, what is programmed, and the last apply (also read by the node status).

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, SystemTime},
};

use caracal_policy::{
    model::ClusterState,
    program::{Family, Program},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family as MetricFamily,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::dataplane::{self, ApplyStats};

/// What one policy step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Compiled whole and compared whole with the kernel.
    Full,
    /// Only the incremental compiler's delta was applied.
    Delta,
    /// The delta was empty: nothing was applied.
    Unchanged,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Delta => "delta",
            Mode::Unchanged => "unchanged",
        }
    }
}

/// One policy step, as [`PolicyMetrics::record`] takes it.
pub struct StepRecord<'a> {
    pub mode: Mode,
    pub compile: Duration,
    pub apply: Duration,
    pub result: Result<&'a ApplyStats, &'a dataplane::Error>,
    /// The compiled program (what the kernel holds after a successful step).
    pub program: &'a Program,
    pub endpoints: usize,
    pub cluster: &'a ClusterState,
}

/// The last policy apply, for the node status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastApply {
    pub at: SystemTime,
    pub mode: Mode,
    /// `None`: it succeeded; otherwise why not.
    pub error: Option<String>,
    pub endpoints: usize,
    pub network_policies: usize,
    pub global_policies: usize,
    pub chains: usize,
    pub sets: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    mode: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IpVersion {
    ip_version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily<S> = MetricFamily<S, Histogram, fn() -> Histogram>;

/// From 0.5 ms to about 16 s: a delta is sub-millisecond, a whole large cluster seconds.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The policy reconciler's handle; cloning shares the metrics.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    compile: Histogram,
    apply: HistogramFamily<ModeLabels>,
    applies: MetricFamily<ResultLabels, Counter>,
    last_apply_time: Gauge<f64, AtomicU64>,
    last_apply_success: Gauge,
    restore_calls: Counter,
    restore_failures: Counter,
    ipset_calls: Counter,
    ipset_failures: Counter,
    chains: MetricFamily<IpVersion, Gauge>,
    rules: MetricFamily<IpVersion, Gauge>,
    sets: MetricFamily<IpVersion, Gauge>,
    local_endpoints: Gauge,
    policies: MetricFamily<KindLabels, Gauge>,
    last: Arc<Mutex<Option<LastApply>>>,
}

impl Default for PolicyMetrics {
    fn default() -> Self {
        PolicyMetrics {
            compile: duration_histogram(),
            apply: MetricFamily::new_with_constructor(duration_histogram),
            applies: Default::default(),
            last_apply_time: Default::default(),
            last_apply_success: Default::default(),
            restore_calls: Default::default(),
            restore_failures: Default::default(),
            ipset_calls: Default::default(),
            ipset_failures: Default::default(),
            chains: Default::default(),
            rules: Default::default(),
            sets: Default::default(),
            local_endpoints: Default::default(),
            policies: Default::default(),
            last: Default::default(),
        }
    }
}

/// A kernel tool that failed, from the command line in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    IptablesRestore,
    Ipset,
}

fn failed_tool(e: &dataplane::Error) -> Option<Tool> {
    let cmd = match e {
        dataplane::Error::Command { cmd, .. } | dataplane::Error::Spawn { cmd, .. } => cmd,
        _ => return None,
    };
    let program = cmd.split_whitespace().next()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    if name == "ipset" {
        Some(Tool::Ipset)
    } else if name.contains("tables") && name.ends_with("-restore") {
        Some(Tool::IptablesRestore)
    } else {
        None
    }
}

fn ip_version(f: Family) -> IpVersion {
    IpVersion {
        ip_version: match f {
            Family::V4 => "4",
            Family::V6 => "6",
        },
    }
}

impl PolicyMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "policy_compile_duration",
            "Time to compile the policy model (whole or incrementally)",
            Unit::Seconds,
            self.compile.clone(),
        );
        r.register_with_unit(
            "policy_apply_duration",
            "Time to program a compiled policy program or delta into the kernel",
            Unit::Seconds,
            self.apply.clone(),
        );
        r.register(
            "policy_applies",
            "Policy applies by mode (full, delta) and result (success, failure)",
            self.applies.clone(),
        );
        r.register_with_unit(
            "policy_last_apply_timestamp",
            "When the policy was last applied (Unix time)",
            Unit::Seconds,
            self.last_apply_time.clone(),
        );
        r.register(
            "policy_last_apply_success",
            "1 if the last policy apply succeeded",
            self.last_apply_success.clone(),
        );
        r.register(
            "iptables_restore_calls",
            "iptables-restore and ip6tables-restore runs",
            self.restore_calls.clone(),
        );
        r.register(
            "iptables_restore_failures",
            "iptables-restore and ip6tables-restore runs that failed",
            self.restore_failures.clone(),
        );
        r.register("ipset_calls", "ipset runs", self.ipset_calls.clone());
        r.register(
            "ipset_failures",
            "ipset runs that failed",
            self.ipset_failures.clone(),
        );
        r.register(
            "iptables_chains",
            "caracal's iptables chains programmed",
            self.chains.clone(),
        );
        r.register(
            "iptables_rules",
            "Rules in caracal's iptables chains",
            self.rules.clone(),
        );
        r.register("ipsets", "caracal's ipsets programmed", self.sets.clone());
        r.register(
            "policy_local_endpoints",
            "Local pod endpoints with policy programmed",
            self.local_endpoints.clone(),
        );
        r.register(
            "cluster_policies",
            "Policies in the cluster model by kind",
            self.policies.clone(),
        );
    }

    /// Records one policy step.
    pub fn record(&self, s: &StepRecord<'_>) {
        self.compile.observe(s.compile.as_secs_f64());
        let mode = s.mode.as_str();
        for (kind, n) in [
            ("NetworkPolicy", s.cluster.network_policies.len()),
            ("GlobalPolicy", s.cluster.global_policies.len()),
        ] {
            self.policies.get_or_create(&KindLabels { kind }).set(gauge(n));
        }
        let error = match s.result {
            Ok(stats) => {
                self.restore_calls.inc_by(stats.restores as u64);
                self.ipset_calls.inc_by(stats.ipset_calls as u64);
                self.programmed(s.program, s.endpoints);
                None
            }
            Err(e) => {
                match failed_tool(e) {
                    Some(Tool::IptablesRestore) => {
                        self.restore_calls.inc();
                        self.restore_failures.inc();
                    }
                    Some(Tool::Ipset) => {
                        self.ipset_calls.inc();
                        self.ipset_failures.inc();
                    }
                    None => {}
                }
                Some(e.to_string())
            }
        };
        if s.mode == Mode::Unchanged && error.is_none() {
            return;
        }
        self.apply
            .get_or_create(&ModeLabels { mode })
            .observe(s.apply.as_secs_f64());
        let result = if error.is_none() { "success" } else { "failure" };
        self.applies.get_or_create(&ResultLabels { mode, result }).inc();
        let at = SystemTime::now();
        self.last_apply_time.set(
            at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        self.last_apply_success.set(i64::from(error.is_none()));
        let last = LastApply {
            at,
            mode: s.mode,
            error,
            endpoints: s.endpoints,
            network_policies: s.cluster.network_policies.len(),
            global_policies: s.cluster.global_policies.len(),
            chains: s.program.chains.len(),
            sets: s.program.sets.len(),
        };
        *self.last.lock().expect("not poisoned") = Some(last);
    }

    /// The gauges of what the kernel now holds.
    fn programmed(&self, program: &Program, endpoints: usize) {
        for f in [Family::V4, Family::V6] {
            let chains = program.chains.iter().filter(|((cf, _, _), _)| *cf == f);
            let (n, rules) = chains.fold((0, 0), |(n, r), (_, c)| (n + 1, r + c.rules.len()));
            self.chains.get_or_create(&ip_version(f)).set(gauge(n));
            self.rules.get_or_create(&ip_version(f)).set(gauge(rules));
            let sets = program.sets.values().filter(|s| s.family == f).count();
            self.sets.get_or_create(&ip_version(f)).set(gauge(sets));
        }
        self.local_endpoints.set(gauge(endpoints));
    }

    /// The last apply that did something (or failed), if any.
    pub fn last_apply(&self) -> Option<LastApply> {
        self.last.lock().expect("not poisoned").clone()
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart_by_the_tool_in_the_command_line() {
        let command = |cmd: &str| dataplane::Error::Command {
            cmd: cmd.into(),
            status: "exit status: 1".into(),
            stderr: "x".into(),
        };
        assert_eq!(
            failed_tool(&command("/usr/sbin/ip6tables-nft-restore --noflush")),
            Some(Tool::IptablesRestore)
        );
        assert_eq!(
            failed_tool(&command("/usr/sbin/ipset restore -exist")),
            Some(Tool::Ipset)
        );
        assert_eq!(failed_tool(&command("/usr/sbin/iptables-save -t filter")), None);
        assert_eq!(failed_tool(&dataplane::Error::Lab("x".into())), None);
    }
}
