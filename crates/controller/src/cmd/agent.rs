//! `caracal agent`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AgentArgs {}

pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("caracal agent is not implemented yet")
}
