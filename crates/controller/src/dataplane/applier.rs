//! Incremental apply of a [`Program`]: the I/O shell around [`caracal_policy::apply`].
//!
//! The applier remembers what it last programmed, so that an apply costs only the diff: one
//! changed policy is one chain in one `iptables-restore --noflush` per affected table, a label
//! change elsewhere in the cluster is a few lines of one `ipset restore`. It reads the kernel back
//! (`iptables-save -t TABLE`, `ipset save`) the first time, after any failure, and on
//! [`Applier::resync`], so rules others changed or removed are put back. Order: sets are created
//! and filled first, then every table, then stale sets are destroyed, so no rule ever refers to a
//! set that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use caracal_policy::apply::{canonical_members, plan_sets, plan_sets_only, plan_table, plan_table_only};
use caracal_policy::program::{Chain, Family, IpSet, Program, Table};
use caracal_policy::render::iptables::{
    Ctx, RenderedTable, SavedTable, chain_names, parse_save, render_chain, render_hooks,
};

use super::Result;
use super::backend::{self, Backend, Tools};
use super::netns::{run, tool};

/// Tables caracal may write to, read back to find stale chains and hooks.
const TABLES: [Table; 3] = [Table::Filter, Table::Raw, Table::Mangle];

/// What one apply changed, and how long the kernel tools took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub restores: usize,
    pub chains_written: usize,
    pub chains_deleted: usize,
    pub hooks_rewritten: usize,
    pub ipset_calls: usize,
    pub sets_created: usize,
    pub sets_updated: usize,
    pub sets_swapped: usize,
    pub sets_destroyed: usize,
    pub members_changed: usize,
    pub rules_written: usize,
    /// Time spent in `iptables-restore` and `ipset`.
    pub kernel_time: Duration,
}

/// A chain's identity in a [`Program`].
pub type ChainKey = (Family, Table, String);

/// The chains and sets that may differ from the last apply; everything else is taken as
/// unchanged. Built from the incremental compiler's delta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Chains new, changed or removed.
    pub chains: BTreeSet<ChainKey>,
    /// Sets new, changed (members) or removed.
    pub sets: BTreeSet<String>,
}

/// What the applier believes the kernel holds.
#[derive(Clone, Debug, Default)]
struct Known {
    tables: BTreeMap<(Family, Table), SavedTable>,
    sets: BTreeMap<String, IpSet>,
    /// caracal-named sets of kinds caracal does not create.
    unknown_sets: BTreeSet<String>,
}

pub struct Applier {
    netns: Option<String>,
    backend: Backend,
    tools: BTreeMap<Family, Tools>,
    ipset: PathBuf,
    known: Option<Known>,
    /// The program's tables as last rendered, and the chains they were rendered from: an
    /// unchanged chain is neither re-rendered nor copied.
    tables: BTreeMap<(Family, Table), RenderedTable>,
    sources: BTreeMap<(Family, Table, String), Chain>,
    /// How `iptables-save` printed each caracal chain when last read back, by (family, table,
    /// chain, the chain's hash). Only a chain's first rule carries the hash, so a rule changed in
    /// place behind caracal's back keeps hash and length; the printed text gives it away.
    printed: BTreeMap<PrintedKey, Vec<String>>,
}

type PrintedKey = (Family, Table, String, String);

impl Applier {
    /// An applier for namespace `netns` (the current one when `None`), with the given backend or
    /// the detected one.
    pub fn new(netns: Option<&str>, backend: Option<Backend>) -> Result<Applier> {
        let (backend, tools) = backend::resolve(netns, backend)?;
        Ok(Applier {
            netns: netns.map(str::to_owned),
            backend,
            tools,
            ipset: tool("ipset")?,
            known: None,
            tables: BTreeMap::new(),
            sources: BTreeMap::new(),
            printed: BTreeMap::new(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Forgets what was programmed: the next apply reads the kernel back first.
    pub fn resync(&mut self) {
        self.known = None;
    }

    /// Programs `program`, changing only what differs. On failure the kernel is read back and
    /// the apply retried once, so drift (rules someone else removed) heals itself.
    #[tracing::instrument(skip_all, fields(netns = self.netns.as_deref().unwrap_or("-")))]
    pub fn apply(&mut self, program: &Program) -> Result<ApplyStats> {
        self.apply_inner(program, None)
    }

    /// As [`Applier::apply`], when the caller knows which chains and sets may have changed
    /// since the last apply (the incremental compiler's delta): only those are rendered and
    /// compared, so the cost follows the change, not the program's size. The first apply, and
    /// the retry after a failure, compare everything.
    #[tracing::instrument(skip_all, fields(netns = self.netns.as_deref().unwrap_or("-")))]
    pub fn apply_changes(&mut self, program: &Program, changes: &Changes) -> Result<ApplyStats> {
        let warm = self.known.is_some() && !self.sources.is_empty();
        self.apply_inner(program, warm.then_some(changes))
    }

    fn apply_inner(&mut self, program: &Program, only: Option<&Changes>) -> Result<ApplyStats> {
        self.render(program, only)?;
        let tables = std::mem::take(&mut self.tables);
        let had_known = self.known.is_some();
        let result = match self.apply_rendered(program, &tables, only) {
            Ok(s) => Ok(s),
            Err(e) if had_known => {
                tracing::warn!(error = %e, "apply failed; reading the kernel back and retrying");
                self.known = None;
                self.apply_rendered(program, &tables, None)
            }
            Err(e) => {
                self.known = None;
                Err(e)
            }
        };
        self.tables = tables;
        result
    }

    /// Removes every caracal chain, hook and set.
    pub fn clear(&mut self) -> Result<ApplyStats> {
        self.apply(&Program::default())
    }

    /// Reads the kernel back and describes what differs from `program` (empty when in sync).
    pub fn drift(&self, program: &Program) -> Result<Vec<String>> {
        let mut known = self.read_back()?;
        check_printed(&self.printed, &mut known);
        let tables = self.render_uncached(program)?;
        let mut out = Vec::new();
        for key in tables.keys().chain(known.tables.keys()).collect::<BTreeSet<_>>() {
            let want = tables
                .get(key)
                .cloned()
                .unwrap_or_else(|| RenderedTable::new(key.0, key.1));
            let have = known.tables.get(key).cloned().unwrap_or_default();
            if let Some(plan) = plan_table(&want, &have) {
                out.push(format!(
                    "{key:?}: {}",
                    plan.restore.trim_end().replace('\n', " | ")
                ));
            }
        }
        let sets = plan_sets(&program.sets, &known.sets, &known.unknown_sets)?;
        if !sets.is_empty() {
            out.push(format!("ipsets: {}{}", sets.before, sets.after));
        }
        Ok(out)
    }

    fn render_uncached(&self, program: &Program) -> Result<BTreeMap<(Family, Table), RenderedTable>> {
        Ok(caracal_policy::render::iptables::render_program(program)?)
    }

    /// Renders the program into `self.tables`, re-rendering only chains that changed since the
    /// last apply.
    fn render(&mut self, program: &Program, only: Option<&Changes>) -> Result<()> {
        let names = chain_names(program);
        for t in self.tables.values_mut() {
            t.hooks.clear();
        }
        // Drop what the program no longer has.
        match only {
            None => {
                self.sources.retain(|key, _| program.chains.contains_key(key));
                for t in self.tables.values_mut() {
                    t.chains
                        .retain(|name, _| program.chains.contains_key(&(t.family, t.table, name.clone())));
                }
            }
            Some(changes) => {
                for key in changes.chains.iter().filter(|k| !program.chains.contains_key(*k)) {
                    self.sources.remove(key);
                    if let Some(t) = self.tables.get_mut(&(key.0, key.1)) {
                        t.chains.remove(&key.2);
                    }
                }
            }
        }
        let chains: Box<dyn Iterator<Item = (&ChainKey, &Chain)>> = match only {
            None => Box::new(program.chains.iter()),
            Some(changes) => Box::new(
                changes
                    .chains
                    .iter()
                    .filter_map(|k| program.chains.get_key_value(k)),
            ),
        };
        for (key, chain) in chains {
            let (family, table, name) = key;
            if self.sources.get(key) == Some(chain) {
                continue;
            }
            let ctx = Ctx {
                family: *family,
                sets: &program.sets,
                chains: &names[&(*family, *table)],
            };
            let rules = render_chain(name, chain, &ctx).inspect_err(|_| {
                // A half-updated cache must not survive a failed render.
                self.sources.clear();
                self.tables.clear();
            })?;
            self.tables
                .entry((*family, *table))
                .or_insert_with(|| RenderedTable::new(*family, *table))
                .chains
                .insert(name.clone(), rules);
            self.sources.insert(key.clone(), chain.clone());
        }
        let hooks = render_hooks(program, &names).inspect_err(|_| {
            self.sources.clear();
            self.tables.clear();
        })?;
        for (key, hooks) in hooks {
            self.tables
                .entry(key)
                .or_insert_with(|| RenderedTable::new(key.0, key.1))
                .hooks = hooks;
        }
        self.tables
            .retain(|_, t| !t.chains.is_empty() || !t.hooks.is_empty());
        Ok(())
    }

    fn apply_rendered(
        &mut self,
        program: &Program,
        tables: &BTreeMap<(Family, Table), RenderedTable>,
        only: Option<&Changes>,
    ) -> Result<ApplyStats> {
        let mut known = match self.known.take() {
            Some(k) => k,
            None => {
                let mut k = self.read_back()?;
                self.printed = check_printed(&self.printed, &mut k);
                k
            }
        };
        let mut stats = ApplyStats::default();
        let set_plan = plan_sets_only(
            &program.sets,
            &known.sets,
            &known.unknown_sets,
            only.map(|c| &c.sets),
        )?;
        stats.sets_created = set_plan.created;
        stats.sets_updated = set_plan.updated;
        stats.sets_swapped = set_plan.swapped;
        stats.sets_destroyed = set_plan.destroyed;
        stats.members_changed = set_plan.members_changed;
        if !set_plan.before.is_empty() {
            self.ipset_restore(&set_plan.before, &mut stats)?;
        }
        let keys: BTreeSet<(Family, Table)> = tables.keys().chain(known.tables.keys()).copied().collect();
        let empty_tables: BTreeMap<(Family, Table), RenderedTable> =
            keys.iter().map(|k| (*k, RenderedTable::new(k.0, k.1))).collect();
        let mut jobs = Vec::new();
        for key in keys {
            let want = tables.get(&key).unwrap_or(&empty_tables[&key]);
            let have = known.tables.entry(key).or_default();
            let names: Option<BTreeSet<String>> = only.map(|c| {
                c.chains
                    .iter()
                    .filter(|(f, t, _)| (*f, *t) == key)
                    .map(|(_, _, n)| n.clone())
                    .collect()
            });
            if let Some(plan) = plan_table_only(want, have, names.as_ref()) {
                jobs.push((key, want, names, plan));
            }
        }
        // One restore per table and family, all at once: nft tables are independent
        // transactions (a changed policy's IPv4 and IPv6 chains load side by side); the legacy
        // tools serialise on the xtables lock (`--wait`).
        let netns = self.netns.as_deref();
        let tools = &self.tools;
        let started = Instant::now();
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let running: Vec<_> = jobs
                .iter()
                .map(|(key, _, _, plan)| {
                    let restore = &tools[&key.0].restore;
                    scope.spawn(move || {
                        run(
                            netns,
                            restore,
                            &["--noflush", "--wait", "10"],
                            Some(&plan.restore),
                        )
                        .map(drop)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        if !jobs.is_empty() {
            stats.kernel_time += started.elapsed();
        }
        for r in results {
            r?;
        }
        for (key, want, names, plan) in jobs {
            stats.restores += 1;
            stats.chains_written += plan.chains_written;
            stats.chains_deleted += plan.chains_deleted;
            stats.hooks_rewritten += plan.hooks_rewritten;
            stats.rules_written += plan
                .restore
                .lines()
                .filter(|l| l.starts_with("-A") || l.starts_with("-I"))
                .count();
            known
                .tables
                .entry(key)
                .or_default()
                .apply_only(want, names.as_ref());
        }
        if !set_plan.after.is_empty() {
            self.ipset_restore(&set_plan.after, &mut stats)?;
        }
        // Only the sets the plan touched are copied: a large cluster has many members.
        match only {
            None => known.sets.retain(|name, _| program.sets.contains_key(name)),
            Some(c) => c
                .sets
                .iter()
                .filter(|n| !program.sets.contains_key(*n))
                .for_each(|n| {
                    known.sets.remove(n);
                }),
        }
        for name in &set_plan.changed {
            let set = &program.sets[name];
            let members = canonical_members(set).into_owned();
            known.sets.insert(
                name.clone(),
                IpSet {
                    family: set.family,
                    kind: set.kind,
                    members,
                },
            );
        }
        known
            .unknown_sets
            .retain(|n| !n.starts_with(caracal_policy::program::SET_PREFIX));
        self.known = Some(known);
        Ok(stats)
    }

    fn ipset_restore(&self, input: &str, stats: &mut ApplyStats) -> Result<()> {
        let started = Instant::now();
        run(self.netns.as_deref(), &self.ipset, &["restore"], Some(input))?;
        stats.kernel_time += started.elapsed();
        stats.ipset_calls += 1;
        Ok(())
    }

    fn read_back(&self) -> Result<Known> {
        let mut known = Known::default();
        for (family, tools) in &self.tools {
            for table in TABLES {
                let out = match run(self.netns.as_deref(), &tools.save, &["-t", table.name()], None) {
                    Ok(out) => out,
                    // A kernel without raw or mangle has nothing of ours there either.
                    Err(e) if table != Table::Filter => {
                        tracing::debug!(error = %e, table = table.name(), "table not readable");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let saved = parse_save(&out, table)?;
                if !saved.chains.is_empty() {
                    known.tables.insert((*family, table), saved);
                }
            }
        }
        let out = run(self.netns.as_deref(), &self.ipset, &["save"], None)?;
        let (sets, other) = caracal_policy::render::ipset::parse_save(&out)?;
        known.sets = sets;
        known.unknown_sets = other;
        Ok(known)
    }
}

/// Compares each caracal chain read back with how it was printed before under the same hash;
/// a chain printed differently loses its hash in `known`, so the plan rewrites it. Returns the
/// printed forms to remember: this read's, except for chains that differed.
fn check_printed(
    before: &BTreeMap<PrintedKey, Vec<String>>,
    known: &mut Known,
) -> BTreeMap<PrintedKey, Vec<String>> {
    let mut now = BTreeMap::new();
    for ((family, table), saved) in known.tables.iter_mut() {
        for (name, rules) in saved.chains.iter_mut() {
            if !name.starts_with(caracal_policy::program::CHAIN_PREFIX) {
                continue;
            }
            let Some(hash) = rules.first().and_then(|r| r.hash.clone()) else {
                continue;
            };
            let key = (*family, *table, name.clone(), hash);
            let specs: Vec<String> = rules.iter().map(|r| r.spec.clone()).collect();
            match before.get(&key) {
                Some(was) if *was != specs => {
                    tracing::warn!(chain = %name, "a rule was changed behind caracal's back; rewriting the chain");
                    rules[0].hash = None;
                }
                _ => {
                    now.insert(key, specs);
                }
            }
        }
    }
    now
}

impl super::Dataplane for Applier {
    fn apply(&mut self, program: &Program) -> Result<ApplyStats> {
        Applier::apply(self, program)
    }

    fn apply_delta(
        &mut self,
        program: &Program,
        delta: &caracal_policy::compile::Delta,
    ) -> Result<ApplyStats> {
        self.apply_changes(program, &Changes::from(delta))
    }

    fn resync(&mut self) {
        Applier::resync(self)
    }
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("netns", &self.netns)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl From<&caracal_policy::compile::Delta> for Changes {
    fn from(d: &caracal_policy::compile::Delta) -> Self {
        Changes {
            chains: d
                .chains_changed
                .iter()
                .chain(&d.chains_removed)
                .cloned()
                .collect(),
            sets: d
                .sets_added
                .iter()
                .chain(&d.sets_removed)
                .chain(d.members_added.iter().map(|(n, _)| n))
                .chain(d.members_removed.iter().map(|(n, _)| n))
                .cloned()
                .collect(),
        }
    }
}
