//! `caracal status`: every node's CaracalNodeStatus through the API server, as tables in the
//! manner of `calicoctl node status` (but cluster-wide), or `-o json`.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode, time::SystemTime};

use anyhow::Context;
use kube::{Api, api::ListParams};

use crate::nodestatus::{
    CaracalNodeStatus, NodeStatus,
    crd::{ApplyResult, PeerKind},
    report,
};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config or the in-cluster account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// `table` (default) or `json` (the objects, as `kubectl get -o json` lists them).
    #[arg(short, long, default_value = "table")]
    pub output: Output,
    /// Only these nodes (default: every node).
    pub nodes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let mut items = rt.block_on(async {
        let client = super::agent::kube_client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
        let api: Api<CaracalNodeStatus> = Api::all(client);
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing CaracalNodeStatus objects (is crds/caracalnodestatus.yaml applied?)")?;
        anyhow::Ok(list.items)
    })?;
    if !args.nodes.is_empty() {
        items.retain(|o| args.nodes.iter().any(|n| Some(n) == o.metadata.name.as_ref()));
    }
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    match args.output {
        Output::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Output::Table if items.is_empty() => println!("No CaracalNodeStatus found: is an agent running?"),
        Output::Table => print!("{}", render(&items, SystemTime::now())),
    }
    Ok(ExitCode::SUCCESS)
}

/// A `+---+` table, as calicoctl draws them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (w, c) in widths.iter().zip(cells) {
            let _ = write!(out, "| {c}{} ", " ".repeat(w - c.chars().count()));
        }
        out + "|\n"
    };
    let mut out = rule.clone();
    out += &line(headers.to_vec());
    out += &rule;
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out + &rule
}

fn ago(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, now: SystemTime) -> String {
    let Some(t) = t else { return "never".into() };
    let now = report::time(now);
    let secs = now.0.as_second() - t.0.as_second();
    format!("{} ({} ago)", t.0, human(secs))
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 0 => "0s".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn peer_type(k: PeerKind) -> &'static str {
    match k {
        PeerKind::NodeMesh => "node-to-node mesh",
        PeerKind::GlobalPeer => "global",
        PeerKind::NodePeer => "node specific",
    }
}

/// Every node's section: its sessions as a table, its routes and its policy state.
pub fn render(items: &[CaracalNodeStatus], now: SystemTime) -> String {
    let mut out = String::new();
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let name = o.metadata.name.as_deref().unwrap_or("?");
        let empty = NodeStatus::default();
        let s = o.status.as_ref().unwrap_or(&empty);
        let _ = write!(out, "Node {name}: updated {}", ago(s.updated.as_ref(), now));
        // The agent writes at least every HEARTBEAT: twice that without a word is a dead agent.
        let stale = 2 * crate::nodestatus::writer::HEARTBEAT.as_secs() as i64;
        if s.updated
            .as_ref()
            .is_none_or(|t| report::time(now).0.as_second() - t.0.as_second() > stale)
        {
            out.push_str(" (stale: is the agent running?)");
        }
        out.push('\n');
        match &s.bgp {
            None => out.push_str("BGP: not running\n"),
            Some(b) => {
                let _ = writeln!(
                    out,
                    "BGP: router ID {}, AS {}, {} established, {} not",
                    b.router_id, b.local_as, b.number_established, b.number_not_established
                );
                if b.peers.is_empty() {
                    out.push_str("No peers.\n");
                } else {
                    let rows: Vec<Vec<String>> = b
                        .peers
                        .iter()
                        .map(|p| {
                            vec![
                                p.peer_ip.clone(),
                                peer_type(p.kind).into(),
                                p.peer_as.to_string(),
                                if p.state == "Established" { "up" } else { "down" }.into(),
                                p.since.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
                                format!(
                                    "{}/{}/{}",
                                    p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
                                ),
                                match (&p.last_error, p.state.as_str()) {
                                    (_, "Established") => "Established".into(),
                                    (Some(e), st) => format!("{st}: {e}"),
                                    (None, st) => st.into(),
                                },
                            ]
                        })
                        .collect();
                    out += &table(
                        &[
                            "PEER ADDRESS",
                            "PEER TYPE",
                            "PEER AS",
                            "STATE",
                            "SINCE",
                            "RCVD/ACPT/ADV",
                            "INFO",
                        ],
                        &rows,
                    );
                }
            }
        }
        if let Some(r) = &s.routes {
            let _ = writeln!(out, "Originated routes: {}", r.originated.join(", "));
        }
        match &s.policy {
            None => out.push_str("Policy: not applied yet\n"),
            Some(p) => {
                let result = match p.last_apply_result {
                    Some(ApplyResult::Succeeded) => "succeeded".to_string(),
                    Some(ApplyResult::Failed) => {
                        format!("failed: {}", p.last_error.as_deref().unwrap_or("?"))
                    }
                    None => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "Policy: {} endpoints, {} NetworkPolicies, {} GlobalPolicies, {} chains, {} ipsets; last apply {} ({}): {result}",
                    p.endpoints,
                    p.network_policies,
                    p.global_policies,
                    p.chains,
                    p.ipsets,
                    ago(p.last_apply_time.as_ref(), now),
                    p.last_apply_mode
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::nodestatus::{
        crd::{BgpStatus, CaracalNodeStatusSpec, PeerSession, PolicyStatus, RoutesStatus},
        report::time,
    };

    #[test]
    fn each_node_gets_a_calicoctl_style_session_table_and_its_policy_line() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut o = CaracalNodeStatus::new(
            "node-a",
            CaracalNodeStatusSpec {
                node: "node-a".into(),
            },
        );
        o.status = Some(NodeStatus {
            updated: Some(time(t - Duration::from_secs(4))),
            agent_version: "0.1.0".into(),
            bgp: Some(BgpStatus {
                router_id: "192.0.2.1".into(),
                local_as: 64512,
                number_established: 1,
                number_not_established: 1,
                peers: vec![
                    PeerSession {
                        peer_ip: "192.0.2.2".into(),
                        peer_as: 64512,
                        kind: PeerKind::NodeMesh,
                        state: "Established".into(),
                        since: Some(time(t - Duration::from_secs(600))),
                        prefixes_received: 1,
                        prefixes_accepted: 1,
                        prefixes_advertised: 2,
                        last_error: None,
                    },
                    PeerSession {
                        peer_ip: "192.0.2.254".into(),
                        peer_as: 65000,
                        kind: PeerKind::GlobalPeer,
                        state: "Active".into(),
                        last_error: Some("connection lost".into()),
                        ..Default::default()
                    },
                ],
            }),
            routes: Some(RoutesStatus {
                originated: vec!["10.244.1.0/24".into()],
            }),
            policy: Some(PolicyStatus {
                endpoints: 3,
                network_policies: 2,
                last_apply_time: Some(time(t - Duration::from_secs(90))),
                last_apply_mode: "delta".into(),
                last_apply_result: Some(ApplyResult::Succeeded),
                ..Default::default()
            }),
        });
        let text = render(&[o], t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "Node node-a: updated 2027-01-15T07:59:56Z (4s ago)",
            "{text}"
        );
        assert_eq!(
            lines[1],
            "BGP: router ID 192.0.2.1, AS 64512, 1 established, 1 not"
        );
        assert!(
            lines[3].starts_with("| PEER ADDRESS | PEER TYPE         | PEER AS | STATE |"),
            "{text}"
        );
        assert!(
            lines[5].starts_with(
                "| 192.0.2.2    | node-to-node mesh | 64512   | up    | 2027-01-15T07:50:00Z | 1/1/2 "
            ),
            "{text}"
        );
        assert!(
            lines[6].contains("| down  |") && lines[6].contains("Active: connection lost"),
            "{text}"
        );
        assert!(lines.contains(&"Originated routes: 10.244.1.0/24"), "{text}");
        let policy = lines.iter().find(|l| l.starts_with("Policy:")).unwrap();
        assert!(
            policy.starts_with("Policy: 3 endpoints, 2 NetworkPolicies, 0 GlobalPolicies"),
            "{policy}"
        );
        assert!(policy.ends_with("(90s ago) (delta): succeeded"), "{policy}");
        // An agent silent for longer than two heartbeats is called out.
        let mut old = CaracalNodeStatus::new(
            "node-b",
            CaracalNodeStatusSpec {
                node: "node-b".into(),
            },
        );
        old.status = Some(NodeStatus {
            updated: Some(time(t - Duration::from_secs(3600))),
            ..Default::default()
        });
        let text_b = render(&[old], t);
        assert!(
            text_b.starts_with(
                "Node node-b: updated 2027-01-15T07:00:00Z (60m ago) (stale: is the agent running?)\n"
            ),
            "{text_b}"
        );
        // Every row of the table is as wide as its rule.
        let widths: std::collections::BTreeSet<usize> =
            lines[2..8].iter().map(|l| l.chars().count()).collect();
        assert_eq!(widths.len(), 1, "{text}");
    }
}
