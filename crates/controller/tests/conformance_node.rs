//! Every shared conformance case passes in node mode: real namespaces, the compiled program
//! applied with iptables-restore and ipset, real TCP and UDP probes (SCTP skipped where the
//! kernel has no SCTP).

use std::time::Instant;

use caracal::testbed::prober::NodeProber;
use caracal_testkit::conformance::{collect_files, run_files};

#[test]
fn every_shared_case_passes_on_a_real_node() {
    if !caracal_testkit::require::root() {
        return;
    }
    let Some(dir) = caracal_testkit::require::shared_conformance() else {
        return;
    };
    let files = collect_files(&[dir]).unwrap();
    assert!(!files.is_empty());
    let started = Instant::now();
    let mut prober = NodeProber::new(None);
    let report = run_files(&files, &mut prober);
    eprintln!(
        "{} cases in {:.1} s: {} probes passed, {} failed, {} skipped",
        report.cases.len(),
        started.elapsed().as_secs_f64(),
        report.passed,
        report.failed,
        report.skipped
    );
    let failed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            let probes: Vec<String> = c
                .probes
                .iter()
                .filter(|p| !p.passed && !p.skipped)
                .map(|p| {
                    format!(
                        "step {} {}/{}:\nexpected\n{}observed\n{}",
                        p.step, p.port, p.protocol, p.expected, p.observed
                    )
                })
                .collect();
            format!("{}: {:?}\n{}", c.name, c.error, probes.join("\n"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
