//! Parsers for what each daemon's CLI prints, into one shape ([`Route`], [`Session`]) so that the
//! same checks run against BIRD, FRR, GoBGP, ExaBGP and the caracal speaker.

use std::net::IpAddr;

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde_json::Value;

/// One path to a prefix as a daemon shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpNet,
    /// BGP next hops (an IPv6 route may carry a global and a link-local one).
    pub next_hops: Vec<IpAddr>,
    pub as_path: Vec<u32>,
    pub best: bool,
    pub stale: bool,
    /// Learned from a BGP peer (not originated by the daemon itself).
    pub learned: bool,
    /// ORIGINATOR_ID and CLUSTER_LIST (RFC 4456), where the daemon shows them (BIRD, GoBGP).
    pub originator_id: Option<std::net::Ipv4Addr>,
    pub cluster_list: Vec<std::net::Ipv4Addr>,
}

/// One BGP session as a daemon shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub neighbor: Option<IpAddr>,
    pub established: bool,
    pub state: String,
    /// The last error or NOTIFICATION, in the daemon's words (FRR and ExaBGP give `code/subcode`).
    pub last_error: String,
    pub updates_received: Option<u64>,
    pub notifications_received: Option<u64>,
    pub uptime_secs: Option<u64>,
}

fn net(s: &str) -> Result<IpNet> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .with_context(|| format!("bad prefix {s:?}"))
}

/// `birdc show route all`.
pub fn bird_routes(text: &str) -> Result<Vec<Route>> {
    let mut out: Vec<Route> = Vec::new();
    let mut prefix: Option<IpNet> = None;
    for line in text.lines() {
        if line.is_empty() || line.starts_with("BIRD ") || line.starts_with("Table ") {
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        let t = line.trim();
        // A route line: `<prefix> <type> [<proto> <time>] * (<pref>) ...`, or the same
        // without the prefix for a further path to the previous prefix.
        let route_head = if !indented {
            let mut it = t.splitn(2, char::is_whitespace);
            prefix = Some(net(it.next().unwrap_or_default())?);
            Some(it.next().unwrap_or_default().trim())
        } else if ["unicast ", "blackhole ", "unreachable ", "prohibited "]
            .iter()
            .any(|k| t.starts_with(k))
        {
            Some(t)
        } else {
            None
        };
        if let Some(head) = route_head {
            let p = prefix.context("route line before any prefix")?;
            out.push(Route {
                prefix: p,
                next_hops: Vec::new(),
                as_path: Vec::new(),
                best: head.contains("] *"),
                stale: head.contains("stale"),
                learned: false,
                originator_id: None,
                cluster_list: Vec::new(),
            });
            continue;
        }
        let Some(r) = out.last_mut() else { continue };
        if let Some(v) = t.strip_prefix("via ") {
            if let Some(a) = v
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .filter(|_| r.next_hops.is_empty())
            {
                r.next_hops.push(a);
            }
        } else if t.starts_with("Type: BGP") {
            r.learned = true;
        } else if let Some(v) = t.strip_prefix("BGP.as_path:") {
            r.as_path = v.split_whitespace().filter_map(|a| a.parse().ok()).collect();
        } else if let Some(v) = t.strip_prefix("BGP.originator_id:") {
            r.originator_id = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("BGP.cluster_list:") {
            r.cluster_list = v.split_whitespace().filter_map(|a| a.parse().ok()).collect();
        } else if let Some(v) = t.strip_prefix("BGP.next_hop:") {
            r.next_hops = v.split_whitespace().filter_map(|a| a.parse().ok()).collect();
        }
    }
    Ok(out)
}

/// `birdc show protocols all`: the BGP protocols, keyed by their neighbor address.
pub fn bird_sessions(text: &str) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    let mut in_bgp = false;
    for line in text.lines() {
        if line.is_empty() || line.starts_with("BIRD ") || line.starts_with("Name ") {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            // `name proto table state since info...`
            let cols: Vec<&str> = line.split_whitespace().collect();
            in_bgp = cols.get(1) == Some(&"BGP");
            if in_bgp {
                let info = cols.get(5..).map(|c| c.join(" ")).unwrap_or_default();
                out.push(Session {
                    established: info.starts_with("Established"),
                    state: info,
                    ..Session::default()
                });
            }
            continue;
        }
        let Some(s) = out.last_mut().filter(|_| in_bgp) else {
            continue;
        };
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Neighbor address:") {
            s.neighbor = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("Last error:") {
            s.last_error = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Import updates:") {
            s.updates_received = v.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    out
}

fn as_path_from_str(s: &str) -> Vec<u32> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// `vtysh -c 'show bgp <afi> unicast json'`.
pub fn frr_routes(json: &str) -> Result<Vec<Route>> {
    let v: Value = serde_json::from_str(json).context("FRR route JSON")?;
    let mut out = Vec::new();
    let Some(routes) = v["routes"].as_object() else {
        return Ok(out);
    };
    for (prefix, paths) in routes {
        let prefix = net(prefix)?;
        for p in paths.as_array().into_iter().flatten() {
            out.push(Route {
                prefix,
                next_hops: p["nexthops"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["ip"].as_str()?.parse().ok())
                    .collect(),
                as_path: as_path_from_str(p["path"].as_str().unwrap_or_default()),
                best: p["bestpath"].as_bool().unwrap_or(false),
                stale: p["stale"].as_bool().unwrap_or(false),
                learned: p["peerId"].as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
                originator_id: None,
                cluster_list: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// `vtysh -c 'show bgp neighbors json'`.
pub fn frr_sessions(json: &str) -> Result<Vec<Session>> {
    let v: Value = serde_json::from_str(json).context("FRR neighbor JSON")?;
    let mut out = Vec::new();
    for (addr, n) in v.as_object().into_iter().flatten() {
        let Ok(neighbor) = addr.parse() else { continue };
        let state = n["bgpState"].as_str().unwrap_or_default().to_string();
        let code = n["lastErrorCodeSubcode"].as_str().unwrap_or_default();
        let last_error = if code.len() == 4 {
            format!(
                "{}/{} {}",
                code[..2].parse::<u8>().unwrap_or(0),
                code[2..].parse::<u8>().unwrap_or(0),
                n["lastNotificationReason"].as_str().unwrap_or_default()
            )
        } else {
            n["lastResetDueTo"].as_str().unwrap_or_default().to_string()
        };
        out.push(Session {
            neighbor: Some(neighbor),
            established: state == "Established",
            state,
            last_error,
            updates_received: n["messageStats"]["updatesRecv"].as_u64(),
            notifications_received: n["messageStats"]["notificationsRecv"].as_u64(),
            uptime_secs: n["bgpTimerUpMsec"].as_u64().map(|ms| ms / 1000),
        });
    }
    Ok(out)
}

/// `gobgp global rib -a <afi> -j`.
pub fn gobgp_routes(json: &str) -> Result<Vec<Route>> {
    let v: Value = serde_json::from_str(json).context("GoBGP RIB JSON")?;
    let mut out = Vec::new();
    for (prefix, paths) in v.as_object().into_iter().flatten() {
        let prefix = net(prefix)?;
        for p in paths.as_array().into_iter().flatten() {
            let mut r = Route {
                prefix,
                next_hops: Vec::new(),
                as_path: Vec::new(),
                best: p["best"].as_bool().unwrap_or(false),
                stale: p["stale"].as_bool().unwrap_or(false),
                learned: p["neighbor-ip"].as_str().is_some(),
                originator_id: None,
                cluster_list: Vec::new(),
            };
            for a in p["attrs"].as_array().into_iter().flatten() {
                match a["type"].as_u64() {
                    Some(2) => {
                        for seg in a["as_paths"].as_array().into_iter().flatten() {
                            r.as_path.extend(
                                seg["asns"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|n| u32::try_from(n.as_u64()?).ok()),
                            );
                        }
                    }
                    Some(9) => r.originator_id = a["value"].as_str().and_then(|s| s.parse().ok()),
                    Some(10) => {
                        r.cluster_list = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.as_str()?.parse().ok())
                            .collect()
                    }
                    Some(3) | Some(14) => {
                        if let Some(nh) = a["nexthop"].as_str().and_then(|s| s.parse().ok()) {
                            r.next_hops.push(nh);
                        }
                    }
                    _ => {}
                }
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// `gobgp neighbor -j`.
pub fn gobgp_sessions(json: &str) -> Result<Vec<Session>> {
    let v: Value = serde_json::from_str(json).context("GoBGP neighbor JSON")?;
    let mut out = Vec::new();
    for n in v.as_array().into_iter().flatten() {
        let st = &n["state"];
        // session_state: 1 idle .. 6 established (the gRPC enum).
        let code = st["session_state"].as_u64().unwrap_or(0);
        let received = &st["messages"]["received"];
        out.push(Session {
            neighbor: st["neighbor_address"]
                .as_str()
                .or(n["conf"]["neighbor_address"].as_str())
                .and_then(|s| s.parse().ok()),
            established: code == 6,
            state: format!("session_state {code}"),
            last_error: String::new(),
            updates_received: Some(received["update"].as_u64().unwrap_or(0)),
            notifications_received: Some(received["notification"].as_u64().unwrap_or(0)),
            uptime_secs: None,
        });
    }
    Ok(out)
}

/// ExaBGP's API messages (one JSON object a line, as `exabgp-api.py` records them): the
/// sessions and the routes ExaBGP holds from its peers. ExaBGP keeps no RIB, so routes are
/// replayed from the updates: announced until withdrawn, kept across a session going down (a
/// check that routes were withdrawn needs an explicit withdraw).
pub fn exabgp_log(jsonl: &str) -> (Vec<Session>, Vec<Route>) {
    let mut sessions: Vec<Session> = Vec::new();
    let mut routes: Vec<(IpAddr, Route)> = Vec::new();
    for line in jsonl.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let n = &v["neighbor"];
        let Some(peer) = n["address"]["peer"]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let idx = match sessions.iter().position(|s| s.neighbor == Some(peer)) {
            Some(i) => i,
            None => {
                sessions.push(Session {
                    neighbor: Some(peer),
                    updates_received: Some(0),
                    notifications_received: Some(0),
                    ..Session::default()
                });
                sessions.len() - 1
            }
        };
        let s = &mut sessions[idx];
        match v["type"].as_str() {
            Some("state") => {
                s.state = n["state"].as_str().unwrap_or_default().to_string();
                s.established = s.state == "up";
            }
            Some("notification") => {
                let no = &n["notification"];
                s.last_error = format!(
                    "{}/{}",
                    no["code"].as_u64().unwrap_or(0),
                    no["subcode"].as_u64().unwrap_or(0)
                );
                *s.notifications_received.get_or_insert(0) += 1;
            }
            Some("update") => {
                let u = &n["message"]["update"];
                if u.is_null() {
                    continue; // End-of-RIB
                }
                *s.updates_received.get_or_insert(0) += 1;
                let as_path: Vec<u32> = u["attribute"]["as-path"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| u32::try_from(a.as_u64()?).ok())
                    .collect();
                for (_family, prefixes) in u["withdraw"].as_object().into_iter().flatten() {
                    for p in prefixes.as_array().into_iter().flatten() {
                        if let Some(pfx) = p["nlri"].as_str().and_then(|s| net(s).ok()) {
                            routes.retain(|(from, r)| !(*from == peer && r.prefix == pfx));
                        }
                    }
                }
                // One prefix may be listed under several next hops (IPv6: global and
                // link-local): gather them into one path.
                let mut announced: Vec<Route> = Vec::new();
                for (_family, by_nh) in u["announce"].as_object().into_iter().flatten() {
                    for (nh, prefixes) in by_nh.as_object().into_iter().flatten() {
                        let nh: Option<IpAddr> = nh.parse().ok();
                        for p in prefixes.as_array().into_iter().flatten() {
                            let Some(pfx) = p["nlri"].as_str().and_then(|s| net(s).ok()) else {
                                continue;
                            };
                            match announced.iter_mut().find(|r| r.prefix == pfx) {
                                Some(r) => r.next_hops.extend(nh),
                                None => announced.push(Route {
                                    prefix: pfx,
                                    next_hops: nh.into_iter().collect(),
                                    as_path: as_path.clone(),
                                    best: true,
                                    stale: false,
                                    learned: true,
                                    originator_id: None,
                                    cluster_list: Vec::new(),
                                }),
                            }
                        }
                    }
                }
                for r in announced {
                    routes.retain(|(from, old)| !(*from == peer && old.prefix == r.prefix));
                    routes.push((peer, r));
                }
            }
            _ => {}
        }
    }
    (sessions, routes.into_iter().map(|(_, r)| r).collect())
}

fn as_path_from_value(v: &Value) -> Vec<u32> {
    match v {
        Value::String(s) => as_path_from_str(s),
        Value::Array(a) => a
            .iter()
            .flat_map(|x| match x {
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .into_iter()
                    .collect(),
                // A segment object or a nested list.
                other => as_path_from_value(if other.is_object() { &other["asns"] } else { other }),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `caracal bgp status --json`.
pub fn caracal_sessions(json: &str) -> Result<Vec<Session>> {
    let v: Value = serde_json::from_str(json).context("caracal status JSON")?;
    let mut out = Vec::new();
    for p in v["peers"].as_array().into_iter().flatten() {
        let state = p["state"].as_str().unwrap_or_default().to_string();
        out.push(Session {
            neighbor: p["address"].as_str().and_then(|s| s.parse().ok()),
            established: state.eq_ignore_ascii_case("established"),
            state,
            last_error: match &p["last_error"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            },
            updates_received: p["updates_received"].as_u64(),
            notifications_received: None,
            uptime_secs: p["uptime_secs"].as_u64(),
        });
    }
    Ok(out)
}

/// `caracal bgp status --json --routes`.
pub fn caracal_routes(json: &str) -> Result<Vec<Route>> {
    let v: Value = serde_json::from_str(json).context("caracal routes JSON")?;
    let mut out = Vec::new();
    for r in v["routes"].as_array().into_iter().flatten() {
        let prefix = net(r["prefix"].as_str().context("route without prefix")?)?;
        let next_hops = r["next_hops"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                n.as_str()
                    .or(n["address"].as_str())
                    .or(n["next_hop"].as_str())
                    .and_then(|s| s.parse().ok())
            })
            .collect();
        out.push(Route {
            prefix,
            next_hops,
            as_path: as_path_from_value(&r["as_path"]),
            best: r["best"].as_bool().unwrap_or(true),
            stale: r["stale"].as_bool().unwrap_or(false),
            // `peer` is the neighbor the best path came from, or "local" when originated.
            learned: r["peer"].as_str().is_some_and(|p| p != "local"),
            originator_id: None,
            cluster_list: Vec::new(),
        });
    }
    Ok(out)
}

/// `ip -j route show exact <prefix>`: the gateways (empty for a route without one), or None
/// when the kernel has no such route.
pub fn kernel_route(json: &str) -> Result<Option<Vec<IpAddr>>> {
    let v: Value =
        serde_json::from_str(if json.trim().is_empty() { "[]" } else { json }).context("ip -j route JSON")?;
    let Some(r) = v.as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    let mut gws: Vec<IpAddr> = r["gateway"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .into_iter()
        .collect();
    for nh in r["nexthops"].as_array().into_iter().flatten() {
        if let Some(g) = nh["gateway"].as_str().and_then(|s| s.parse().ok()) {
            gws.push(g);
        }
    }
    Ok(Some(gws))
}
