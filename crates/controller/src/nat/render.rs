//! The outgoing-NAT program as kernel-tool text, what the tools print back, and the plan that
//! turns what the kernel holds into what is wanted. Pure: [`crate::dataplane::nat`] runs the
//! tools.
//!
//! A set whose members differ is refilled through a temporary set and `ipset swap`, so no packet
//! ever sees it half full (an empty "inside" set for a moment would masquerade pod-to-pod
//! traffic). The chain's one rule carries `caracal:<hash>` of its text; a chain without it, with
//! other rules, or printed differently from the last read-back is rewritten, and so is a
//! missing or doubled hook.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::IpAddr,
};

use caracal_policy::program::Family;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::NatSets;

/// caracal's chain in the nat table of each family.
pub const CHAIN: &str = "CARACAL-POSTROUTING";
/// The hook in POSTROUTING, as `iptables-save` prints it after `-A POSTROUTING `.
pub const HOOK: &str = "-j CARACAL-POSTROUTING";

fn suffix(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// `caracal-masq-v4`: the sources to masquerade.
pub fn masq_set(family: Family) -> String {
    format!("caracal-masq-{}", suffix(family))
}

/// `caracal-all-v4`: every pod, pool and Service range (never masqueraded to).
pub fn all_set(family: Family) -> String {
    format!("caracal-all-{}", suffix(family))
}

fn tmp_set(family: Family) -> String {
    format!("caracal-tmp-{}", suffix(family))
}

/// The chain's one rule, after `-A CARACAL-POSTROUTING `.
pub fn rule(family: Family) -> String {
    let body = format!(
        "-m set --match-set {} src -m set ! --match-set {} dst -j MASQUERADE --random-fully",
        masq_set(family),
        all_set(family)
    );
    let digest = Sha256::digest(body.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("-m comment --comment caracal:{tag} {body}")
}

/// The `caracal:<hash>` word of a rule (`iptables-save` prints it quoted).
fn tag(rule: &str) -> &str {
    rule.split_whitespace()
        .map(|w| w.trim_matches('"'))
        .find(|w| w.starts_with("caracal:"))
        .unwrap_or_default()
}

/// caracal's part of one family's nat table, as `iptables-save -t nat` printed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedNat {
    /// The chain's rules after `-A CARACAL-POSTROUTING `, if the chain exists.
    pub chain: Option<Vec<String>>,
    /// Every POSTROUTING rule jumping to the chain, after `-A POSTROUTING `.
    pub hooks: Vec<String>,
}

pub fn parse_nat_save(text: &str) -> SavedNat {
    let mut out = SavedNat::default();
    let declared = format!(":{CHAIN} ");
    let appended = format!("-A {CHAIN} ");
    for line in text.lines() {
        if line.starts_with(&declared) {
            out.chain.get_or_insert_with(Vec::new);
        } else if let Some(rule) = line.strip_prefix(&appended) {
            out.chain.get_or_insert_with(Vec::new).push(rule.to_string());
        } else if let Some(rule) = line.strip_prefix("-A POSTROUTING ")
            && rule
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["-j", CHAIN])
        {
            out.hooks.push(rule.to_string());
        }
    }
    out
}

/// One of caracal's NAT sets, as `ipset save` printed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedSet {
    /// `hash:net` for the sets caracal creates.
    pub kind: String,
    pub members: BTreeSet<IpNet>,
}

/// The `caracal-` sets in `ipset save` output (a host route prints without its `/32`).
pub fn parse_ipset_save(text: &str) -> BTreeMap<String, SavedSet> {
    let mut out: BTreeMap<String, SavedSet> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, kind, ..] if name.starts_with("caracal-") => {
                out.entry(name.to_string()).or_default().kind = kind.to_string();
            }
            ["add", name, member, ..] if name.starts_with("caracal-") => {
                let net = member
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| member.parse::<IpAddr>().ok().map(IpNet::from));
                if let Some(net) = net {
                    out.entry(name.to_string()).or_default().members.insert(net);
                }
            }
            _ => {}
        }
    }
    out
}

/// What one family needs, in order: `ipset restore` input before the table is written (sets
/// created and filled), `iptables-restore --noflush` input, `ipset restore` input after (sets
/// destroyed). Empty strings and `None` mean nothing to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub sets_before: String,
    pub restore: Option<String>,
    pub sets_after: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.sets_before.is_empty() && self.restore.is_none() && self.sets_after.is_empty()
    }
}

/// The plan for one family: `want` (`None`: nothing of caracal's) against what the kernel holds.
/// `printed` is the chain as the last read-back after a write printed it.
pub fn plan(
    family: Family,
    want: Option<&NatSets>,
    have: &SavedNat,
    sets: &BTreeMap<String, SavedSet>,
    printed: Option<&[String]>,
) -> Plan {
    let mut plan = Plan::default();
    let Some(want) = want else {
        let mut restore = String::new();
        for hook in &have.hooks {
            let _ = writeln!(restore, "-D POSTROUTING {hook}");
        }
        if have.chain.is_some() {
            let _ = writeln!(restore, "-F {CHAIN}\n-X {CHAIN}");
        }
        if !restore.is_empty() {
            plan.restore = Some(format!("*nat\n{restore}COMMIT\n"));
        }
        for name in [masq_set(family), all_set(family), tmp_set(family)] {
            if sets.contains_key(&name) {
                let _ = writeln!(plan.sets_after, "destroy {name}");
            }
        }
        return plan;
    };
    for (name, members) in [(masq_set(family), &want.masq), (all_set(family), &want.all)] {
        plan.sets_before += &fill_set(family, &name, members, sets.get(&name));
    }
    let rule = rule(family);
    let chain_ok = have.chain.as_deref().is_some_and(|rules| {
        rules.len() == 1 && tag(&rules[0]) == tag(&rule) && printed.is_none_or(|p| p == rules)
    });
    let hooks_ok = have.hooks.len() == 1 && have.hooks[0] == HOOK;
    if !chain_ok || !hooks_ok {
        let mut restore = format!("*nat\n:{CHAIN} - [0:0]\n-A {CHAIN} {rule}\n");
        if !hooks_ok {
            for hook in &have.hooks {
                let _ = writeln!(restore, "-D POSTROUTING {hook}");
            }
            let _ = writeln!(restore, "-I POSTROUTING 1 {HOOK}");
        }
        restore.push_str("COMMIT\n");
        plan.restore = Some(restore);
    }
    plan
}

/// Creates `name` with `members`, or refills it through a swap when it holds others.
fn fill_set(family: Family, name: &str, members: &BTreeSet<IpNet>, have: Option<&SavedSet>) -> String {
    let fam = caracal_policy::render::family_names(family).0;
    let create = |n: &str| format!("create {n} hash:net family {fam} -exist\n");
    let add = |n: &str| -> String { members.iter().map(|m| format!("add {n} {m}\n")).collect() };
    match have {
        Some(h) if h.kind == "hash:net" && h.members == *members => String::new(),
        None => create(name) + &add(name),
        Some(_) => {
            let tmp = tmp_set(family);
            format!(
                "{}flush {tmp}\n{}swap {tmp} {name}\ndestroy {tmp}\n",
                create(&tmp),
                add(&tmp)
            )
        }
    }
}

#[cfg(test)]
mod tests;
