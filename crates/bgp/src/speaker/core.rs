//! The speaker's decisions, apart from its I/O: which sessions a reload resets, keeps or asks
//! for a route refresh; what graceful restart keeps, and for how long; when the MRAI lets an
//! Adj-RIB-Out diff go out; what reaches the kernel.
//!
//! [`Core::handle`] takes one [`Input`] and the time, and returns the [`Output`]s for the
//! driver (`speaker/mod.rs`) to carry out: sessions to start and stop, messages to send, route
//! changes to install. It reads no clock and touches no socket, so a run recorded as inputs
//! (`record.rs`) replays to the same outputs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{Originate, PeerConfig, PrefixFilter, SpeakerConfig};
use crate::control::{self, NotificationCounts, PeerStatus, RejectedStatus, RouteStatus, Routes, Status};
use crate::fsm::{FsmConfig, State};
use crate::gr::{self, PeerAction, PeerEvent, PeerRestart};
use crate::kernel;
use crate::rib::{PeerIdx, PeerPolicy, Rib, RibConfig, RouteChange, SessionInfo};
use crate::session::{FromSession, SessionEvent, SessionParams};
use crate::wire::{CeaseSubcode, Family, SessionOptions};

/// What the core reacts to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// The first input: the configuration, and whether routes of ours were in the kernel (left
    /// from before a restart).
    Start {
        config: SpeakerConfig,
        routes_found: bool,
        /// Emit [`Output::Changes`] (the speaker is embedded and listens).
        #[serde(default)]
        report_changes: bool,
    },
    /// A new configuration.
    Reload(SpeakerConfig),
    /// Reports from sessions, applied together before any peer is flushed.
    Sessions(Vec<FromSession>),
    /// The time [`Core::next_wake`] asked for has come.
    Timer,
    /// Stop everything.
    Shutdown,
}

/// What the driver must do, in order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Start a session task (and set the peer's TCP MD5 key on the listeners).
    Spawn(Box<SessionParams>),
    /// Stop the peer's session with this Cease subcode and forget it (directory entry, MD5 key).
    Remove {
        peer: IpAddr,
        subcode: CeaseSubcode,
        reason: Option<String>,
    },
    /// Stop the session with a NOTIFICATION (automatic stop; it may start again).
    Stop { peer: IpAddr, subcode: CeaseSubcode },
    /// Close without a NOTIFICATION (our own graceful restart) and end the task.
    Abort { peer: IpAddr },
    /// Encoded UPDATEs for an Established session.
    Send {
        peer: IpAddr,
        #[serde(serialize_with = "hex_messages")]
        messages: Vec<Bytes>,
    },
    /// Ask the peer to send its routes again (RFC 2918).
    Refresh { peer: IpAddr, family: Family },
    /// Best-route changes, for whoever embeds the speaker.
    Changes(Vec<RouteChange>),
    /// Best-route changes for the kernel (without the `no_install` prefixes).
    Install(Vec<RouteChange>),
    /// Remove routes of ours this run did not install: the restart time is over.
    PurgeForeignRoutes,
    /// The speaker ends: wait for the sessions, then remove our kernel routes unless they
    /// are kept for our graceful restart.
    Finish { remove_routes: bool },
}

fn hex_messages<S: serde::Serializer>(messages: &[Bytes], s: S) -> Result<S::Ok, S::Error> {
    use std::fmt::Write;
    s.collect_seq(messages.iter().map(|m| {
        m.iter().fold(String::with_capacity(m.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }))
}

/// One peer as the core sees it: no channel, no task.
struct Peer {
    idx: PeerIdx,
    config: PeerConfig,
    generation: u64,
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

impl Peer {
    fn set_state(&mut self, state: State, now: Instant) {
        if self.state != state {
            self.state = state;
            self.state_since = now;
        }
    }
}

pub struct Core {
    config: SpeakerConfig,
    rib: Rib,
    /// By address: every walk over the peers goes in address order, so a replay's outputs come
    /// in the recorded order.
    peers: BTreeMap<IpAddr, Peer>,
    /// Whoever embeds the speaker wants the best-route changes ([`Output::Changes`]).
    report_changes: bool,
    next_generation: u64,
    /// We found our own routes in the kernel at start: we are a restarting speaker.
    restarted: bool,
    /// When a restarting speaker's leftover kernel routes are removed.
    purge_foreign_at: Option<Instant>,
}

impl Core {
    /// The core for `config`, and what to do first: sessions to start, and leftover kernel
    /// routes to remove unless they are kept for our graceful restart. `routes_found`: routes
    /// of ours were in the kernel at start; `report_changes`: emit [`Output::Changes`].
    pub fn start(
        config: SpeakerConfig,
        routes_found: bool,
        report_changes: bool,
        now: Instant,
    ) -> (Core, Vec<Output>) {
        let mut rib = Rib::new(rib_config(&config));
        rib.set_no_transit(config.no_transit.clone());
        let mut out = Vec::new();
        let (restarted, purge_foreign_at) =
            match gr::on_start(graceful(&config), routes_found, restart_times(&config)) {
                gr::Start::Fresh => (false, None),
                // Routes not relearned within the restart time are stale (RFC 4724 §4.1).
                gr::Start::Restarting { purge_after } => (true, Some(now + purge_after)),
                gr::Start::PurgeNow => {
                    out.push(Output::PurgeForeignRoutes);
                    (false, None)
                }
            };
        let mut core = Core {
            config: config.clone(),
            rib,
            peers: BTreeMap::new(),
            report_changes,
            next_generation: 1,
            restarted,
            purge_foreign_at,
        };
        for route in &config.originate {
            core.rib.originate(route);
        }
        for p in &config.peers {
            core.add_peer(p.clone(), now, &mut out);
        }
        (core, out)
    }

    /// Reacts to `input` at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start { .. } => tracing::warn!("the speaker core is already started"),
            Input::Reload(config) => {
                self.reload(config, now, &mut out);
                self.after_batch(now, &mut out);
            }
            Input::Sessions(events) => {
                for ev in events {
                    self.session_event(ev, now, &mut out);
                }
                self.after_batch(now, &mut out);
            }
            Input::Timer => {
                if self.purge_foreign_at.is_some_and(|d| d <= now) {
                    self.purge_foreign_at = None;
                    out.push(Output::PurgeForeignRoutes);
                }
                for p in self.peers.values_mut() {
                    if p.stale_deadline.is_some_and(|d| d <= now) {
                        p.stale_deadline = None;
                        let actions = p.restart.handle(PeerEvent::StaleTimerExpires);
                        carry_out(&mut self.rib, p, actions, now);
                    }
                    if p.flush_at.is_some_and(|d| d <= now) {
                        p.flush_at = None;
                    }
                }
                self.after_batch(now, &mut out);
            }
            Input::Shutdown => self.shutdown(&mut out),
        }
        out
    }

    /// Whether we are a restarting speaker (our routes from before were kept).
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// When the core next wants an [`Input::Timer`].
    pub fn next_wake(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| [p.flush_at, p.stale_deadline])
            .chain([self.purge_foreign_at])
            .flatten()
            .min()
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

    fn add_peer(&mut self, p: PeerConfig, now: Instant, out: &mut Vec<Output>) {
        let idx = self.rib.add_peer(self.policy(&p));
        let generation = self.next_generation;
        self.next_generation += 1;
        out.push(Output::Spawn(Box::new(SessionParams {
            fsm: self.fsm_config(&p),
            ebgp: p.remote_as != p.local_as(&self.config),
            peer: p.clone(),
            generation,
        })));
        let peer = Peer {
            idx,
            config: p.clone(),
            generation,
            state: State::Idle,
            state_since: now,
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
        self.peers.insert(p.address, peer);
    }

    /// Stops a session and forgets the peer (its routes are withdrawn).
    fn remove_peer(&mut self, address: IpAddr, subcode: CeaseSubcode, out: &mut Vec<Output>) {
        if let Some(p) = self.peers.remove(&address) {
            out.push(Output::Remove {
                peer: address,
                subcode,
                reason: None,
            });
            self.rib.remove_peer(p.idx);
        }
    }

    fn session_event(&mut self, ev: FromSession, now: Instant, out: &mut Vec<Output>) {
        let Some(p) = self.peers.get_mut(&ev.peer) else {
            return;
        };
        if p.generation != ev.generation {
            return; // from a session that was replaced
        }
        let idx = p.idx;
        match ev.event {
            SessionEvent::State(s) => p.set_state(s, now),
            SessionEvent::Established {
                negotiated,
                local_address,
                local_alt_address,
                options,
            } => {
                p.set_state(State::Established, now);
                p.established_at = Some(now);
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
                carry_out(&mut self.rib, p, actions, now);
            }
            SessionEvent::Updates(updates) => {
                let mut exceeded = false;
                for received in updates {
                    let outcome = self.rib.apply_update(idx, received.update, received.treatment);
                    if let Some(nh) = outcome.own_next_hop {
                        tracing::warn!(peer = %ev.peer, next_hop = %nh,
                            "UPDATE names our own address as next hop; its routes are ignored (RFC 4271 §6.3)");
                    }
                    exceeded |= outcome.max_prefixes_exceeded;
                    if outcome.end_of_rib.is_some() {
                        let stale_left = self.rib.has_stale(idx);
                        let actions = p.restart.handle(PeerEvent::EndOfRib { stale_left });
                        carry_out(&mut self.rib, p, actions, now);
                    }
                }
                if exceeded {
                    tracing::warn!(peer = %ev.peer, "maximum prefixes exceeded");
                    out.push(Output::Stop {
                        peer: ev.peer,
                        subcode: CeaseSubcode::MaxPrefixes,
                    });
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
                carry_out(&mut self.rib, p, actions, now);
            }
            SessionEvent::Ended => p.set_state(State::Idle, now),
        }
    }

    /// Pending Adj-RIB-Out changes to peers (as their MRAI allows) and route changes to the
    /// kernel.
    fn after_batch(&mut self, now: Instant, out: &mut Vec<Output>) {
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
            let (messages, errors) = diff.encode(options);
            for e in errors {
                tracing::error!(peer = %p.config.address, "cannot encode UPDATE: {e}");
            }
            if !messages.is_empty() {
                out.push(Output::Send {
                    peer: p.config.address,
                    messages,
                });
            }
        }
        let changes = self.rib.take_changes();
        if !changes.is_empty() {
            if self.report_changes {
                out.push(Output::Changes(changes.clone()));
            }
            if self.config.install_routes {
                out.push(Output::Install(kernel::without_no_install(
                    changes,
                    &self.config.no_install,
                )));
            }
        }
    }

    pub fn status(&self, now: Instant) -> Status {
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
                    uptime_secs: p.established_at.map_or(0, |t| (now - t).as_secs()),
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
                    state_secs: (now - p.state_since).as_secs(),
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

    pub fn routes(&self) -> Routes {
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

    fn reload(&mut self, new: SpeakerConfig, now: Instant, out: &mut Vec<Output>) {
        let old = std::mem::replace(&mut self.config, new.clone());
        let identity_changed = old.router_id != new.router_id || old.local_as != new.local_as;
        if rib_config(&old) != rib_config(&new) {
            self.rib.set_config(rib_config(&new));
        }
        // Originated prefixes.
        let old_o: HashMap<IpNet, &Originate> = old.originate.iter().map(|o| (o.prefix, o)).collect();
        let mut withdrawn: Vec<IpNet> = old_o
            .keys()
            .filter(|p| !new.originate.iter().any(|o| o.prefix == **p))
            .copied()
            .collect();
        withdrawn.sort();
        for p in withdrawn {
            self.rib.withdraw_local(p);
        }
        for o in &new.originate {
            if old_o.get(&o.prefix) != Some(&o) {
                self.rib.originate(o);
            }
        }
        self.rib.set_no_transit(new.no_transit.clone());
        if old.no_install != new.no_install && new.install_routes {
            let fix = kernel::no_install_changed(&self.rib.best_routes(), &old.no_install, &new.no_install);
            if !fix.is_empty() {
                out.push(Output::Install(fix));
            }
        }
        // Peers, in address order.
        let wanted: HashMap<IpAddr, &PeerConfig> = new.peers.iter().map(|p| (p.address, p)).collect();
        let current: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in current {
            match wanted.get(&addr) {
                None => self.remove_peer(addr, CeaseSubcode::PeerDeconfigured, out),
                Some(&w) => {
                    let p = &self.peers[&addr];
                    if identity_changed || session_changed(&p.config, w) {
                        self.remove_peer(addr, CeaseSubcode::OtherConfigurationChange, out);
                        self.add_peer(w.clone(), now, out);
                    } else if p.config != *w {
                        let import_changed = p.config.import != w.import;
                        let idx = p.idx;
                        self.rib.set_policy(idx, self.policy(w));
                        let p = self.peers.get_mut(&addr).expect("peer exists");
                        p.config = w.clone();
                        if import_changed {
                            for family in w.families() {
                                out.push(Output::Refresh { peer: addr, family });
                            }
                        }
                    }
                }
            }
        }
        for w in &new.peers {
            if !self.peers.contains_key(&w.address) {
                self.add_peer(w.clone(), now, out);
            }
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Output>) {
        let preserve = graceful(&self.config);
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for peer in peers {
            out.push(if preserve {
                // Our own graceful restart: close without NOTIFICATION so peers keep our routes.
                Output::Abort { peer }
            } else {
                Output::Remove {
                    peer,
                    subcode: CeaseSubcode::AdministrativeShutdown,
                    reason: Some("caracal shutting down".into()),
                }
            });
        }
        self.peers.clear();
        out.push(Output::Finish {
            remove_routes: !preserve,
        });
    }
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
pub(super) fn graceful(c: &SpeakerConfig) -> bool {
    gr::preserves(c.install_routes, restart_times(c))
}

pub(super) fn restart_times(c: &SpeakerConfig) -> impl Iterator<Item = u16> + '_ {
    c.peers.iter().map(|p| p.graceful_restart_time)
}

/// Carries out the graceful-restart decisions for one peer (receiving speaker).
fn carry_out(rib: &mut Rib, p: &mut Peer, actions: Vec<PeerAction>, now: Instant) {
    for a in actions {
        match a {
            PeerAction::KeepStale => rib.peer_down(p.idx, true),
            PeerAction::DropRoutes => rib.peer_down(p.idx, false),
            PeerAction::StartStaleTimer(wait) => p.stale_deadline = Some(now + wait),
            PeerAction::StopStaleTimer => p.stale_deadline = None,
            PeerAction::PurgeStale => rib.purge_stale(p.idx, None),
        }
    }
}

/// Whether a peer's change needs a new session, as opposed to new policy on the same one.
/// Every field is named here, so a field added to [`PeerConfig`] must be sorted into one kind
/// or the other before this compiles; the policy ones are blanked and the rest compared.
pub(super) fn session_changed(a: &PeerConfig, b: &PeerConfig) -> bool {
    fn session_part(p: &PeerConfig) -> PeerConfig {
        let PeerConfig {
            address: _,
            remote_as: _,
            local_as: _,
            port: _,
            hold_time: _,
            passive: _,
            source_address: _,
            ebgp_multihop: _,
            password: _,
            graceful_restart_time: _,
            connect_retry_time: _,
            families: _,
            // Policy: applied to the running session.
            max_prefixes: _,
            import: _,
            export: _,
            next_hop_self: _,
            route_reflector_client: _,
            mrai_ms: _,
        } = p;
        PeerConfig {
            max_prefixes: None,
            import: Vec::new(),
            export: Vec::new(),
            next_hop_self: false,
            route_reflector_client: false,
            mrai_ms: None,
            ..p.clone()
        }
    }
    session_part(a) != session_part(b)
}
