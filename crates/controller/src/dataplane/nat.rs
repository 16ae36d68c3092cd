//! Programs the outgoing-NAT program ([`crate::nat`]): the I/O shell around
//! [`crate::nat::render::plan`]. Every apply reads caracal's part of the nat table and its sets
//! back (`iptables-save -t nat`, `ipset save <name>`), so whatever was changed or removed behind
//! the agent's back is put right; an apply that finds the kernel in sync runs no writing tool.

use std::{collections::BTreeMap, path::PathBuf};

use caracal_policy::program::Family;

use super::{
    Result,
    backend::{self, Backend, Tools},
    netns::{run, tool},
};
use crate::nat::{
    NatProgram,
    render::{self, SavedNat, SavedSet},
};

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    pub restores: usize,
    pub ipset_calls: usize,
}

pub struct NatApplier {
    netns: Option<String>,
    tools: BTreeMap<Family, Tools>,
    ipset: PathBuf,
    /// The chain as `iptables-save` printed it right after the last write, per family: a rule
    /// changed in place (same comment) is told apart by its text.
    printed: BTreeMap<Family, Vec<String>>,
}

impl NatApplier {
    /// An applier for namespace `netns` (the current one when `None`), with the given iptables
    /// backend or the detected one (the one kube-proxy uses).
    pub fn new(netns: Option<&str>, backend: Option<Backend>) -> Result<NatApplier> {
        let (_, tools) = backend::resolve(netns, backend)?;
        Ok(NatApplier {
            netns: netns.map(str::to_owned),
            tools,
            ipset: tool("ipset")?,
            printed: BTreeMap::new(),
        })
    }

    /// Makes the kernel hold `program`, changing only what differs.
    #[tracing::instrument(skip_all, fields(netns = self.netns.as_deref().unwrap_or("-")))]
    pub fn apply(&mut self, program: &NatProgram) -> Result<NatStats> {
        let mut stats = NatStats::default();
        for family in [Family::V4, Family::V6] {
            let want = program.families.get(&family);
            let Some(have) = self.read_nat(family, want.is_some())? else {
                continue;
            };
            let sets = self.read_sets(family);
            let plan = render::plan(
                family,
                want,
                &have,
                &sets,
                self.printed.get(&family).map(Vec::as_slice),
            );
            if plan.is_empty() {
                continue;
            }
            tracing::info!(?family, "repairing the outgoing-NAT rules and sets");
            let ns = self.netns.as_deref();
            if !plan.sets_before.is_empty() {
                run(ns, &self.ipset, &["restore"], Some(&plan.sets_before))?;
                stats.ipset_calls += 1;
            }
            if let Some(restore) = &plan.restore {
                run(
                    ns,
                    &self.tools[&family].restore,
                    &["--noflush", "--wait", "10"],
                    Some(restore),
                )?;
                stats.restores += 1;
            }
            if !plan.sets_after.is_empty() {
                run(ns, &self.ipset, &["restore"], Some(&plan.sets_after))?;
                stats.ipset_calls += 1;
            }
            match want {
                Some(_) => {
                    let printed = self
                        .read_nat(family, true)?
                        .and_then(|n| n.chain)
                        .unwrap_or_default();
                    self.printed.insert(family, printed);
                }
                None => {
                    self.printed.remove(&family);
                }
            }
        }
        Ok(stats)
    }

    /// caracal's part of the family's nat table. A family without a nat table (no IPv6 here)
    /// holds nothing of caracal's: `None` unless something is wanted there, then an error.
    fn read_nat(&self, family: Family, wanted: bool) -> Result<Option<SavedNat>> {
        match run(
            self.netns.as_deref(),
            &self.tools[&family].save,
            &["-t", "nat"],
            None,
        ) {
            Ok(text) => Ok(Some(render::parse_nat_save(&text))),
            Err(e) if wanted => Err(e),
            Err(e) => {
                tracing::debug!(?family, "no nat table to read: {e}");
                Ok(None)
            }
        }
    }

    /// The family's caracal NAT sets that exist.
    fn read_sets(&self, family: Family) -> BTreeMap<String, SavedSet> {
        let mut out = BTreeMap::new();
        for name in [render::masq_set(family), render::all_set(family)] {
            // A set that does not exist is an error of `ipset save NAME`: absent.
            if let Ok(text) = run(self.netns.as_deref(), &self.ipset, &["save", &name], None) {
                out.extend(render::parse_ipset_save(&text));
            }
        }
        out
    }
}
