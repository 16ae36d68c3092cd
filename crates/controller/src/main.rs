//! `caracal`: the node agent, the CLI and the lab.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use caracal::cmd;

#[derive(Parser)]
#[command(
    name = "caracal",
    version,
    about = "BGP-routed, pure layer-3 pod networking for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring lab topologies (containerlab format) up and down as network namespaces.
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// Run the standalone BGP speaker, or ask a running one for its status.
    #[command(subcommand)]
    Bgp(cmd::bgp::BgpCommand),
    /// Run policy conformance cases offline or on a real node.
    Conformance(cmd::conformance::ConformanceArgs),
    /// Inspect policy decisions.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Run the node agent.
    Agent(cmd::agent::AgentArgs),
    /// Every node's BGP sessions, routes and policy state (CaracalNodeStatus), through the API.
    Status(cmd::status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    caracal::logging::init();
    let result = match cli.command {
        Command::Lab(c) => cmd::lab::run(c),
        Command::Bgp(c) => cmd::bgp::run(c),
        Command::Conformance(a) => cmd::conformance::run(a),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Status(a) => cmd::status::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("caracal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
