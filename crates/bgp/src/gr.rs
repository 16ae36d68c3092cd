//! Graceful restart (RFC 4724, with the N bit of RFC 8538) in both roles, as plain decisions
//! over data: no clocks, no sockets, no RIB. The driver (`speaker.rs`) feeds events, carries out
//! the returned actions and runs the one timer; the RIB holds the stale routes.
//!
//! **Receiving speaker** — a peer restarts and we keep its routes. One [`PeerRestart`] per peer:
//!
//! ```text
//!            down after Established, kept           back up, stale routes left
//!   Normal ─────────────────────────────► Restarting ─────────────────────────► AwaitingEoR
//!    ▲  ▲                                     │                                    │
//!    │  └──────── stale timer expires ────────┘                                    │
//!    └─────────── End-of-RIB with nothing stale left, or the stale timer expires ──┘
//! ```
//!
//! From any state unless one is named:
//!
//! | event                                     | actions                                 | next        |
//! |-------------------------------------------|-----------------------------------------|-------------|
//! | Established, nothing stale left           | StopStaleTimer                          | Normal      |
//! | Established, stale left (F bit set)       | StartStaleTimer(restart time or 120 s)  | AwaitingEoR |
//! | SessionDown after Established, kept       | KeepStale, StartStaleTimer(restart time)| Restarting  |
//! | SessionDown after Established, not kept   | DropRoutes, StopStaleTimer              | Normal      |
//! | SessionDown before Established            | —                                       | unchanged   |
//! | End-of-RIB in AwaitingEoR, nothing left   | StopStaleTimer                          | Normal      |
//! | StaleTimerExpires                         | PurgeStale                              | Normal      |
//!
//! A session that ends is kept when the peer advertised a restart time and the session ended
//! by the connection dropping (RFC 4724 §4.2); with the N bit exchanged both ways also when
//! the hold timer expired or the peer sent a NOTIFICATION other than Hard Reset (RFC 8538
//! §4). A session that never reached Established changes nothing.
//!
//! **Restarting speaker** — this process restarts and peers keep our routes ([`on_start`],
//! [`our_capability`]):
//!
//! ```text
//!   start ─┬─ routes of ours in the kernel, GR configured ─► Restarting: keep them; OPENs carry
//!          │                                                 the R bit; after the longest restart
//!          │                                                 time, purge those not relearned
//!          ├─ routes of ours in the kernel, no GR ─────────► purge them now
//!          └─ none ────────────────────────────────────────► Fresh
//!   shutdown ─┬─ GR configured ─► close without NOTIFICATION, keep the kernel routes
//!             └─ otherwise ─────► Cease 6/2 to every peer, remove the kernel routes
//! ```
//!
//! With the N bit exchanged, a stop that must clear the peer's copy of our routes is sent as a
//! Hard Reset (RFC 8538 §5): [`outgoing_cease`].

use std::time::Duration;

use crate::fsm::DownReason;
use crate::wire::{CeaseSubcode, Family, GracefulRestart, Notification};

/// How long a peer that came back may take to send End-of-RIB when it advertises no restart
/// time of its own (RFC 4724 §4.2 leaves this "stale routes" time to the implementation).
pub const STALE_PATH_TIME: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- receiving speaker

/// Where a peer is in its restart, seen from us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerState {
    #[default]
    Normal,
    /// The session dropped; the peer's routes are kept, stale, until the restart time ends.
    Restarting,
    /// The session is back; stale routes go at End-of-RIB or when the timer ends.
    AwaitingEndOfRib,
}

/// Receiving-speaker events for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent<'a> {
    /// The session reached Established with this capability from the peer (if any);
    /// `stale_left` says whether the RIB still holds stale routes of it after the families the
    /// peer did not preserve were dropped.
    Established {
        peer: Option<&'a GracefulRestart>,
        stale_left: bool,
    },
    /// The session ended.
    SessionDown {
        reason: &'a DownReason,
        was_established: bool,
    },
    /// An End-of-RIB arrived; `stale_left` as for `Established`.
    EndOfRib {
        stale_left: bool,
    },
    StaleTimerExpires,
}

/// What the driver does, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Keep the peer's routes, marked stale (`Rib::peer_down(.., true)`).
    KeepStale,
    /// Remove the peer's routes now (`Rib::peer_down(.., false)`).
    DropRoutes,
    /// Start (or restart) the stale timer.
    StartStaleTimer(Duration),
    StopStaleTimer,
    /// Remove the peer's stale routes (`Rib::purge_stale(.., None)`).
    PurgeStale,
}

/// The receiving-speaker state machine of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRestart {
    state: PeerState,
    /// The restart time the peer advertised on its last session, when not 0.
    restart_time: Option<u16>,
    /// Both sides set the N bit on the last session (RFC 8538).
    notification: bool,
}

impl PeerRestart {
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The restart time the peer advertised on its last session, when not 0.
    pub fn restart_time(&self) -> Option<u16> {
        self.restart_time
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: PeerEvent<'_>) -> Vec<PeerAction> {
        use PeerAction as A;
        match event {
            PeerEvent::Established { peer, stale_left } => {
                self.restart_time = peer.map(|g| g.restart_time).filter(|t| *t > 0);
                self.notification = peer.is_some_and(|g| g.notification);
                if stale_left {
                    self.state = PeerState::AwaitingEndOfRib;
                    let wait = self
                        .restart_time
                        .map_or(STALE_PATH_TIME, |t| Duration::from_secs(t.into()));
                    vec![A::StartStaleTimer(wait.max(Duration::from_secs(1)))]
                } else {
                    self.state = PeerState::Normal;
                    vec![A::StopStaleTimer]
                }
            }
            PeerEvent::SessionDown {
                was_established: false,
                ..
            } => vec![],
            PeerEvent::SessionDown { reason, .. } => match self.restart_time.filter(|_| self.keeps(reason)) {
                Some(t) => {
                    self.state = PeerState::Restarting;
                    vec![
                        A::KeepStale,
                        A::StartStaleTimer(Duration::from_secs(t.max(1).into())),
                    ]
                }
                None => {
                    self.state = PeerState::Normal;
                    vec![A::DropRoutes, A::StopStaleTimer]
                }
            },
            PeerEvent::EndOfRib { stale_left: false } if self.state == PeerState::AwaitingEndOfRib => {
                self.state = PeerState::Normal;
                vec![A::StopStaleTimer]
            }
            PeerEvent::EndOfRib { .. } => vec![],
            PeerEvent::StaleTimerExpires => {
                self.state = PeerState::Normal;
                vec![A::PurgeStale]
            }
        }
    }

    /// Whether a session that ended this way keeps the peer's routes (RFC 4724 §4.2, RFC 8538
    /// §4), given that the peer advertised a restart time.
    fn keeps(&self, reason: &DownReason) -> bool {
        match reason {
            DownReason::ConnectionLost => true,
            // Expiry makes us send NOTIFICATION 4/0: RFC 4724's procedures do not cover a
            // session ended by a NOTIFICATION unless the N bit was exchanged (RFC 8538 §1, §4).
            DownReason::HoldTimerExpired => self.notification,
            DownReason::NotificationReceived(n) => self.notification && !n.is_hard_reset(),
            DownReason::Stopped(_) | DownReason::NotificationSent(_) => false,
        }
    }
}

/// The families listed in the peer's capability: those we keep as stale if the session drops
/// (a capability without families means "aware, but keep nothing", RFC 4724 §4.2).
pub fn graceful_families(peer: Option<&GracefulRestart>) -> Vec<Family> {
    peer.map(|g| g.families.iter().map(|(f, _)| *f).collect())
        .unwrap_or_default()
}

/// The families whose stale routes survive the peer's re-establishment: those with the F bit
/// set in an OPEN that carries the R bit (RFC 4724 §4.2).
pub fn preserved_families(peer: Option<&GracefulRestart>) -> Vec<Family> {
    peer.filter(|g| g.restarting)
        .map(|g| g.families.iter().filter(|(_, f)| *f).map(|(f, _)| *f).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- restarting speaker

/// Whether this speaker does graceful restart itself: it installs routes and some peer is
/// configured with a restart time.
pub fn preserves(install_routes: bool, restart_times: impl IntoIterator<Item = u16>) -> bool {
    install_routes && restart_times.into_iter().any(|t| t > 0)
}

/// What to do at start with the routes of ours found in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// None found: nothing to do.
    Fresh,
    /// Found, and we do graceful restart: keep them, advertise the R bit, and purge the ones
    /// not relearned after this long (the longest restart time, RFC 4724 §4.1).
    Restarting { purge_after: Duration },
    /// Found, but we do not do graceful restart: purge them now.
    PurgeNow,
}

pub fn on_start(preserves: bool, found_routes: bool, restart_times: impl IntoIterator<Item = u16>) -> Start {
    match (found_routes, preserves) {
        (false, _) => Start::Fresh,
        (true, true) => Start::Restarting {
            purge_after: Duration::from_secs(restart_times.into_iter().max().unwrap_or(0).into()),
        },
        (true, false) => Start::PurgeNow,
    }
}

/// Our capability towards a peer. Always advertised, so that peers know we keep their routes
/// when they restart (receiving speaker); a restart time of 0 asks them not to keep ours. The
/// R bit says we restarted; the F bits that we kept forwarding state (routes in the kernel).
pub fn our_capability(
    restarting: bool,
    install_routes: bool,
    restart_time: u16,
    families: &[Family],
) -> GracefulRestart {
    GracefulRestart {
        restarting: restarting && restart_time > 0,
        // RFC 8538: a NOTIFICATION other than Hard Reset keeps the routes too.
        notification: true,
        restart_time,
        families: families
            .iter()
            .map(|f| (*f, install_routes && restart_time > 0))
            .collect(),
    }
}

// ---------------------------------------------------------------- the N bit (RFC 8538)

/// Both sides set the N bit: a NOTIFICATION no longer ends graceful restart by itself, so one
/// meant to drop the routes must be a Hard Reset.
pub fn notification_bit(ours: Option<&GracefulRestart>, theirs: Option<&GracefulRestart>) -> bool {
    ours.is_some_and(|g| g.notification) && theirs.is_some_and(|g| g.notification)
}

/// The Cease this speaker sends to stop a session: wrapped in a Hard Reset (6/9, the original
/// code, subcode and data in its data) when the N bit was exchanged and the subcode is one RFC
/// 8538 §5 says should clear the peer's routes (maximum prefixes, administrative shutdown, peer
/// de-configured); as it is otherwise.
pub fn outgoing_cease(notification_bit: bool, subcode: CeaseSubcode, reason: Option<&str>) -> Notification {
    let n = Notification::cease_with(subcode, reason);
    let clears = matches!(
        subcode,
        CeaseSubcode::MaxPrefixes | CeaseSubcode::AdministrativeShutdown | CeaseSubcode::PeerDeconfigured
    );
    if notification_bit && clears {
        Notification::hard_reset(&n)
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerAction as A;

    fn cap(restart_time: u16, notification: bool) -> GracefulRestart {
        GracefulRestart {
            restarting: false,
            notification,
            restart_time,
            families: vec![(Family::IPV4_UNICAST, true)],
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn up(gr: &mut PeerRestart, peer: Option<&GracefulRestart>, stale_left: bool) -> Vec<PeerAction> {
        gr.handle(PeerEvent::Established { peer, stale_left })
    }

    fn down(gr: &mut PeerRestart, reason: DownReason) -> Vec<PeerAction> {
        gr.handle(PeerEvent::SessionDown {
            reason: &reason,
            was_established: true,
        })
    }

    #[test]
    fn connection_lost_keeps_the_routes_for_the_restart_time() {
        let mut gr = PeerRestart::default();
        assert_eq!(up(&mut gr, Some(&cap(90, false)), false), vec![A::StopStaleTimer]);
        assert_eq!(
            down(&mut gr, DownReason::ConnectionLost),
            vec![A::KeepStale, A::StartStaleTimer(secs(90))]
        );
        assert_eq!(gr.state(), PeerState::Restarting);
    }

    #[test]
    fn peer_back_with_stale_routes_waits_for_end_of_rib_then_stops_the_timer() {
        let mut gr = PeerRestart::default();
        up(&mut gr, Some(&cap(90, false)), false);
        down(&mut gr, DownReason::ConnectionLost);
        assert_eq!(
            up(&mut gr, Some(&cap(60, false)), true),
            vec![A::StartStaleTimer(secs(60))]
        );
        assert_eq!(gr.state(), PeerState::AwaitingEndOfRib);
        // End-of-RIB of one family while another is still stale changes nothing.
        assert_eq!(gr.handle(PeerEvent::EndOfRib { stale_left: true }), vec![]);
        assert_eq!(
            gr.handle(PeerEvent::EndOfRib { stale_left: false }),
            vec![A::StopStaleTimer]
        );
        assert_eq!(gr.state(), PeerState::Normal);
    }

    #[test]
    fn peer_back_without_a_restart_time_gets_the_stale_path_time() {
        let mut gr = PeerRestart::default();
        up(&mut gr, Some(&cap(90, false)), false);
        down(&mut gr, DownReason::ConnectionLost);
        assert_eq!(up(&mut gr, None, true), vec![A::StartStaleTimer(STALE_PATH_TIME)]);
    }

    #[test]
    fn peer_back_with_nothing_preserved_stops_the_timer() {
        let mut gr = PeerRestart::default();
        up(&mut gr, Some(&cap(90, false)), false);
        down(&mut gr, DownReason::ConnectionLost);
        assert_eq!(up(&mut gr, Some(&cap(90, false)), false), vec![A::StopStaleTimer]);
        assert_eq!(gr.state(), PeerState::Normal);
    }

    #[test]
    fn stale_timer_expiry_purges_in_either_waiting_state() {
        let mut gr = PeerRestart::default();
        up(&mut gr, Some(&cap(90, false)), false);
        down(&mut gr, DownReason::ConnectionLost);
        assert_eq!(gr.handle(PeerEvent::StaleTimerExpires), vec![A::PurgeStale]);
        assert_eq!(gr.state(), PeerState::Normal);
        down(&mut gr, DownReason::ConnectionLost);
        up(&mut gr, Some(&cap(90, false)), true);
        assert_eq!(gr.handle(PeerEvent::StaleTimerExpires), vec![A::PurgeStale]);
        assert_eq!(gr.state(), PeerState::Normal);
    }

    #[test]
    fn a_peer_without_graceful_restart_or_a_restart_time_of_0_loses_its_routes() {
        for peer in [None, Some(cap(0, true))] {
            let mut gr = PeerRestart::default();
            up(&mut gr, peer.as_ref(), false);
            assert_eq!(
                down(&mut gr, DownReason::ConnectionLost),
                vec![A::DropRoutes, A::StopStaleTimer]
            );
            assert_eq!(gr.state(), PeerState::Normal);
        }
    }

    #[test]
    fn notifications_and_hold_expiry_keep_the_routes_only_with_the_n_bit() {
        let soft = Notification::cease(CeaseSubcode::AdministrativeReset);
        let hard = Notification::hard_reset(&soft);
        let cases = [
            (DownReason::HoldTimerExpired, false, false),
            (DownReason::HoldTimerExpired, true, true),
            (DownReason::NotificationReceived(soft.clone()), false, false),
            (DownReason::NotificationReceived(soft.clone()), true, true),
            (DownReason::NotificationReceived(hard), true, false),
            (DownReason::NotificationSent(soft.clone()), true, false),
            (DownReason::Stopped(soft), true, false),
        ];
        for (reason, n_bit, kept) in cases {
            let mut gr = PeerRestart::default();
            up(&mut gr, Some(&cap(90, n_bit)), false);
            let actions = down(&mut gr, reason.clone());
            assert_eq!(
                actions.contains(&A::KeepStale),
                kept,
                "{reason} with N bit {n_bit}"
            );
        }
    }

    #[test]
    fn a_session_that_never_got_established_changes_nothing() {
        let mut gr = PeerRestart::default();
        up(&mut gr, Some(&cap(90, false)), false);
        down(&mut gr, DownReason::ConnectionLost);
        let actions = gr.handle(PeerEvent::SessionDown {
            reason: &DownReason::ConnectionLost,
            was_established: false,
        });
        assert_eq!(actions, vec![]);
        assert_eq!(gr.state(), PeerState::Restarting);
    }

    #[test]
    fn preserved_families_need_the_r_bit_and_the_f_bit() {
        let mut g = cap(90, false);
        g.families.push((Family::IPV6_UNICAST, false));
        assert_eq!(
            graceful_families(Some(&g)),
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        );
        assert_eq!(preserved_families(Some(&g)), vec![]);
        g.restarting = true;
        assert_eq!(preserved_families(Some(&g)), vec![Family::IPV4_UNICAST]);
        assert_eq!(graceful_families(None), vec![]);
    }

    #[test]
    fn restarting_speaker_keeps_found_routes_for_the_longest_restart_time() {
        assert!(preserves(true, [0, 120]));
        assert!(!preserves(false, [120]));
        assert!(!preserves(true, [0]));
        assert_eq!(on_start(true, false, [120]), Start::Fresh);
        assert_eq!(
            on_start(true, true, [30, 120]),
            Start::Restarting {
                purge_after: secs(120)
            }
        );
        assert_eq!(on_start(false, true, [0]), Start::PurgeNow);
    }

    #[test]
    fn our_capability_sets_the_r_bit_after_a_restart_and_f_bits_when_routes_are_kept() {
        let families = [Family::IPV4_UNICAST];
        let g = our_capability(true, true, 120, &families);
        assert!(g.restarting && g.notification);
        assert_eq!(g.families, vec![(Family::IPV4_UNICAST, true)]);
        let g = our_capability(true, true, 0, &families);
        assert!(!g.restarting);
        assert_eq!(g.families, vec![(Family::IPV4_UNICAST, false)]);
        let g = our_capability(false, false, 120, &families);
        assert!(!g.restarting);
        assert_eq!(g.families, vec![(Family::IPV4_UNICAST, false)]);
    }

    #[test]
    fn with_the_n_bit_a_stop_that_clears_routes_is_a_hard_reset() {
        let n = |sub| outgoing_cease(true, sub, None);
        assert!(n(CeaseSubcode::AdministrativeShutdown).is_hard_reset());
        assert!(n(CeaseSubcode::MaxPrefixes).is_hard_reset());
        assert!(n(CeaseSubcode::PeerDeconfigured).is_hard_reset());
        assert!(!n(CeaseSubcode::OtherConfigurationChange).is_hard_reset());
        assert!(!outgoing_cease(false, CeaseSubcode::AdministrativeShutdown, None).is_hard_reset());
        assert!(notification_bit(Some(&cap(1, true)), Some(&cap(1, true))));
        assert!(!notification_bit(Some(&cap(1, true)), Some(&cap(1, false))));
        assert!(!notification_bit(None, Some(&cap(1, true))));
    }
}
