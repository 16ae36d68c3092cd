//! The policy reconciler: the local endpoints (the CNI plugin's records) and the model in, the
//! incremental compiler's program out, through a [`Dataplane`].

use std::{
    borrow::Cow,
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use caracal_policy::model::{ClusterState, Key, LocalEndpoint, Pod};
use tokio::sync::watch;

use super::reconcile::{self, Next, Reconcile, Schedule, Wake};
use super::{AgentConfig, health};
use crate::{
    dataplane::{Dataplane, applier::Applier},
    datastore::Snapshot,
};

/// Reads every endpoint record in `dir` through the plugin's own record type
/// ([`caracal_contract::endpoint`]); unreadable or half-written files are skipped (the plugin
/// writes them atomically, so a skipped file is one being removed), and so are attachments
/// without a pod.
pub fn read_endpoints(dir: &Path) -> Vec<LocalEndpoint> {
    let mut eps: Vec<LocalEndpoint> = caracal_contract::endpoint::read_dir(dir)
        .into_iter()
        .filter_map(|r| {
            let pod = r.pod?;
            Some(LocalEndpoint {
                pod: Key::new(pod.namespace, pod.name),
                iface: r.iface,
                ips: r.ips,
            })
        })
        .collect();
    eps.sort_by(|a, b| a.pod.cmp(&b.pod).then(a.iface.cmp(&b.iface)));
    eps
}

/// A cheap fingerprint of the endpoints folder (names and modification times), to notice a pod
/// added or removed without re-reading every record.
fn dir_fingerprint(dir: &Path) -> Vec<(String, Option<SystemTime>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().ok().and_then(|m| m.modified().ok()),
            )
        })
        .collect();
    v.sort();
    v
}

/// The local pods the API does not yet report addresses for (the kubelet has not written
/// `status.podIPs` yet), with the addresses the CNI plugin gave them, so their policy is in
/// place before the API catches up.
pub fn local_address_overrides(cluster: &ClusterState, eps: &[LocalEndpoint]) -> BTreeMap<Key, Pod> {
    eps.iter()
        .filter_map(|ep| {
            let pod = cluster.pods.get(&ep.pod)?;
            pod.ips.is_empty().then(|| {
                let mut pod = pod.clone();
                pod.ips = ep.ips.clone();
                (ep.pod.clone(), pod)
            })
        })
        .collect()
}

/// The cluster as the compiler should see it: `cluster` with [`local_address_overrides`].
pub fn with_local_addresses<'c>(cluster: &'c ClusterState, eps: &[LocalEndpoint]) -> Cow<'c, ClusterState> {
    let overrides = local_address_overrides(cluster, eps);
    if overrides.is_empty() {
        return Cow::Borrowed(cluster);
    }
    let mut c = cluster.clone();
    c.pods.extend(overrides);
    Cow::Owned(c)
}

/// How one policy reconciliation went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStep {
    /// Compiled from scratch and compared whole with the kernel (the first step, a changed set
    /// of local endpoints, a resync, or the step after a failure); otherwise only the compiler's
    /// delta was rendered and applied.
    pub full: bool,
    /// The kernel was read back first (a resync).
    pub resynced: bool,
    pub compile: Duration,
    pub stats: crate::dataplane::applier::ApplyStats,
}

/// The policy side of the agent without the async loop: keeps the incremental compiler between
/// steps, so that a change costs what the change touches, not what the cluster holds. Programs
/// through a [`Dataplane`] (iptables + ipset by default).
pub struct PolicyReconciler<D: Dataplane = Applier> {
    applier: D,
    compiler: Option<caracal_policy::compile::Compiler>,
    endpoints: Vec<LocalEndpoint>,
    errors: std::collections::BTreeSet<String>,
    metrics: Option<crate::metrics::PolicyMetrics>,
}

impl<D: Dataplane> PolicyReconciler<D> {
    pub fn new(applier: D) -> Self {
        PolicyReconciler {
            applier,
            compiler: None,
            endpoints: Vec::new(),
            errors: Default::default(),
            metrics: None,
        }
    }

    /// Records every step's durations, kernel calls and results in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::PolicyMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn applier(&self) -> &D {
        &self.applier
    }

    pub fn applier_mut(&mut self) -> &mut D {
        &mut self.applier
    }

    /// The program of the last successful step, if any.
    pub fn compiled_program(&self) -> Option<&caracal_policy::program::Program> {
        self.compiler.as_ref().map(|c| c.program())
    }

    /// Brings the kernel to the program of `cluster` with the local endpoints `eps`. With
    /// `resync`, the applier forgets what it programmed and reads the kernel back, so rules or
    /// sets changed behind its back are put right.
    pub fn step(
        &mut self,
        cluster: &ClusterState,
        eps: &[LocalEndpoint],
        resync: bool,
    ) -> Result<PolicyStep> {
        use caracal_policy::compile::Compiler;
        let start = Instant::now();
        let incremental = match self.compiler.as_mut() {
            // Only the few local pods without addresses in the API are copied, not the cluster.
            Some(c) if !resync && self.endpoints == eps => {
                Some(c.sync_to_with(cluster, &local_address_overrides(cluster, eps)))
            }
            _ => None,
        };
        let full = incremental.is_none();
        if full {
            let cluster_now = with_local_addresses(cluster, eps).into_owned();
            self.compiler = Some(Compiler::new(cluster_now, eps));
            self.endpoints = eps.to_vec();
        }
        let compiler = self.compiler.as_ref().expect("compiled above");
        let compile = start.elapsed();
        let errors: std::collections::BTreeSet<String> =
            compiler.errors().iter().map(ToString::to_string).collect();
        for e in errors.difference(&self.errors) {
            tracing::warn!("policy rejected: {e}");
        }
        self.errors = errors;
        if resync {
            self.applier.resync();
        }
        let apply_start = Instant::now();
        let result = match &incremental {
            None => self.applier.apply(compiler.program()),
            Some(delta) if delta.is_empty() => Ok(Default::default()),
            Some(delta) => self.applier.apply_delta(compiler.program(), delta),
        };
        if let Some(m) = &self.metrics {
            use crate::metrics::policy::{Mode, StepRecord};
            m.record(&StepRecord {
                mode: match &incremental {
                    None => Mode::Full,
                    Some(delta) if delta.is_empty() => Mode::Unchanged,
                    Some(_) => Mode::Delta,
                },
                compile,
                apply: apply_start.elapsed(),
                result: result.as_ref(),
                program: compiler.program(),
                endpoints: eps.len(),
                cluster,
            });
        }
        match result {
            Ok(stats) => Ok(PolicyStep {
                full,
                resynced: resync,
                compile,
                stats,
            }),
            Err(e) => {
                // The compiler moved on but the kernel may not have: start over next time.
                self.compiler = None;
                self.applier.resync();
                Err(e.into())
            }
        }
    }
}

/// The policy reconciler: applies whenever the model or the local endpoints change, through
/// the incremental compiler's deltas, and every `policy_resync_secs` compares the whole program
/// with what the kernel holds. Runs until `snapshots` closes.
pub async fn reconcile_policy(
    config: Arc<AgentConfig>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    health: health::LoopHealth,
    metrics: crate::metrics::PolicyMetrics,
) -> Result<()> {
    let applier = tokio::task::spawn_blocking(|| Applier::new(None, None))
        .await?
        .context("detecting iptables")?;
    // The tick polls the endpoint records the CNI plugin writes.
    let schedule = Schedule {
        tick: Duration::from_millis(config.endpoint_poll_ms.max(1)),
        resync: (config.policy_resync_secs > 0).then(|| Duration::from_secs(config.policy_resync_secs)),
    };
    let r = PolicyLoop {
        config,
        reconciler: Some(PolicyReconciler::new(applier).with_metrics(metrics)),
        last_fp: None,
        resync_due: false,
    };
    reconcile::run("policy", r, snapshots, health, schedule).await
}

struct PolicyLoop {
    config: Arc<AgentConfig>,
    /// Taken while a step runs on the blocking pool.
    reconciler: Option<PolicyReconciler<Applier>>,
    /// The endpoint folder as last read.
    last_fp: Option<Vec<(String, Option<SystemTime>)>>,
    /// A resync that has not succeeded yet.
    resync_due: bool,
}

impl Reconcile for PolicyLoop {
    async fn reconcile(&mut self, snapshot: &Arc<Snapshot>, wake: Wake) -> Result<Next> {
        let endpoints_dir = &self.config.endpoints_dir;
        let fp = dir_fingerprint(endpoints_dir);
        let endpoints_changed = self.last_fp.as_ref() != Some(&fp);
        self.last_fp = Some(fp);
        self.resync_due |= wake == Wake::Resync;
        if wake == Wake::Tick && !endpoints_changed {
            return Ok(Next::Skip);
        }
        let snap = snapshot.clone();
        let eps = read_endpoints(endpoints_dir);
        let mut r = self
            .reconciler
            .take()
            .expect("the reconciler is returned after every step");
        let full_resync = self.resync_due;
        let (r, result) = tokio::task::spawn_blocking(move || {
            let result = r.step(&snap.cluster, &eps, full_resync).map(|s| (s, eps.len()));
            (r, result)
        })
        .await?;
        self.reconciler = Some(r);
        let (step, n) = result.context("applying policy failed")?;
        self.resync_due = false;
        tracing::info!(
            endpoints = n,
            full = step.full,
            resync = step.resynced,
            compile_time = ?step.compile,
            stats = ?step.stats,
            "policy applied"
        );
        if let Some(ready) = &self.config.readiness_file
            && !ready.exists()
        {
            std::fs::write(ready, b"ok\n").with_context(|| format!("writing {}", ready.display()))?;
        }
        Ok(Next::Wait)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn endpoint_records_without_a_pod_or_unreadable_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("c1_eth0.json"),
            r#"{"pod":{"namespace":"x","name":"a"},"containerID":"c1","ifname":"eth0","iface":"cara0123","mac":"ee:ee:ee:ee:ee:ee","ips":["10.244.1.2"],"netns":"/x","network":"caracal"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("c2_eth0.json"),
            r#"{"pod":null,"iface":"cara1","ips":[]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("c3_eth0.json"), "{not json").unwrap();
        let eps = read_endpoints(d.path());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].pod, Key::new("x", "a"));
        assert_eq!(eps[0].iface, "cara0123");
        assert_eq!(eps[0].ips, vec!["10.244.1.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn local_pods_without_api_addresses_take_the_cni_addresses() {
        let mut c = ClusterState::default();
        let k = Key::new("x", "a");
        c.pods.insert(
            k.clone(),
            caracal_policy::model::Pod {
                namespace: "x".into(),
                name: "a".into(),
                ..Default::default()
            },
        );
        let k2 = Key::new("x", "b");
        let ip_b: IpAddr = "10.0.0.9".parse().unwrap();
        c.pods.insert(
            k2.clone(),
            caracal_policy::model::Pod {
                ips: vec![ip_b],
                ..Default::default()
            },
        );
        let eps = vec![
            LocalEndpoint {
                pod: k.clone(),
                iface: "cara1".into(),
                ips: vec!["10.244.1.2".parse().unwrap()],
            },
            LocalEndpoint {
                pod: k2.clone(),
                iface: "cara2".into(),
                ips: vec!["10.244.1.3".parse().unwrap()],
            },
        ];
        let out = with_local_addresses(&c, &eps);
        assert_eq!(out.pods[&k].ips, eps[0].ips);
        assert_eq!(
            out.pods[&k2].ips,
            vec![ip_b],
            "the API's addresses win when present"
        );
    }
}
