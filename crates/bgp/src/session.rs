//! One BGP session: a tokio task per peer that owns its TCP connection(s) and runs the FSM.
//!
//! ```text
//!            ToSession (unbounded)              FromSession (bounded)
//!   core ─────────────────────────▶ session ───────────────────────────▶ core
//!                                    ▲    │
//!           (conn, ConnInput)        │    │ WriterMsg (unbounded)
//!   reader task per connection ──────┘    └──────────▶ writer task per connection
//! ```
//!
//! Reading and decoding happen in the reader task, writing in the writer task, so a peer that
//! stops reading never blocks our reads (the classic BGP write deadlock) and a slow peer never
//! blocks another peer. A decode error only ever ends this peer's connection.
//!
//! Two connections exist at once only during a collision (RFC 4271 §6.8): the second is
//! resolved with [`fsm::resolve_collision`] as soon as the peer's BGP identifier is known.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PeerConfig;
use crate::fsm::{self, Action, Collision, DownReason, Event, Fsm, FsmConfig, Negotiated, State, Timer};
use crate::wire::{self, Family, Message, Open, RouteRefresh, SessionOptions, Treatment, Update};

/// Orders from the core to a session.
#[derive(Debug)]
pub enum ToSession {
    /// Encoded messages to write (only delivered while Established).
    Send(Vec<Bytes>),
    /// An accepted connection from this peer's address.
    Incoming(TcpStream),
    /// Feed an FSM event (ManualStop, AutomaticStop) to the session.
    Event(Event),
    /// Close without a NOTIFICATION (our own graceful restart) and end the task.
    Abort,
    /// Ask the peer to send its routes again (RFC 2918).
    RequestRefresh(Family),
}

/// Reports from a session to the core.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    State(State),
    Established {
        negotiated: Negotiated,
        local_address: IpAddr,
        local_alt_address: Option<IpAddr>,
        options: SessionOptions,
    },
    Updates(Vec<ReceivedUpdate>),
    RouteRefresh(Family),
    /// The session left Established (or failed before); `last_error` is for status output.
    Down {
        reason: DownReason,
        was_established: bool,
    },
    /// The task ended (after a manual stop or abort).
    Ended,
}

/// An UPDATE as decoded, with the RFC 7606 treatment the decoder applied to it (`None` when
/// it was well-formed): the RIB must know, since a treat-as-withdraw UPDATE is no End-of-RIB.
/// The session has logged the malformed attributes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReceivedUpdate {
    pub update: Update,
    pub treatment: Option<wire::Action>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FromSession {
    pub peer: IpAddr,
    /// Distinguishes a replaced session's late messages from the current one's.
    pub generation: u64,
    pub event: SessionEvent,
}

/// Everything a session needs, fixed for its lifetime (a config change restarts it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionParams {
    pub peer: PeerConfig,
    pub fsm: FsmConfig,
    pub ebgp: bool,
    pub generation: u64,
}

impl SessionParams {
    fn ttl(&self) -> u32 {
        match self.peer.ebgp_multihop {
            Some(t) => u32::from(t),
            None if self.ebgp => 1,
            None => 255,
        }
    }
}

enum WriterMsg {
    Data(Bytes),
    Close,
}

enum ConnInput {
    Connected(TcpStream),
    ConnectFailed(String),
    /// A decoded message and, for an UPDATE, the RFC 7606 treatment it got.
    Message(Box<Message>, Option<Treatment>),
    DecodeError(wire::Error),
    Closed,
}

struct Conn {
    id: u64,
    fsm: Fsm,
    outgoing: bool,
    writer: Option<mpsc::UnboundedSender<WriterMsg>>,
    writer_task: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    connecting: Option<JoinHandle<()>>,
    timers: HashMap<Timer, Instant>,
    options: SessionOptions,
    local_address: Option<IpAddr>,
    established: bool,
}

impl Conn {
    fn new(id: u64, config: FsmConfig) -> Self {
        Conn {
            id,
            fsm: Fsm::new(config),
            outgoing: false,
            writer: None,
            writer_task: None,
            reader: None,
            connecting: None,
            timers: HashMap::new(),
            options: SessionOptions::default(),
            local_address: None,
            established: false,
        }
    }

    fn write(&self, b: Bytes) {
        if let Some(w) = &self.writer {
            let _ = w.send(WriterMsg::Data(b));
        }
    }

    fn close(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.send(WriterMsg::Close);
        }
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        if let Some(c) = self.connecting.take() {
            c.abort();
        }
        self.local_address = None;
    }
}

struct Session {
    params: SessionParams,
    core: mpsc::Sender<FromSession>,
    inputs_tx: mpsc::Sender<(u64, ConnInput)>,
    conns: Vec<Conn>,
    next_conn: u64,
    reported_state: Option<State>,
    finished_writers: Vec<JoinHandle<()>>,
    /// UPDATEs collected while draining inputs, sent to the core in one message.
    pending: Vec<ReceivedUpdate>,
}

/// Runs a session until it is stopped by hand or aborted.
pub async fn run(
    params: SessionParams,
    mut rx: mpsc::UnboundedReceiver<ToSession>,
    core: mpsc::Sender<FromSession>,
) {
    let (inputs_tx, mut inputs_rx) = mpsc::channel(1024);
    let mut s = Session {
        conns: vec![Conn::new(0, params.fsm.clone())],
        params,
        core,
        inputs_tx,
        next_conn: 1,
        reported_state: None,
        finished_writers: Vec::new(),
        pending: Vec::new(),
    };
    s.feed(0, Event::ManualStart).await;
    let mut ending = false;
    while !ending {
        let deadline = s.conns.iter().flat_map(|c| c.timers.values()).min().copied();
        tokio::select! {
            msg = rx.recv() => match msg {
                None | Some(ToSession::Abort) => {
                    for c in &mut s.conns {
                        c.close();
                    }
                    ending = true;
                }
                Some(ToSession::Event(e)) => {
                    let manual = matches!(e, Event::ManualStop { .. });
                    for i in (0..s.conns.len()).rev() {
                        let id = s.conns[i].id;
                        s.feed(id, e.clone()).await;
                    }
                    ending = manual;
                }
                Some(ToSession::Send(msgs)) => {
                    if let Some(c) = s.conns.iter().find(|c| c.fsm.state() == State::Established) {
                        for m in msgs {
                            c.write(m);
                        }
                    }
                }
                Some(ToSession::Incoming(stream)) => s.incoming(stream).await,
                Some(ToSession::RequestRefresh(family)) => {
                    if let Some(c) = s.conns.iter().find(|c| c.fsm.state() == State::Established)
                        && c.fsm.negotiated().is_some_and(|n| n.route_refresh)
                        && let Ok(b) = Message::RouteRefresh(RouteRefresh::request(family)).encode(&c.options)
                    {
                        c.write(b);
                    }
                }
            },
            Some((id, input)) = inputs_rx.recv() => {
                s.input(id, input).await;
                // Forward UPDATEs in batches: drain what is already queued.
                let mut n = 0;
                while n < 256 {
                    match inputs_rx.try_recv() {
                        Ok((id, input)) => s.input(id, input).await,
                        Err(_) => break,
                    }
                    n += 1;
                }
                s.flush_updates().await;
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                let mut due = Vec::new();
                for c in &mut s.conns {
                    let expired: Vec<Timer> = c.timers.iter().filter(|(_, t)| **t <= now).map(|(k, _)| *k).collect();
                    for t in expired {
                        c.timers.remove(&t);
                        due.push((c.id, t));
                    }
                }
                for (id, t) in due {
                    let e = match t {
                        Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
                        Timer::Hold => Event::HoldTimerExpires,
                        Timer::Keepalive => Event::KeepaliveTimerExpires,
                        Timer::DelayOpen => Event::DelayOpenTimerExpires,
                        Timer::IdleHold => Event::IdleHoldTimerExpires,
                    };
                    s.feed(id, e).await;
                }
            }
        }
    }
    // Let queued NOTIFICATIONs reach the wire before the task ends.
    for c in &mut s.conns {
        c.close();
        if let Some(w) = c.writer_task.take() {
            s.finished_writers.push(w);
        }
    }
    for w in s.finished_writers.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
    }
    let _ = s
        .core
        .send(FromSession {
            peer: s.params.peer.address,
            generation: s.params.generation,
            event: SessionEvent::Ended,
        })
        .await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn conn_index(&self, id: u64) -> Option<usize> {
        self.conns.iter().position(|c| c.id == id)
    }

    async fn report(&self, event: SessionEvent) {
        let msg = FromSession {
            peer: self.params.peer.address,
            generation: self.params.generation,
            event,
        };
        let _ = self.core.send(msg).await;
    }

    async fn flush_updates(&mut self) {
        if !self.pending.is_empty() {
            let updates = std::mem::take(&mut self.pending);
            self.report(SessionEvent::Updates(updates)).await;
        }
    }

    /// Feeds an event to connection `id`'s FSM and carries out the actions.
    async fn feed(&mut self, id: u64, event: Event) {
        let Some(i) = self.conn_index(id) else { return };
        let actions = self.conns[i].fsm.handle(event, std::time::Instant::now());
        self.apply(i, actions).await;
        self.after_transition().await;
    }

    async fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            let c = &mut self.conns[i];
            match action {
                Action::Connect => {
                    if let Some(old) = c.connecting.take() {
                        old.abort();
                    }
                    c.outgoing = true;
                    let tx = self.inputs_tx.clone();
                    let id = c.id;
                    let p = self.params.clone();
                    c.connecting = Some(tokio::spawn(async move {
                        let input = match connect(&p).await {
                            Ok(stream) => ConnInput::Connected(stream),
                            Err(e) => ConnInput::ConnectFailed(e.to_string()),
                        };
                        let _ = tx.send((id, input)).await;
                    }));
                }
                Action::SendOpen(open) => {
                    if let Ok(b) = Message::Open(open).encode(&SessionOptions::default()) {
                        c.write(b);
                    }
                }
                Action::SendKeepalive => {
                    if let Ok(b) = Message::Keepalive.encode(&c.options) {
                        c.write(b);
                    }
                }
                Action::SendNotification(n) => {
                    tracing::info!(peer = %self.params.peer.address, "sending {}", fsm::describe(&n));
                    if let Ok(b) = Message::Notification(n).encode(&c.options) {
                        c.write(b);
                    }
                }
                Action::StartTimer(t, d) => {
                    c.timers.insert(t, Instant::now() + d);
                }
                Action::StopTimer(t) => {
                    c.timers.remove(&t);
                }
                Action::CloseConnection => {
                    c.close();
                    if let Some(w) = c.writer_task.take() {
                        self.finished_writers.push(w);
                    }
                    self.finished_writers.retain(|w| !w.is_finished());
                }
                Action::SessionEstablished(negotiated) => {
                    c.established = true;
                    let local_address = c.local_address.unwrap_or(IpAddr::V4(self.params.fsm.router_id));
                    let options = c.options.clone();
                    let local_alt_address = other_family_address(local_address);
                    tracing::info!(peer = %self.params.peer.address, "session established");
                    let event = SessionEvent::Established {
                        negotiated,
                        local_address,
                        local_alt_address,
                        options,
                    };
                    self.report(event).await;
                }
                Action::SessionDown(reason) => {
                    let was_established = std::mem::replace(&mut c.established, false);
                    // Updates read before the failure still belong to the old session.
                    if was_established {
                        self.flush_updates().await;
                    } else {
                        self.pending.clear();
                    }
                    tracing::info!(peer = %self.params.peer.address, "session down: {reason}");
                    self.report(SessionEvent::Down {
                        reason,
                        was_established,
                    })
                    .await;
                }
            }
        }
    }

    /// Drops a failed second connection, resolves collisions, reports the state.
    async fn after_transition(&mut self) {
        if self.conns.len() == 2 {
            if self.conns[1].fsm.state() == State::Idle {
                let mut c = self.conns.remove(1);
                c.close();
            } else if self.conns[0].fsm.state() == State::Idle {
                let mut c = self.conns.remove(0);
                c.close();
            } else {
                self.resolve_collision().await;
            }
        }
        let state = self.conns[0].fsm.state();
        if self.reported_state != Some(state) {
            self.reported_state = Some(state);
            self.report(SessionEvent::State(state)).await;
        }
    }

    /// RFC 4271 §6.8, once the peer's BGP identifier is known on either connection.
    async fn resolve_collision(&mut self) {
        let Some(remote_id) = self.conns.iter().find_map(|c| c.fsm.peer_id()) else {
            return;
        };
        let existing = &self.conns[0];
        let decision = fsm::resolve_collision(
            self.params.fsm.router_id,
            remote_id,
            existing.fsm.state(),
            existing.outgoing,
        );
        let loser = match decision {
            Collision::CloseExisting => 0,
            Collision::CloseNew => 1,
        };
        let id = self.conns[loser].id;
        let actions = self.conns[loser].fsm.handle(
            Event::ManualStop {
                subcode: wire::CeaseSubcode::ConnectionCollisionResolution,
                reason: None,
            },
            std::time::Instant::now(),
        );
        // The loser's stop is no session event of ours; only its NOTIFICATION and close matter.
        let actions: Vec<Action> = actions
            .into_iter()
            .filter(|a| matches!(a, Action::SendNotification(_) | Action::CloseConnection))
            .collect();
        if let Some(i) = self.conn_index(id) {
            self.apply(i, actions).await;
            let mut c = self.conns.remove(i);
            c.close();
        }
    }

    async fn input(&mut self, id: u64, input: ConnInput) {
        let Some(i) = self.conn_index(id) else { return };
        match input {
            ConnInput::Connected(stream) => {
                self.conns[i].connecting = None;
                if self.conns[i].writer.is_some() {
                    return; // an incoming connection won the race; drop ours
                }
                self.attach(i, stream, true);
                self.feed(id, Event::TcpConnectionAcknowledged).await;
            }
            ConnInput::ConnectFailed(e) => {
                tracing::debug!(peer = %self.params.peer.address, "connect failed: {e}");
                self.conns[i].connecting = None;
                if self.conns[i].writer.is_none() {
                    self.feed(id, Event::TcpConnectionFails).await;
                }
            }
            ConnInput::Closed => self.feed(id, Event::TcpConnectionFails).await,
            ConnInput::DecodeError(e) => {
                let n = e.to_notification();
                let event = match n.error_code() {
                    Some(wire::ErrorCode::MessageHeader) => Event::BgpHeaderErr(n),
                    Some(wire::ErrorCode::Open) => Event::BgpOpenMsgErr(n),
                    _ => Event::UpdateMsgErr(n),
                };
                tracing::info!(peer = %self.params.peer.address, "bad message: {e}");
                self.feed(id, event).await;
            }
            ConnInput::Message(m, treatment) => match *m {
                Message::Open(open) => {
                    self.conns[i].options =
                        SessionOptions::negotiate(&self.params.fsm.open(), &open, self.params.ebgp);
                    self.feed(id, Event::BgpOpen(open)).await;
                }
                Message::Keepalive => self.feed(id, Event::KeepAliveMsg).await,
                Message::Notification(n) => {
                    tracing::info!(peer = %self.params.peer.address, "received {}", fsm::describe(&n));
                    self.feed(id, Event::NotifMsg(n)).await;
                }
                Message::Update(u) => {
                    let established = self.conns[i].fsm.state() == State::Established;
                    self.feed(id, Event::UpdateMsg).await;
                    if established {
                        if let Some(t) = &treatment {
                            log_treatment(self.params.peer.address, t);
                        }
                        let treatment = treatment.map(|t| t.action);
                        self.pending.push(ReceivedUpdate { update: u, treatment });
                        if self.pending.len() >= 256 {
                            self.flush_updates().await;
                        }
                    }
                }
                Message::RouteRefresh(rr) => {
                    let established = self.conns[i].fsm.state() == State::Established;
                    self.feed(id, Event::RouteRefresh).await;
                    if established {
                        self.flush_updates().await;
                        self.report(SessionEvent::RouteRefresh(rr.family)).await;
                    }
                }
            },
        }
    }

    async fn incoming(&mut self, stream: TcpStream) {
        let _ = set_ttl(&stream, self.params.ttl());
        let state = self.conns[0].fsm.state();
        match state {
            State::Idle => {
                // Waiting to restart after an error: take the peer's connection now instead.
                let id = self.conns[0].id;
                self.feed(id, Event::AutomaticStart).await;
                if self.conns[0].fsm.state() == State::Idle {
                    return; // stopped by hand: refuse
                }
                let i = 0;
                if let Some(c) = self.conns[i].connecting.take() {
                    c.abort();
                }
                self.attach(i, stream, false);
                self.feed(id, Event::TcpConnectionConfirmed).await;
            }
            State::Connect | State::Active => {
                let id = self.conns[0].id;
                if let Some(c) = self.conns[0].connecting.take() {
                    c.abort();
                }
                self.attach(0, stream, false);
                self.feed(id, Event::TcpConnectionConfirmed).await;
            }
            State::OpenSent | State::OpenConfirm if self.conns.len() == 1 => {
                let id = self.next_conn;
                self.next_conn += 1;
                let mut c = Conn::new(id, self.params.fsm.clone());
                // Start it without connecting: it only serves the incoming connection.
                let _ = c.fsm.handle(Event::ManualStart, std::time::Instant::now());
                self.conns.push(c);
                self.attach(1, stream, false);
                self.feed(id, Event::TcpConnectionConfirmed).await;
            }
            _ => {
                // Established (or already resolving a collision): the newcomer loses (§6.8).
                let n = wire::Notification::cease(wire::CeaseSubcode::ConnectionCollisionResolution);
                if let Ok(b) = Message::Notification(n).encode(&SessionOptions::default()) {
                    let mut stream = stream;
                    tokio::spawn(async move {
                        let _ = stream.write_all(&b).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        }
    }

    /// Gives connection `i` its TCP stream: spawns the reader and writer tasks.
    fn attach(&mut self, i: usize, stream: TcpStream, outgoing: bool) {
        let c = &mut self.conns[i];
        c.close();
        c.outgoing = outgoing;
        c.local_address = stream.local_addr().ok().map(|a| normalize(a.ip()));
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        c.writer = Some(wtx);
        c.writer_task = Some(tokio::spawn(writer(wr, wrx)));
        let tx = self.inputs_tx.clone();
        let local_open = self.params.fsm.open();
        c.reader = Some(tokio::spawn(reader(c.id, rd, local_open, self.params.ebgp, tx)));
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4.
pub fn normalize(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// A global address of the other family on the interface that holds `local`.
fn other_family_address(local: IpAddr) -> Option<IpAddr> {
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs().ok()?.collect();
    let ip_of = |a: &nix::ifaddrs::InterfaceAddress| -> Option<IpAddr> {
        let s = a.address.as_ref()?;
        if let Some(v4) = s.as_sockaddr_in() {
            return Some(IpAddr::V4(v4.ip()));
        }
        s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    };
    let iface = addrs
        .iter()
        .find(|a| ip_of(a) == Some(local))?
        .interface_name
        .clone();
    addrs
        .iter()
        .filter(|a| a.interface_name == iface)
        .filter_map(ip_of)
        .find(|ip| match ip {
            IpAddr::V6(v6) => local.is_ipv4() && !v6.is_unicast_link_local() && !v6.is_loopback(),
            IpAddr::V4(_) => local.is_ipv6(),
        })
}

fn set_ttl(stream: &impl std::os::fd::AsFd, ttl: u32) -> std::io::Result<()> {
    let s = socket2::SockRef::from(stream);
    match s.local_addr()?.as_socket() {
        Some(SocketAddr::V6(_)) => s.set_unicast_hops_v6(ttl),
        _ => s.set_ttl_v4(ttl),
    }
}

/// Opens the outgoing connection with the peer's source address, TTL and MD5 key.
async fn connect(p: &SessionParams) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::new(p.peer.address, p.peer.port);
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = p.peer.source_address {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    set_ttl(&socket, p.ttl())?;
    if let Some(pw) = &p.peer.password {
        crate::md5::set_md5sig(&socket, p.peer.address, Some(pw.as_bytes()))?;
    }
    let timeout = p.fsm.connect_retry.max(Duration::from_secs(1));
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// RFC 7606 §2 asks that malformed UPDATEs be logged even though the session stays up.
fn log_treatment(peer: IpAddr, t: &Treatment) {
    let issues: Vec<String> = t
        .issues
        .iter()
        .map(|i| format!("attribute {}: {}", i.type_code, i.error))
        .collect();
    let issues = issues.join("; ");
    match t.action {
        wire::Action::AttributeDiscard => {
            tracing::warn!(%peer, %issues, "malformed UPDATE: attributes discarded (RFC 7606)")
        }
        _ => tracing::warn!(%peer, %issues, "malformed UPDATE: treated as withdraw (RFC 7606)"),
    }
}

/// Reads, frames and decodes messages. The codec context follows the OPEN exchange: the
/// reader learns the peer's OPEN itself so that the UPDATEs right behind it decode correctly.
async fn reader(
    id: u64,
    mut rd: OwnedReadHalf,
    local_open: Open,
    ebgp: bool,
    tx: mpsc::Sender<(u64, ConnInput)>,
) {
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut opts = SessionOptions::default();
    loop {
        loop {
            match wire::frame_len(&buf, &opts) {
                Ok(Some(len)) if buf.len() >= len => {
                    let frame = buf.split_to(len);
                    match Message::decode_with_outcome(&frame, &opts) {
                        Ok((m, treatment)) => {
                            if let Message::Open(o) = &m {
                                opts = SessionOptions::negotiate(&local_open, o, ebgp);
                            }
                            if tx
                                .send((id, ConnInput::Message(Box::new(m), treatment)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send((id, ConnInput::DecodeError(e))).await;
                            return;
                        }
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    let _ = tx.send((id, ConnInput::DecodeError(e))).await;
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(1 << 16);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send((id, ConnInput::Closed)).await;
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Writes queued messages, coalescing what is queued into one write.
async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
    let mut out = BytesMut::new();
    'outer: while let Some(m) = rx.recv().await {
        let mut close = false;
        match m {
            WriterMsg::Data(b) => out.extend_from_slice(&b),
            WriterMsg::Close => close = true,
        }
        while !close && out.len() < (1 << 16) {
            match rx.try_recv() {
                Ok(WriterMsg::Data(b)) => out.extend_from_slice(&b),
                Ok(WriterMsg::Close) => close = true,
                Err(_) => break,
            }
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            break 'outer;
        }
        out.clear();
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
}
