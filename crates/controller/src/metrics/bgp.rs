//! The BGP speaker's metrics: the BGP reconciler publishes its speaker handle and which peers
//! are of which type, [`super::observe`] polls the speaker's status every few seconds, and a
//! collector encodes the last status at scrape time (so a scrape never waits on the speaker).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use caracal_bgp::{config::SpeakerConfig, control::Status, speaker::SpeakerHandle};
use ipnet::IpNet;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

/// Why this node peers with a peer, as `calicoctl node status` tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerType {
    /// The node-to-node mesh: another node of the cluster.
    Mesh,
    /// A peer of the agent's configuration, the same on every node.
    Global,
    /// A peer chosen for this node alone.
    Node,
}

impl PeerType {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::Mesh => "mesh",
            PeerType::Global => "global",
            PeerType::Node => "node",
        }
    }
}

/// The peers of `current` by type: those of the configured `base` are global, the rest are the
/// node mesh's.
pub fn peer_types(base: &SpeakerConfig, current: &SpeakerConfig) -> BTreeMap<IpAddr, PeerType> {
    current
        .peers
        .iter()
        .map(|p| {
            let kind = if base.peers.iter().any(|b| b.address == p.address) {
                PeerType::Global
            } else {
                PeerType::Mesh
            };
            (p.address, kind)
        })
        .collect()
}

/// What the BGP side looks like, as the last poll saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpSnapshot {
    pub status: Option<Status>,
    pub polled_at: Option<SystemTime>,
    pub peer_types: BTreeMap<IpAddr, PeerType>,
    pub originate: Vec<IpNet>,
}

impl BgpSnapshot {
    pub fn peer_type(&self, peer: IpAddr) -> PeerType {
        self.peer_types.get(&peer).copied().unwrap_or(PeerType::Global)
    }
}

#[derive(Default)]
struct State {
    speaker: Option<SpeakerHandle>,
    snapshot: BgpSnapshot,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("speaker", &self.speaker.is_some())
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

/// The BGP reconciler's handle and the collector; cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct BgpMetrics {
    state: Arc<Mutex<State>>,
}

impl BgpMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register_collector(Box::new(self.clone()));
    }

    /// The speaker is running with these peers and originated prefixes (called again after
    /// every reload).
    pub fn publish(
        &self,
        speaker: &SpeakerHandle,
        peer_types: BTreeMap<IpAddr, PeerType>,
        originate: Vec<IpNet>,
    ) {
        let mut s = self.state.lock().expect("not poisoned");
        s.speaker = Some(speaker.clone());
        s.snapshot.peer_types = peer_types;
        s.snapshot.originate = originate;
    }

    /// The speaker stopped: no BGP figures any more.
    pub fn stopped(&self) {
        *self.state.lock().expect("not poisoned") = State::default();
    }

    /// Asks the speaker for its status and keeps it for scrapes; `None` without a speaker.
    pub async fn poll(&self) -> Option<Status> {
        let speaker = self.state.lock().expect("not poisoned").speaker.clone()?;
        let status = speaker.status().await.ok();
        let mut s = self.state.lock().expect("not poisoned");
        s.snapshot.status = status.clone();
        s.snapshot.polled_at = Some(SystemTime::now());
        status
    }

    /// Sets the status directly (tests, and a speaker that is not the agent's).
    pub fn set_status(&self, status: Status) {
        let mut s = self.state.lock().expect("not poisoned");
        s.snapshot.status = Some(status);
        s.snapshot.polled_at = Some(SystemTime::now());
    }

    /// The last poll's view.
    pub fn snapshot(&self) -> BgpSnapshot {
        self.state.lock().expect("not poisoned").snapshot.clone()
    }
}

/// BGP4-MIB's `bgpPeerState` (RFC 4273): idle(1) … established(6); 0 for an unknown name.
pub fn state_number(state: &str) -> i64 {
    match state {
        "Idle" => 1,
        "Connect" => 2,
        "Active" => 3,
        "OpenSent" => 4,
        "OpenConfirm" => 5,
        "Established" => 6,
        _ => 0,
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for BgpMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let Some(status) = &snapshot.status else {
            return Ok(());
        };
        let up = Family::<Labels, Gauge>::default();
        let state = Family::<Labels, Gauge>::default();
        let uptime = Family::<Labels, Gauge>::default();
        let received = Family::<Labels, Gauge>::default();
        let accepted = Family::<Labels, Gauge>::default();
        let advertised = Family::<Labels, Gauge>::default();
        let sent = Family::<Labels, Counter>::default();
        let got = Family::<Labels, Counter>::default();
        let malformed = Family::<Labels, Counter>::default();
        for p in &status.peers {
            let peer = p.address.to_string();
            let session: Labels = vec![
                ("peer", peer.clone()),
                ("peer_as", p.remote_as.to_string()),
                ("type", snapshot.peer_type(p.address).as_str().to_string()),
            ];
            let n = state_number(&p.state);
            up.get_or_create(&session).set(i64::from(n == 6));
            state.get_or_create(&session).set(n);
            uptime.get_or_create(&session).set(gauge(p.uptime_secs));
            for f in &p.families {
                let labels: Labels = vec![
                    ("peer", peer.clone()),
                    ("afi", f.afi.clone()),
                    ("safi", f.safi.clone()),
                ];
                received.get_or_create(&labels).set(gauge(f.received));
                accepted.get_or_create(&labels).set(gauge(f.accepted));
                advertised.get_or_create(&labels).set(gauge(f.advertised));
            }
            for (family, list) in [(&sent, &p.notifications_sent), (&got, &p.notifications_received)] {
                for n in list {
                    let labels: Labels = vec![
                        ("peer", peer.clone()),
                        ("code", n.code.to_string()),
                        ("subcode", n.subcode.to_string()),
                    ];
                    family.get_or_create(&labels).inc_by(n.count);
                }
            }
            for (treatment, n) in [
                ("attribute_discard", p.updates_attribute_discard),
                ("treat_as_withdraw", p.updates_treated_as_withdraw),
                ("own_next_hop", p.updates_own_next_hop),
            ] {
                let labels: Labels = vec![("peer", peer.clone()), ("treatment", treatment.to_string())];
                malformed.get_or_create(&labels).inc_by(n);
            }
        }
        let originated = Gauge::<i64>::default();
        originated.set(gauge(snapshot.originate.len() as u64));
        let seconds = Unit::Seconds;
        let families: [(&str, &str, Option<&Unit>, &dyn EncodeMetric); 10] = [
            ("bgp_session_up", "1 if the BGP session is Established", None, &up),
            (
                "bgp_session_state",
                "BGP FSM state as BGP4-MIB bgpPeerState: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
                None,
                &state,
            ),
            (
                "bgp_session_uptime",
                "Time since the session reached Established (0 when it is not)",
                Some(&seconds),
                &uptime,
            ),
            (
                "bgp_prefixes_received",
                "Prefixes received from the peer (accepted or not)",
                None,
                &received,
            ),
            (
                "bgp_prefixes_accepted",
                "Prefixes from the peer accepted by import policy",
                None,
                &accepted,
            ),
            (
                "bgp_prefixes_advertised",
                "Prefixes advertised to the peer",
                None,
                &advertised,
            ),
            (
                "bgp_notifications_sent",
                "NOTIFICATIONs sent to the peer by code and subcode",
                None,
                &sent,
            ),
            (
                "bgp_notifications_received",
                "NOTIFICATIONs received from the peer by code and subcode",
                None,
                &got,
            ),
            (
                "bgp_malformed_updates",
                "Malformed UPDATEs by RFC 7606 treatment (and RFC 4271 6.3 own next hop)",
                None,
                &malformed,
            ),
            (
                "bgp_originated_prefixes",
                "Prefixes this node originates (its pod CIDRs)",
                None,
                &originated,
            ),
        ];
        for (name, help, unit, metric) in families {
            metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)?;
        }
        Ok(())
    }
}
