//! The offline prober: compiles each node's program and runs every probe's first packet through
//! it with the evaluator, along the path a real packet takes (one FORWARD pass when both pods
//! share a node; the source node's FORWARD out of the uplink, then the destination node's FORWARD
//! in from it, otherwise).

use std::{collections::BTreeMap, net::IpAddr};

use super::{Case, Error, Observation, Prober, Result, Table};
use crate::{
    compile::{compile, iface_name},
    eval::{self, Packet},
    model::{ClusterState, Key, Pod},
    program::{CtState, Program, Protocol},
};

/// The node's uplink in the simulated path of cross-node traffic.
pub const UPLINK: &str = "eth0";

#[derive(Default)]
pub struct OfflineProber {
    /// Also decide every probe with [`eval::reference`] and fail on disagreement.
    pub cross_check: bool,
    programs: BTreeMap<String, Program>,
    /// Rejected objects of the last sync, for reporting.
    pub rejected: Vec<String>,
}

impl OfflineProber {
    pub fn new(cross_check: bool) -> Self {
        OfflineProber {
            cross_check,
            ..Default::default()
        }
    }

    pub fn program(&self, node: &str) -> Option<&Program> {
        self.programs.get(node)
    }
}

fn ipv4(pod: &Pod) -> Option<IpAddr> {
    pod.ips.iter().copied().find(IpAddr::is_ipv4)
}

/// Runs a NEW packet from `src` to `dst` along its path; returns the verdict of each hop.
pub fn path_verdicts(
    programs: &BTreeMap<String, Program>,
    src: &Pod,
    dst: &Pod,
    protocol: Protocol,
    port: u16,
) -> Result<Vec<eval::Verdict>> {
    let (Some(s), Some(d)) = (ipv4(src), ipv4(dst)) else {
        return Err(Error::Prober(format!(
            "{}/{} or {}/{} has no IPv4 address",
            src.namespace, src.name, dst.namespace, dst.name
        )));
    };
    let src_node = src.node.clone().unwrap_or_default();
    let dst_node = dst.node.clone().unwrap_or_default();
    let src_if = iface_name(&Key::new(src.namespace.clone(), src.name.clone()));
    let dst_if = iface_name(&Key::new(dst.namespace.clone(), dst.name.clone()));
    let packet = |in_iface: &str, out_iface: &str| Packet {
        src: s,
        dst: d,
        protocol,
        dport: port,
        in_iface: Some(in_iface.to_string()),
        out_iface: Some(out_iface.to_string()),
        ct: CtState::New,
    };
    let program = |node: &str| {
        programs
            .get(node)
            .ok_or_else(|| Error::Prober(format!("no program for node {node:?}")))
    };
    let run = |node: &str, pkt: Packet| {
        eval::run(program(node)?, "FORWARD", &pkt).map_err(|e| Error::Prober(format!("node {node}: {e}")))
    };
    if src_node == dst_node {
        Ok(vec![run(&src_node, packet(&src_if, &dst_if))?])
    } else {
        Ok(vec![
            run(&src_node, packet(&src_if, UPLINK))?,
            run(&dst_node, packet(UPLINK, &dst_if))?,
        ])
    }
}

impl Prober for OfflineProber {
    fn sync(&mut self, case: &Case, state: &ClusterState) -> Result<()> {
        self.programs.clear();
        self.rejected.clear();
        for node in &case.nodes {
            let compiled = compile(state, &case.endpoints(state, node));
            if self.rejected.is_empty() {
                self.rejected = compiled.errors.iter().map(ToString::to_string).collect();
            }
            self.programs.insert(node.clone(), compiled.program);
        }
        Ok(())
    }

    fn probe(
        &mut self,
        case: &Case,
        state: &ClusterState,
        port: u16,
        protocol: Protocol,
        _expected: &Table,
    ) -> Result<Observation> {
        let mut table = Table {
            pods: case.pods.clone(),
            ..Default::default()
        };
        for s in &case.pods {
            for d in &case.pods {
                if s == d {
                    table.cells.insert((s.clone(), d.clone()), true);
                    continue;
                }
                let (sp, dp) = (&state.pods[s], &state.pods[d]);
                let verdicts = path_verdicts(&self.programs, sp, dp, protocol, port)?;
                let allowed = verdicts.iter().all(|v| v.accepted);
                if self.cross_check {
                    let (e, i) = eval::reference::allowed(state, sp, dp, protocol, port);
                    if allowed != (e.allowed && i.allowed) {
                        return Err(Error::Prober(format!(
                            "compiled program and reference disagree for {s} -> {d} {port}/{}: program {allowed} \
                             ({:?}), reference egress {e:?}, ingress {i:?}",
                            protocol.name(),
                            verdicts.iter().flat_map(|v| v.reasons()).collect::<Vec<_>>()
                        )));
                    }
                }
                table.cells.insert((s.clone(), d.clone()), allowed);
            }
        }
        Ok(Observation {
            table,
            skipped: false,
        })
    }
}
