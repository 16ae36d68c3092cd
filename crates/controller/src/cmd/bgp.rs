//! `caracal bgp`: the standalone speaker and its status query.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use caracal_bgp::config::SpeakerConfig;
use caracal_bgp::control::{self, Request, Routes, Status};

#[derive(clap::Subcommand)]
pub enum BgpCommand {
    /// Run the BGP speaker in the foreground (SIGHUP reloads the config, SIGTERM stops it).
    Run {
        /// The speaker configuration (YAML; see crates/bgp/README.md).
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the peers (or with --routes the Loc-RIB and the rejected routes) of a running speaker.
    Status {
        /// The speaker's control socket (`control_socket` in its config).
        #[arg(long, default_value = "/run/caracal/bgp.sock")]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the best routes instead of the peers.
        #[arg(long)]
        routes: bool,
    },
    /// Check a configuration file and print it with defaults filled in.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay a speaker's recorded events (`record_events` in its config) and check that its
    /// core makes every decision again as recorded.
    Replay {
        /// The recording (JSON lines).
        file: PathBuf,
    },
}

pub fn run(command: BgpCommand) -> anyhow::Result<ExitCode> {
    match command {
        BgpCommand::Run { config } => run_speaker(config),
        BgpCommand::Status { socket, json, routes } => status(socket, json, routes),
        BgpCommand::Check { config } => {
            let c = SpeakerConfig::load(&config)?;
            print!("{}", serde_yaml::to_string(&c)?);
            Ok(ExitCode::SUCCESS)
        }
        BgpCommand::Replay { file } => replay(&file),
    }
}

fn replay(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    match caracal_bgp::speaker::record::replay(std::io::BufReader::new(f)) {
        Ok(r) => {
            println!(
                "{}: {} inputs replayed, {} decisions as recorded",
                file.display(),
                r.inputs,
                r.outputs
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn run_speaker(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = SpeakerConfig::load(&path)?;
    runtime()?.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (speaker, mut task) = caracal_bgp::speaker::start(config, None).await?;
        tracing::info!("BGP speaker running with {}", path.display());
        loop {
            tokio::select! {
                _ = hup.recv() => match SpeakerConfig::load(&path) {
                    Ok(c) => {
                        speaker.reload(c).await?;
                        tracing::info!("configuration reloaded");
                    }
                    // A bad edit must not take the running speaker down.
                    Err(e) => tracing::error!("not reloading: {e}"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
                r = &mut task => {
                    r.context("speaker task")?;
                    anyhow::bail!("the speaker stopped unexpectedly");
                }
            }
        }
        speaker.shutdown().await?;
        let _ = task.await;
        Ok(ExitCode::SUCCESS)
    })
}

fn status(socket: PathBuf, json: bool, routes: bool) -> anyhow::Result<ExitCode> {
    let request = if routes { Request::Routes } else { Request::Status };
    let value = runtime()?.block_on(control::query(&socket, request))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if routes {
        let r: Routes = serde_json::from_value(value)?;
        println!("{:<44} {:<40} {:<24} FROM", "PREFIX", "NEXT HOPS", "AS PATH");
        for r in r.routes {
            let hops: Vec<String> = r.next_hops.iter().map(|h| h.to_string()).collect();
            let path: Vec<String> = r.as_path.iter().map(|a| a.to_string()).collect();
            println!(
                "{:<44} {:<40} {:<24} {}",
                r.prefix,
                hops.join(","),
                path.join(" "),
                r.peer
            );
        }
        if !r.rejected.is_empty() {
            println!();
            println!("{:<44} {:<40} REASON", "REJECTED", "FROM");
            for x in r.rejected {
                println!("{:<44} {:<40} {}", x.prefix, x.peer, x.reason);
            }
        }
    } else {
        let s: Status = serde_json::from_value(value)?;
        println!("router id {}, local AS {}", s.router_id, s.local_as);
        println!(
            "{:<40} {:>10} {:<12} {:>8} {:>9} {:>9} {:>10}  LAST ERROR",
            "PEER", "AS", "STATE", "UPTIME", "RECEIVED", "ACCEPTED", "ADVERTISED"
        );
        for p in s.peers {
            println!(
                "{:<40} {:>10} {:<12} {:>8} {:>9} {:>9} {:>10}  {}",
                p.address,
                p.remote_as,
                p.state,
                p.uptime_secs,
                p.prefixes_received,
                p.prefixes_accepted,
                p.prefixes_advertised,
                p.last_error.unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
