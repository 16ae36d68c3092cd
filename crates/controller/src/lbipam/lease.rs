//! The election's I/O: reads and writes the Lease for [`super::election::Elector`] and
//! publishes whether this process leads. On stop, a leader releases the Lease (empty holder)
//! so the next agent takes over at once instead of after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

use super::election::{Elector, INSTANCE_ANNOTATION, LeaseRecord, Outcome, Step};
use crate::agent::health::LoopHealth;

/// Every API call of the election gives up after this long: a read and a write fit in the
/// slack between the renew period (5 s) and the renew deadline (10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The parts of a Lease the election looks at.
pub fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.as_ref();
    LeaseRecord {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        instance: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INSTANCE_ANNOTATION).cloned()),
        duration_secs: spec.and_then(|s| s.lease_duration_seconds),
        renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
        resource_version: lease.metadata.resource_version.clone(),
    }
}

/// The Lease to write for `step`, from the one read (`None`: creating it).
pub fn written_lease(
    elector: &Elector,
    name: &str,
    namespace: &str,
    read: Option<&Lease>,
    step: &Step,
    now: Timestamp,
) -> Option<Lease> {
    let me = elector.identity();
    let mut lease = read.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    match step {
        Step::Wait => return None,
        Step::Create => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(0);
        }
        Step::Acquire { transitions, .. } => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(transitions + 1);
        }
        Step::Renew { .. } => {}
    }
    spec.holder_identity = Some(me.holder.clone());
    spec.lease_duration_seconds = Some(elector.timing().lease_duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INSTANCE_ANNOTATION.to_string(), me.instance.clone());
    Some(lease)
}

/// Why an API call of the election failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum CallError {
    /// 409: someone else wrote first.
    #[error("409 Conflict: the Lease changed meanwhile")]
    Conflict,
    #[error("{0}")]
    Other(String),
}

async fn timed<T>(what: &str, f: impl Future<Output = kube::Result<T>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Err(CallError::Conflict),
        Ok(Err(e)) => Err(CallError::Other(format!("{what}: {e}"))),
        Err(_) => Err(CallError::Other(format!(
            "{what}: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

/// Runs the election until `stop`, publishing leadership on `leader`.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    mut elector: Elector,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    health: LoopHealth,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut last_error = String::new();
    let mut log_error = |e: String| {
        if e != last_error {
            tracing::warn!(lease = %name, %namespace, "lb-ipam election: {e}");
            last_error = e;
        }
    };
    let publish = |elector: &Elector| {
        let leading = elector.is_leader(Instant::now());
        leader.send_if_modified(|l| {
            let changed = *l != leading;
            if changed {
                tracing::info!(lease = %name, holder = %elector.identity().holder, leading, "lb-ipam leadership changed");
            }
            *l = leading;
            changed
        });
    };
    loop {
        health.beat();
        // Before the calls too: a leader whose deadline passed while it slept stops now, not
        // after requests that may take CALL_TIMEOUT each.
        publish(&elector);
        let started = Instant::now();
        match timed("read the Lease", api.get_opt(&name)).await {
            Err(CallError::Conflict) => {}
            Err(CallError::Other(e)) => log_error(e),
            Ok(read) => {
                let step = elector.decide(read.as_ref().map(record).as_ref(), started);
                let lease = written_lease(
                    &elector,
                    &name,
                    &namespace,
                    read.as_ref(),
                    &step,
                    Timestamp::now(),
                );
                if let Some(lease) = lease {
                    let pp = PostParams::default();
                    let result = match step {
                        Step::Create => timed("create the Lease", api.create(&pp, &lease)).await,
                        _ => timed("update the Lease", api.replace(&name, &pp, &lease)).await,
                    };
                    elector.outcome(match result {
                        Ok(_) => Outcome::Written,
                        Err(CallError::Conflict) => Outcome::Conflict,
                        Err(CallError::Other(e)) => {
                            log_error(e);
                            Outcome::Failed
                        }
                    });
                }
            }
        }
        publish(&elector);
        let wake = elector.next_wake(Instant::now());
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let was_leading = elector.is_leader(Instant::now());
    elector.step_down();
    leader.send_replace(false);
    if was_leading {
        release(&api, &name, &elector).await;
    }
}

/// Empties the holder of our own Lease (if it still is ours), as client-go's ReleaseOnCancel.
async fn release(api: &Api<Lease>, name: &str, elector: &Elector) {
    let result = timed("release the Lease", async {
        let Some(mut lease) = api.get_opt(name).await? else {
            return Ok(());
        };
        let r = record(&lease);
        let me = elector.identity();
        if r.holder.as_deref() != Some(me.holder.as_str())
            || r.instance.as_deref() != Some(me.instance.as_str())
        {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        if let Some(a) = lease.metadata.annotations.as_mut() {
            a.remove(INSTANCE_ANNOTATION);
        }
        api.replace(name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    })
    .await;
    match result {
        Ok(()) => tracing::info!(lease = %name, "lb-ipam: released the Lease"),
        Err(e) => {
            tracing::warn!(lease = %name, "lb-ipam: could not release the Lease ({e}); it expires instead")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbipam::election::{Identity, Timing};

    #[test]
    fn written_leases_carry_holder_instance_duration_and_transitions() {
        let e = Elector::new(
            Identity {
                holder: "node-1".into(),
                instance: "i-1".into(),
            },
            Timing::default(),
        );
        let now = Timestamp::from_second(1000).unwrap();
        let created = written_lease(&e, "caracal-lb-ipam", "kube-system", None, &Step::Create, now).unwrap();
        let r = record(&created);
        assert_eq!(r.holder.as_deref(), Some("node-1"));
        assert_eq!(r.instance.as_deref(), Some("i-1"));
        assert_eq!(r.duration_secs, Some(15));
        assert_eq!(r.transitions, 0);
        assert_eq!(created.metadata.namespace.as_deref(), Some("kube-system"));

        let mut theirs = created.clone();
        theirs.spec.as_mut().unwrap().holder_identity = Some("node-2".into());
        theirs.spec.as_mut().unwrap().lease_transitions = Some(4);
        theirs.metadata.resource_version = Some("77".into());
        let step = Step::Acquire {
            resource_version: "77".into(),
            transitions: 4,
        };
        let taken = written_lease(&e, "caracal-lb-ipam", "kube-system", Some(&theirs), &step, now).unwrap();
        let r = record(&taken);
        assert_eq!((r.holder.as_deref(), r.transitions), (Some("node-1"), 5));
        assert_eq!(
            r.resource_version.as_deref(),
            Some("77"),
            "replaced at the version read"
        );
        assert!(written_lease(&e, "l", "ns", Some(&theirs), &Step::Wait, now).is_none());
    }
}
