//! Every shared conformance case passes offline (compiler + evaluator), and the compiled program
//! agrees with the reference evaluator on every probe.

use std::path::PathBuf;

use caracal_policy::conformance::{collect_files, offline::OfflineProber, run_files};

fn shared_cases() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    let dir = std::env::var_os("CARACAL_CONFORMANCE_DIR").map(PathBuf::from).unwrap_or(dir);
    dir.is_dir().then_some(dir)
}

#[test]
fn all_shared_cases_pass_offline_and_match_the_reference() {
    let Some(dir) = shared_cases() else {
        eprintln!("skipped: no shared/conformance folder next to the repository (set CARACAL_CONFORMANCE_DIR)");
        return;
    };
    let files = collect_files(&[dir]).unwrap();
    assert!(files.len() >= 60, "found only {} case files", files.len());
    let mut prober = OfflineProber::new(true);
    let report = run_files(&files, &mut prober);
    let text = report.render();
    eprintln!("{}", text.lines().last().unwrap_or(""));
    assert_eq!(report.failed, 0, "{text}");
    assert!(report.passed >= files.len(), "{text}");
}
