//! The node-mode conformance prober: every pod of a case on one real node ([`NodeLab`]), the
//! compiled program applied with the [`Applier`], and real TCP, UDP (and SCTP where the kernel
//! has it) probes between the pods.
//!
//! All expectations of a step are probed in one parallel batch when the first of them is asked
//! for: a blocked cell costs one probe timeout, and a step costs about one timeout however many
//! ports and protocols it checks. Cells that do not yet show what the case expects are probed
//! again until the 10-second deadline of the format.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use caracal_policy::compile::{compile, iface_name};
use caracal_policy::model::{ClusterState, Key, LocalEndpoint};
use caracal_policy::program::Protocol;
use caracal_testkit::conformance::{Case, Error, Observation, Prober, Result, Table};

use super::nodelab::{NodeLab, Outcome, PodSpec, Probe};
use crate::dataplane::applier::Applier;
use crate::dataplane::backend::Backend;

/// How long a step's expectations may take to show (the format's deadline).
pub const DEADLINE: Duration = Duration::from_secs(10);

struct Running {
    lab: NodeLab,
    applier: Applier,
    /// Index of the step whose changes were synced last.
    step: usize,
    /// Observations of the current step, by (port, protocol).
    observed: Option<BTreeMap<(u16, Protocol), Observation>>,
}

/// A [`Prober`] that builds a node lab per case and tears it down when the case ends.
#[derive(Default)]
pub struct NodeProber {
    backend: Option<Backend>,
    running: Option<Running>,
    /// Objects the compiler rejected in the last sync, for reporting.
    pub rejected: Vec<String>,
}

impl NodeProber {
    /// A prober on the detected iptables backend (or the given one).
    pub fn new(backend: Option<Backend>) -> NodeProber {
        NodeProber {
            backend,
            ..Default::default()
        }
    }

    fn start(&self, case: &Case, state: &ClusterState) -> Result<Running> {
        let mut specs = Vec::new();
        for key in &case.pods {
            let ip = state
                .pods
                .get(key)
                .and_then(|p| {
                    p.ips.iter().find_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                })
                .ok_or_else(|| Error::Prober(format!("pod {key} has no IPv4 address")))?;
            specs.push(PodSpec {
                key: key.clone(),
                ip,
                iface: iface_name(key),
            });
        }
        let services: Vec<(u16, Protocol)> = case
            .ports
            .iter()
            .flat_map(|&port| case.protocols.iter().map(move |&p| (port, p)))
            .collect();
        let lab = NodeLab::up_with(&specs, &services).map_err(|e| Error::Prober(e.to_string()))?;
        let applier =
            Applier::new(Some(lab.node_netns()), self.backend).map_err(|e| Error::Prober(e.to_string()))?;
        Ok(Running {
            lab,
            applier,
            step: 0,
            observed: None,
        })
    }
}

impl Prober for NodeProber {
    fn sync(&mut self, case: &Case, state: &ClusterState) -> Result<()> {
        match &mut self.running {
            Some(r) => r.step += 1,
            None => self.running = Some(self.start(case, state)?),
        }
        let running = self.running.as_mut().expect("started above");
        running.observed = None;
        // Every pod of the case is local to this one node.
        let endpoints: Vec<LocalEndpoint> = case
            .pods
            .iter()
            .filter_map(|key| {
                state.pods.get(key).map(|p| LocalEndpoint {
                    pod: key.clone(),
                    iface: iface_name(key),
                    ips: p.ips.clone(),
                })
            })
            .collect();
        let compiled = compile(state, &endpoints);
        self.rejected = compiled.errors.iter().map(ToString::to_string).collect();
        running
            .applier
            .apply(&compiled.program)
            .map_err(|e| Error::Prober(format!("applying the program: {e}")))?;
        Ok(())
    }

    fn probe(
        &mut self,
        case: &Case,
        _state: &ClusterState,
        port: u16,
        protocol: Protocol,
        expected: &Table,
    ) -> Result<Observation> {
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| Error::Prober("probe before sync".into()))?;
        if running.observed.is_none() {
            let mut wanted: Vec<(u16, Protocol, Table)> = case
                .steps
                .get(running.step)
                .map(|s| {
                    s.expect
                        .iter()
                        .map(|e| (e.port, e.protocol, e.table.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if !wanted.iter().any(|(p, pr, _)| *p == port && *pr == protocol) {
                wanted.push((port, protocol, expected.clone()));
            }
            running.observed = Some(probe_tables(&running.lab, &case.pods, &wanted)?);
        }
        let observed = running.observed.as_mut().expect("filled above");
        match observed.remove(&(port, protocol)) {
            Some(o) => Ok(o),
            // Asked twice in one step, or for a table the step does not list: probe it alone.
            None => {
                let mut one = probe_tables(&running.lab, &case.pods, &[(port, protocol, expected.clone())])?;
                Ok(one.remove(&(port, protocol)).expect("probed above"))
            }
        }
    }

    fn finish(&mut self, _case: &Case) {
        self.running = None;
    }
}

/// Probes every ordered pair of distinct pods for each (port, protocol), all at once.
fn probe_tables(
    lab: &NodeLab,
    pods: &[Key],
    wanted: &[(u16, Protocol, Table)],
) -> Result<BTreeMap<(u16, Protocol), Observation>> {
    let mut probes = Vec::new();
    let mut expect = Vec::new();
    for (port, protocol, table) in wanted {
        for s in pods {
            for d in pods {
                if s != d {
                    probes.push(Probe {
                        from: s.clone(),
                        to: d.clone(),
                        port: *port,
                        protocol: *protocol,
                    });
                    expect.push(table.get(s, d).unwrap_or(true));
                }
            }
        }
    }
    let outcomes = lab
        .probe_until(&probes, &expect, DEADLINE)
        .map_err(|e| Error::Prober(e.to_string()))?;
    let mut out: BTreeMap<(u16, Protocol), Observation> = BTreeMap::new();
    for ((probe, outcome), want) in probes.iter().zip(outcomes).zip(expect) {
        let obs = out.entry((probe.port, probe.protocol)).or_insert_with(|| {
            let mut table = Table {
                pods: pods.to_vec(),
                ..Default::default()
            };
            for p in pods {
                table.cells.insert((p.clone(), p.clone()), true);
            }
            Observation {
                table,
                skipped: false,
            }
        });
        let connected = match outcome {
            Outcome::Connected => true,
            Outcome::TimedOut => false,
            Outcome::Skipped(why) => {
                tracing::info!(protocol = probe.protocol.name(), "probe skipped: {why}");
                obs.skipped = true;
                want
            }
            // A refusal is neither `.` nor `X`: show the opposite of the expectation so the
            // cell fails, and say why.
            Outcome::Failed(why) => {
                tracing::warn!(from = %probe.from, to = %probe.to, port = probe.port, "probe failed: {why}");
                !want
            }
        };
        obs.table
            .cells
            .insert((probe.from.clone(), probe.to.clone()), connected);
    }
    Ok(out)
}
