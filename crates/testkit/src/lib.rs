//! caracal-testkit: what tests, benchmarks and the CLI's test commands use, kept out of the pure
//! policy crate and out of the agent:
//!
//! - [`conformance`]: runs the shared policy cases (`shared/conformance/FORMAT.md`) against a
//!   prober: offline (compiler + evaluator) here, on a real node in the agent's test bed;
//! - [`synthetic`]: a deterministic synthetic cluster and the compile benchmark on it;
//! - [`require`]: skipping a test that cannot run here, or failing it when CI requires it
//!   (`CARACAL_REQUIRE_ROOT=1`, `CARACAL_REQUIRE_SHARED=1`).
//!
//! Production code (the agent, `caracal policy explain`) does not use it.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod require;
pub mod synthetic;
