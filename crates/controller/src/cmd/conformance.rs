//! `caracal conformance`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ConformanceArgs {}

pub fn run(_args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("caracal conformance is not implemented yet")
}
