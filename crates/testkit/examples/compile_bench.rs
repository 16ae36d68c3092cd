//! The compile benchmark without building the agent binary:
//! `nice -n 10 cargo run --release -p caracal-testkit --example compile_bench [iterations]`.
//! The same figures as `caracal policy bench` (see BENCHMARKS.md).

use caracal_testkit::synthetic::memory_kib;

fn main() {
    let iterations = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    if cfg!(debug_assertions) {
        println!("warning: a debug build; use --release");
    }
    let report = caracal_testkit::synthetic::bench(
        &caracal_testkit::synthetic::Spec::default(),
        iterations,
        &memory_kib,
    );
    for line in report.lines {
        println!("{line}");
    }
}
