//! The offline prober: compiles each node's program and runs every probe's first packet through
//! it with the evaluator, along the path a real packet takes ([`caracal_policy::path`]).

use std::collections::BTreeMap;

use super::{Case, Error, Observation, Prober, Result, Table};
use caracal_policy::{
    compile::compile,
    eval,
    model::ClusterState,
    path::path_verdicts,
    program::{Program, Protocol},
};

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
                let verdicts = path_verdicts(&self.programs, sp, dp, protocol, port)
                    .map_err(|e| Error::Prober(e.to_string()))?;
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
