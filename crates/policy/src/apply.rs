//! Planning an incremental apply: what the kernel holds against what the program wants, as the
//! smallest `iptables-restore --noflush` and `ipset restore` inputs that get from one to the other.
//!
//! Pure: the applier in the controller reads the kernel state, calls these, and runs the tools.
//! Rules: only caracal chains and sets (by prefix) and caracal's hashed rules in built-in chains
//! are ever written or removed; a changed chain is rewritten whole; stale chains are flushed and
//! deleted in the same transaction after every jump to them is gone; sets are created and filled
//! before the iptables transaction and destroyed after it.

use std::collections::{BTreeMap, BTreeSet};

use crate::program::{CHAIN_PREFIX, IpSet, SET_PREFIX, SetMember};
use crate::render::ipset::{canonical, check_set_name, create_line, is_canonical, member_arg, push_member};
use crate::render::iptables::{RenderedRule, RenderedTable, SavedRule, SavedTable, push_rule};
use crate::render::{Error, Result};

/// One `iptables-restore --noflush` transaction for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlan {
    pub restore: String,
    pub chains_written: usize,
    pub chains_deleted: usize,
    pub hooks_rewritten: usize,
}

/// The transaction that turns `actual` into `desired`, or `None` when they already agree.
pub fn plan_table(desired: &RenderedTable, actual: &SavedTable) -> Option<TablePlan> {
    plan_table_only(desired, actual, None)
}

/// As [`plan_table`], but when `only` is given, only those chains are compared (the caller knows
/// the others did not change); hooks are always checked.
pub fn plan_table_only(
    desired: &RenderedTable,
    actual: &SavedTable,
    only: Option<&BTreeSet<String>>,
) -> Option<TablePlan> {
    let same = |rules: &[RenderedRule], saved: &[SavedRule]| {
        rules.len() == saved.len() && rules.iter().zip(saved).all(|(r, s)| s.hash == r.hash)
    };
    let is_dirty = |name: &String, rules: &Vec<RenderedRule>| {
        actual.chains.get(name).is_none_or(|saved| !same(rules, saved))
    };
    let is_stale = |name: &String| name.starts_with(CHAIN_PREFIX) && !desired.chains.contains_key(name);
    let (dirty, stale): (Vec<&String>, Vec<&String>) = match only {
        None => (
            desired
                .chains
                .iter()
                .filter(|(name, rules)| is_dirty(name, rules))
                .map(|(name, _)| name)
                .collect(),
            actual.chains.keys().filter(|name| is_stale(name)).collect(),
        ),
        Some(only) => (
            only.iter()
                .filter_map(|name| desired.chains.get_key_value(name))
                .filter(|(name, rules)| is_dirty(name, rules))
                .map(|(name, _)| name)
                .collect(),
            only.iter()
                .filter(|name| is_stale(name) && actual.chains.contains_key(*name))
                .collect(),
        ),
    };

    let no_hooks = Default::default();
    let no_rules = Vec::new();
    let mut builtins: BTreeSet<&String> = desired.hooks.keys().collect();
    builtins.extend(
        actual
            .chains
            .iter()
            .filter(|(name, rules)| !name.starts_with(CHAIN_PREFIX) && rules.iter().any(|r| r.hash.is_some()))
            .map(|(name, _)| name),
    );
    let mut hook_deletes = String::new();
    let mut hook_adds = String::new();
    let mut hooks_rewritten = 0;
    for builtin in builtins {
        let want = desired.hooks.get(builtin).unwrap_or(&no_hooks);
        let have = actual.chains.get(builtin).unwrap_or(&no_rules);
        let ours: Vec<&str> = have.iter().filter_map(|r| r.hash.as_deref()).collect();
        let wanted: Vec<&str> = want
            .inserts
            .iter()
            .chain(&want.appends)
            .filter_map(|r| r.hash.as_deref())
            .collect();
        let on_top = have.len() >= want.inserts.len() && same(&want.inserts, &have[..want.inserts.len()]);
        if ours == wanted && on_top {
            continue;
        }
        hooks_rewritten += 1;
        for r in have.iter().filter(|r| r.hash.is_some()) {
            hook_deletes.push_str(&format!("-D {builtin} {}\n", r.spec));
        }
        for (i, r) in want.inserts.iter().enumerate() {
            push_rule(&mut hook_adds, "-I", builtin, Some(i + 1), r);
        }
        for r in &want.appends {
            push_rule(&mut hook_adds, "-A", builtin, None, r);
        }
    }

    if dirty.is_empty() && stale.is_empty() && hooks_rewritten == 0 {
        return None;
    }
    let mut out = format!("*{}\n", desired.table.name());
    for name in dirty.iter().chain(&stale) {
        out.push_str(&format!(":{name} - [0:0]\n"));
    }
    out.push_str(&hook_deletes);
    for name in &dirty {
        for r in &desired.chains[*name] {
            push_rule(&mut out, "-A", name, None, r);
        }
    }
    out.push_str(&hook_adds);
    for name in &stale {
        out.push_str(&format!("-X {name}\n"));
    }
    out.push_str("COMMIT\n");
    Some(TablePlan {
        restore: out,
        chains_written: dirty.len(),
        chains_deleted: stale.len(),
        hooks_rewritten,
    })
}

/// Two `ipset restore` inputs: `before` the iptables transactions (create and fill), `after`
/// them (destroy what no rule references any more).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    pub before: String,
    pub after: String,
    pub created: usize,
    /// Sets changed member by member.
    pub updated: usize,
    /// Sets rebuilt in a temporary set and swapped in (large changes).
    pub swapped: usize,
    pub destroyed: usize,
    pub members_changed: usize,
    /// Names of the sets created or changed (the caller's record of the kernel needs updating).
    pub changed: Vec<String>,
}

impl SetPlan {
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// Below this many changes a set is edited in place; above, and above half its size, it is
/// rebuilt and swapped, so the kernel sees one atomic change instead of thousands.
const SWAP_THRESHOLD: usize = 64;

/// Plans sets: `actual` is what the kernel holds (typed), `unknown` the caracal-named sets of
/// kinds caracal does not create (destroyed as stale).
pub fn plan_sets(
    desired: &BTreeMap<String, IpSet>,
    actual: &BTreeMap<String, IpSet>,
    unknown: &BTreeSet<String>,
) -> Result<SetPlan> {
    plan_sets_only(desired, actual, unknown, None)
}

/// As [`plan_sets`], but when `only` is given, only those sets are compared (the caller knows
/// the others did not change).
pub fn plan_sets_only(
    desired: &BTreeMap<String, IpSet>,
    actual: &BTreeMap<String, IpSet>,
    unknown: &BTreeSet<String>,
    only: Option<&BTreeSet<String>>,
) -> Result<SetPlan> {
    let mut plan = SetPlan::default();
    let mut temp_n = 0usize;
    let wanted: Box<dyn Iterator<Item = (&String, &IpSet)>> = match only {
        None => Box::new(desired.iter()),
        Some(only) => Box::new(only.iter().filter_map(|n| desired.get_key_value(n))),
    };
    for (name, want) in wanted {
        check_set_name(name)?;
        // Fast path: an unchanged set, as the caller recorded it, costs one comparison.
        if actual.get(name).is_some_and(|have| {
            have.kind == want.kind && have.family == want.family && have.members == want.members
        }) {
            continue;
        }
        let members = canonical_members(want);
        let Some(have) = actual.get(name) else {
            plan.changed.push(name.clone());
            plan.created += 1;
            plan.before.push_str(&create_line(name, want));
            for m in members.iter() {
                push_member(&mut plan.before, "add", name, &member_arg(name, want, m)?);
            }
            plan.members_changed += members.len();
            continue;
        };
        if have.kind != want.kind || have.family != want.family {
            return Err(Error::Set {
                set: name.clone(),
                reason: format!(
                    "the kernel holds it as {:?} {:?}, the program wants {:?} {:?}; a set's name must change with its kind",
                    have.family, have.kind, want.family, want.kind
                ),
            });
        }
        if have.members == *members {
            continue;
        }
        plan.changed.push(name.clone());
        let removed: Vec<&SetMember> = have.members.difference(&members).collect();
        let added: Vec<&SetMember> = members.difference(&have.members).collect();
        let changes = removed.len() + added.len();
        plan.members_changed += changes;
        if changes > SWAP_THRESHOLD && changes > members.len() / 2 {
            let temp = loop {
                let t = format!("{SET_PREFIX}tmp-{temp_n}");
                temp_n += 1;
                if !desired.contains_key(&t) && !actual.contains_key(&t) {
                    break t;
                }
            };
            plan.swapped += 1;
            plan.before.push_str(&create_line(&temp, want));
            for m in members.iter() {
                push_member(&mut plan.before, "add", &temp, &member_arg(name, want, m)?);
            }
            plan.before
                .push_str(&format!("swap {temp} {name}\ndestroy {temp}\n"));
        } else {
            plan.updated += 1;
            // Additions first: a member that moves between a net and its nomatch never leaves a gap.
            for m in added {
                push_member(&mut plan.before, "add", name, &member_arg(name, want, m)?);
            }
            for m in removed {
                push_member(&mut plan.before, "del", name, &member_arg(name, have, m)?);
            }
        }
    }
    let candidates: Box<dyn Iterator<Item = &String>> = match only {
        None => Box::new(actual.keys().chain(unknown)),
        Some(only) => Box::new(
            only.iter()
                .filter(|n| actual.contains_key(*n) || unknown.contains(*n)),
        ),
    };
    let stale = candidates.filter(|n| n.starts_with(SET_PREFIX) && !desired.contains_key(*n));
    for name in stale {
        plan.destroyed += 1;
        plan.after.push_str(&format!("destroy {name}\n"));
    }
    Ok(plan)
}

/// The members as the kernel will print them back (borrowed when already canonical).
pub fn canonical_members(set: &IpSet) -> std::borrow::Cow<'_, BTreeSet<SetMember>> {
    if set.members.iter().all(is_canonical) {
        std::borrow::Cow::Borrowed(&set.members)
    } else {
        std::borrow::Cow::Owned(set.members.iter().map(canonical).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Action, Chain, Family, Hook, Match, Program, Rule, SetKind, Table};
    use crate::render::iptables::{parse_save, render_program};

    fn rule(action: Action) -> Rule {
        Rule {
            matches: vec![],
            action,
            comment: None,
        }
    }

    fn program(policy_action: Action) -> Program {
        let mut p = Program::default();
        let key = |n: &str| (Family::V4, Table::Filter, n.to_owned());
        p.chains.insert(
            key("cara-FORWARD"),
            Chain {
                rules: vec![rule(Action::Jump("cara-pol".into()))],
            },
        );
        p.chains.insert(
            key("cara-pol"),
            Chain {
                rules: vec![rule(policy_action)],
            },
        );
        p.hooks.push((
            Family::V4,
            Hook {
                table: Table::Filter,
                builtin: "FORWARD".into(),
                rule: rule(Action::Jump("cara-FORWARD".into())),
                append: false,
            },
        ));
        p
    }

    fn rendered(p: &Program) -> RenderedTable {
        render_program(p)
            .unwrap()
            .remove(&(Family::V4, Table::Filter))
            .unwrap()
    }

    #[test]
    fn applied_state_plans_nothing() {
        let want = rendered(&program(Action::Accept));
        let after = SavedTable::default().after_apply(&want);
        assert_eq!(plan_table(&want, &after), None);
    }

    #[test]
    fn one_changed_chain_rewrites_only_that_chain() {
        let old = rendered(&program(Action::Accept));
        let actual = SavedTable::default().after_apply(&old);
        let want = rendered(&program(Action::Drop));
        let plan = plan_table(&want, &actual).unwrap();
        assert_eq!(plan.chains_written, 1);
        assert_eq!(plan.hooks_rewritten, 0);
        assert!(plan.restore.contains(":cara-pol - [0:0]\n"));
        assert!(!plan.restore.contains("cara-FORWARD"), "{}", plan.restore);
    }

    #[test]
    fn foreign_rules_are_kept_and_misplaced_hook_is_moved_to_the_top() {
        let want = rendered(&program(Action::Accept));
        let hook = &want.hooks["FORWARD"].inserts[0];
        let save = format!(
            "*filter\n:FORWARD ACCEPT [0:0]\n:cara-FORWARD - [0:0]\n:cara-pol - [0:0]\n:cara-old - [0:0]\n\
             -A FORWARD -j KUBE-FORWARD\n-A FORWARD {}\n-A cara-FORWARD {}\n-A cara-pol {}\nCOMMIT\n",
            hook.spec(),
            want.chains["cara-FORWARD"][0].spec(),
            want.chains["cara-pol"][0].spec()
        );
        let actual = parse_save(&save, Table::Filter).unwrap();
        let plan = plan_table(&want, &actual).unwrap();
        assert_eq!(plan.chains_written, 0);
        assert_eq!(plan.chains_deleted, 1);
        assert_eq!(plan.hooks_rewritten, 1);
        let lines: Vec<&str> = plan.restore.lines().collect();
        assert_eq!(
            lines,
            vec![
                "*filter",
                ":cara-old - [0:0]",
                &format!("-D FORWARD {}", hook.spec()),
                &format!("-I FORWARD 1 {}", hook.spec()),
                "-X cara-old",
                "COMMIT"
            ]
        );
        assert!(!plan.restore.contains("KUBE-FORWARD"));
    }

    #[test]
    fn removed_program_deletes_hooks_before_chains() {
        let old = rendered(&program(Action::Accept));
        let actual = SavedTable::default().after_apply(&old);
        let empty = RenderedTable::new(Family::V4, Table::Filter);
        let plan = plan_table(&empty, &actual).unwrap();
        let d = plan.restore.find("-D FORWARD").unwrap();
        let x = plan.restore.find("-X cara-FORWARD").unwrap();
        assert!(d < x);
        assert_eq!(plan.chains_deleted, 2);
    }

    fn set(members: impl IntoIterator<Item = &'static str>) -> IpSet {
        IpSet {
            family: Family::V4,
            kind: SetKind::HashNet,
            members: members
                .into_iter()
                .map(|m| SetMember::Net(m.parse().unwrap()))
                .collect(),
        }
    }

    #[test]
    fn small_member_change_is_an_in_place_add_and_del() {
        let actual = BTreeMap::from([("cara-a".to_owned(), set(["10.0.0.1/32", "10.0.0.2/32"]))]);
        let desired = BTreeMap::from([("cara-a".to_owned(), set(["10.0.0.1/32", "10.0.0.3/32"]))]);
        let plan = plan_sets(&desired, &actual, &BTreeSet::new()).unwrap();
        assert_eq!(plan.before, "add cara-a 10.0.0.3\ndel cara-a 10.0.0.2\n");
        assert_eq!(plan.after, "");
        assert_eq!(plan.updated, 1);
    }

    #[test]
    fn large_member_change_goes_through_a_swapped_temporary_set() {
        let many: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("10.1.{}.{}/32", i / 250, i % 250).into_boxed_str()))
            .collect();
        let actual = BTreeMap::from([("cara-a".to_owned(), set(["10.0.0.1/32"]))]);
        let desired = BTreeMap::from([("cara-a".to_owned(), set(many))]);
        let plan = plan_sets(&desired, &actual, &BTreeSet::new()).unwrap();
        assert_eq!(plan.swapped, 1);
        assert!(plan.before.starts_with("create cara-tmp-0 hash:net"));
        assert!(
            plan.before
                .ends_with("swap cara-tmp-0 cara-a\ndestroy cara-tmp-0\n")
        );
    }

    #[test]
    fn stale_sets_are_destroyed_after_and_foreign_sets_never() {
        let actual = BTreeMap::from([("cara-old".to_owned(), set([])), ("KUBE-X".to_owned(), set([]))]);
        let plan = plan_sets(
            &BTreeMap::new(),
            &actual,
            &BTreeSet::from(["cara-odd".to_owned()]),
        )
        .unwrap();
        assert_eq!(plan.before, "");
        assert_eq!(plan.after, "destroy cara-old\ndestroy cara-odd\n");
    }

    #[test]
    fn kind_change_under_one_name_is_an_error_naming_the_set() {
        let actual = BTreeMap::from([("cara-a".to_owned(), set([]))]);
        let mut want = set([]);
        want.kind = SetKind::HashIp;
        let e = plan_sets(
            &BTreeMap::from([("cara-a".to_owned(), want)]),
            &actual,
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cara-a"));
    }

    #[test]
    fn mark_match_renders_in_hex() {
        let mut p = program(Action::Accept);
        p.chains
            .get_mut(&(Family::V4, Table::Filter, "cara-pol".to_owned()))
            .unwrap()
            .rules
            .push(Rule {
                matches: vec![Match::Mark {
                    value: 0x10000,
                    mask: 0x10000,
                    negated: false,
                }],
                action: Action::Return,
                comment: None,
            });
        assert_eq!(
            rendered(&p).chains["cara-pol"][1].body,
            "-m mark --mark 0x10000/0x10000 -j RETURN"
        );
    }
}
