//! The one loop shape of the agent's reconcilers, after kube-runtime's controllers: a pass
//! ([`Reconcile::reconcile`]) diffs the desired state of the latest snapshot against what it
//! owns and says what comes [`Next`]; a failed pass goes to the reconciler's
//! [`Reconcile::error_policy`], which says when to try again. [`run`] owns the rest: waiting for
//! a new snapshot, a tick or a resync, the health beats and readiness, the logging of failures,
//! and the end when the snapshots close.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;
use tokio::time::Instant;

use super::health::LoopHealth;
use crate::datastore::Snapshot;

/// Why a pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The first pass, or the snapshot changed.
    Changed,
    /// The loop's tick: a reconciler may look at inputs outside the snapshot (a folder, the
    /// kernel) and do nothing when they are unchanged.
    Tick,
    /// Time for a full comparison with what the kernel holds.
    Resync,
    /// The time the last pass asked for (after an error, or [`Next::After`]).
    Retry,
}

/// What a pass asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Done and ready; wait for the next change, tick or resync.
    Wait,
    /// Ready, and run again after this long even if nothing changes.
    After(Duration),
    /// Not ready, for this reason (for `/readyz`); try again at the next change or tick.
    NotReady(String),
    /// Nothing to do for this wake (a tick that found its inputs unchanged): readiness and a
    /// pending retry stay as the last real pass left them.
    Skip,
}

/// One reconciler.
pub trait Reconcile: Send {
    /// One pass for `snapshot`.
    fn reconcile(
        &mut self,
        snapshot: &Arc<Snapshot>,
        wake: Wake,
    ) -> impl Future<Output = Result<Next>> + Send;

    /// How long to wait after a failed pass.
    fn error_policy(&self, _error: &anyhow::Error) -> Duration {
        Duration::from_secs(1)
    }
}

/// When a reconciler runs besides a snapshot change.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// The tick (and the liveness beat).
    pub tick: Duration,
    /// The full resync, if any.
    pub resync: Option<Duration>,
}

/// Runs `r` until `snapshots` closes.
pub async fn run(
    name: &'static str,
    mut r: impl Reconcile,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    health: LoopHealth,
    schedule: Schedule,
) -> Result<()> {
    let mut tick = tokio::time::interval_at(Instant::now() + schedule.tick, schedule.tick);
    // After a long pass, one tick, not a burst of them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync = schedule
        .resync
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    let mut wake = Wake::Changed;
    let mut retry_at: Option<Instant> = None;
    loop {
        // A snapshot that came with (or right after) a tick is a change all the same: the pass
        // below marks it seen, so it must not be told it runs for a mere tick.
        if wake == Wake::Tick && snapshots.has_changed().unwrap_or(false) {
            wake = Wake::Changed;
        }
        let snapshot = snapshots.borrow_and_update().clone();
        match r.reconcile(&snapshot, wake).await {
            Ok(Next::Wait) => {
                health.ready();
                retry_at = None;
            }
            Ok(Next::After(d)) => {
                health.ready();
                retry_at = Some(Instant::now() + d);
            }
            Ok(Next::NotReady(why)) => {
                health.not_ready(why);
                retry_at = None;
            }
            Ok(Next::Skip) => {}
            Err(e) => {
                let after = r.error_policy(&e);
                tracing::warn!("{name}: {e:#} (retrying in {after:?})");
                health.not_ready(format!("{e:#}"));
                retry_at = Some(Instant::now() + after);
            }
        }
        wake = tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                Wake::Changed
            }
            _ = tick.tick() => {
                health.beat();
                Wake::Tick
            }
            _ = async { resync.as_mut().expect("guarded").tick().await }, if resync.is_some() => Wake::Resync,
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                Wake::Retry
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::agent::health::Health;

    /// Fails its first pass, then records why it ran; with `skip_ticks`, a tick does nothing.
    struct Recorder {
        wakes: Arc<Mutex<Vec<Wake>>>,
        failed: bool,
        skip_ticks: bool,
        retry: Duration,
    }

    impl Reconcile for Recorder {
        async fn reconcile(&mut self, _: &Arc<Snapshot>, wake: Wake) -> Result<Next> {
            self.wakes.lock().unwrap().push(wake);
            if self.skip_ticks && wake == Wake::Tick {
                return Ok(Next::Skip);
            }
            if !self.failed {
                self.failed = true;
                anyhow::bail!("the first pass fails");
            }
            Ok(Next::Wait)
        }

        fn error_policy(&self, _: &anyhow::Error) -> Duration {
            self.retry
        }
    }

    /// Records each pass's wake and whether its snapshot was new to it.
    struct Seen {
        passes: Arc<Mutex<Vec<(Wake, bool)>>>,
        last: Option<Arc<Snapshot>>,
    }

    impl Reconcile for Seen {
        async fn reconcile(&mut self, snapshot: &Arc<Snapshot>, wake: Wake) -> Result<Next> {
            let new = !self.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, snapshot));
            self.last = Some(snapshot.clone());
            self.passes.lock().unwrap().push((wake, new));
            Ok(if wake == Wake::Tick {
                Next::Skip
            } else {
                Next::Wait
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_that_comes_with_a_tick_is_never_taken_for_a_tick() {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let health = Health::default();
        let passes = Arc::new(Mutex::new(Vec::new()));
        let r = Seen {
            passes: passes.clone(),
            last: None,
        };
        let schedule = Schedule {
            tick: Duration::from_millis(10),
            resync: None,
        };
        tokio::spawn(run("test", r, rx, health.register("test", "not yet"), schedule));
        // Each new snapshot lands exactly when a tick is due: both are ready at once.
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(Arc::new(Snapshot::default())).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let passes = passes.lock().unwrap();
        let new: Vec<Wake> = passes.iter().filter(|(_, new)| *new).map(|(w, _)| *w).collect();
        assert_eq!(new.len(), 41, "every snapshot had its pass: {passes:?}");
        assert!(new.iter().all(|w| *w == Wake::Changed), "{passes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_skipped_tick_keeps_the_failure_and_its_retry() {
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let health = Health::default();
        let h = health.register("test", "not yet");
        let wakes = Arc::new(Mutex::new(Vec::new()));
        let r = Recorder {
            wakes: wakes.clone(),
            failed: false,
            skip_ticks: true,
            retry: Duration::from_secs(25),
        };
        let schedule = Schedule {
            tick: Duration::from_secs(10),
            resync: None,
        };
        tokio::spawn(run("test", r, rx, h, schedule));
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert!(!health.readiness().0, "two skipped ticks leave it not ready");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(health.readiness().0, "ready after the retry at 25 s");
        assert_eq!(
            *wakes.lock().unwrap(),
            [Wake::Changed, Wake::Tick, Wake::Tick, Wake::Retry]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_retried_after_the_error_policy_and_changes_ticks_and_resyncs_wake_it() {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let health = Health::default();
        let h = health.register("test", "not yet");
        let wakes = Arc::new(Mutex::new(Vec::new()));
        let r = Recorder {
            wakes: wakes.clone(),
            failed: false,
            skip_ticks: false,
            retry: Duration::from_millis(50),
        };
        let schedule = Schedule {
            tick: Duration::from_secs(10),
            resync: Some(Duration::from_secs(25)),
        };
        let task = tokio::spawn(run("test", r, rx, h, schedule));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!health.readiness().0, "not ready after the failed pass");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(health.readiness().0, "ready after the retry");
        tx.send(Arc::new(Snapshot::default())).unwrap();
        tokio::time::sleep(Duration::from_secs(26)).await;
        drop(tx);
        task.await.unwrap().unwrap();
        assert_eq!(
            *wakes.lock().unwrap(),
            [
                Wake::Changed,
                Wake::Retry,
                Wake::Changed,
                Wake::Tick,
                Wake::Tick,
                Wake::Resync
            ]
        );
    }
}
