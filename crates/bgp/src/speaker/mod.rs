//! The speaker: one core task that owns the RIB and the peer table, one task per session
//! (`session.rs`), listeners, the control socket and the kernel route installer.
//!
//! Sessions hand decoded UPDATEs to the core, which applies them to the RIB in batches and
//! flushes every peer's Adj-RIB-Out afterwards (or when its MRAI allows). Peers and originated
//! prefixes change at run time through [`SpeakerHandle::reload`], which touches only the
//! sessions whose configuration changed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Originate, PeerConfig, PrefixFilter, SpeakerConfig};
use crate::control::{self, NotificationCounts, PeerStatus, RejectedStatus, RouteStatus, Routes, Status};
use crate::fsm::{Event, FsmConfig, State};
use crate::gr::{self, PeerAction, PeerEvent, PeerRestart};
use crate::kernel::{self, KernelRoutes};
use crate::rib::{PeerIdx, PeerPolicy, Rib, RibConfig, RouteChange, SessionInfo};
use crate::session::{self, FromSession, SessionEvent, SessionParams, ToSession};

mod listen;

use crate::wire::{CeaseSubcode, SessionOptions};
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

struct PeerEntry {
    idx: PeerIdx,
    config: PeerConfig,
    generation: u64,
    tx: mpsc::UnboundedSender<ToSession>,
    task: JoinHandle<()>,
    state: State,
    /// When the session entered `state`.
    state_since: Instant,
    established_at: Option<Instant>,
    notifications: NotificationCounts,
    capabilities: Vec<String>,
    last_error: Option<String>,
    options: Option<SessionOptions>,
    last_flush: Option<Instant>,
    flush_at: Option<Instant>,
    /// The peer's graceful restart as we see it (receiving speaker), and when its stale routes
    /// expire.
    restart: PeerRestart,
    stale_deadline: Option<Instant>,
}

impl PeerEntry {
    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.state_since = Instant::now();
        }
    }
}

struct Core {
    config: SpeakerConfig,
    rib: Rib,
    peers: HashMap<IpAddr, PeerEntry>,
    directory: Directory,
    events_tx: mpsc::Sender<FromSession>,
    next_generation: u64,
    listeners: Vec<Arc<TcpListener>>,
    kernel_tx: Option<mpsc::UnboundedSender<KernelMsg>>,
    changes_tx: Option<mpsc::UnboundedSender<Vec<RouteChange>>>,
    /// We found our own routes in the kernel at start: we are a restarting speaker.
    restarted: bool,
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
    let mut restarted = false;
    let kernel_tx = if config.install_routes {
        let mut kernel = KernelRoutes::new(config.route_protocol)?;
        let ours = kernel.ours().await?;
        let start = gr::on_start(graceful(&config), !ours.is_empty(), restart_times(&config));
        match start {
            gr::Start::Fresh => {}
            gr::Start::Restarting { .. } => {
                restarted = true;
                tracing::info!("keeping {} routes from before the restart", ours.len());
            }
            gr::Start::PurgeNow => {
                kernel.purge_foreign(&HashSet::new()).await?;
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<KernelMsg>();
        tokio::spawn(async move {
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
        });
        if let gr::Start::Restarting { purge_after } = start {
            // Routes not relearned within the restart time are stale (RFC 4724 §4.1).
            let t = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(purge_after).await;
                let _ = t.send(KernelMsg::PurgeForeign);
            });
        }
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

    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let handle = SpeakerHandle { tx: cmd_tx };
    if let Some(control) = control {
        tokio::spawn(control_loop(control, handle.clone()));
    }
    let (events_tx, events_rx) = mpsc::channel(1024);
    let mut rib = Rib::new(rib_config(&config));
    rib.set_no_transit(config.no_transit.clone());
    let mut core = Core {
        config: config.clone(),
        rib,
        peers: HashMap::new(),
        directory,
        events_tx,
        next_generation: 1,
        listeners,
        kernel_tx,
        changes_tx: changes,
        restarted,
    };
    for route in &config.originate {
        core.rib.originate(route);
    }
    for p in &config.peers {
        core.add_peer(p.clone());
    }
    let task = tokio::spawn(core.run(cmd_rx, events_rx));
    Ok((handle, task))
}

fn rib_config(c: &SpeakerConfig) -> RibConfig {
    RibConfig {
        router_id: c.router_id,
        local_as: c.local_as,
        cluster_id: c.cluster_id,
        multipath: c.multipath,
        track_changes: c.install_routes,
    }
}

/// Whether we act as a restarting speaker: some peer is configured for graceful restart.
fn graceful(c: &SpeakerConfig) -> bool {
    gr::preserves(c.install_routes, restart_times(c))
}

fn restart_times(c: &SpeakerConfig) -> impl Iterator<Item = u16> + '_ {
    c.peers.iter().map(|p| p.graceful_restart_time)
}

impl Core {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::Receiver<FromSession>,
    ) {
        loop {
            let deadline = self
                .peers
                .values()
                .flat_map(|p| [p.flush_at, p.stale_deadline])
                .flatten()
                .min();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return self.shutdown().await,
                    Some(Command::Status(tx)) => { let _ = tx.send(self.status()); }
                    Some(Command::Routes(tx)) => { let _ = tx.send(self.routes()); }
                    Some(Command::Reload(config, tx)) => {
                        self.reload(*config);
                        self.after_batch();
                        let _ = tx.send(());
                    }
                    Some(Command::Shutdown(tx)) => {
                        self.shutdown().await;
                        let _ = tx.send(());
                        return;
                    }
                },
                Some(ev) = events.recv() => {
                    self.session_event(ev);
                    // Apply everything already queued before flushing to peers.
                    for _ in 0..64 {
                        match events.try_recv() {
                            Ok(ev) => self.session_event(ev),
                            Err(_) => break,
                        }
                    }
                    self.after_batch();
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = Instant::now();
                    for p in self.peers.values_mut() {
                        if p.stale_deadline.is_some_and(|d| d <= now) {
                            p.stale_deadline = None;
                            let actions = p.restart.handle(PeerEvent::StaleTimerExpires);
                            carry_out(&mut self.rib, p, actions);
                        }
                        if p.flush_at.is_some_and(|d| d <= now) {
                            p.flush_at = None;
                        }
                    }
                    self.after_batch();
                }
            }
        }
    }

    fn fsm_config(&self, p: &PeerConfig) -> FsmConfig {
        let local_as = p.local_as(&self.config);
        let families = p.families();
        FsmConfig {
            local_as,
            router_id: self.config.router_id,
            remote_as: p.remote_as,
            hold_time: p.hold_time,
            connect_retry: Duration::from_secs(p.connect_retry_time.max(1).into()),
            idle_hold: Duration::from_secs(2),
            passive: p.passive,
            delay_open: None,
            families: families.clone(),
            route_refresh: true,
            extended_message: true,
            graceful_restart: Some(gr::our_capability(
                self.restarted,
                self.config.install_routes,
                p.graceful_restart_time,
                &families,
            )),
        }
    }

    fn policy(&self, p: &PeerConfig) -> PeerPolicy {
        PeerPolicy {
            address: p.address,
            remote_as: p.remote_as,
            local_as: p.local_as(&self.config),
            rr_client: p.route_reflector_client,
            next_hop_self: p.next_hop_self,
            import: PrefixFilter::new(&p.import),
            export: PrefixFilter::new(&p.export),
            max_prefixes: p.max_prefixes,
        }
    }

    fn add_peer(&mut self, p: PeerConfig) {
        let idx = self.rib.add_peer(self.policy(&p));
        self.spawn_session(p, idx);
    }

    fn spawn_session(&mut self, p: PeerConfig, idx: PeerIdx) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let params = SessionParams {
            fsm: self.fsm_config(&p),
            ebgp: p.remote_as != p.local_as(&self.config),
            peer: p.clone(),
            generation,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.directory
            .lock()
            .expect("directory lock")
            .insert(p.address, tx.clone());
        let task = tokio::spawn(session::run(params, rx, self.events_tx.clone()));
        let entry = PeerEntry {
            idx,
            config: p.clone(),
            generation,
            tx,
            task,
            state: State::Idle,
            state_since: Instant::now(),
            established_at: None,
            notifications: NotificationCounts::default(),
            capabilities: Vec::new(),
            last_error: None,
            options: None,
            last_flush: None,
            flush_at: None,
            restart: PeerRestart::default(),
            stale_deadline: None,
        };
        self.peers.insert(p.address, entry);
        for l in &self.listeners {
            if let Some(pw) = &p.password
                && let Ok(local) = l.local_addr()
                && local.is_ipv4() == p.address.is_ipv4()
                && let Err(e) = crate::md5::set_md5sig(l.as_ref(), p.address, Some(pw.as_bytes()))
            {
                tracing::warn!(peer = %p.address, "cannot set TCP MD5 key on the listener: {e}");
            }
        }
    }

    /// Stops a session and forgets the peer (its routes are withdrawn).
    fn remove_peer(&mut self, address: IpAddr, subcode: CeaseSubcode) {
        if let Some(p) = self.peers.remove(&address) {
            let _ = p.tx.send(ToSession::Event(Event::ManualStop {
                subcode,
                reason: None,
            }));
            self.directory.lock().expect("directory lock").remove(&address);
            self.rib.remove_peer(p.idx);
            if p.config.password.is_some() {
                for l in &self.listeners {
                    let _ = crate::md5::set_md5sig(l.as_ref(), address, None);
                }
            }
        }
    }

    fn session_event(&mut self, ev: FromSession) {
        let Some(p) = self.peers.get_mut(&ev.peer) else {
            return;
        };
        if p.generation != ev.generation {
            return; // from a session that was replaced
        }
        let idx = p.idx;
        match ev.event {
            SessionEvent::State(s) => p.set_state(s),
            SessionEvent::Established {
                negotiated,
                local_address,
                local_alt_address,
                options,
            } => {
                p.set_state(State::Established);
                p.established_at = Some(Instant::now());
                p.capabilities = negotiated.capability_names();
                p.last_flush = None;
                let peer_gr = negotiated.peer_graceful_restart.as_ref();
                let info = SessionInfo {
                    router_id: negotiated.peer_id,
                    families: negotiated.families.clone(),
                    local_address,
                    local_alt_address,
                    graceful_restart: peer_gr.is_some(),
                    graceful_families: gr::graceful_families(peer_gr),
                    preserved_families: gr::preserved_families(peer_gr),
                };
                p.options = Some(options);
                self.rib.peer_up(idx, info);
                // Stale routes wait for End-of-RIB, but not forever.
                let actions = p.restart.handle(PeerEvent::Established {
                    peer: peer_gr,
                    stale_left: self.rib.has_stale(idx),
                });
                carry_out(&mut self.rib, p, actions);
            }
            SessionEvent::Updates(updates) => {
                let mut exceeded = false;
                for received in updates {
                    let action = received.treatment.as_ref().map(|t| t.action);
                    if let Some(t) = &received.treatment {
                        log_treatment(ev.peer, t);
                    }
                    let outcome = self.rib.apply_update(idx, received.update, action);
                    if let Some(nh) = outcome.own_next_hop {
                        tracing::warn!(peer = %ev.peer, next_hop = %nh,
                            "UPDATE names our own address as next hop; its routes are ignored (RFC 4271 §6.3)");
                    }
                    exceeded |= outcome.max_prefixes_exceeded;
                    if outcome.end_of_rib.is_some() {
                        let stale_left = self.rib.has_stale(idx);
                        let actions = p.restart.handle(PeerEvent::EndOfRib { stale_left });
                        carry_out(&mut self.rib, p, actions);
                    }
                }
                if exceeded {
                    tracing::warn!(peer = %ev.peer, "maximum prefixes exceeded");
                    let _ = p.tx.send(ToSession::Event(Event::AutomaticStop {
                        subcode: CeaseSubcode::MaxPrefixes,
                    }));
                }
            }
            SessionEvent::RouteRefresh(family) => self.rib.route_refresh(idx, family),
            SessionEvent::Down {
                reason,
                was_established,
            } => {
                p.last_error = Some(reason.to_string());
                p.notifications.record(&reason);
                p.established_at = None;
                p.options = None;
                p.flush_at = None;
                let actions = p.restart.handle(PeerEvent::SessionDown {
                    reason: &reason,
                    was_established,
                });
                carry_out(&mut self.rib, p, actions);
            }
            SessionEvent::Ended => p.set_state(State::Idle),
        }
    }

    /// Sends pending Adj-RIB-Out changes to peers and route changes to the kernel.
    fn after_batch(&mut self) {
        let now = Instant::now();
        for p in self.peers.values_mut() {
            let Some(options) = &p.options else { continue };
            let mrai = Duration::from_millis(p.config.mrai_ms.unwrap_or(self.config.mrai_ms));
            if !self.rib.has_pending(p.idx) {
                continue;
            }
            let announce = mrai.is_zero() || p.last_flush.is_none_or(|t| now >= t + mrai);
            let diff = self.rib.take_diff(p.idx, !announce);
            if announce {
                p.last_flush = Some(now);
            }
            if self.rib.has_pending(p.idx) {
                p.flush_at = Some(p.last_flush.unwrap_or(now) + mrai);
            }
            let (msgs, errors) = diff.encode(options);
            for e in errors {
                tracing::error!(peer = %p.config.address, "cannot encode UPDATE: {e}");
            }
            if !msgs.is_empty() {
                let _ = p.tx.send(ToSession::Send(msgs));
            }
        }
        let changes = self.rib.take_changes();
        if !changes.is_empty() {
            if let Some(tx) = &self.changes_tx {
                let _ = tx.send(changes.clone());
            }
            if let Some(tx) = &self.kernel_tx {
                let _ = tx.send(KernelMsg::Apply(kernel::without_no_install(
                    changes,
                    &self.config.no_install,
                )));
            }
        }
    }

    fn status(&self) -> Status {
        let mut peers: Vec<PeerStatus> = self
            .peers
            .values()
            .map(|p| {
                let c = self.rib.counters(p.idx);
                let (notifications_sent, notifications_received) = p.notifications.status();
                PeerStatus {
                    address: p.config.address,
                    remote_as: p.config.remote_as,
                    state: p.state.to_string(),
                    uptime_secs: p.established_at.map_or(0, |t| t.elapsed().as_secs()),
                    capabilities: if p.state == State::Established {
                        p.capabilities.clone()
                    } else {
                        vec![]
                    },
                    prefixes_received: c.received,
                    prefixes_accepted: c.accepted,
                    prefixes_advertised: c.advertised,
                    updates_attribute_discard: c.attribute_discards,
                    updates_treated_as_withdraw: c.treated_as_withdraw,
                    updates_own_next_hop: c.own_next_hop,
                    last_error: p.last_error.clone(),
                    state_secs: p.state_since.elapsed().as_secs(),
                    families: control::family_status(&c, &p.config.families()),
                    notifications_sent,
                    notifications_received,
                }
            })
            .collect();
        peers.sort_by_key(|p| p.address);
        Status {
            router_id: self.config.router_id,
            local_as: self.config.local_as,
            peers,
        }
    }

    fn routes(&self) -> Routes {
        let routes = self
            .rib
            .best_routes()
            .iter()
            .map(|r| RouteStatus::new(r, self.rib.peer_address(r.peer)))
            .collect();
        let rejected = self
            .rib
            .rejected()
            .iter()
            .map(|r| RejectedStatus::new(r, self.rib.peer_address(r.peer)))
            .collect();
        Routes { routes, rejected }
    }

    fn reload(&mut self, new: SpeakerConfig) {
        let old = std::mem::replace(&mut self.config, new.clone());
        let identity_changed = old.router_id != new.router_id || old.local_as != new.local_as;
        if rib_config(&old) != rib_config(&new) {
            self.rib.set_config(rib_config(&new));
        }
        // Originated prefixes.
        let old_o: HashMap<IpNet, &Originate> = old.originate.iter().map(|o| (o.prefix, o)).collect();
        let new_o: HashMap<IpNet, &Originate> = new.originate.iter().map(|o| (o.prefix, o)).collect();
        for p in old_o.keys().filter(|p| !new_o.contains_key(p)) {
            self.rib.withdraw_local(*p);
        }
        for (p, o) in &new_o {
            if old_o.get(p) != Some(o) {
                self.rib.originate(o);
            }
        }
        self.rib.set_no_transit(new.no_transit.clone());
        if old.no_install != new.no_install
            && let Some(tx) = &self.kernel_tx
        {
            let fix = kernel::no_install_changed(&self.rib.best_routes(), &old.no_install, &new.no_install);
            if !fix.is_empty() {
                let _ = tx.send(KernelMsg::Apply(fix));
            }
        }
        // Peers.
        let wanted: HashMap<IpAddr, PeerConfig> = new.peers.iter().map(|p| (p.address, p.clone())).collect();
        let current: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in current {
            match wanted.get(&addr) {
                None => self.remove_peer(addr, CeaseSubcode::PeerDeconfigured),
                Some(w) => {
                    let p = &self.peers[&addr];
                    if identity_changed || session_changed(&p.config, w) {
                        self.remove_peer(addr, CeaseSubcode::OtherConfigurationChange);
                        self.add_peer(w.clone());
                    } else if p.config != *w {
                        let import_changed = p.config.import != w.import;
                        let idx = p.idx;
                        self.rib.set_policy(idx, self.policy(w));
                        let p = self.peers.get_mut(&addr).expect("peer exists");
                        p.config = w.clone();
                        if import_changed {
                            for f in w.families() {
                                let _ = p.tx.send(ToSession::RequestRefresh(f));
                            }
                        }
                    }
                }
            }
        }
        for (addr, w) in wanted {
            if !self.peers.contains_key(&addr) {
                self.add_peer(w);
            }
        }
    }

    async fn shutdown(&mut self) {
        let preserve = graceful(&self.config);
        for p in self.peers.values() {
            let msg = if preserve {
                // Our own graceful restart: close without NOTIFICATION so peers keep our routes.
                ToSession::Abort
            } else {
                ToSession::Event(Event::ManualStop {
                    subcode: CeaseSubcode::AdministrativeShutdown,
                    reason: Some("caracal shutting down".into()),
                })
            };
            let _ = p.tx.send(msg);
        }
        let tasks: Vec<JoinHandle<()>> = self.peers.drain().map(|(_, p)| p.task).collect();
        let _ = tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(tasks)).await;
        if let Some(tx) = self.kernel_tx.take() {
            let (done, wait) = oneshot::channel();
            let _ = tx.send(KernelMsg::Shutdown {
                remove: !preserve,
                done,
            });
            let _ = tokio::time::timeout(Duration::from_secs(30), wait).await;
        }
        if let Some(path) = &self.config.control_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Carries out the graceful-restart decisions for one peer (receiving speaker).
fn carry_out(rib: &mut Rib, p: &mut PeerEntry, actions: Vec<PeerAction>) {
    for a in actions {
        match a {
            PeerAction::KeepStale => rib.peer_down(p.idx, true),
            PeerAction::DropRoutes => rib.peer_down(p.idx, false),
            PeerAction::StartStaleTimer(wait) => p.stale_deadline = Some(Instant::now() + wait),
            PeerAction::StopStaleTimer => p.stale_deadline = None,
            PeerAction::PurgeStale => rib.purge_stale(p.idx, None),
        }
    }
}

/// Whether a peer's change needs a new session (as opposed to new policy on the same one).
/// RFC 7606 §2 asks that malformed UPDATEs be logged even though the session stays up.
fn log_treatment(peer: IpAddr, t: &crate::wire::Treatment) {
    let issues: Vec<String> = t
        .issues
        .iter()
        .map(|i| format!("attribute {}: {}", i.type_code, i.error))
        .collect();
    let issues = issues.join("; ");
    match t.action {
        crate::wire::Action::AttributeDiscard => {
            tracing::warn!(%peer, %issues, "malformed UPDATE: attributes discarded (RFC 7606)")
        }
        _ => tracing::warn!(%peer, %issues, "malformed UPDATE: treated as withdraw (RFC 7606)"),
    }
}

fn session_changed(a: &PeerConfig, b: &PeerConfig) -> bool {
    a.remote_as != b.remote_as
        || a.local_as != b.local_as
        || a.port != b.port
        || a.hold_time != b.hold_time
        || a.passive != b.passive
        || a.source_address != b.source_address
        || a.ebgp_multihop != b.ebgp_multihop
        || a.password != b.password
        || a.graceful_restart_time != b.graceful_restart_time
        || a.connect_retry_time != b.connect_retry_time
        || a.families != b.families
}

impl PartialEq for RibConfig {
    fn eq(&self, o: &Self) -> bool {
        self.router_id == o.router_id
            && self.local_as == o.local_as
            && self.cluster_id == o.cluster_id
            && self.multipath == o.multipath
            && self.track_changes == o.track_changes
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
