//! `caracal policy`.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
