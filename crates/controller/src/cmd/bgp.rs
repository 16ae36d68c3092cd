//! `caracal bgp`.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BgpCommand {}

pub fn run(command: BgpCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
