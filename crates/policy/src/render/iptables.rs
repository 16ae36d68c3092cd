//! `iptables-restore` input for one family and table, and the parser for `iptables-save` output.
//!
//! The first rule of every caracal chain starts with `-m comment --comment "cara:<hash>"`, a hash
//! over the chain name and every rule of the chain; each of caracal's rules in a built-in chain
//! carries its own hash, chained over the rules before it (Felix's scheme,
//! `felix/generictables/rules.go`). A chain read back from the kernel is compared by its hash and
//! its rule count alone: rule text printed by `iptables-save` differs between versions and
//! backends, the hashes do not. One comment per chain rather than two per rule (hash and a human
//! note) matters on the legacy backend, which copies, checks and frees the whole table for any
//! change: a comment match is 256 bytes in the kernel, and with them on every rule a one-chain
//! change to a 13,000-rule table took 72 ms instead of 18 ms. The human notes stay in the
//! program, where `caracal policy explain` shows them.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::{Error, Result};
use crate::program::{
    Action, CHAIN_PREFIX, Chain, CtState, Family, Hook, IpSet, MAX_CHAIN_NAME, Match, Program, Protocol,
    Rule, SetDir, SetKind, Table,
};

/// Every rule hash comment starts with this.
pub const HASH_PREFIX: &str = "cara:";
/// Hex digits of a rule hash: 64 bits, plenty to tell rules of one chain apart.
const HASH_LEN: usize = 16;
/// `-m multiport` takes at most 15 ports, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;
/// The comment match stores at most 255 bytes.
const MAX_COMMENT: usize = 255;
/// Linux interface names are at most 15 bytes.
const MAX_IFACE: usize = 15;

/// One kernel rule as caracal writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedRule {
    /// The hash carried in the rule's `cara:` comment: on the first rule of a caracal chain (the
    /// whole chain's) and on every hook rule; `None` on the other rules of a chain.
    pub hash: Option<String>,
    /// Matches and target, after the hash comment.
    pub body: String,
}

impl RenderedRule {
    /// The rule specification that follows `-A CHAIN ` or `-I CHAIN N `.
    pub fn spec(&self) -> String {
        match &self.hash {
            Some(hash) if self.body.is_empty() => format!("-m comment --comment \"{HASH_PREFIX}{hash}\""),
            Some(hash) => format!("-m comment --comment \"{HASH_PREFIX}{hash}\" {}", self.body),
            None => self.body.clone(),
        }
    }
}

/// The rules caracal keeps in one built-in chain: some at its top, some at its bottom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookRules {
    pub inserts: Vec<RenderedRule>,
    pub appends: Vec<RenderedRule>,
}

/// Everything caracal wants in one table of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedTable {
    pub family: Family,
    pub table: Table,
    /// caracal's own chains, by name.
    pub chains: BTreeMap<String, Vec<RenderedRule>>,
    /// caracal's rules in built-in chains, by built-in chain name.
    pub hooks: BTreeMap<String, HookRules>,
}

impl RenderedTable {
    pub fn new(family: Family, table: Table) -> Self {
        RenderedTable {
            family,
            table,
            chains: BTreeMap::new(),
            hooks: BTreeMap::new(),
        }
    }

    /// Number of rules, hooks included.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum::<usize>()
            + self
                .hooks
                .values()
                .map(|h| h.inserts.len() + h.appends.len())
                .sum::<usize>()
    }

    /// The whole table as `iptables-restore --noflush` input that programs it from scratch:
    /// declares (and so flushes) every caracal chain, fills it, and inserts or appends the hooks.
    pub fn to_restore(&self) -> String {
        let mut out = format!("*{}\n", self.table.name());
        for name in self.chains.keys() {
            out.push_str(&format!(":{name} - [0:0]\n"));
        }
        for (name, rules) in &self.chains {
            for r in rules {
                push_rule(&mut out, "-A", name, None, r);
            }
        }
        for (builtin, hooks) in &self.hooks {
            for (i, r) in hooks.inserts.iter().enumerate() {
                push_rule(&mut out, "-I", builtin, Some(i + 1), r);
            }
            for r in &hooks.appends {
                push_rule(&mut out, "-A", builtin, None, r);
            }
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// Appends `OP CHAIN [N] SPEC\n` to `out`.
pub fn push_rule(out: &mut String, op: &str, chain: &str, pos: Option<usize>, rule: &RenderedRule) {
    out.push_str(op);
    out.push(' ');
    out.push_str(chain);
    if let Some(n) = pos {
        out.push_str(&format!(" {n}"));
    }
    out.push(' ');
    out.push_str(&rule.spec());
    out.push('\n');
}

/// The caracal chain names of each family and table: the valid jump and goto targets.
pub fn chain_names(program: &Program) -> BTreeMap<(Family, Table), BTreeSet<&str>> {
    let mut names: BTreeMap<(Family, Table), BTreeSet<&str>> = BTreeMap::new();
    for (family, table, name) in program.chains.keys() {
        names.entry((*family, *table)).or_default().insert(name);
    }
    names
}

/// Renders every table of `program` that has chains or hooks.
pub fn render_program(program: &Program) -> Result<BTreeMap<(Family, Table), RenderedTable>> {
    let names = chain_names(program);
    let mut tables: BTreeMap<(Family, Table), RenderedTable> = BTreeMap::new();
    for ((family, table, name), chain) in &program.chains {
        let ctx = Ctx {
            family: *family,
            sets: &program.sets,
            chains: &names[&(*family, *table)],
        };
        let rules = render_chain(name, chain, &ctx)?;
        tables
            .entry((*family, *table))
            .or_insert_with(|| RenderedTable::new(*family, *table))
            .chains
            .insert(name.clone(), rules);
    }
    for (key, hooks) in render_hooks(program, &names)? {
        tables
            .entry(key)
            .or_insert_with(|| RenderedTable::new(key.0, key.1))
            .hooks = hooks;
    }
    Ok(tables)
}

/// Renders the program's hooks, grouped by family, table and built-in chain. Hooks are hashed
/// per built-in chain and position (top or bottom), in program order.
pub fn render_hooks(
    program: &Program,
    names: &BTreeMap<(Family, Table), BTreeSet<&str>>,
) -> Result<BTreeMap<(Family, Table), BTreeMap<String, HookRules>>> {
    let empty = BTreeSet::new();
    let mut grouped: BTreeMap<(Family, Table, &str, bool), Vec<&Hook>> = BTreeMap::new();
    for (family, hook) in &program.hooks {
        grouped
            .entry((*family, hook.table, hook.builtin.as_str(), hook.append))
            .or_default()
            .push(hook);
    }
    let mut out: BTreeMap<(Family, Table), BTreeMap<String, HookRules>> = BTreeMap::new();
    for ((family, table, builtin, append), hooks) in grouped {
        if builtin.starts_with(CHAIN_PREFIX) || builtin.is_empty() || builtin.contains(char::is_whitespace) {
            return Err(Error::Hook {
                builtin: builtin.to_owned(),
                reason: "hooks go into built-in chains only".into(),
            });
        }
        let ctx = Ctx {
            family,
            sets: &program.sets,
            chains: names.get(&(family, table)).unwrap_or(&empty),
        };
        let seed = format!("{builtin}:{}", if append { "append" } else { "insert" });
        let mut bodies = Vec::new();
        for hook in hooks {
            let b = render_rule(&hook.rule, &ctx).map_err(|reason| Error::Hook {
                builtin: builtin.to_owned(),
                reason,
            })?;
            bodies.extend(b);
        }
        let rules = hash_rules(&seed, bodies);
        let entry = out
            .entry((family, table))
            .or_default()
            .entry(builtin.to_owned())
            .or_default();
        if append {
            entry.appends = rules;
        } else {
            entry.inserts = rules;
        }
    }
    Ok(out)
}

/// What a rule may refer to while being rendered.
pub struct Ctx<'a> {
    pub family: Family,
    pub sets: &'a BTreeMap<String, IpSet>,
    /// caracal chains of the same family and table (jump and goto targets).
    pub chains: &'a BTreeSet<&'a str>,
}

/// Renders one caracal chain. A rule with more ports than one multiport match holds becomes
/// several kernel rules, one per group of ports.
pub fn render_chain(name: &str, chain: &Chain, ctx: &Ctx<'_>) -> Result<Vec<RenderedRule>> {
    check_chain_name(name)?;
    let mut bodies = Vec::with_capacity(chain.rules.len());
    for (index, rule) in chain.rules.iter().enumerate() {
        let b = render_rule_with(rule, ctx, false).map_err(|reason| Error::Rule {
            chain: name.to_owned(),
            index,
            reason,
        })?;
        bodies.extend(b);
    }
    Ok(hash_chain(name, bodies))
}

pub fn check_chain_name(name: &str) -> Result<()> {
    if super::valid_name(name, CHAIN_PREFIX, MAX_CHAIN_NAME) {
        Ok(())
    } else {
        Err(Error::ChainName {
            name: name.to_owned(),
            prefix: CHAIN_PREFIX,
            max: MAX_CHAIN_NAME,
        })
    }
}

/// Chains hashes over `seed` and each body in turn; every rule carries its own.
fn hash_rules(seed: &str, bodies: Vec<String>) -> Vec<RenderedRule> {
    let mut h: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    bodies
        .into_iter()
        .map(|body| {
            h = chain_step(&h, &body);
            RenderedRule {
                hash: Some(hex(&h)),
                body,
            }
        })
        .collect()
}

/// The rules of one caracal chain: the first carries the hash of the name and all the bodies.
fn hash_chain(name: &str, bodies: Vec<String>) -> Vec<RenderedRule> {
    let mut h: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    for body in &bodies {
        h = chain_step(&h, body);
    }
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| RenderedRule {
            hash: (i == 0).then(|| hex(&h)),
            body,
        })
        .collect()
}

fn chain_step(h: &[u8; 32], body: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(h);
    hasher.update(body.as_bytes());
    hasher.finalize().into()
}

fn hex(h: &[u8; 32]) -> String {
    h[..HASH_LEN / 2].iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders one rule to one or more kernel rule bodies (more than one only when its ports do not
/// fit one multiport match; the groups are disjoint, so any packet matches at most one of them).
pub fn render_rule(rule: &Rule, ctx: &Ctx<'_>) -> std::result::Result<Vec<String>, String> {
    render_rule_with(rule, ctx, true)
}

/// As [`render_rule`]; the rule's human comment becomes a comment match only with `comment`.
fn render_rule_with(rule: &Rule, ctx: &Ctx<'_>, comment: bool) -> std::result::Result<Vec<String>, String> {
    let mut head = Vec::new();
    if let Some(c) = rule.comment.as_ref().filter(|_| comment) {
        head.push(format!("-m comment --comment \"{}\"", sanitize_comment(c)));
    }
    let mut ports: Option<(usize, Vec<String>)> = None;
    let mut protocol: Option<Protocol> = None;
    for m in &rule.matches {
        match m {
            Match::InInterface(i) => head.push(format!("-i {}", iface(i)?)),
            Match::OutInterface(i) => head.push(format!("-o {}", iface(i)?)),
            Match::Source { net, negated } => {
                head.push(format!("{}-s {}", not(*negated), net_arg(net, ctx)?))
            }
            Match::Destination { net, negated } => {
                head.push(format!("{}-d {}", not(*negated), net_arg(net, ctx)?))
            }
            Match::Set { name, dir, negated } => {
                let set = ctx
                    .sets
                    .get(name)
                    .ok_or_else(|| format!("set {name:?} is not in the program"))?;
                if set.family != ctx.family {
                    return Err(format!(
                        "set {name:?} is {:?}, the rule is {:?}",
                        set.family, ctx.family
                    ));
                }
                let d = match dir {
                    SetDir::Src => "src",
                    SetDir::Dst => "dst",
                };
                // An ip,port set matches address and port of the same direction.
                let flags = if set.kind == SetKind::HashIpPort {
                    format!("{d},{d}")
                } else {
                    d.to_owned()
                };
                head.push(format!("-m set {}--match-set {name} {flags}", not(*negated)));
            }
            Match::Protocol(p) => {
                match (p, ctx.family) {
                    (Protocol::Icmp, Family::V6) | (Protocol::Icmpv6, Family::V4) => {
                        return Err(format!("protocol {} in a {:?} table", p.name(), ctx.family));
                    }
                    _ => {}
                }
                protocol = Some(*p);
                head.push(format!("-p {}", p.name()));
            }
            Match::DestPorts(ranges) => {
                match protocol {
                    Some(Protocol::Tcp | Protocol::Udp | Protocol::Sctp) => {}
                    _ => {
                        return Err(
                            "destination ports need a TCP, UDP or SCTP protocol match before them".into(),
                        );
                    }
                }
                if ports.is_some() {
                    return Err("more than one destination port match".into());
                }
                ports = Some((head.len(), port_groups(ranges)?));
            }
            Match::Mark { value, mask, negated } => {
                head.push(format!("-m mark {}--mark {value:#x}/{mask:#x}", not(*negated)))
            }
            Match::CtState(states) => {
                if states.is_empty() {
                    return Err("empty conntrack state list".into());
                }
                let s: Vec<&str> = states
                    .iter()
                    .map(|s| match s {
                        CtState::New => "NEW",
                        CtState::Established => "ESTABLISHED",
                        CtState::Related => "RELATED",
                        CtState::Invalid => "INVALID",
                    })
                    .collect();
                head.push(format!("-m conntrack --ctstate {}", s.join(",")));
            }
        }
    }
    let target = |c: &str| {
        if ctx.chains.contains(c) {
            Ok(c.to_owned())
        } else {
            Err(format!("target chain {c:?} is not in the program"))
        }
    };
    let action = match &rule.action {
        Action::Accept => Some("-j ACCEPT".to_owned()),
        Action::Drop => Some("-j DROP".to_owned()),
        Action::Return => Some("-j RETURN".to_owned()),
        Action::Jump(c) => Some(format!("-j {}", target(c)?)),
        Action::Goto(c) => Some(format!("-g {}", target(c)?)),
        Action::SetMark { value, mask } => Some(format!("-j MARK --set-xmark {value:#x}/{mask:#x}")),
        Action::None => None,
    };
    let join = |parts: Vec<String>| {
        let mut parts = parts;
        parts.extend(action.clone());
        parts.join(" ")
    };
    Ok(match ports {
        None => vec![join(head)],
        Some((at, groups)) => groups
            .into_iter()
            .map(|g| {
                let mut parts = head.clone();
                parts.insert(at, g);
                join(parts)
            })
            .collect(),
    })
}

fn not(negated: bool) -> &'static str {
    if negated { "! " } else { "" }
}

fn iface(name: &str) -> std::result::Result<&str, String> {
    let base = name.strip_suffix('+').unwrap_or(name);
    if base.is_empty() && name != "+" || name.len() > MAX_IFACE + 1 || base.len() > MAX_IFACE {
        return Err(format!(
            "interface name {name:?} is empty or longer than {MAX_IFACE} bytes"
        ));
    }
    if !base
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'"' && b != b'+')
    {
        return Err(format!(
            "interface name {name:?} has characters an interface name cannot have"
        ));
    }
    Ok(name)
}

fn net_arg(net: &IpNet, ctx: &Ctx<'_>) -> std::result::Result<String, String> {
    match (net, ctx.family) {
        (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6) => Ok(net.trunc().to_string()),
        _ => Err(format!("address {net} in a {:?} table", ctx.family)),
    }
}

/// Comments are quoted in restore input: no quotes, no control characters, bounded length.
fn sanitize_comment(c: &str) -> String {
    let mut s: String = c
        .chars()
        .map(|ch| match ch {
            '"' => '\'',
            '\\' => '/',
            ch if ch.is_control() => ' ',
            ch => ch,
        })
        .collect();
    if s.len() > MAX_COMMENT {
        let mut end = MAX_COMMENT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Merges the ranges and packs them into `--dport` or `-m multiport --dports` arguments of at
/// most [`MULTIPORT_SLOTS`] slots each.
fn port_groups(ranges: &[(u16, u16)]) -> std::result::Result<Vec<String>, String> {
    if ranges.is_empty() {
        return Err("empty destination port list".into());
    }
    let mut sorted = ranges.to_vec();
    if let Some((lo, hi)) = sorted.iter().find(|(lo, hi)| lo > hi) {
        return Err(format!("port range {lo}:{hi} is reversed"));
    }
    sorted.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in sorted {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let item = |&(lo, hi): &(u16, u16)| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        }
    };
    if merged.len() == 1 {
        return Ok(vec![format!("--dport {}", item(&merged[0]))]);
    }
    let mut groups = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut slots = 0;
    for r in &merged {
        let cost = if r.0 == r.1 { 1 } else { 2 };
        if slots + cost > MULTIPORT_SLOTS {
            groups.push(std::mem::take(&mut current));
            slots = 0;
        }
        current.push(item(r));
        slots += cost;
    }
    groups.push(current);
    Ok(groups
        .into_iter()
        .map(|g| format!("-m multiport --dports {}", g.join(",")))
        .collect())
}

/// One rule line of `iptables-save` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRule {
    /// The `cara:` hash, when the rule is caracal's.
    pub hash: Option<String>,
    /// The rule specification after `-A CHAIN `, as printed.
    pub spec: String,
}

/// One table as `iptables-save -t TABLE` prints it: every chain (built-in or not), in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    pub chains: BTreeMap<String, Vec<SavedRule>>,
}

impl SavedTable {
    /// What the kernel holds right after `desired` was applied on top of `self`.
    pub fn after_apply(&self, desired: &RenderedTable) -> SavedTable {
        let mut t = self.clone();
        t.apply(desired);
        t
    }

    /// Updates `self` in place to what the kernel holds once `desired` is applied: caracal
    /// chains exactly as desired, caracal's hooks in place, other rules of built-in chains kept.
    /// Only chains that differ are rebuilt, so this costs little when little changed.
    pub fn apply(&mut self, desired: &RenderedTable) {
        self.apply_only(desired, None)
    }

    /// As [`SavedTable::apply`], for a plan made with only the chains in `only` compared.
    pub fn apply_only(&mut self, desired: &RenderedTable, only: Option<&BTreeSet<String>>) {
        let saved = |r: &RenderedRule| SavedRule {
            hash: r.hash.clone(),
            spec: r.spec(),
        };
        let keep = |name: &String| !name.starts_with(CHAIN_PREFIX) || desired.chains.contains_key(name);
        match only {
            None => self.chains.retain(|name, _| keep(name)),
            Some(only) => {
                for name in only.iter().filter(|n| !keep(n)) {
                    self.chains.remove(name);
                }
            }
        }
        let chains: Box<dyn Iterator<Item = (&String, &Vec<RenderedRule>)>> = match only {
            None => Box::new(desired.chains.iter()),
            Some(only) => Box::new(only.iter().filter_map(|n| desired.chains.get_key_value(n))),
        };
        for (name, rules) in chains {
            let current = self.chains.entry(name.clone()).or_default();
            let same =
                current.len() == rules.len() && current.iter().zip(rules).all(|(s, r)| s.hash == r.hash);
            if !same {
                *current = rules.iter().map(saved).collect();
            }
        }
        let no_hooks = HookRules::default();
        let builtins: Vec<String> = self
            .chains
            .keys()
            .filter(|n| !n.starts_with(CHAIN_PREFIX))
            .chain(desired.hooks.keys())
            .cloned()
            .collect();
        for builtin in builtins {
            let hooks = desired.hooks.get(&builtin).unwrap_or(&no_hooks);
            let current = self.chains.entry(builtin).or_default();
            let mut rules: Vec<SavedRule> = hooks.inserts.iter().map(saved).collect();
            rules.extend(current.drain(..).filter(|r| r.hash.is_none()));
            rules.extend(hooks.appends.iter().map(saved));
            *current = rules;
        }
    }
}

/// Parses the `*TABLE` section of `iptables-save` output. A missing section is an empty table
/// (the table was never used in this namespace).
pub fn parse_save(text: &str, table: Table) -> Result<SavedTable> {
    let mut out = SavedTable::default();
    let header = format!("*{}", table.name());
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        let err = || Error::Parse {
            tool: "iptables-save",
            line: n + 1,
            text: line.to_owned(),
        };
        // iptables-legacy-save on an nft-managed table prints this instead of rules.
        if line.starts_with('#') && line.contains("incompatible") {
            return Err(err());
        }
        if line == header {
            inside = true;
        } else if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        } else if line == "COMMIT" {
            break;
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().ok_or_else(err)?;
            out.chains.entry(name.to_owned()).or_default();
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            out.chains.entry(chain.to_owned()).or_default().push(SavedRule {
                hash: extract_hash(spec),
                spec: spec.to_owned(),
            });
        } else if line.starts_with('*') {
            // Another table's section: ours ended without COMMIT.
            break;
        } else {
            return Err(err());
        }
    }
    Ok(out)
}

/// The hash of the first `--comment cara:<hash>` (quoted or not) in a rule specification.
pub fn extract_hash(spec: &str) -> Option<String> {
    let mut rest = spec;
    while let Some(i) = rest.find("--comment ") {
        rest = &rest[i + "--comment ".len()..];
        let value = rest.strip_prefix('"').unwrap_or(rest);
        if let Some(h) = value.strip_prefix(HASH_PREFIX) {
            let hash: String = h.chars().take_while(char::is_ascii_hexdigit).collect();
            if !hash.is_empty() {
                return Some(hash);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(matches: Vec<Match>, action: Action) -> Rule {
        Rule {
            matches,
            action,
            comment: None,
        }
    }

    fn ctx<'a>(sets: &'a BTreeMap<String, IpSet>, chains: &'a BTreeSet<&'a str>) -> Ctx<'a> {
        Ctx {
            family: Family::V4,
            sets,
            chains,
        }
    }

    #[test]
    fn more_than_fifteen_ports_split_into_disjoint_multiport_rules() {
        let sets = BTreeMap::new();
        let chains = BTreeSet::new();
        let ports: Vec<(u16, u16)> = (1..=20).map(|p| (p * 10, p * 10)).collect();
        let r = rule(
            vec![Match::Protocol(Protocol::Tcp), Match::DestPorts(ports)],
            Action::Accept,
        );
        let bodies = render_rule(&r, &ctx(&sets, &chains)).unwrap();
        assert_eq!(bodies.len(), 2);
        assert!(bodies[0].starts_with("-p tcp -m multiport --dports 10,20,"));
        assert!(bodies[1].ends_with("--dports 160,170,180,190,200 -j ACCEPT"));
    }

    #[test]
    fn overlapping_port_ranges_merge_before_rendering() {
        let groups = port_groups(&[(80, 90), (85, 100), (101, 101), (5, 5)]).unwrap();
        assert_eq!(groups, vec!["-m multiport --dports 5,80:101".to_owned()]);
        assert_eq!(
            port_groups(&[(443, 443)]).unwrap(),
            vec!["--dport 443".to_owned()]
        );
        assert!(port_groups(&[(9, 1)]).is_err());
    }

    #[test]
    fn ports_without_protocol_are_rejected() {
        let sets = BTreeMap::new();
        let chains = BTreeSet::new();
        let r = rule(vec![Match::DestPorts(vec![(80, 80)])], Action::Accept);
        assert!(
            render_rule(&r, &ctx(&sets, &chains))
                .unwrap_err()
                .contains("protocol")
        );
    }

    #[test]
    fn jump_to_unknown_chain_names_the_chain() {
        let mut p = Program::default();
        p.chains.insert(
            (Family::V4, Table::Filter, "cara-a".into()),
            Chain {
                rules: vec![rule(vec![], Action::Jump("cara-missing".into()))],
            },
        );
        let e = render_program(&p).unwrap_err();
        assert!(e.to_string().contains("cara-missing"), "{e}");
    }

    #[test]
    fn v6_address_in_v4_table_is_rejected() {
        let sets = BTreeMap::new();
        let chains = BTreeSet::new();
        let r = rule(
            vec![Match::Source {
                net: "fd00::/64".parse().unwrap(),
                negated: false,
            }],
            Action::Accept,
        );
        assert!(render_rule(&r, &ctx(&sets, &chains)).is_err());
    }

    #[test]
    fn comment_quotes_cannot_break_out_of_the_comment() {
        assert_eq!(sanitize_comment("a\"b\nc"), "a'b c");
        assert!(sanitize_comment(&"é".repeat(300)).len() <= MAX_COMMENT);
    }

    #[test]
    fn hash_depends_on_chain_and_predecessors() {
        let a = hash_rules("cara-a", vec!["-j ACCEPT".into(), "-j DROP".into()]);
        let b = hash_rules("cara-b", vec!["-j ACCEPT".into(), "-j DROP".into()]);
        let c = hash_rules("cara-a", vec!["-j RETURN".into(), "-j DROP".into()]);
        assert_ne!(a[0].hash, b[0].hash);
        assert_ne!(a[1].hash, c[1].hash);
        assert_eq!(a[0].hash.as_ref().map(String::len), Some(HASH_LEN));
    }

    #[test]
    fn a_chain_carries_one_hash_over_its_name_and_every_rule() {
        let bodies = |last: &str| vec!["-j MARK --set-xmark 0x0/0x30000".to_owned(), last.to_owned()];
        let a = hash_chain("cara-a", bodies("-j DROP"));
        let b = hash_chain("cara-b", bodies("-j DROP"));
        let c = hash_chain("cara-a", bodies("-j RETURN"));
        assert!(a[0].hash.is_some() && a[1].hash.is_none(), "{a:?}");
        assert_ne!(a[0].hash, b[0].hash, "the name counts");
        assert_ne!(
            a[0].hash, c[0].hash,
            "a change in the last rule changes the first rule's hash"
        );
        assert_eq!(a[1].spec(), "-j DROP", "no comment on the other rules");
        assert!(a[0].spec().starts_with("-m comment --comment \"cara:"));
        assert!(hash_chain("cara-a", vec![]).is_empty());
    }

    #[test]
    fn save_output_yields_chains_and_hashes() {
        let text = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [1:2]\n\
            :cara-x - [0:0]\n-A FORWARD -m comment --comment \"cara:00aa11bb22cc33dd\" -j cara-x\n\
            -A FORWARD -j ACCEPT\n-A cara-x -m comment --comment cara:0123456789abcdef -j DROP\nCOMMIT\n";
        let t = parse_save(text, Table::Filter).unwrap();
        assert_eq!(t.chains.len(), 3);
        let fwd = &t.chains["FORWARD"];
        assert_eq!(fwd[0].hash.as_deref(), Some("00aa11bb22cc33dd"));
        assert_eq!(fwd[1].hash, None);
        assert_eq!(fwd[1].spec, "-j ACCEPT");
        assert_eq!(t.chains["cara-x"][0].hash.as_deref(), Some("0123456789abcdef"));
        assert!(parse_save(text, Table::Raw).unwrap().chains.is_empty());
    }

    #[test]
    fn incompatible_table_warning_is_an_error() {
        let text = "# Table `filter' is incompatible, use 'nft' tool.\n";
        assert!(parse_save(text, Table::Filter).is_err());
    }
}
