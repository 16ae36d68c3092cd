//! `caracal lab`: bring topologies up and down, and run commands on their nodes.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::lab::{self, Lab, UpOptions};

#[derive(clap::Subcommand)]
pub enum LabCommand {
    /// Bring a topology (a containerlab file, or a folder with topology.yaml) up.
    Up {
        topology: PathBuf,
        /// The lab's name (default: the topology's name).
        #[arg(long)]
        name: Option<String>,
        /// Stay in the foreground and tear the lab down on Ctrl-C or SIGTERM.
        #[arg(long)]
        foreground: bool,
    },
    /// Tear a lab down: kill its processes, delete its namespaces and files.
    Down { name: String },
    /// Run a command in a node's namespace: `caracal lab exec <lab> <node> -- <cmd>...`.
    Exec {
        name: String,
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List the labs that are up.
    List,
    /// Add or remove pods: a namespace plumbed by caracal-cni on a node, plus its Pod manifest.
    #[command(subcommand)]
    Pod(PodCommand),
    /// The lab cluster's door: listen on a loopback port here, connect into a namespace.
    #[command(hide = true)]
    Forward {
        /// The network namespace to connect in (`/run/netns/<name>`).
        #[arg(long)]
        netns: PathBuf,
        /// The address to connect to, inside that namespace.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Where to write the loopback port chosen.
        #[arg(long)]
        port_file: PathBuf,
    },
    /// Build the lab cluster's container images offline.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Write pause.tar, agnhost.tar, busybox.tar and caracal.tar (OCI archives for
    /// `ctr -n k8s.io images import`) into DIR.
    Build {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The folder holding agnhost (default: tests/kube/build.sh's cache).
        #[arg(long, value_name = "DIR")]
        kube_bin: Option<PathBuf>,
        /// The k8s.io/kubernetes module source (default: the Go module cache).
        #[arg(long, value_name = "DIR")]
        kube_src: Option<PathBuf>,
        /// Build only these images (repeatable).
        #[arg(long, value_enum, value_name = "NAME")]
        only: Vec<lab::image::Name>,
        /// The caracal binary to put in the image (default: beside this executable).
        #[arg(long, value_name = "FILE")]
        caracal_bin: Option<PathBuf>,
        /// The caracal-cni binary (default: beside this executable).
        #[arg(long, value_name = "FILE")]
        cni_bin: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand)]
pub enum PodCommand {
    /// `caracal lab pod add <lab> <node> <namespace>/<name> [-l key=value]... [-p 80/TCP]...`
    Add {
        lab: String,
        node: String,
        pod: String,
        /// Pod labels (default: pod=<name>).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Named container ports to declare, as PORT/PROTOCOL (named serve-<port>-<protocol>).
        #[arg(short = 'p', long = "port")]
        ports: Vec<String>,
    },
    /// `caracal lab pod del <lab> <namespace>/<name>`
    Del { lab: String, pod: String },
}

fn split_pod(s: &str) -> Result<(String, String)> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("pod {s:?}: write namespace/name"))?;
    Ok((ns.to_string(), name.to_string()))
}

pub fn run(command: LabCommand) -> Result<ExitCode> {
    match command {
        LabCommand::Up {
            topology,
            name,
            foreground,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // A Ctrl-C during set-up still tears down what was created: the state file is
            // written first, so `lab::down` can find everything.
            let lab_name = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
            let watcher = lab_name.clone();
            std::thread::spawn(move || {
                rt.block_on(wait_for_signal());
                if let Some(n) = watcher.lock().ok().and_then(|g| g.clone()) {
                    eprintln!("tearing lab {n} down");
                    let _ = lab::down(&n);
                }
                std::process::exit(130);
            });
            let topo = lab::Topology::load(&if topology.is_dir() {
                topology.join("topology.yaml")
            } else {
                topology.clone()
            })?;
            let n = name.unwrap_or(topo.name);
            *lab_name.lock().expect("not poisoned") = Some(n.clone());
            let lab = Lab::up(
                &topology,
                UpOptions {
                    name: Some(n.clone()),
                    detached: !foreground,
                },
            )?;
            for (node, st) in &lab.state().nodes {
                println!(
                    "{node:<16} {:<8} netns {}",
                    format!("{:?}", st.kind).to_lowercase(),
                    st.netns
                );
            }
            if let Some(k) = lab.kubeconfig() {
                println!("kubeconfig: {}", k.display());
            }
            if foreground {
                println!("lab {n} is up; Ctrl-C tears it down");
                loop {
                    std::thread::park();
                }
            }
            lab.detach()?;
            println!("lab {n} is up; `caracal lab down {n}` tears it down");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { name } => {
            lab::down(&name)?;
            println!("lab {name} is down");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec { name, node, command } => {
            let argv: Vec<&str> = command.iter().map(String::as_str).collect();
            let out = lab::exec_by_name(&name, &node, &argv)?;
            use std::io::Write;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            Ok(ExitCode::from(out.status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        LabCommand::Pod(PodCommand::Add {
            lab,
            node,
            pod,
            labels,
            ports,
        }) => {
            let (namespace, name) = split_pod(&pod)?;
            let mut spec = lab::pod::PodSpec {
                namespace,
                name: name.clone(),
                ..Default::default()
            };
            for l in &labels {
                let (k, v) = l
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("label {l:?}: write key=value"))?;
                spec.labels.insert(k.to_string(), v.to_string());
            }
            if spec.labels.is_empty() {
                spec.labels.insert("pod".into(), name);
            }
            for p in &ports {
                let (port, proto) = p.split_once('/').unwrap_or((p, "TCP"));
                let port: u16 = port
                    .parse()
                    .map_err(|_| anyhow::anyhow!("port {p:?}: write PORT/PROTOCOL"))?;
                spec.ports.push((port, proto.to_string()));
            }
            let st = lab::pod::add(&lab, &node, &spec)?;
            let ips: Vec<String> = st.ips.iter().map(|i| i.to_string()).collect();
            println!("{pod} on {node}: {} netns {}", ips.join(","), st.netns);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Pod(PodCommand::Del { lab, pod }) => {
            let (namespace, name) = split_pod(&pod)?;
            lab::pod::del(&lab, &namespace, &name)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Forward { netns, to, port_file } => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let tmp = port_file.with_extension("tmp");
            std::fs::write(&tmp, format!("{port}\n"))?;
            std::fs::rename(&tmp, &port_file)?;
            lab::k8s::forward::serve(listener, &netns, to)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Image(ImageCommand::Build {
            out,
            kube_bin,
            kube_src,
            only,
            caracal_bin,
            cni_bin,
        }) => {
            let built = lab::image::build_all(&lab::image::BuildOptions {
                out_dir: out,
                only,
                kube_bin,
                kube_src,
                caracal_bin,
                cni_bin,
            })?;
            for w in built {
                println!(
                    "{:<52} {} (layer {} bytes, manifest {})",
                    w.reference,
                    w.path.display(),
                    w.layer_size,
                    w.manifest_digest
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::List => {
            for s in lab::list() {
                println!("{:<24} {} nodes, owner {:?}", s.name, s.nodes.len(), s.owner);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
