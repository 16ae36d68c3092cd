//! The speaker: a core task that owns the RIB and the peer table, one task per session
//! (`session.rs`), listeners, the control socket and the kernel route installer.
//!
//! Sessions hand decoded UPDATEs to the core task, which applies them to the RIB in batches and
//! flushes every peer's Adj-RIB-Out afterwards (or when its MRAI allows). Peers and originated
//! prefixes change at run time through [`SpeakerHandle::reload`], which touches only the
//! sessions whose configuration changed.
//!
//! The decisions are made by the pure [`core::Core`]; this module is its driver, carrying out
//! the [`core::Output`]s with channels, tasks and sockets. With `record_events` set, every input
//! and its outputs are written to a file that [`record::replay`] checks.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::SpeakerConfig;
use crate::control::{Routes, Status};
use crate::fsm::Event;
use crate::kernel::KernelRoutes;
use crate::rib::RouteChange;
use crate::session::{self, FromSession, SessionParams, ToSession};

pub mod core;
mod listen;
pub mod record;

use self::core::{Core, Input, Output};
use listen::{accept_loop, control_loop, listen};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    ControlSocket { path: PathBuf, source: std::io::Error },
    #[error("kernel routes: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("the speaker has stopped")]
    Stopped,
    #[error("recording events to {path}: {source}")]
    Record { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

enum Command {
    Status(oneshot::Sender<Status>),
    Routes(oneshot::Sender<Routes>),
    Reload(Box<SpeakerConfig>, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Talks to a running speaker.
#[derive(Clone)]
pub struct SpeakerHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SpeakerHandle {
    pub async fn status(&self) -> Result<Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Status(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    pub async fn routes(&self) -> Result<Routes> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Routes(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Applies a new configuration, changing only what differs.
    pub async fn reload(&self, config: SpeakerConfig) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Reload(Box::new(config), tx))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Stops every session (Cease 6/2, or a silent close when we do graceful restart),
    /// removes installed routes (unless preserved for graceful restart) and ends the speaker.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Shutdown(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

/// Routes to the peer sessions, shared with the listener tasks.
type Directory = Arc<Mutex<HashMap<IpAddr, mpsc::UnboundedSender<ToSession>>>>;

/// A running session as the driver holds it.
struct Session {
    tx: mpsc::UnboundedSender<ToSession>,
    task: JoinHandle<()>,
    password: bool,
}

struct Driver {
    core: Core,
    sessions: HashMap<IpAddr, Session>,
    /// Tasks of sessions told to stop, joined at shutdown (finished ones are dropped).
    ended: Vec<JoinHandle<()>>,
    directory: Directory,
    events_tx: mpsc::Sender<FromSession>,
    listeners: Vec<Arc<TcpListener>>,
    kernel_tx: Option<mpsc::UnboundedSender<KernelMsg>>,
    changes_tx: Option<mpsc::UnboundedSender<Vec<RouteChange>>>,
    recorder: Option<record::Recorder>,
    control_socket: Option<PathBuf>,
}

enum KernelMsg {
    Apply(Vec<RouteChange>),
    /// Remove routes of ours this run did not install (left from before a restart).
    PurgeForeign,
    Shutdown {
        remove: bool,
        done: oneshot::Sender<()>,
    },
}

/// Starts the speaker on the current tokio runtime. Best-route changes are also sent to
/// `changes` when given (the agent embeds the speaker this way).
pub async fn start(
    config: SpeakerConfig,
    changes: Option<mpsc::UnboundedSender<Vec<RouteChange>>>,
) -> Result<(SpeakerHandle, JoinHandle<()>)> {
    let directory: Directory = Arc::new(Mutex::new(HashMap::new()));
    let listeners = listen(&config).await?;
    for l in &listeners {
        tokio::spawn(accept_loop(l.clone(), directory.clone()));
    }
    let mut routes_found = false;
    let kernel_tx = if config.install_routes {
        let mut kernel = KernelRoutes::new(config.route_protocol)?;
        let ours = kernel.ours().await?;
        routes_found = !ours.is_empty();
        kernel.adopt_leftovers(&ours);
        if routes_found && core::graceful(&config) {
            tracing::info!("keeping {} routes from before the restart", ours.len());
        }
        let (tx, rx) = mpsc::unbounded_channel::<KernelMsg>();
        tokio::spawn(kernel_loop(kernel, rx));
        Some(tx)
    } else {
        None
    };

    let control = match &config.control_socket {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            Some(UnixListener::bind(path).map_err(|source| Error::ControlSocket {
                path: path.clone(),
                source,
            })?)
        }
        None => None,
    };
    let mut recorder = match &config.record_events {
        Some(path) => Some(record::Recorder::create(path).map_err(|source| Error::Record {
            path: path.clone(),
            source,
        })?),
        None => None,
    };

    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let handle = SpeakerHandle { tx: cmd_tx };
    if let Some(control) = control {
        tokio::spawn(control_loop(control, handle.clone()));
    }
    let (events_tx, events_rx) = mpsc::channel(1024);
    let now = Instant::now();
    let report_changes = changes.is_some();
    let input = Input::Start {
        config: config.clone(),
        routes_found,
        report_changes,
    };
    let recorded = recorder.as_ref().map(|_| record::input_value(&input));
    let (core, outputs) = Core::start(config.clone(), routes_found, report_changes, now);
    if let (Some(r), Some(v)) = (&mut recorder, recorded) {
        r.write(now, v, &outputs, core.next_wake());
    }
    let mut driver = Driver {
        core,
        sessions: HashMap::new(),
        ended: Vec::new(),
        directory,
        events_tx,
        listeners,
        kernel_tx,
        changes_tx: changes,
        recorder,
        control_socket: config.control_socket.clone(),
    };
    driver.carry_out(outputs).await;
    let task = tokio::spawn(driver.run(cmd_rx, events_rx));
    Ok((handle, task))
}

async fn kernel_loop(mut kernel: KernelRoutes, mut rx: mpsc::UnboundedReceiver<KernelMsg>) {
    while let Some(m) = rx.recv().await {
        match m {
            KernelMsg::Apply(changes) => {
                for e in kernel.apply(&changes).await {
                    tracing::warn!("{e}");
                }
            }
            KernelMsg::PurgeForeign => {
                if let Err(e) = kernel.purge_foreign(&HashSet::new()).await {
                    tracing::warn!("{e}");
                }
            }
            KernelMsg::Shutdown { remove, done } => {
                if remove {
                    for e in kernel.remove_all().await {
                        tracing::warn!("{e}");
                    }
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::Receiver<FromSession>,
    ) {
        loop {
            let deadline = self.core.next_wake();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => {
                        self.handle(Input::Shutdown).await;
                        return;
                    }
                    Some(Command::Status(tx)) => { let _ = tx.send(self.core.status(Instant::now())); }
                    Some(Command::Routes(tx)) => { let _ = tx.send(self.core.routes()); }
                    Some(Command::Reload(config, tx)) => {
                        self.handle(Input::Reload(*config)).await;
                        let _ = tx.send(());
                    }
                    Some(Command::Shutdown(tx)) => {
                        self.handle(Input::Shutdown).await;
                        let _ = tx.send(());
                        return;
                    }
                },
                Some(ev) = events.recv() => {
                    // Apply everything already queued before flushing to peers.
                    let mut batch = vec![ev];
                    while batch.len() < 65 {
                        match events.try_recv() {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                    self.handle(Input::Sessions(batch)).await;
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.handle(Input::Timer).await;
                }
            }
        }
    }

    /// One input through the core (and the recorder), then its outputs carried out.
    async fn handle(&mut self, input: Input) {
        let now = Instant::now();
        let recorded = self.recorder.as_ref().map(|_| record::input_value(&input));
        let outputs = self.core.handle(input, now);
        if let (Some(r), Some(v)) = (&mut self.recorder, recorded) {
            r.write(now, v, &outputs, self.core.next_wake());
        }
        self.carry_out(outputs).await;
    }

    async fn carry_out(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Spawn(params) => self.spawn(*params),
                Output::Remove {
                    peer,
                    subcode,
                    reason,
                } => {
                    if let Some(s) = self.sessions.remove(&peer) {
                        let _ = s.tx.send(ToSession::Event(Event::ManualStop { subcode, reason }));
                        self.directory.lock().expect("directory lock").remove(&peer);
                        if s.password {
                            for l in &self.listeners {
                                let _ = crate::md5::set_md5sig(l.as_ref(), peer, None);
                            }
                        }
                        self.ended.retain(|t| !t.is_finished());
                        self.ended.push(s.task);
                    }
                }
                Output::Stop { peer, subcode } => {
                    self.send(peer, ToSession::Event(Event::AutomaticStop { subcode }))
                }
                Output::Abort { peer } => {
                    if let Some(s) = self.sessions.remove(&peer) {
                        let _ = s.tx.send(ToSession::Abort);
                        self.ended.push(s.task);
                    }
                }
                Output::Send { peer, messages } => self.send(peer, ToSession::Send(messages)),
                Output::Refresh { peer, family } => self.send(peer, ToSession::RequestRefresh(family)),
                Output::Changes(changes) => {
                    if let Some(tx) = &self.changes_tx {
                        let _ = tx.send(changes);
                    }
                }
                Output::Install(changes) => {
                    if let Some(tx) = &self.kernel_tx {
                        let _ = tx.send(KernelMsg::Apply(changes));
                    }
                }
                Output::PurgeForeignRoutes => {
                    if let Some(tx) = &self.kernel_tx {
                        let _ = tx.send(KernelMsg::PurgeForeign);
                    }
                }
                Output::Finish { remove_routes } => self.finish(remove_routes).await,
            }
        }
    }

    fn send(&self, peer: IpAddr, msg: ToSession) {
        if let Some(s) = self.sessions.get(&peer) {
            let _ = s.tx.send(msg);
        }
    }

    fn spawn(&mut self, params: SessionParams) {
        let p = params.peer.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        self.directory
            .lock()
            .expect("directory lock")
            .insert(p.address, tx.clone());
        let task = tokio::spawn(session::run(params, rx, self.events_tx.clone()));
        for l in &self.listeners {
            if let Some(pw) = &p.password
                && let Ok(local) = l.local_addr()
                && local.is_ipv4() == p.address.is_ipv4()
                && let Err(e) = crate::md5::set_md5sig(l.as_ref(), p.address, Some(pw.as_bytes()))
            {
                tracing::warn!(peer = %p.address, "cannot set TCP MD5 key on the listener: {e}");
            }
        }
        let session = Session {
            tx,
            task,
            password: p.password.is_some(),
        };
        let replaced = self.sessions.insert(p.address, session);
        debug_assert!(
            replaced.is_none(),
            "the core removes a peer before it spawns its new session"
        );
    }

    /// Waits for the sessions to end, then lets the kernel installer finish.
    async fn finish(&mut self, remove_routes: bool) {
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.ended);
        tasks.extend(self.sessions.drain().map(|(_, s)| s.task));
        let _ = tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(tasks)).await;
        if let Some(tx) = self.kernel_tx.take() {
            let (done, wait) = oneshot::channel();
            let _ = tx.send(KernelMsg::Shutdown {
                remove: remove_routes,
                done,
            });
            let _ = tokio::time::timeout(Duration::from_secs(30), wait).await;
        }
        if let Some(path) = &self.control_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
