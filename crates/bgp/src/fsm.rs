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

use crate::wire::{
    AS_TRANS, Capability, Family, GracefulRestart, Notification, Open, cease, code, fsm_error, open_error,
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
    ManualStop { subcode: u8, reason: Option<String> },
    /// [3] Automatic start (used by the IdleHold restart).
    AutomaticStart,
    /// [8] Automatic stop, e.g. max-prefix exceeded (Cease 6/1).
    AutomaticStop { subcode: u8 },
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// Both sides set the graceful-restart N bit (RFC 8538): a NOTIFICATION no longer ends
    /// graceful restart by itself, so one meant to drop the routes must be a Hard Reset.
    fn notification_gr(&self) -> bool {
        self.config
            .graceful_restart
            .as_ref()
            .is_some_and(|g| g.notification)
            && self
                .negotiated
                .as_ref()
                .and_then(|n| n.peer_graceful_restart.as_ref())
                .is_some_and(|g| g.notification)
    }

    /// The Cease this speaker sends to stop a session: wrapped in a Hard Reset (6/9, the
    /// original code, subcode and data in its data) when the N bit was exchanged and the
    /// subcode is one RFC 8538 §5 says should clear the peer's routes (maximum prefixes,
    /// administrative shutdown, peer de-configured); as it is otherwise.
    fn outgoing_cease(&self, subcode: u8, reason: Option<&str>) -> Notification {
        let n = Notification::cease_with(subcode, reason);
        let clears = [
            cease::MAX_PREFIXES,
            cease::ADMINISTRATIVE_SHUTDOWN,
            cease::PEER_DECONFIGURED,
        ];
        if self.notification_gr() && clears.contains(&subcode) {
            Notification::hard_reset(&n)
        } else {
            n
        }
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
                let n = notification(code::HOLD_TIMER_EXPIRED, 0);
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
                let sub = fsm_subcode(self.state);
                self.fail(&mut out, notification(code::FSM, sub));
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
                let sub = fsm_subcode(self.state);
                self.fail(&mut out, notification(code::FSM, sub));
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
            return Err(Notification {
                code: code::OPEN,
                subcode: open_error::UNSUPPORTED_VERSION,
                data: Bytes::from_static(&[0, 4]),
            });
        }
        let four_octet = open.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        });
        let peer_as = four_octet.unwrap_or(u32::from(open.my_as));
        if peer_as != self.config.remote_as {
            return Err(Notification {
                code: code::OPEN,
                subcode: open_error::BAD_PEER_AS,
                data: Bytes::copy_from_slice(&open.my_as.to_be_bytes()),
            });
        }
        let ibgp = peer_as == self.config.local_as;
        let id = open.router_id;
        if id.is_unspecified() || id.is_broadcast() || id.is_multicast() ||
            // RFC 6286 §2.2: an identical identifier is only an error inside one AS.
            (ibgp && id == self.config.router_id)
        {
            return Err(notification(code::OPEN, open_error::BAD_BGP_ID));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(notification(code::OPEN, open_error::UNACCEPTABLE_HOLD_TIME));
        }
        let hold_time = open.hold_time.min(self.config.hold_time);

        let peer_families: Vec<Family> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        // RFC 4760 §8: a speaker without the MP capability talks IPv4 unicast only.
        let peer_families = if peer_families.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            peer_families
        };
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
            return Err(Notification {
                code: code::OPEN,
                subcode: open_error::UNSUPPORTED_CAPABILITY,
                data: crate::wire::encode_capabilities(&wanted).unwrap_or_default(),
            });
        }
        let has = |p: fn(&Capability) -> bool| open.capabilities.iter().any(p);
        Ok(Negotiated {
            peer_as,
            peer_id: id,
            hold_time,
            keepalive: hold_time / 3,
            four_octet_as: four_octet.is_some(),
            families,
            route_refresh: self.config.route_refresh
                && has(|c| matches!(c, Capability::RouteRefresh | Capability::EnhancedRouteRefresh)),
            extended_message: self.config.extended_message
                && has(|c| matches!(c, Capability::ExtendedMessage)),
            peer_graceful_restart: open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            }),
            peer_capabilities: open.capabilities.clone(),
        })
    }
}

fn fsm_subcode(state: State) -> u8 {
    match state {
        State::OpenSent => fsm_error::UNEXPECTED_IN_OPENSENT,
        State::OpenConfirm => fsm_error::UNEXPECTED_IN_OPENCONFIRM,
        _ => fsm_error::UNEXPECTED_IN_ESTABLISHED,
    }
}

/// A NOTIFICATION with no data.
pub fn notification(code: u8, subcode: u8) -> Notification {
    Notification {
        code,
        subcode,
        data: Bytes::new(),
    }
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
mod tests {
    use super::*;

    fn config() -> FsmConfig {
        FsmConfig {
            local_as: 65001,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            remote_as: 65002,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_secs(1),
            passive: false,
            delay_open: None,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            extended_message: false,
            graceful_restart: None,
        }
    }

    fn peer_open() -> Open {
        Open {
            version: 4,
            my_as: 65002,
            hold_time: 60,
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::FourOctetAs(65002),
            ],
        }
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn established(config: FsmConfig) -> Fsm {
        let mut fsm = Fsm::new(config);
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        fsm.handle(Event::BgpOpen(peer_open()), now());
        fsm.handle(Event::KeepAliveMsg, now());
        assert_eq!(fsm.state(), State::Established);
        fsm
    }

    fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
        actions.iter().find_map(|a| match a {
            Action::SendNotification(n) => Some((n.code, n.subcode)),
            _ => None,
        })
    }

    fn with_n_bit(config: FsmConfig, ours: bool, theirs: bool) -> Fsm {
        let gr = |notification| GracefulRestart {
            restarting: false,
            notification,
            restart_time: 120,
            families: vec![(Family::IPV4_UNICAST, true)],
        };
        let mut fsm = Fsm::new(FsmConfig {
            graceful_restart: Some(gr(ours)),
            ..config
        });
        let mut open = peer_open();
        open.capabilities.push(Capability::GracefulRestart(gr(theirs)));
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        fsm.handle(Event::BgpOpen(open), now());
        fsm.handle(Event::KeepAliveMsg, now());
        assert_eq!(fsm.state(), State::Established);
        fsm
    }

    fn sent(actions: &[Action]) -> Notification {
        actions
            .iter()
            .find_map(|a| match a {
                Action::SendNotification(n) => Some(n.clone()),
                _ => None,
            })
            .expect("a NOTIFICATION")
    }

    #[test]
    fn with_the_n_bit_exchanged_a_shutdown_is_sent_as_a_hard_reset() {
        let mut fsm = with_n_bit(config(), true, true);
        let a = fsm.handle(
            Event::ManualStop {
                subcode: 2,
                reason: Some("bye".into()),
            },
            now(),
        );
        let n = sent(&a);
        assert_eq!((n.code, n.subcode), (6, 9));
        assert_eq!(
            &n.data[..],
            &[6, 2, 3, b'b', b'y', b'e'],
            "inner 6/2 with its communication"
        );
        let mut fsm = with_n_bit(config(), true, true);
        let n = sent(&fsm.handle(Event::AutomaticStop { subcode: 1 }, now()));
        assert_eq!((n.code, n.subcode, &n.data[..]), (6, 9, &[6u8, 1][..]));
        // Connection collision and out-of-resources keep graceful restart (RFC 8538 §5).
        let mut fsm = with_n_bit(config(), true, true);
        let n = sent(&fsm.handle(Event::AutomaticStop { subcode: 8 }, now()));
        assert_eq!((n.code, n.subcode), (6, 8));
    }

    #[test]
    fn without_both_n_bits_a_shutdown_is_a_plain_cease() {
        for (ours, theirs) in [(true, false), (false, true)] {
            let mut fsm = with_n_bit(config(), ours, theirs);
            let a = fsm.handle(
                Event::ManualStop {
                    subcode: 3,
                    reason: None,
                },
                now(),
            );
            let n = sent(&a);
            assert_eq!((n.code, n.subcode), (6, 3), "ours {ours}, theirs {theirs}");
            assert!(n.data.is_empty());
        }
    }

    #[test]
    fn manual_start_connects_and_starts_connect_retry() {
        let mut fsm = Fsm::new(config());
        let a = fsm.handle(Event::ManualStart, now());
        assert_eq!(fsm.state(), State::Connect);
        assert!(a.contains(&Action::Connect));
        assert!(a.contains(&Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))));
    }

    #[test]
    fn passive_start_waits_in_active_without_connecting() {
        let mut fsm = Fsm::new(FsmConfig {
            passive: true,
            ..config()
        });
        let a = fsm.handle(Event::ManualStart, now());
        assert_eq!(fsm.state(), State::Active);
        assert!(!a.contains(&Action::Connect));
        let a = fsm.handle(Event::ConnectRetryTimerExpires, now());
        assert!(!a.contains(&Action::Connect));
        assert_eq!(fsm.state(), State::Active);
        let a = fsm.handle(Event::TcpConnectionConfirmed, now());
        assert_eq!(fsm.state(), State::OpenSent);
        assert!(a.iter().any(|a| matches!(a, Action::SendOpen(_))));
    }

    #[test]
    fn idle_refuses_incoming_connections() {
        let mut fsm = Fsm::new(config());
        let a = fsm.handle(Event::TcpConnectionConfirmed, now());
        assert_eq!(a, vec![Action::CloseConnection]);
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn connection_sends_open_with_capabilities_and_large_hold_timer() {
        let mut fsm = Fsm::new(FsmConfig {
            local_as: 4_200_000_000,
            ..config()
        });
        fsm.handle(Event::ManualStart, now());
        let a = fsm.handle(Event::TcpConnectionAcknowledged, now());
        assert_eq!(fsm.state(), State::OpenSent);
        let open = a
            .iter()
            .find_map(|a| match a {
                Action::SendOpen(o) => Some(o.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(open.my_as, AS_TRANS);
        assert_eq!(open.hold_time, 90);
        assert!(
            open.capabilities
                .contains(&Capability::FourOctetAs(4_200_000_000))
        );
        assert!(
            open.capabilities
                .contains(&Capability::Multiprotocol(Family::IPV6_UNICAST))
        );
        assert!(open.capabilities.contains(&Capability::RouteRefresh));
        assert!(a.contains(&Action::StartTimer(Timer::Hold, OPENSENT_HOLD)));
        assert!(a.contains(&Action::StopTimer(Timer::ConnectRetry)));
    }

    #[test]
    fn failed_connect_moves_to_active_and_retries_on_timer() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        let a = fsm.handle(Event::TcpConnectionFails, now());
        assert_eq!(fsm.state(), State::Active);
        assert!(a.contains(&Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))));
        let a = fsm.handle(Event::ConnectRetryTimerExpires, now());
        assert_eq!(fsm.state(), State::Connect);
        assert!(a.contains(&Action::Connect));
    }

    #[test]
    fn connect_retry_expiry_in_connect_reconnects() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        let a = fsm.handle(Event::ConnectRetryTimerExpires, now());
        assert_eq!(fsm.state(), State::Connect);
        assert!(a.contains(&Action::Connect));
    }

    #[test]
    fn valid_open_sends_keepalive_and_negotiates_hold_time_min_and_keepalive_third() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(Event::BgpOpen(peer_open()), now());
        assert_eq!(fsm.state(), State::OpenConfirm);
        assert!(a.contains(&Action::SendKeepalive));
        assert!(a.contains(&Action::StartTimer(Timer::Hold, Duration::from_secs(60))));
        assert!(a.contains(&Action::StartTimer(Timer::Keepalive, Duration::from_secs(20))));
        let neg = fsm.negotiated().unwrap();
        assert_eq!(neg.hold_time, 60);
        assert_eq!(neg.keepalive, 20);
        assert!(neg.four_octet_as);
        assert!(neg.route_refresh);
        assert!(!neg.extended_message);
        assert_eq!(neg.families, vec![Family::IPV4_UNICAST]);
    }

    #[test]
    fn keepalive_in_openconfirm_establishes_the_session() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        fsm.handle(Event::BgpOpen(peer_open()), now());
        let a = fsm.handle(Event::KeepAliveMsg, now());
        assert_eq!(fsm.state(), State::Established);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::SessionEstablished(n) if n.peer_as == 65002))
        );
        assert!(fsm.established_at().is_some());
    }

    #[test]
    fn open_with_version_3_gets_notification_2_1_with_version_4() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(
            Event::BgpOpen(Open {
                version: 3,
                ..peer_open()
            }),
            now(),
        );
        let n = a.iter().find_map(|a| match a {
            Action::SendNotification(n) => Some(n.clone()),
            _ => None,
        });
        let n = n.unwrap();
        assert_eq!((n.code, n.subcode, &n.data[..]), (2, 1, &[0u8, 4][..]));
        assert_eq!(fsm.state(), State::Idle);
        assert!(a.contains(&Action::CloseConnection));
    }

    #[test]
    fn open_from_wrong_as_gets_notification_2_2() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let mut open = peer_open();
        open.capabilities
            .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
        open.my_as = 65003;
        let a = fsm.handle(Event::BgpOpen(open), now());
        assert_eq!(sent_notification(&a), Some((2, 2)));
    }

    #[test]
    fn four_octet_capability_overrides_as_trans_in_my_as() {
        let fsm = Fsm::new(FsmConfig {
            remote_as: 4_200_000_001,
            ..config()
        });
        let mut open = peer_open();
        open.my_as = AS_TRANS;
        open.capabilities = vec![Capability::FourOctetAs(4_200_000_001)];
        let neg = fsm.check_open(&open).unwrap();
        assert_eq!(neg.peer_as, 4_200_000_001);
        // A peer without the capability is an old speaker with a 2-octet AS.
        open.capabilities.clear();
        assert_eq!(fsm.check_open(&open).unwrap_err().subcode, 2);
    }

    #[test]
    fn bad_bgp_identifier_gets_notification_2_3() {
        let fsm = Fsm::new(config());
        let open = Open {
            router_id: Ipv4Addr::UNSPECIFIED,
            ..peer_open()
        };
        assert_eq!(fsm.check_open(&open).unwrap_err().subcode, 3);
        // Same identifier as ours: an error for iBGP only (RFC 6286).
        let same = Open {
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            ..peer_open()
        };
        assert!(fsm.check_open(&same).is_ok());
        let ibgp = Fsm::new(FsmConfig {
            remote_as: 65001,
            ..config()
        });
        let same = Open {
            my_as: 65001,
            capabilities: vec![Capability::FourOctetAs(65001)],
            ..same
        };
        assert_eq!(ibgp.check_open(&same).unwrap_err().subcode, 3);
    }

    #[test]
    fn hold_time_of_1_or_2_gets_notification_2_6_and_0_is_accepted() {
        let fsm = Fsm::new(config());
        for h in [1, 2] {
            let open = Open {
                hold_time: h,
                ..peer_open()
            };
            assert_eq!(fsm.check_open(&open).unwrap_err().subcode, 6);
        }
        let neg = fsm
            .check_open(&Open {
                hold_time: 0,
                ..peer_open()
            })
            .unwrap();
        assert_eq!((neg.hold_time, neg.keepalive), (0, 0));
        let neg = fsm
            .check_open(&Open {
                hold_time: 3,
                ..peer_open()
            })
            .unwrap();
        assert_eq!((neg.hold_time, neg.keepalive), (3, 1));
    }

    #[test]
    fn zero_hold_time_runs_no_hold_or_keepalive_timer() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(
            Event::BgpOpen(Open {
                hold_time: 0,
                ..peer_open()
            }),
            now(),
        );
        assert!(a.contains(&Action::StopTimer(Timer::Hold)));
        assert!(
            !a.iter()
                .any(|a| matches!(a, Action::StartTimer(Timer::Keepalive, _)))
        );
        let a = fsm.handle(Event::KeepAliveMsg, now());
        assert!(!a.iter().any(|a| matches!(a, Action::StartTimer(Timer::Hold, _))));
    }

    #[test]
    fn no_common_family_gets_notification_2_7() {
        let fsm = Fsm::new(FsmConfig {
            families: vec![Family::IPV6_UNICAST],
            ..config()
        });
        let n = fsm.check_open(&peer_open()).unwrap_err();
        assert_eq!((n.code, n.subcode), (2, 7));
        assert_eq!(&n.data[..], &[1, 4, 0, 2, 0, 1]);
    }

    #[test]
    fn peer_without_mp_capability_gets_ipv4_unicast() {
        let fsm = Fsm::new(config());
        let open = Open {
            capabilities: vec![],
            ..peer_open()
        };
        let neg = fsm.check_open(&open).unwrap();
        assert_eq!(neg.families, vec![Family::IPV4_UNICAST]);
        assert!(!neg.four_octet_as);
        assert!(!neg.route_refresh);
    }

    #[test]
    fn unknown_capabilities_are_ignored() {
        let fsm = Fsm::new(config());
        let mut open = peer_open();
        open.capabilities.push(Capability::Unknown {
            code: 73,
            value: Bytes::from_static(b"x"),
        });
        assert!(fsm.check_open(&open).is_ok());
    }

    #[test]
    fn negotiation_records_graceful_restart_and_extended_messages() {
        let fsm = Fsm::new(FsmConfig {
            extended_message: true,
            ..config()
        });
        let mut open = peer_open();
        let gr = GracefulRestart {
            restarting: true,
            notification: false,
            restart_time: 120,
            families: vec![(Family::IPV4_UNICAST, true)],
        };
        open.capabilities.push(Capability::GracefulRestart(gr.clone()));
        open.capabilities.push(Capability::ExtendedMessage);
        let neg = fsm.check_open(&open).unwrap();
        assert_eq!(neg.peer_graceful_restart, Some(gr));
        assert!(neg.extended_message);
        assert!(neg.capability_names().contains(&"graceful_restart".to_string()));
    }

    #[test]
    fn graceful_restart_capability_is_advertised_when_configured() {
        let gr = GracefulRestart {
            restarting: true,
            notification: false,
            restart_time: 90,
            families: vec![(Family::IPV4_UNICAST, true)],
        };
        let c = FsmConfig {
            graceful_restart: Some(gr.clone()),
            ..config()
        };
        assert!(c.open().capabilities.contains(&Capability::GracefulRestart(gr)));
    }

    #[test]
    fn hold_timer_expiry_sends_notification_4_0() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::HoldTimerExpires, now());
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert!(a.contains(&Action::CloseConnection));
        assert!(a.contains(&Action::SessionDown(DownReason::HoldTimerExpired)));
        assert_eq!(fsm.state(), State::Idle);
        // The session comes back by itself after the IdleHold delay.
        assert!(a.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(1))));
        let a = fsm.handle(Event::IdleHoldTimerExpires, now());
        assert!(a.contains(&Action::Connect));
    }

    #[test]
    fn hold_timer_expiry_in_opensent_sends_notification_4_0() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(Event::HoldTimerExpires, now());
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn keepalive_timer_sends_keepalive_and_rearms() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::KeepaliveTimerExpires, now());
        assert_eq!(
            a,
            vec![
                Action::SendKeepalive,
                Action::StartTimer(Timer::Keepalive, Duration::from_secs(20))
            ]
        );
    }

    #[test]
    fn messages_in_established_restart_the_hold_timer() {
        let mut fsm = established(config());
        for e in [Event::KeepAliveMsg, Event::UpdateMsg, Event::RouteRefresh] {
            let a = fsm.handle(e, now());
            assert_eq!(a, vec![Action::StartTimer(Timer::Hold, Duration::from_secs(60))]);
        }
        assert_eq!(fsm.state(), State::Established);
    }

    #[test]
    fn manual_stop_in_established_sends_cease_6_2_with_shutdown_communication() {
        let mut fsm = established(config());
        let a = fsm.handle(
            Event::ManualStop {
                subcode: cease::ADMINISTRATIVE_SHUTDOWN,
                reason: Some("bye".into()),
            },
            now(),
        );
        let n = a
            .iter()
            .find_map(|a| match a {
                Action::SendNotification(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!((n.code, n.subcode, &n.data[..]), (6, 2, &b"\x03bye"[..]));
        assert_eq!(
            describe(&n),
            "NOTIFICATION Cease/Administrative Shutdown (6/2): bye"
        );
        assert_eq!(fsm.state(), State::Idle);
        // Stopped by hand: no automatic restart.
        assert!(
            !a.iter()
                .any(|a| matches!(a, Action::StartTimer(Timer::IdleHold, _)))
        );
        assert!(fsm.handle(Event::IdleHoldTimerExpires, now()).is_empty());
        assert!(fsm.handle(Event::ManualStart, now()).contains(&Action::Connect));
    }

    #[test]
    fn manual_stop_before_open_sends_no_notification() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        let a = fsm.handle(
            Event::ManualStop {
                subcode: 2,
                reason: None,
            },
            now(),
        );
        assert_eq!(sent_notification(&a), None);
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn max_prefix_automatic_stop_sends_cease_6_1() {
        let mut fsm = established(config());
        let a = fsm.handle(
            Event::AutomaticStop {
                subcode: cease::MAX_PREFIXES,
            },
            now(),
        );
        assert_eq!(sent_notification(&a), Some((6, 1)));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn notification_received_closes_without_answering() {
        let mut fsm = established(config());
        let n = Notification::cease(cease::ADMINISTRATIVE_RESET);
        let a = fsm.handle(Event::NotifMsg(n.clone()), now());
        assert_eq!(sent_notification(&a), None);
        assert!(a.contains(&Action::SessionDown(DownReason::NotificationReceived(n))));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn connection_loss_in_established_reports_session_down() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::TcpConnectionFails, now());
        assert!(a.contains(&Action::SessionDown(DownReason::ConnectionLost)));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn connection_loss_in_opensent_goes_back_to_active() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(Event::TcpConnectionFails, now());
        assert_eq!(fsm.state(), State::Active);
        assert!(a.contains(&Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5))));
    }

    #[test]
    fn update_in_opensent_is_fsm_error_5_1() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(Event::UpdateMsg, now());
        assert_eq!(sent_notification(&a), Some((5, 1)));
    }

    #[test]
    fn update_in_openconfirm_is_fsm_error_5_2() {
        let mut fsm = Fsm::new(config());
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        fsm.handle(Event::BgpOpen(peer_open()), now());
        let a = fsm.handle(Event::UpdateMsg, now());
        assert_eq!(sent_notification(&a), Some((5, 2)));
    }

    #[test]
    fn second_open_in_established_is_fsm_error_5_3() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::BgpOpen(peer_open()), now());
        assert_eq!(sent_notification(&a), Some((5, 3)));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn update_error_sends_its_notification_and_resets() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::UpdateMsgErr(notification(3, 1)), now());
        assert_eq!(sent_notification(&a), Some((3, 1)));
        assert_eq!(fsm.state(), State::Idle);
    }

    #[test]
    fn header_error_sends_its_notification() {
        let mut fsm = established(config());
        let a = fsm.handle(Event::BgpHeaderErr(notification(1, 2)), now());
        assert_eq!(sent_notification(&a), Some((1, 2)));
    }

    #[test]
    fn delay_open_waits_then_sends_open() {
        let mut fsm = Fsm::new(FsmConfig {
            delay_open: Some(Duration::from_secs(2)),
            ..config()
        });
        fsm.handle(Event::ManualStart, now());
        let a = fsm.handle(Event::TcpConnectionAcknowledged, now());
        assert!(a.contains(&Action::StartTimer(Timer::DelayOpen, Duration::from_secs(2))));
        assert!(!a.iter().any(|a| matches!(a, Action::SendOpen(_))));
        assert_eq!(fsm.state(), State::Connect);
        let a = fsm.handle(Event::DelayOpenTimerExpires, now());
        assert!(a.iter().any(|a| matches!(a, Action::SendOpen(_))));
        assert_eq!(fsm.state(), State::OpenSent);
    }

    #[test]
    fn open_during_delay_open_answers_with_open_and_keepalive() {
        let mut fsm = Fsm::new(FsmConfig {
            delay_open: Some(Duration::from_secs(2)),
            ..config()
        });
        fsm.handle(Event::ManualStart, now());
        fsm.handle(Event::TcpConnectionAcknowledged, now());
        let a = fsm.handle(Event::BgpOpen(peer_open()), now());
        let open_at = a.iter().position(|a| matches!(a, Action::SendOpen(_))).unwrap();
        let ka_at = a.iter().position(|a| *a == Action::SendKeepalive).unwrap();
        assert!(open_at < ka_at);
        assert_eq!(fsm.state(), State::OpenConfirm);
    }

    #[test]
    fn collision_keeps_connection_of_higher_bgp_id() {
        let low = Ipv4Addr::new(1, 1, 1, 1);
        let high = Ipv4Addr::new(2, 2, 2, 2);
        // We are higher: our outgoing connection survives.
        assert_eq!(
            resolve_collision(high, low, State::OpenConfirm, true),
            Collision::CloseNew
        );
        assert_eq!(
            resolve_collision(high, low, State::OpenConfirm, false),
            Collision::CloseExisting
        );
        // We are lower: the peer's connection (incoming to us) survives.
        assert_eq!(
            resolve_collision(low, high, State::OpenSent, true),
            Collision::CloseExisting
        );
        assert_eq!(
            resolve_collision(low, high, State::OpenSent, false),
            Collision::CloseNew
        );
    }

    #[test]
    fn collision_with_established_session_closes_the_newcomer() {
        let low = Ipv4Addr::new(1, 1, 1, 1);
        let high = Ipv4Addr::new(2, 2, 2, 2);
        assert_eq!(
            resolve_collision(low, high, State::Established, true),
            Collision::CloseNew
        );
    }

    #[test]
    fn describe_names_the_error() {
        assert_eq!(
            describe(&notification(4, 0)),
            "NOTIFICATION Hold Timer Expired (4/0)"
        );
        assert_eq!(
            describe(&notification(6, 1)),
            "NOTIFICATION Cease/Maximum Number of Prefixes Reached (6/1)"
        );
    }

    #[test]
    fn shutdown_communication_is_cut_at_255_bytes_on_a_char_boundary() {
        let long = "é".repeat(200);
        let n = Notification::cease_with(cease::ADMINISTRATIVE_SHUTDOWN, Some(&long));
        assert_eq!(n.data[0] as usize, n.data.len() - 1);
        assert!(n.data.len() <= 256);
        assert!(std::str::from_utf8(&n.data[1..]).is_ok());
    }
}
