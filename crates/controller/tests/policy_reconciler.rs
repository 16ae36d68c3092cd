//! The policy reconciler drives any [`Dataplane`]: a fake one records what it is asked to do.
//! No root.

use std::sync::{Arc, Mutex};

use caracal::{
    agent::PolicyReconciler,
    dataplane::{ApplyStats, Dataplane, Result},
};
use caracal_policy::{
    compile::{Delta, iface_name},
    model::{ClusterState, Key, LocalEndpoint, Pod},
    program::Program,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Apply { chains: usize },
    Delta { sets_changed: usize },
    Resync,
}

struct Fake(Arc<Mutex<Vec<Call>>>);

impl Dataplane for Fake {
    fn apply(&mut self, program: &Program) -> Result<ApplyStats> {
        self.0.lock().unwrap().push(Call::Apply {
            chains: program.chains.len(),
        });
        Ok(ApplyStats::default())
    }

    fn apply_delta(&mut self, _program: &Program, delta: &Delta) -> Result<ApplyStats> {
        self.0.lock().unwrap().push(Call::Delta {
            sets_changed: delta.members_added.len() + delta.members_removed.len(),
        });
        Ok(ApplyStats::default())
    }

    fn resync(&mut self) {
        self.0.lock().unwrap().push(Call::Resync);
    }
}

fn pod(name: &str, ip: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        namespace: "x".into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ips: vec![ip.parse().unwrap()],
        node: Some("n1".into()),
        ports: vec![],
    }
}

#[test]
fn the_first_step_applies_whole_then_deltas_and_a_resync_applies_whole_again() {
    let mut state = ClusterState::default();
    caracal_policy::manifests::load(
        &mut state,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]\n",
    )
    .unwrap();
    state
        .pods
        .insert(Key::new("x", "db"), pod("db", "10.0.0.1", &[("app", "db")]));
    state.pods.insert(Key::new("x", "c"), pod("c", "10.0.0.2", &[]));
    let db = Key::new("x", "db");
    let eps = vec![LocalEndpoint {
        iface: iface_name(&db),
        ips: state.pods[&db].ips.clone(),
        pod: db,
    }];
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut r = PolicyReconciler::new(Fake(calls.clone()));

    let first = r.step(&state, &eps, false).unwrap();
    assert!(first.full);
    // A remote pod becomes a client: one set member, through the delta.
    state
        .pods
        .insert(Key::new("x", "c"), pod("c", "10.0.0.2", &[("role", "client")]));
    let second = r.step(&state, &eps, false).unwrap();
    assert!(!second.full);
    let third = r.step(&state, &eps, true).unwrap();
    assert!(third.full && third.resynced);

    let calls = calls.lock().unwrap().clone();
    assert!(
        matches!(calls[0], Call::Apply { chains } if chains > 0),
        "{calls:?}"
    );
    assert_eq!(calls[1], Call::Delta { sets_changed: 1 }, "{calls:?}");
    assert_eq!(calls[2], Call::Resync, "{calls:?}");
    assert!(matches!(calls[3], Call::Apply { .. }), "{calls:?}");
    assert_eq!(calls.len(), 4, "{calls:?}");
}
