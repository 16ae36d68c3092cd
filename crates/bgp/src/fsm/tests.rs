//! The FSM tested event by event.

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

/// A NOTIFICATION as the codec's errors make them, by wire value.
fn notification(code: u8, subcode: u8) -> Notification {
    Notification {
        code,
        subcode,
        data: Bytes::new(),
    }
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
            subcode: CeaseSubcode::AdministrativeShutdown,
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
    let n = sent(&fsm.handle(
        Event::AutomaticStop {
            subcode: CeaseSubcode::MaxPrefixes,
        },
        now(),
    ));
    assert_eq!((n.code, n.subcode, &n.data[..]), (6, 9, &[6u8, 1][..]));
    // Connection collision and out-of-resources keep graceful restart (RFC 8538 §5).
    let mut fsm = with_n_bit(config(), true, true);
    let n = sent(&fsm.handle(
        Event::AutomaticStop {
            subcode: CeaseSubcode::OutOfResources,
        },
        now(),
    ));
    assert_eq!((n.code, n.subcode), (6, 8));
}

#[test]
fn without_both_n_bits_a_shutdown_is_a_plain_cease() {
    for (ours, theirs) in [(true, false), (false, true)] {
        let mut fsm = with_n_bit(config(), ours, theirs);
        let a = fsm.handle(
            Event::ManualStop {
                subcode: CeaseSubcode::PeerDeconfigured,
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
            subcode: CeaseSubcode::AdministrativeShutdown,
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
            subcode: CeaseSubcode::AdministrativeShutdown,
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
            subcode: CeaseSubcode::MaxPrefixes,
        },
        now(),
    );
    assert_eq!(sent_notification(&a), Some((6, 1)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn notification_received_closes_without_answering() {
    let mut fsm = established(config());
    let n = Notification::cease(CeaseSubcode::AdministrativeReset);
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
    let n = Notification::cease_with(CeaseSubcode::AdministrativeShutdown, Some(&long));
    assert_eq!(n.data[0] as usize, n.data.len() - 1);
    assert!(n.data.len() <= 256);
    assert!(std::str::from_utf8(&n.data[1..]).is_ok());
}
