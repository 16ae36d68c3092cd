//! The node status as data: built from what the metrics hold (the last BGP poll, the last policy
//! apply), compared with the last one written, and the sessions that went down in between.
//! No I/O.

use std::{collections::BTreeMap, net::IpAddr, time::SystemTime};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::crd::{ApplyResult, BgpStatus, NodeStatus, PeerKind, PeerSession, PolicyStatus, RoutesStatus};
use crate::metrics::{
    bgp::{BgpSnapshot, PeerType},
    policy::LastApply,
};

/// A time as the API writes it, to the second (so a status built twice compares equal).
pub fn time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Time(Timestamp::from_second(i64::try_from(secs).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// When each peer entered its state, kept between reports: the speaker says how long ago, which
/// would move by a second from one report to the next.
#[derive(Clone, Debug, Default)]
pub struct Since(BTreeMap<IpAddr, (String, Time)>);

fn kind(t: PeerType) -> PeerKind {
    match t {
        PeerType::Mesh => PeerKind::NodeMesh,
        PeerType::Global => PeerKind::GlobalPeer,
        PeerType::Node => PeerKind::NodePeer,
    }
}

/// The status (without `updated`) of the node at `now`.
pub fn build(
    bgp: &BgpSnapshot,
    policy: Option<&LastApply>,
    now: SystemTime,
    since: &mut Since,
) -> NodeStatus {
    let bgp_status = bgp.status.as_ref().map(|s| {
        let mut kept = BTreeMap::new();
        let peers: Vec<PeerSession> = s
            .peers
            .iter()
            .map(|p| {
                let entered = match since.0.get(&p.address) {
                    Some((state, t)) if *state == p.state => t.clone(),
                    _ => time(
                        now.checked_sub(std::time::Duration::from_secs(p.state_secs))
                            .unwrap_or(now),
                    ),
                };
                kept.insert(p.address, (p.state.clone(), entered.clone()));
                PeerSession {
                    peer_ip: p.address.to_string(),
                    peer_as: i64::from(p.remote_as),
                    kind: kind(bgp.peer_type(p.address)),
                    state: p.state.clone(),
                    since: Some(entered),
                    prefixes_received: count(p.prefixes_received),
                    prefixes_accepted: count(p.prefixes_accepted),
                    prefixes_advertised: count(p.prefixes_advertised),
                    last_error: p.last_error.clone(),
                }
            })
            .collect();
        since.0 = kept;
        let established = peers.iter().filter(|p| p.state == "Established").count();
        BgpStatus {
            router_id: s.router_id.to_string(),
            local_as: i64::from(s.local_as),
            number_established: count(established),
            number_not_established: count(peers.len() - established),
            peers,
        }
    });
    let routes = bgp.status.as_ref().map(|_| RoutesStatus {
        originated: bgp.originate.iter().map(ToString::to_string).collect(),
    });
    let policy = policy.map(|l| PolicyStatus {
        endpoints: count(l.endpoints),
        network_policies: count(l.network_policies),
        global_policies: count(l.global_policies),
        chains: count(l.chains),
        ipsets: count(l.sets),
        last_apply_time: Some(time(l.at)),
        last_apply_mode: l.mode.as_str().to_string(),
        last_apply_result: Some(if l.error.is_none() {
            ApplyResult::Succeeded
        } else {
            ApplyResult::Failed
        }),
        last_error: l.error.clone(),
    });
    NodeStatus {
        updated: None,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        bgp: bgp_status,
        routes,
        policy,
    }
}

/// Whether `next` says something `last` did not (the write time aside).
pub fn changed(last: Option<&NodeStatus>, next: &NodeStatus) -> bool {
    let Some(last) = last else { return true };
    let mut a = last.clone();
    a.updated = None;
    a != *next
}

/// The sessions that were Established in `last` and are still configured but not any more in
/// `next`.
pub fn went_down<'a>(last: Option<&NodeStatus>, next: &'a NodeStatus) -> Vec<&'a PeerSession> {
    let was_up: Vec<&str> = last
        .and_then(|l| l.bgp.as_ref())
        .map(|b| {
            b.peers
                .iter()
                .filter(|p| p.state == "Established")
                .map(|p| p.peer_ip.as_str())
                .collect()
        })
        .unwrap_or_default();
    next.bgp
        .iter()
        .flat_map(|b| &b.peers)
        .filter(|p| p.state != "Established" && was_up.contains(&p.peer_ip.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use caracal_bgp::control::{PeerStatus, Status};

    use super::*;
    use crate::metrics::policy::Mode;

    fn peer(address: &str, state: &str, state_secs: u64) -> PeerStatus {
        PeerStatus {
            address: address.parse().unwrap(),
            remote_as: 64512,
            state: state.into(),
            uptime_secs: if state == "Established" { state_secs } else { 0 },
            capabilities: vec![],
            prefixes_received: 2,
            prefixes_accepted: 1,
            prefixes_advertised: 3,
            updates_attribute_discard: 0,
            updates_treated_as_withdraw: 0,
            updates_own_next_hop: 0,
            last_error: (state != "Established").then(|| "received NOTIFICATION Cease".into()),
            state_secs,
            families: vec![],
            notifications_sent: vec![],
            notifications_received: vec![],
        }
    }

    fn snapshot(peers: Vec<PeerStatus>) -> BgpSnapshot {
        BgpSnapshot {
            status: Some(Status {
                router_id: "192.0.2.1".parse().unwrap(),
                local_as: 64512,
                peers,
            }),
            polled_at: None,
            peer_types: [
                ("192.0.2.2".parse().unwrap(), PeerType::Mesh),
                ("192.0.2.9".parse().unwrap(), PeerType::Global),
            ]
            .into(),
            originate: vec!["10.244.1.0/24".parse().unwrap()],
        }
    }

    #[test]
    fn the_status_carries_sessions_routes_and_policy_and_is_stable_while_nothing_changes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut since = Since::default();
        let last = LastApply {
            at: t0,
            mode: Mode::Full,
            error: None,
            endpoints: 3,
            network_policies: 2,
            global_policies: 1,
            chains: 9,
            sets: 4,
        };
        let bgp = snapshot(vec![
            peer("192.0.2.2", "Established", 100),
            peer("192.0.2.9", "Active", 5),
        ]);
        let a = build(&bgp, Some(&last), t0, &mut since);
        let b = a.bgp.as_ref().unwrap();
        assert_eq!((b.number_established, b.number_not_established), (1, 1));
        assert_eq!(b.peers[0].kind, PeerKind::NodeMesh);
        assert_eq!(b.peers[1].kind, PeerKind::GlobalPeer);
        assert_eq!(b.peers[0].since, Some(time(t0 - Duration::from_secs(100))));
        assert_eq!(
            b.peers[1].last_error.as_deref(),
            Some("received NOTIFICATION Cease")
        );
        assert_eq!(a.routes.as_ref().unwrap().originated, vec!["10.244.1.0/24"]);
        let p = a.policy.as_ref().unwrap();
        assert_eq!((p.endpoints, p.network_policies, p.global_policies), (3, 2, 1));
        assert_eq!(p.last_apply_result, Some(ApplyResult::Succeeded));

        // Eleven seconds later the speaker reports 11 s more in each state: same status.
        let bgp = snapshot(vec![
            peer("192.0.2.2", "Established", 111),
            peer("192.0.2.9", "Active", 16),
        ]);
        let later = build(&bgp, Some(&last), t0 + Duration::from_secs(11), &mut since);
        let mut written = a.clone();
        written.updated = Some(time(t0));
        assert!(!changed(Some(&written), &later), "{later:?}");
        assert!(went_down(Some(&written), &later).is_empty());

        // The mesh session drops: a change, and one session went down.
        let bgp = snapshot(vec![
            peer("192.0.2.2", "Idle", 0),
            peer("192.0.2.9", "Active", 20),
        ]);
        let down = build(&bgp, Some(&last), t0 + Duration::from_secs(15), &mut since);
        assert!(changed(Some(&written), &down));
        let gone: Vec<&str> = went_down(Some(&written), &down)
            .iter()
            .map(|p| p.peer_ip.as_str())
            .collect();
        assert_eq!(gone, vec!["192.0.2.2"]);
        assert_eq!(
            down.bgp.unwrap().peers[0].since,
            Some(time(t0 + Duration::from_secs(15)))
        );
    }

    #[test]
    fn a_failed_apply_is_reported_with_its_error_and_no_speaker_means_no_bgp_section() {
        let last = LastApply {
            at: SystemTime::UNIX_EPOCH,
            mode: Mode::Delta,
            error: Some("ipset restore failed".into()),
            endpoints: 0,
            network_policies: 0,
            global_policies: 0,
            chains: 0,
            sets: 0,
        };
        let s = build(
            &BgpSnapshot::default(),
            Some(&last),
            SystemTime::now(),
            &mut Since::default(),
        );
        assert!(s.bgp.is_none() && s.routes.is_none());
        let p = s.policy.unwrap();
        assert_eq!(p.last_apply_result, Some(ApplyResult::Failed));
        assert_eq!(p.last_error.as_deref(), Some("ipset restore failed"));
        assert_eq!(p.last_apply_mode, "delta");
    }
}
