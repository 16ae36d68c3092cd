//! The BGP finite state machine (RFC 4271 §8), sans-I/O.
//!
//! One [`Fsm`] drives one TCP connection's worth of session: events in, actions out, with no
//! sockets, no clocks and no tasks. The driver (`speaker.rs`) turns socket and timer activity
//! into [`Event`]s and carries out the returned [`Action`]s. Connection collisions (§6.8) involve
//! two connections, so the driver runs one FSM per connection and asks [`resolve_collision`]
//! which to keep.
//!
//! Deviations from the letter of §8.2.2, as most implementations do: a failed outgoing connect
//! in Connect moves to Active and retries when the ConnectRetry timer fires (instead of dropping
//! to Idle), and after an error the FSM restarts itself after an IdleHold delay (the optional
//! automatic start with damping, events 3 and 13) unless it was stopped by hand.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::gr;
use crate::wire::{
    AS_TRANS, Capability, CeaseSubcode, Family, FsmSubcode, GracefulRestart, Notification, Open, OpenSubcode,
};

/// Hold time used in OpenSent, before the peer's OPEN sets the real one (RFC 4271 §8.2.2
/// suggests 4 minutes).
pub const OPENSENT_HOLD: Duration = Duration::from_secs(240);

/// Session states (RFC 4271 §8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The timers the FSM asks the driver to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    DelayOpen,
    IdleHold,
}

/// FSM inputs (RFC 4271 §8.1; event numbers in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// [1] Start, connecting actively unless the peer is configured passive ([5]).
    ManualStart,
    /// [2] Stop, with the Cease subcode and an optional shutdown communication (RFC 9003).
    ManualStop {
        subcode: CeaseSubcode,
        reason: Option<String>,
    },
    /// [3] Automatic start (used by the IdleHold restart).
    AutomaticStart,
    /// [8] Automatic stop, e.g. max-prefix exceeded (Cease 6/1).
    AutomaticStop { subcode: CeaseSubcode },
    /// [9]
    ConnectRetryTimerExpires,
    /// [10]
    HoldTimerExpires,
    /// [11]
    KeepaliveTimerExpires,
    /// [12]
    DelayOpenTimerExpires,
    /// [13]
    IdleHoldTimerExpires,
    /// [16] Our outgoing connection completed.
    TcpConnectionAcknowledged,
    /// [17] An incoming connection for this peer was accepted.
    TcpConnectionConfirmed,
    /// [18]
    TcpConnectionFails,
    /// [19]
    BgpOpen(Open),
    /// [21] The codec rejected a message header; carries the NOTIFICATION to send.
    BgpHeaderErr(Notification),
    /// [22] The codec rejected an OPEN.
    BgpOpenMsgErr(Notification),
    /// [25] / [24]
    NotifMsg(Notification),
    /// [26]
    KeepAliveMsg,
    /// [27] The driver hands the UPDATE's content to the RIB itself.
    UpdateMsg,
    /// [28] An UPDATE error that resets the session (RFC 7606 §3 leaves few of these).
    UpdateMsgErr(Notification),
    /// RFC 2918 ROUTE-REFRESH received.
    RouteRefresh,
}

/// Why a session left Established (or never got there).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DownReason {
    /// We stopped it (manual or automatic stop), sending this NOTIFICATION.
    Stopped(Notification),
    HoldTimerExpired,
    /// The peer sent a NOTIFICATION.
    NotificationReceived(Notification),
    /// We sent a NOTIFICATION because of an error.
    NotificationSent(Notification),
    /// The TCP connection closed or failed.
    ConnectionLost,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Stopped(n) => write!(f, "stopped: sent {}", describe(n)),
            DownReason::HoldTimerExpired => write!(f, "hold timer expired"),
            DownReason::NotificationReceived(n) => write!(f, "received {}", describe(n)),
            DownReason::NotificationSent(n) => write!(f, "sent {}", describe(n)),
            DownReason::ConnectionLost => write!(f, "connection lost"),
        }
    }
}

/// "NOTIFICATION Cease/Administrative Shutdown (6/2): bye": the wire's names and the RFC 9003
/// shutdown text, for logs and `last_error`.
pub fn describe(n: &Notification) -> String {
    format!("NOTIFICATION {n}")
}

/// FSM outputs, carried out in order by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection to the peer.
    Connect,
    SendOpen(Open),
    SendKeepalive,
    SendNotification(Notification),
    StartTimer(Timer, Duration),
    StopTimer(Timer),
    /// Close the TCP connection (after sending anything queued before this action).
    CloseConnection,
    SessionEstablished(Negotiated),
    SessionDown(DownReason),
}

/// What we offer and expect; built from the peer's configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsmConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// The AS the peer must announce.
    pub remote_as: u32,
    /// Our proposed hold time: 0 or ≥ 3 seconds.
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Delay before an automatic restart after an error.
    pub idle_hold: Duration,
    /// Wait for the peer to open the connection (RFC 4271 PassiveTcpEstablishment).
    pub passive: bool,
    /// Optional DelayOpen (RFC 4271 §8.1.1 attribute 4): wait this long for the peer's OPEN
    /// before sending ours.
    pub delay_open: Option<Duration>,
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub extended_message: bool,
    /// Our graceful-restart capability, if we advertise one.
    pub graceful_restart: Option<GracefulRestart>,
}

impl FsmConfig {
    /// The OPEN we send.
    pub fn open(&self) -> Open {
        let mut capabilities: Vec<Capability> = self
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        if self.route_refresh {
            capabilities.push(Capability::RouteRefresh);
        }
        if self.extended_message {
            capabilities.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = &self.graceful_restart {
            capabilities.push(Capability::GracefulRestart(gr.clone()));
        }
        capabilities.push(Capability::FourOctetAs(self.local_as));
        Open {
            version: 4,
            my_as: u16::try_from(self.local_as).unwrap_or(AS_TRANS),
            hold_time: self.hold_time,
            router_id: self.router_id,
            capabilities,
        }
    }
}

/// The session parameters both sides agreed on (RFC 5492 and the capability RFCs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    /// min(ours, theirs) (RFC 4271 §4.2); 0 disables hold and keepalive timers.
    pub hold_time: u16,
    /// hold_time / 3.
    pub keepalive: u16,
    /// Both sides sent the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Families both sides announced (IPv4 unicast when the peer sends no MP capability).
    pub families: Vec<Family>,
    pub route_refresh: bool,
    pub extended_message: bool,
    /// The peer's graceful-restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// Everything the peer offered, for status output.
    pub peer_capabilities: Vec<Capability>,
}

impl Negotiated {
    /// Names of the negotiated capabilities, for status output.
    pub fn capability_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .families
            .iter()
            .map(|f| match *f {
                Family::IPV4_UNICAST => "ipv4_unicast".to_string(),
                Family::IPV6_UNICAST => "ipv6_unicast".to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if self.four_octet_as {
            names.push("four_octet_as".into());
        }
        if self.route_refresh {
            names.push("route_refresh".into());
        }
        if self.extended_message {
            names.push("extended_message".into());
        }
        if self.peer_graceful_restart.is_some() {
            names.push("graceful_restart".into());
        }
        names
    }
}

/// The state machine for one connection.
#[derive(Debug)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    connect_retry_counter: u32,
    negotiated: Option<Negotiated>,
    /// Set by ManualStop: no automatic restart until the next ManualStart.
    stopped: bool,
    established_at: Option<Instant>,
    /// The OPEN received while DelayOpen ran, or in OpenSent.
    peer_open: Option<Open>,
}

impl Fsm {
    pub fn new(config: FsmConfig) -> Self {
        Fsm {
            config,
            state: State::Idle,
            connect_retry_counter: 0,
            negotiated: None,
            stopped: true,
            established_at: None,
            peer_open: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// The negotiated parameters, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// When the session reached Established, if it is.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// The BGP identifier the peer sent, once its OPEN has been accepted.
    pub fn peer_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.as_ref().map(|n| n.peer_id)
    }

    /// Both sides set the graceful-restart N bit (RFC 8538).
    fn notification_gr(&self) -> bool {
        gr::notification_bit(
            self.config.graceful_restart.as_ref(),
            self.negotiated
                .as_ref()
                .and_then(|n| n.peer_graceful_restart.as_ref()),
        )
    }

    /// The Cease this speaker sends to stop a session (a Hard Reset when it must clear the
    /// peer's routes, [`gr::outgoing_cease`]).
    fn outgoing_cease(&self, subcode: CeaseSubcode, reason: Option<&str>) -> Notification {
        gr::outgoing_cease(self.notification_gr(), subcode, reason)
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        use Event as E;
        use State as S;
        match (self.state, event) {
            // Stop from any state other than Idle.
            (S::Idle, E::ManualStop { .. }) => self.stopped = true,
            (_, E::ManualStop { subcode, reason }) => {
                let n = self.outgoing_cease(subcode, reason.as_deref());
                self.stopped = true;
                let connected = matches!(self.state, S::OpenSent | S::OpenConfirm | S::Established);
                if connected {
                    out.push(Action::SendNotification(n.clone()));
                }
                self.connect_retry_counter = 0;
                self.enter_idle(&mut out, DownReason::Stopped(n), false);
            }
            (S::Idle, E::ManualStart) => {
                self.stopped = false;
                self.start(&mut out)
            }
            (S::Idle, E::AutomaticStart | E::IdleHoldTimerExpires) if !self.stopped => self.start(&mut out),
            (S::Idle, E::TcpConnectionConfirmed | E::TcpConnectionAcknowledged) => {
                // Not started (or stopped): refuse the connection.
                out.push(Action::CloseConnection);
            }
            (S::Idle, _) => {}

            (_, E::ManualStart | E::AutomaticStart | E::IdleHoldTimerExpires) => {}

            (S::Connect, E::ConnectRetryTimerExpires) => {
                out.push(Action::CloseConnection);
                out.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                out.push(Action::Connect);
            }
            (S::Active, E::ConnectRetryTimerExpires) => {
                out.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                if !self.config.passive {
                    out.push(Action::Connect);
                    self.state = S::Connect;
                }
            }
            (S::Connect | S::Active, E::TcpConnectionAcknowledged | E::TcpConnectionConfirmed) => {
                if let Some(delay) = self.config.delay_open {
                    out.push(Action::StopTimer(Timer::ConnectRetry));
                    out.push(Action::StartTimer(Timer::DelayOpen, delay));
                    // Stay: the OPEN goes out when DelayOpen fires or the peer's OPEN arrives.
                    self.state = S::Connect;
                    self.peer_open = None;
                } else {
                    self.send_open(&mut out);
                }
            }
            (S::Connect | S::Active, E::DelayOpenTimerExpires) => self.send_open(&mut out),
            (S::Connect | S::Active, E::TcpConnectionFails) => {
                out.push(Action::StopTimer(Timer::DelayOpen));
                out.push(Action::CloseConnection);
                out.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                self.connect_retry_counter += 1;
                self.state = S::Active;
            }
            (S::Connect | S::Active, E::BgpOpen(open)) if self.config.delay_open.is_some() => {
                // RFC 4271 §8.2.2 Connect, event 20: OPEN while DelayOpen runs.
                out.push(Action::StopTimer(Timer::DelayOpen));
                out.push(Action::StopTimer(Timer::ConnectRetry));
                match self.check_open(&open) {
                    Ok(neg) => {
                        out.push(Action::SendOpen(self.config.open()));
                        out.push(Action::SendKeepalive);
                        self.start_session_timers(&neg, &mut out);
                        self.negotiated = Some(neg);
                        self.state = S::OpenConfirm;
                    }
                    Err(n) => self.fail(&mut out, n),
                }
            }
            (S::Connect | S::Active, E::HoldTimerExpires | E::KeepaliveTimerExpires) => {}
            (S::Connect | S::Active, E::NotifMsg(n)) => {
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::NotificationReceived(n), true);
            }
            (S::Connect | S::Active, E::AutomaticStop { subcode }) => {
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::Stopped(Notification::cease(subcode)), true);
            }
            (S::Connect | S::Active, E::BgpHeaderErr(n) | E::BgpOpenMsgErr(n)) => self.fail(&mut out, n),
            (S::Connect | S::Active, _) => {
                // Any other event is an FSM error with no session to notify (§8.2.2).
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::ConnectionLost, true);
            }

            (S::OpenSent, E::BgpOpen(open)) => match self.check_open(&open) {
                Ok(neg) => {
                    out.push(Action::StopTimer(Timer::ConnectRetry));
                    out.push(Action::SendKeepalive);
                    self.start_session_timers(&neg, &mut out);
                    self.negotiated = Some(neg);
                    self.peer_open = Some(open);
                    self.state = S::OpenConfirm;
                }
                Err(n) => self.fail(&mut out, n),
            },
            (S::OpenSent, E::TcpConnectionFails) => {
                // §8.2.2 OpenSent, event 18: back to Active to listen and retry.
                out.push(Action::CloseConnection);
                out.push(Action::StopTimer(Timer::Hold));
                out.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                self.state = S::Active;
            }

            (S::OpenSent | S::OpenConfirm | S::Established, E::HoldTimerExpires) => {
                let n = Notification::hold_timer_expired();
                out.push(Action::SendNotification(n));
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::HoldTimerExpired, true);
            }
            (S::OpenSent | S::OpenConfirm | S::Established, E::NotifMsg(n)) => {
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::NotificationReceived(n), true);
            }
            (S::OpenConfirm | S::Established, E::TcpConnectionFails) => {
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::ConnectionLost, true);
            }
            (
                S::OpenSent | S::OpenConfirm | S::Established,
                E::BgpHeaderErr(n) | E::BgpOpenMsgErr(n) | E::UpdateMsgErr(n),
            ) => self.fail(&mut out, n),
            (S::OpenSent | S::OpenConfirm | S::Established, E::AutomaticStop { subcode }) => {
                let n = self.outgoing_cease(subcode, None);
                out.push(Action::SendNotification(n.clone()));
                out.push(Action::CloseConnection);
                self.connect_retry_counter += 1;
                self.enter_idle(&mut out, DownReason::Stopped(n), true);
            }
            (
                S::OpenSent | S::OpenConfirm | S::Established,
                E::TcpConnectionAcknowledged | E::TcpConnectionConfirmed,
            ) => {
                // A second connection: the driver runs collision detection on its own FSM.
            }
            (S::OpenConfirm | S::Established, E::ConnectRetryTimerExpires | E::DelayOpenTimerExpires) => {
                self.fail(&mut out, unexpected_in(self.state));
            }
            (S::OpenSent, E::ConnectRetryTimerExpires | E::DelayOpenTimerExpires) => {}

            (S::OpenConfirm | S::Established, E::KeepaliveTimerExpires) => {
                out.push(Action::SendKeepalive);
                if let Some(neg) = &self.negotiated
                    && neg.keepalive > 0
                {
                    out.push(Action::StartTimer(
                        Timer::Keepalive,
                        Duration::from_secs(neg.keepalive.into()),
                    ));
                }
            }
            (S::OpenSent, E::KeepaliveTimerExpires) => {}

            (S::OpenConfirm, E::KeepAliveMsg) => {
                self.restart_hold(&mut out);
                self.state = S::Established;
                self.established_at = Some(now);
                self.connect_retry_counter = 0;
                if let Some(neg) = &self.negotiated {
                    out.push(Action::SessionEstablished(neg.clone()));
                }
            }
            (S::Established, E::KeepAliveMsg | E::UpdateMsg | E::RouteRefresh) => self.restart_hold(&mut out),
            (
                S::OpenSent | S::OpenConfirm | S::Established,
                E::KeepAliveMsg | E::UpdateMsg | E::RouteRefresh | E::BgpOpen(_),
            ) => {
                // RFC 6608: a message that is not expected in this state.
                self.fail(&mut out, unexpected_in(self.state));
            }
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        self.negotiated = None;
        self.established_at = None;
        out.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
        if self.config.passive {
            self.state = State::Active;
        } else {
            out.push(Action::Connect);
            self.state = State::Connect;
        }
    }

    fn send_open(&mut self, out: &mut Vec<Action>) {
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::StopTimer(Timer::DelayOpen));
        out.push(Action::SendOpen(self.config.open()));
        out.push(Action::StartTimer(Timer::Hold, OPENSENT_HOLD));
        self.state = State::OpenSent;
    }

    fn start_session_timers(&self, neg: &Negotiated, out: &mut Vec<Action>) {
        if neg.hold_time > 0 {
            out.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(neg.hold_time.into()),
            ));
            out.push(Action::StartTimer(
                Timer::Keepalive,
                Duration::from_secs(neg.keepalive.into()),
            ));
        } else {
            out.push(Action::StopTimer(Timer::Hold));
            out.push(Action::StopTimer(Timer::Keepalive));
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(neg) = &self.negotiated
            && neg.hold_time > 0
        {
            out.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(neg.hold_time.into()),
            ));
        }
    }

    /// Sends `n`, closes, and goes to Idle with an automatic restart.
    fn fail(&mut self, out: &mut Vec<Action>, n: Notification) {
        out.push(Action::SendNotification(n.clone()));
        out.push(Action::CloseConnection);
        self.connect_retry_counter += 1;
        self.enter_idle(out, DownReason::NotificationSent(n), true);
    }

    fn enter_idle(&mut self, out: &mut Vec<Action>, reason: DownReason, restart: bool) {
        for t in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::DelayOpen,
        ] {
            out.push(Action::StopTimer(t));
        }
        if !out.contains(&Action::CloseConnection) {
            out.push(Action::CloseConnection);
        }
        let was = self.state;
        self.state = State::Idle;
        self.negotiated = None;
        self.established_at = None;
        self.peer_open = None;
        if was != State::Idle {
            out.push(Action::SessionDown(reason));
        }
        if restart && !self.stopped {
            out.push(Action::StartTimer(Timer::IdleHold, self.config.idle_hold));
        }
    }

    /// Validates the peer's OPEN (RFC 4271 §6.2) and negotiates capabilities (RFC 5492).
    pub fn check_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        if open.version != 4 {
            // The data is the largest version we support (§6.2).
            return Err(Notification::open_error(
                OpenSubcode::UnsupportedVersion,
                Bytes::from_static(&[0, 4]),
            ));
        }
        let peer_as = open.asn();
        if peer_as != self.config.remote_as {
            return Err(Notification::open_error(
                OpenSubcode::BadPeerAs,
                Bytes::copy_from_slice(&open.my_as.to_be_bytes()),
            ));
        }
        let ibgp = peer_as == self.config.local_as;
        let id = open.router_id;
        if id.is_unspecified() || id.is_broadcast() || id.is_multicast() ||
            // RFC 6286 §2.2: an identical identifier is only an error inside one AS.
            (ibgp && id == self.config.router_id)
        {
            return Err(Notification::open_error(OpenSubcode::BadBgpId, Bytes::new()));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::open_error(
                OpenSubcode::UnacceptableHoldTime,
                Bytes::new(),
            ));
        }
        let hold_time = open.hold_time.min(self.config.hold_time);

        // RFC 4760 §8: a speaker without the MP capability talks IPv4 unicast only.
        let peer_families = open.families();
        let families: Vec<Family> = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| peer_families.contains(f))
            .collect();
        if families.is_empty() {
            // Nothing in common: RFC 5492 §3 says to answer with the capabilities we require.
            let wanted: Vec<Capability> = self
                .config
                .families
                .iter()
                .map(|f| Capability::Multiprotocol(*f))
                .collect();
            return Err(Notification::open_error(
                OpenSubcode::UnsupportedCapability,
                crate::wire::encode_capabilities(&wanted).unwrap_or_default(),
            ));
        }
        let has = |p: fn(&Capability) -> bool| open.capabilities.iter().any(p);
        Ok(Negotiated {
            peer_as,
            peer_id: id,
            hold_time,
            keepalive: hold_time / 3,
            four_octet_as: has(|c| matches!(c, Capability::FourOctetAs(_))),
            families,
            route_refresh: self.config.route_refresh
                && has(|c| matches!(c, Capability::RouteRefresh | Capability::EnhancedRouteRefresh)),
            extended_message: self.config.extended_message
                && has(|c| matches!(c, Capability::ExtendedMessage)),
            peer_graceful_restart: open.graceful_restart().cloned(),
            peer_capabilities: open.capabilities.clone(),
        })
    }
}

/// The FSM Error for a message not expected in `state` (RFC 6608).
fn unexpected_in(state: State) -> Notification {
    Notification::fsm_error(match state {
        State::OpenSent => FsmSubcode::UnexpectedInOpenSent,
        State::OpenConfirm => FsmSubcode::UnexpectedInOpenConfirm,
        _ => FsmSubcode::UnexpectedInEstablished,
    })
}

/// What to do when two connections to the same peer both reach the point of comparing BGP
/// identifiers (RFC 4271 §6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collision {
    /// Close the connection that already existed (with Cease 6/7), keep the new one.
    CloseExisting,
    /// Close the new connection, keep the existing one.
    CloseNew,
}

/// Resolves a collision between the `existing` connection (in `existing_state`) and a new one.
/// `existing_outgoing` says whether the existing connection was opened by us.
pub fn resolve_collision(
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
    existing_state: State,
    existing_outgoing: bool,
) -> Collision {
    // An Established session always wins over a newcomer (§6.8).
    if existing_state == State::Established {
        return Collision::CloseNew;
    }
    // The connection opened by the speaker with the higher identifier survives.
    let keep_outgoing = u32::from(local_id) > u32::from(remote_id);
    if existing_outgoing == keep_outgoing {
        Collision::CloseNew
    } else {
        Collision::CloseExisting
    }
}

#[cfg(test)]
mod tests;
