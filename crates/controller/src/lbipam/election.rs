//! Leader election over a `coordination.k8s.io/v1` Lease, as a sans-I/O state machine: the
//! driver ([`super::lease`]) reads the Lease, asks [`Elector::decide`] what to write, writes it
//! with the resourceVersion it read (so of two writers one gets 409 and loses), and tells the
//! elector how it went.
//!
//! Expiry is judged on this process's monotonic clock, from the moment it *saw* the Lease
//! change, never from the `renewTime` written by another node's clock (as client-go does).
//! The leader acts only while its last successful write is younger than `renew_deadline`,
//! which is shorter than the lease duration a follower waits, so the two never overlap while
//! clocks tick at the same rate.
//!
//! `holderIdentity` is the node name; the annotation [`INSTANCE_ANNOTATION`] carries this
//! process's instance, so during a DaemonSet roll the new agent on the same node does not take
//! the old one's Lease for its own: it waits until the old agent releases it (on SIGTERM) or it
//! expires.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

/// The Lease annotation naming the holder's process instance.
pub const INSTANCE_ANNOTATION: &str = "caracal.dev/holder-instance";

/// How often and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `leaseDurationSeconds`: how long a follower waits after the last change it saw.
    pub lease_duration: Duration,
    /// How long the leader goes on acting after its last successful write.
    pub renew_deadline: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a follower reads the Lease.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// Who this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `holderIdentity`: the node name.
    pub holder: String,
    /// Unique to this process.
    pub instance: String,
}

/// The parts of a Lease the election looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub instance: Option<String>,
    pub duration_secs: Option<i32>,
    pub renew_time: Option<Timestamp>,
    pub transitions: i32,
    pub resource_version: Option<String>,
}

impl LeaseRecord {
    fn same_content(&self, other: &LeaseRecord) -> bool {
        (
            &self.holder,
            &self.instance,
            self.duration_secs,
            self.renew_time,
            self.transitions,
        ) == (
            &other.holder,
            &other.instance,
            other.duration_secs,
            other.renew_time,
            other.transitions,
        )
    }
}

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, held by us (`leaseTransitions` 0).
    Create,
    /// Take the Lease over (a new `acquireTime`, `leaseTransitions` + 1) if it is still at
    /// `resource_version`.
    Acquire {
        resource_version: String,
        transitions: i32,
    },
    /// Write a new `renewTime` on our own Lease if it is still at `resource_version`.
    Renew { resource_version: String },
    /// Someone else holds it: read again later.
    Wait,
}

/// How a write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// 409: someone else wrote first.
    Conflict,
    /// Anything else (timeout, 5xx): nothing is known.
    Failed,
}

/// The election state of one process.
#[derive(Clone, Debug)]
pub struct Elector {
    me: Identity,
    timing: Timing,
    /// The Lease content last seen, and when it was first seen so.
    observed: Option<(LeaseRecord, Instant)>,
    /// We lead until then.
    leading_until: Option<Instant>,
    /// When the pending write was decided.
    deciding_at: Option<Instant>,
}

impl Elector {
    pub fn new(me: Identity, timing: Timing) -> Elector {
        Elector {
            me,
            timing,
            observed: None,
            leading_until: None,
            deciding_at: None,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.me
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Given the Lease as just read (`None`: it does not exist), what to write.
    pub fn decide(&mut self, lease: Option<&LeaseRecord>, now: Instant) -> Step {
        self.deciding_at = Some(now);
        let Some(lease) = lease else {
            self.observed = None;
            return Step::Create;
        };
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| !seen.same_content(lease));
        if changed {
            self.observed = Some((lease.clone(), now));
        }
        let rv = lease.resource_version.clone().unwrap_or_default();
        if self.holds(lease) {
            return Step::Renew { resource_version: rv };
        }
        // Someone else's (or nobody's): we do not lead, whatever we thought.
        self.leading_until = None;
        let released = lease.holder.as_deref().is_none_or(str::is_empty);
        let duration = lease
            .duration_secs
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.lease_duration, Duration::from_secs);
        let seen_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        if released || now >= seen_at + duration {
            Step::Acquire {
                resource_version: rv,
                transitions: lease.transitions,
            }
        } else {
            Step::Wait
        }
    }

    /// The result of the write [`Elector::decide`] asked for.
    pub fn outcome(&mut self, outcome: Outcome) {
        let decided = self.deciding_at.take();
        match outcome {
            // Counted from before the request went out: the write may have landed at once.
            Outcome::Written => self.leading_until = decided.map(|t| t + self.timing.renew_deadline),
            Outcome::Conflict => self.leading_until = None,
            Outcome::Failed => {}
        }
    }

    /// Forget leadership at once (we are stopping and about to release the Lease).
    pub fn step_down(&mut self) {
        self.leading_until = None;
    }

    pub fn is_leader(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|t| now < t)
    }

    /// How long to sleep before the next read: the renew period while leading (but never past
    /// the moment leadership would lapse), the retry period otherwise.
    pub fn next_wake(&self, now: Instant) -> Duration {
        match self.leading_until {
            Some(until) if now < until => self.timing.renew_every.min(until - now),
            _ => self.timing.retry_every,
        }
    }

    fn holds(&self, lease: &LeaseRecord) -> bool {
        lease.holder.as_deref() == Some(self.me.holder.as_str())
            && lease.instance.as_deref() == Some(self.me.instance.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(node: &str, instance: &str) -> Identity {
        Identity {
            holder: node.into(),
            instance: instance.into(),
        }
    }

    fn held(by: &str, instance: &str, renew: i64, rv: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Some(by.into()),
            instance: Some(instance.into()),
            duration_secs: Some(15),
            renew_time: Some(Timestamp::from_second(renew).unwrap()),
            transitions: 3,
            resource_version: Some(rv.into()),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_lease_is_created_and_a_successful_create_leads() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        assert_eq!(e.decide(None, t0), Step::Create);
        assert!(!e.is_leader(t0));
        e.outcome(Outcome::Written);
        assert!(e.is_leader(t0 + secs(9)));
        assert!(
            !e.is_leader(t0 + secs(10)),
            "leads renew_deadline after the write"
        );
        assert_eq!(e.next_wake(t0), secs(5));
    }

    #[test]
    fn losing_the_create_race_is_not_leading() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        assert_eq!(e.decide(None, t0), Step::Create);
        e.outcome(Outcome::Conflict);
        assert!(!e.is_leader(t0));
        assert_eq!(e.next_wake(t0), secs(2));
    }

    #[test]
    fn own_lease_is_renewed_with_the_read_resource_version() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        let step = e.decide(Some(&held("n1", "a", 100, "41")), t0);
        assert_eq!(
            step,
            Step::Renew {
                resource_version: "41".into()
            }
        );
        e.outcome(Outcome::Written);
        assert!(e.is_leader(t0));
    }

    /// Table: someone else's Lease, observed unchanged from t0, is taken over only once the
    /// lease duration has passed on our clock, or at once when released.
    #[test]
    fn another_holders_lease_is_taken_only_when_expired_or_released() {
        let other = held("n2", "b", 100, "7");
        let released = LeaseRecord {
            holder: None,
            ..other.clone()
        };
        let emptied = LeaseRecord {
            holder: Some(String::new()),
            ..other.clone()
        };
        let acquire = Step::Acquire {
            resource_version: "7".into(),
            transitions: 3,
        };
        let cases = [
            (&other, 0, Step::Wait),
            (&other, 14, Step::Wait),
            (&other, 15, acquire.clone()),
            (&released, 0, acquire.clone()),
            (&emptied, 0, acquire.clone()),
        ];
        for (lease, after, want) in cases {
            let t0 = Instant::now();
            let mut e = Elector::new(me("n1", "a"), Timing::default());
            assert_eq!(
                e.decide(Some(lease), t0),
                if after == 0 { want.clone() } else { Step::Wait }
            );
            if after > 0 {
                assert_eq!(e.decide(Some(lease), t0 + secs(after)), want, "after {after}s");
            }
        }
    }

    #[test]
    fn a_renewing_holder_is_never_expired_whatever_its_clock_says() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        // Its renewTime is far in the past by our wall clock, but it keeps changing.
        for i in 0..10u64 {
            let lease = held("n2", "b", 100 + i as i64, &format!("{i}"));
            assert_eq!(
                e.decide(Some(&lease), t0 + secs(5 * i)),
                Step::Wait,
                "at {}s",
                5 * i
            );
        }
    }

    #[test]
    fn the_leases_own_duration_wins_over_the_default() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        let lease = LeaseRecord {
            duration_secs: Some(60),
            ..held("n2", "b", 1, "1")
        };
        e.decide(Some(&lease), t0);
        assert_eq!(e.decide(Some(&lease), t0 + secs(30)), Step::Wait);
        assert!(matches!(
            e.decide(Some(&lease), t0 + secs(60)),
            Step::Acquire { .. }
        ));
    }

    /// A DaemonSet roll: the new agent on the same node has the same holderIdentity but another
    /// instance, so it waits for the old one's release.
    #[test]
    fn the_same_node_with_another_instance_waits() {
        let t0 = Instant::now();
        let mut new = Elector::new(me("n1", "new"), Timing::default());
        assert_eq!(new.decide(Some(&held("n1", "old", 5, "9")), t0), Step::Wait);
        let released = LeaseRecord {
            holder: None,
            instance: None,
            resource_version: Some("10".into()),
            ..held("n1", "old", 5, "10")
        };
        assert!(matches!(
            new.decide(Some(&released), t0 + secs(1)),
            Step::Acquire { .. }
        ));
    }

    #[test]
    fn a_leader_that_sees_another_holder_stops_at_once() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        e.decide(Some(&held("n1", "a", 1, "1")), t0);
        e.outcome(Outcome::Written);
        assert!(e.is_leader(t0 + secs(1)));
        assert_eq!(e.decide(Some(&held("n2", "b", 2, "2")), t0 + secs(5)), Step::Wait);
        assert!(!e.is_leader(t0 + secs(5)));
    }

    #[test]
    fn a_renew_conflict_loses_at_once_and_failures_lose_at_the_deadline() {
        let t0 = Instant::now();
        let mut e = Elector::new(me("n1", "a"), Timing::default());
        e.decide(Some(&held("n1", "a", 1, "1")), t0);
        e.outcome(Outcome::Written);
        // Renewals fail (the API server is away): still leading until 10 s after the last write.
        e.decide(Some(&held("n1", "a", 1, "1")), t0 + secs(5));
        e.outcome(Outcome::Failed);
        assert!(e.is_leader(t0 + secs(9)));
        assert_eq!(e.next_wake(t0 + secs(9)), secs(1), "wakes when leadership lapses");
        assert!(!e.is_leader(t0 + secs(10)));
        // A conflict on renew: lost at once.
        e.decide(Some(&held("n1", "a", 1, "1")), t0 + secs(11));
        e.outcome(Outcome::Written);
        assert!(e.is_leader(t0 + secs(12)));
        e.decide(Some(&held("n1", "a", 1, "1")), t0 + secs(16));
        e.outcome(Outcome::Conflict);
        assert!(!e.is_leader(t0 + secs(16)));
    }

    /// Two electors on one Lease, with the API's compare-and-swap simulated: at most one
    /// leads at every step, also when the leader is cut off (it still believes it leads until
    /// its deadline), and the other takes over after the lease duration.
    #[test]
    fn two_electors_never_lead_at_once() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut electors = [
            Elector::new(me("n1", "a"), timing),
            Elector::new(me("n2", "b"), timing),
        ];
        let mut lease: Option<LeaseRecord> = None;
        let mut rv = 0u64;
        let mut crashed = false;
        for tick in 0..120u64 {
            let now = t0 + Duration::from_millis(500 * tick);
            if tick == 40 {
                // n1 (the leader by then) is cut off from the API server without releasing.
                crashed = true;
            }
            for (i, e) in electors.iter_mut().enumerate() {
                if crashed && i == 0 {
                    continue;
                }
                let read = lease.clone();
                let step = e.decide(read.as_ref(), now);
                let written = match step {
                    Step::Wait => continue,
                    Step::Create if lease.is_none() => true,
                    Step::Create => false,
                    Step::Acquire { resource_version, .. } | Step::Renew { resource_version } => {
                        lease.as_ref().and_then(|l| l.resource_version.clone()) == Some(resource_version)
                    }
                };
                if written {
                    rv += 1;
                    lease = Some(LeaseRecord {
                        holder: Some(e.identity().holder.clone()),
                        instance: Some(e.identity().instance.clone()),
                        duration_secs: Some(15),
                        renew_time: Some(Timestamp::from_second(rv as i64).unwrap()),
                        transitions: 0,
                        resource_version: Some(rv.to_string()),
                    });
                    e.outcome(Outcome::Written);
                } else {
                    e.outcome(Outcome::Conflict);
                }
            }
            // A partitioned leader still believes it leads, but only until its deadline.
            let leaders = electors.iter().filter(|e| e.is_leader(now)).count();
            assert!(leaders <= 1, "two leaders at tick {tick}");
        }
        assert!(
            electors[1].is_leader(t0 + Duration::from_millis(500 * 119)),
            "n2 took over"
        );
        assert_eq!(lease.unwrap().holder.as_deref(), Some("n2"));
    }
}
