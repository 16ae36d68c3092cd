//! How the allocator's findings reach users: each pool's status (conditions `Valid` and
//! `Conflict`, address counts) and Warning Events on Services, said once rather than at every
//! reconcile. Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta, Time},
    jiff::Timestamp,
};

use super::{
    REPORTER,
    allocate::{PoolReport, ServiceEvent},
    crd::LoadBalancerPoolStatus,
    pool::PoolState,
    service::ServiceKey,
};

pub const VALID: &str = "Valid";
pub const CONFLICT: &str = "Conflict";

/// The status a pool should have. Conditions whose status, reason and message did not change
/// keep their `lastTransitionTime`, so an unchanged pool's status compares equal to the old
/// one and is not written again.
pub fn pool_status(
    report: &PoolReport,
    old: Option<&LoadBalancerPoolStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> LoadBalancerPoolStatus {
    let (valid, conflict) = match &report.state {
        PoolState::Usable => (
            ("True", "Valid", String::new()),
            ("False", "NoOverlap", String::new()),
        ),
        PoolState::Invalid(why) => (
            ("False", "InvalidSpec", why.clone()),
            ("False", "NoOverlap", String::new()),
        ),
        PoolState::Conflict { message, .. } => (
            ("True", "Valid", String::new()),
            (
                "True",
                "Overlap",
                format!("{message}; this pool hands out no addresses"),
            ),
        ),
    };
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        let previous = old
            .into_iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status && p.reason == reason && p.message == message => {
                p.last_transition_time.clone()
            }
            _ => Time(now),
        };
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    };
    let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
    LoadBalancerPoolStatus {
        conditions: vec![condition(VALID, valid), condition(CONFLICT, conflict)],
        total: clamp(report.total),
        used: clamp(report.used),
        available: clamp(report.available),
        observed_generation: generation,
    }
}

/// The Warnings already written, per Service: a Warning is written when it first appears,
/// and again only after it went away and came back. Normal Events (an address assigned or
/// released) happen once by nature and pass straight through.
#[derive(Debug, Default)]
pub struct Said {
    warnings: BTreeMap<ServiceKey, BTreeSet<(&'static str, String)>>,
}

impl Said {
    /// The events of one reconcile that are worth writing; remembers the warnings.
    pub fn news<'a>(&mut self, events: &'a [ServiceEvent]) -> Vec<&'a ServiceEvent> {
        let mut now: BTreeMap<ServiceKey, BTreeSet<(&'static str, String)>> = BTreeMap::new();
        let mut out = Vec::new();
        for e in events {
            if !e.warning {
                out.push(e);
                continue;
            }
            let seen = self
                .warnings
                .get(&e.service)
                .is_some_and(|s| s.contains(&(e.reason, e.message.clone())));
            if !seen {
                out.push(e);
            }
            now.entry(e.service.clone())
                .or_default()
                .insert((e.reason, e.message.clone()));
        }
        self.warnings = now;
        out
    }

    /// Forget a warning that could not be written, so it is tried again next time.
    pub fn forget(&mut self, e: &ServiceEvent) {
        if let Some(s) = self.warnings.get_mut(&e.service) {
            s.remove(&(e.reason, e.message.clone()));
        }
    }
}

/// The Event object for one finding about a Service (`regarding`), in the Service's namespace.
pub fn event_object(e: &ServiceEvent, regarding: ObjectReference, instance: &str, now: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", e.service.name, now.as_nanosecond())),
            namespace: Some(e.service.namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if e.warning { "Warning" } else { "Normal" }.to_string()),
        reason: Some(e.reason.to_string()),
        note: Some(e.message.clone()),
        action: Some("AllocateLoadBalancerIP".to_string()),
        reporting_controller: Some(REPORTER.to_string()),
        reporting_instance: Some(instance.to_string()),
        regarding: Some(regarding),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbipam::allocate::reason;

    fn report(state: PoolState) -> PoolReport {
        PoolReport {
            state,
            disabled: false,
            total: 256,
            used: 3,
            available: 253,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn conditions_for_each_state() {
        let cases = [
            (PoolState::Usable, ("True", "Valid"), ("False", "NoOverlap")),
            (
                PoolState::Invalid("spec.cidrs[0]: x".into()),
                ("False", "InvalidSpec"),
                ("False", "NoOverlap"),
            ),
            (
                PoolState::Conflict {
                    with: "old".into(),
                    message: "spec.cidrs: 10.0.0.0/25 overlaps 10.0.0.0/24 of the older pool old".into(),
                },
                ("True", "Valid"),
                ("True", "Overlap"),
            ),
        ];
        for (state, valid, conflict) in cases {
            let s = pool_status(&report(state.clone()), None, Some(2), t(10));
            let c = |ty: &str| s.conditions.iter().find(|c| c.type_ == ty).unwrap().clone();
            assert_eq!(
                (c(VALID).status.as_str(), c(VALID).reason.as_str()),
                valid,
                "{state:?}"
            );
            assert_eq!(
                (c(CONFLICT).status.as_str(), c(CONFLICT).reason.as_str()),
                conflict,
                "{state:?}"
            );
            assert_eq!(c(VALID).observed_generation, Some(2));
            assert_eq!((s.total, s.used, s.available), (256, 3, 253));
        }
        let s = pool_status(
            &report(PoolState::Invalid("spec.cidrs[0]: bad".into())),
            None,
            None,
            t(1),
        );
        assert_eq!(s.conditions[0].message, "spec.cidrs[0]: bad");
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_times_and_compares_equal() {
        let first = pool_status(&report(PoolState::Usable), None, Some(1), t(10));
        let again = pool_status(&report(PoolState::Usable), Some(&first), Some(1), t(99));
        assert_eq!(first, again);
        let conflict = PoolState::Conflict {
            with: "o".into(),
            message: "m".into(),
        };
        let changed = pool_status(&report(conflict), Some(&first), Some(1), t(99));
        assert_eq!(
            changed.conditions[0].last_transition_time,
            Time(t(10)),
            "Valid did not change"
        );
        assert_eq!(changed.conditions[1].last_transition_time, Time(t(99)));
    }

    #[test]
    fn counts_saturate() {
        let mut r = report(PoolState::Usable);
        r.total = u128::MAX;
        assert_eq!(pool_status(&r, None, None, t(1)).total, i64::MAX);
    }

    #[test]
    fn events_name_the_service_reason_note_and_reporter() {
        let e = ServiceEvent {
            service: ServiceKey {
                namespace: "shop".into(),
                name: "web".into(),
            },
            warning: true,
            reason: reason::EXHAUSTED,
            message: "no free IPv4 address".into(),
        };
        let regarding = ObjectReference {
            kind: Some("Service".into()),
            name: Some("web".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        };
        let ev = event_object(&e, regarding.clone(), "node-1", t(5));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("shop"));
        assert!(ev.metadata.name.as_deref().unwrap().starts_with("web."));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.reason.as_deref(), Some("PoolExhausted"));
        assert_eq!(ev.note.as_deref(), Some("no free IPv4 address"));
        assert_eq!(ev.reporting_controller.as_deref(), Some("caracal.dev/lb-ipam"));
        assert_eq!(ev.reporting_instance.as_deref(), Some("node-1"));
        assert_eq!(ev.regarding, Some(regarding));
        assert!(ev.event_time.is_some(), "events.k8s.io/v1 requires eventTime");
    }

    #[test]
    fn a_warning_is_said_once_until_it_goes_away() {
        let key = ServiceKey {
            namespace: "ns".into(),
            name: "s".into(),
        };
        let warn = ServiceEvent {
            service: key.clone(),
            warning: true,
            reason: reason::EXHAUSTED,
            message: "full".into(),
        };
        let normal = ServiceEvent {
            warning: false,
            reason: reason::ALLOCATED,
            ..warn.clone()
        };
        let mut said = Said::default();
        assert_eq!(said.news(std::slice::from_ref(&warn)).len(), 1);
        assert!(said.news(std::slice::from_ref(&warn)).is_empty());
        assert_eq!(said.news(&[warn.clone(), normal.clone()]), vec![&normal]);
        assert!(said.news(&[]).is_empty());
        assert_eq!(said.news(std::slice::from_ref(&warn)).len(), 1, "back again");
        said.forget(&warn);
        assert_eq!(
            said.news(std::slice::from_ref(&warn)).len(),
            1,
            "not written: try again"
        );
    }
}
