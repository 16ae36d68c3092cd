//! Every shared conformance case passes offline (compiler + evaluator), the compiled program
//! agrees with the reference evaluator on every probe, and every program a case produces renders
//! to iptables-restore and ipset input.

use caracal_policy::{model::ClusterState, program::Protocol, render};
use caracal_testkit::conformance::{
    Case, Observation, Prober, Result, Table, collect_files, offline::OfflineProber, run_files,
};

/// The offline prober, plus a render of every node program after each step.
struct RenderingProber(OfflineProber);

impl Prober for RenderingProber {
    fn sync(&mut self, case: &Case, state: &ClusterState) -> Result<()> {
        self.0.sync(case, state)?;
        assert!(
            self.0.rejected.is_empty(),
            "{}: rejected {:?}",
            case.name,
            self.0.rejected
        );
        for node in &case.nodes {
            let p = self.0.program(node).unwrap();
            render::iptables::render_program(p).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            render::ipset::render_sets(&p.sets).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        }
        Ok(())
    }

    fn probe(
        &mut self,
        case: &Case,
        state: &ClusterState,
        port: u16,
        proto: Protocol,
        exp: &Table,
    ) -> Result<Observation> {
        self.0.probe(case, state, port, proto, exp)
    }
}

#[test]
fn all_shared_cases_pass_offline_match_the_reference_and_render() {
    let Some(dir) = caracal_testkit::require::shared_conformance() else {
        return;
    };
    let files = collect_files(&[dir]).unwrap();
    assert!(files.len() >= 60, "found only {} case files", files.len());
    let mut prober = RenderingProber(OfflineProber::new(true));
    let report = run_files(&files, &mut prober);
    let text = report.render();
    eprintln!("{}", text.lines().last().unwrap_or(""));
    assert_eq!(report.failed, 0, "{text}");
    assert!(report.passed >= files.len(), "{text}");
}

#[test]
fn a_wrong_expectation_fails_with_both_tables() {
    let case = "name: t\nmodel: {namespaces: {x: {}}, pods: [{namespace: x, name: a}, {namespace: x, name: b}], ports: [80], protocols: [TCP]}\nsteps:\n  - apply: |\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata: {name: d, namespace: x}\n      spec: {podSelector: {}, policyTypes: [Ingress]}\n    expect:\n      - port: 80\n        protocol: TCP\n        table: |\n          -\tx/a\tx/b\n          x/a\t.\t.\n          x/b\t.\t.\n";
    let dir = std::env::temp_dir().join(format!("caracal-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(&file, case).unwrap();
    let report = run_files(&[file], &mut OfflineProber::new(true));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((report.passed, report.failed), (0, 1));
    let text = report.render();
    assert!(
        text.contains("expected") && text.contains("observed") && text.ends_with("0 passed, 1 failed\n"),
        "{text}"
    );
    assert!(report.cases[0].probes[0].observed.contains("x/a\t.\tX"));
}
