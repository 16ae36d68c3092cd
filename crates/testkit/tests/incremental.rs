//! The incremental compiler against the shared conformance cases: every step of every case,
//! applied incrementally on each node, gives exactly the program a compile from scratch gives,
//! and the delta names exactly what changed.

use caracal_policy::{
    compile::{Compiler, Delta, compile},
    program::Program,
};
use caracal_testkit::conformance::{Case, case::apply_step, collect_files};

/// Every step of every shared case, applied incrementally on each node, gives exactly the
/// program a compile from scratch gives.
#[test]
fn incremental_updates_equal_a_compile_from_scratch_across_the_shared_cases() {
    let Some(dir) = caracal_testkit::require::shared_conformance() else {
        return;
    };
    let mut steps = 0;
    for file in collect_files(&[dir]).unwrap() {
        let case = Case::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut state = case.initial.clone();
        let mut compilers: Vec<Compiler> = case
            .nodes
            .iter()
            .map(|n| Compiler::new(state.clone(), &case.endpoints(&state, n)))
            .collect();
        for step in &case.steps {
            apply_step(&mut state, step).unwrap();
            for (node, c) in case.nodes.iter().zip(&mut compilers) {
                let before = c.program().clone();
                let delta = c.sync_to(&state);
                let fresh = compile(&state, &case.endpoints(&state, node)).program;
                assert_eq!(c.program(), &fresh, "{} on {node}", case.name);
                check_delta(&before, &fresh, &delta);
            }
            steps += 1;
        }
    }
    assert!(steps > 60);
}

/// The delta describes exactly the difference between two programs.
fn check_delta(before: &Program, after: &Program, d: &Delta) {
    for (k, c) in &after.chains {
        assert_eq!(
            before.chains.get(k) != Some(c),
            d.chains_changed.contains(k),
            "{k:?}"
        );
    }
    for k in before.chains.keys() {
        assert_eq!(
            !after.chains.contains_key(k),
            d.chains_removed.contains(k),
            "{k:?}"
        );
    }
    let mut rebuilt = before.sets.clone();
    rebuilt.retain(|n, _| !d.sets_removed.contains(n));
    for n in &d.sets_added {
        rebuilt.insert(n.clone(), after.sets[n].clone());
    }
    for (n, m) in &d.members_removed {
        if let Some(s) = rebuilt.get_mut(n)
            && !d.sets_added.contains(n)
        {
            s.members.remove(m);
        }
    }
    for (n, m) in &d.members_added {
        if let Some(s) = rebuilt.get_mut(n)
            && !d.sets_added.contains(n)
        {
            s.members.insert(m.clone());
        }
    }
    assert_eq!(rebuilt, after.sets);
}
