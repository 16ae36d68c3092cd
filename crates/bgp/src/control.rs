//! The control socket: `caracal bgp status` asks the running speaker for its state.
//!
//! Protocol: the client connects to the unix socket, writes one request line (`status` or
//! `routes`), and reads one JSON document until the speaker closes the connection.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::fsm::DownReason;
use crate::rib::{BestRoute, LOCAL, RejectReason, RejectedRoute};
use crate::wire::{Afi, Origin, Safi, SegmentKind, community};

/// `caracal bgp status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    pub peers: Vec<PeerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub remote_as: u32,
    pub state: String,
    pub uptime_secs: u64,
    pub capabilities: Vec<String>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    /// Received UPDATEs used without their malformed attributes (RFC 7606 attribute discard).
    #[serde(default)]
    pub updates_attribute_discard: u64,
    /// Received UPDATEs whose prefixes were withdrawn instead (RFC 7606 treat-as-withdraw).
    #[serde(default)]
    pub updates_treated_as_withdraw: u64,
    /// Received UPDATEs ignored for naming our own address as next hop (RFC 4271 §6.3).
    #[serde(default)]
    pub updates_own_next_hop: u64,
    pub last_error: Option<String>,
    /// Seconds since the session entered its current state.
    #[serde(default)]
    pub state_secs: u64,
    /// Prefix counts per address family (IPv4 and IPv6 unicast).
    #[serde(default)]
    pub families: Vec<FamilyStatus>,
    /// NOTIFICATIONs sent to the peer, by code and subcode, since the peer was configured.
    #[serde(default)]
    pub notifications_sent: Vec<NotificationCount>,
    /// NOTIFICATIONs received from the peer, by code and subcode.
    #[serde(default)]
    pub notifications_received: Vec<NotificationCount>,
}

/// One address family's prefix counts: `afi` is `ipv4` or `ipv6`, `safi` `unicast`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyStatus {
    pub afi: String,
    pub safi: String,
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
}

/// How many NOTIFICATIONs of one code and subcode (RFC 4271 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCount {
    pub code: u8,
    pub subcode: u8,
    pub count: u64,
}

/// The NOTIFICATIONs of one peer by direction, code and subcode, counted by the speaker as
/// sessions end (every NOTIFICATION ends its session, RFC 4271 §4.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    sent: BTreeMap<(u8, u8), u64>,
    received: BTreeMap<(u8, u8), u64>,
}

impl NotificationCounts {
    /// Counts the NOTIFICATION, if any, that ended a session for `reason`.
    pub fn record(&mut self, reason: &DownReason) {
        let (map, n) = match reason {
            DownReason::Stopped(n) | DownReason::NotificationSent(n) => (&mut self.sent, (n.code, n.subcode)),
            // The FSM sends Hold Timer Expired (4/0) as the timer fires (RFC 4271 §8.2.2).
            DownReason::HoldTimerExpired => (
                &mut self.sent,
                (u8::from(crate::wire::ErrorCode::HoldTimerExpired), 0),
            ),
            DownReason::NotificationReceived(n) => (&mut self.received, (n.code, n.subcode)),
            DownReason::ConnectionLost => return,
        };
        *map.entry(n).or_default() += 1;
    }

    /// (sent, received), ordered by code and subcode.
    pub fn status(&self) -> (Vec<NotificationCount>, Vec<NotificationCount>) {
        let list = |m: &BTreeMap<(u8, u8), u64>| {
            m.iter()
                .map(|(&(code, subcode), &count)| NotificationCount { code, subcode, count })
                .collect()
        };
        (list(&self.sent), list(&self.received))
    }
}

/// The per-family part of a peer's status, from the RIB's counters, for the families the peer
/// is configured for.
pub fn family_status(c: &crate::rib::PeerCounters, configured: &[crate::wire::Family]) -> Vec<FamilyStatus> {
    crate::rib::PeerCounters::FAMILIES
        .iter()
        .zip(c.families)
        .filter(|(f, _)| configured.contains(f))
        .map(|(f, n)| FamilyStatus {
            afi: match f.afi {
                Afi::Ipv4 => "ipv4".to_string(),
                Afi::Ipv6 => "ipv6".to_string(),
                Afi::Other(x) => x.to_string(),
            },
            safi: match f.safi {
                Safi::Unicast => "unicast".to_string(),
                Safi::Other(x) => x.to_string(),
            },
            received: n.received,
            accepted: n.accepted,
            advertised: n.advertised,
        })
        .collect()
}

/// `caracal bgp status --json --routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub routes: Vec<RouteStatus>,
    /// Received routes not taken into the Loc-RIB, with the reason.
    #[serde(default)]
    pub rejected: Vec<RejectedStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedStatus {
    pub prefix: ipnet::IpNet,
    /// The peer that sent it.
    pub peer: String,
    pub reason: RejectReason,
}

impl RejectedStatus {
    /// Renders a rejected route; `peer_address` names the peer it came from.
    pub fn new(r: &RejectedRoute, peer_address: Option<IpAddr>) -> Self {
        RejectedStatus {
            prefix: r.prefix,
            peer: peer_address.map_or_else(|| "unknown".to_string(), |a| a.to_string()),
            reason: r.reason,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub prefix: ipnet::IpNet,
    pub next_hops: Vec<IpAddr>,
    pub as_path: Vec<u32>,
    pub origin: String,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<String>,
    pub peer: String,
}

impl RouteStatus {
    /// Renders a best route; `peer_address` names the peer it came from.
    pub fn new(r: &BestRoute, peer_address: Option<IpAddr>) -> Self {
        let a = &r.attrs.attrs;
        let as_path = a
            .as_path
            .iter()
            .flat_map(|p| p.segments.iter())
            .filter(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set))
            .flat_map(|s| s.asns.iter().copied())
            .collect();
        let origin = match a.origin {
            Some(Origin::Igp) => "igp",
            Some(Origin::Egp) => "egp",
            Some(Origin::Incomplete) | None => "incomplete",
        };
        let mut communities: Vec<String> = a.communities.iter().map(|c| community::format(*c)).collect();
        communities.extend(a.large_communities.iter().map(community::format_large));
        RouteStatus {
            prefix: r.prefix,
            next_hops: r.next_hops.clone(),
            as_path,
            origin: origin.to_string(),
            med: a.med,
            local_pref: a.local_pref,
            communities,
            peer: if r.peer == LOCAL {
                "local".to_string()
            } else {
                peer_address.map_or_else(|| "unknown".to_string(), |a| a.to_string())
            },
        }
    }
}

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Routes,
}

impl Request {
    fn line(self) -> &'static str {
        match self {
            Request::Status => "status\n",
            Request::Routes => "routes\n",
        }
    }

    pub fn parse(line: &str) -> Option<Request> {
        match line.trim() {
            "status" => Some(Request::Status),
            "routes" => Some(Request::Routes),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot connect to {path}: {source} (is `caracal bgp run` running?)")]
    Connect { path: String, source: std::io::Error },
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad answer from the speaker: {0}")]
    Json(#[from] serde_json::Error),
}

/// Sends `request` to the speaker at `path` and returns its JSON answer.
pub async fn query(path: &Path, request: Request) -> Result<serde_json::Value, ControlError> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|source| ControlError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    s.write_all(request.line().as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(serde_json::from_slice(&buf)?)
}

/// Reads one request line from a client connection.
pub async fn read_request(stream: &mut UnixStream) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    let mut r = BufReader::new(stream);
    r.read_line(&mut line).await?;
    Ok(Request::parse(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_routes_name_their_reason_and_old_answers_without_them_still_parse() {
        let r = Routes {
            routes: vec![],
            rejected: vec![RejectedStatus {
                prefix: "10.9.0.0/24".parse().unwrap(),
                peer: "10.0.0.3".into(),
                reason: RejectReason::AsPathLoop,
            }],
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["rejected"][0]["reason"], "as_path_loop");
        assert_eq!(serde_json::from_value::<Routes>(json).unwrap(), r);
        let old: Routes = serde_json::from_str(r#"{"routes": []}"#).unwrap();
        assert!(old.rejected.is_empty());
    }
}
