//! Runs one packet through a compiled [`Program`] as the kernel would (built-in chain with our
//! hooks, jumps, gotos, returns, marks, ipset lookups) and reports the verdict with a trace, so
//! that the compiler itself is what gets tested. [`reference`] decides the same question directly
//! on the model, as an independent cross-check.

use std::net::IpAddr;

use crate::program::{Action, CtState, Family, Match, Program, Protocol, SetDir, SetKind, SetMember, Table};

/// A packet as the filter table sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub dport: u16,
    /// `-i`: the interface it came in on (none in OUTPUT).
    pub in_iface: Option<String>,
    /// `-o`: the interface it leaves by (none in INPUT).
    pub out_iface: Option<String>,
    pub ct: CtState,
}

impl Packet {
    pub fn family(&self) -> Family {
        match self.src {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// One rule that matched on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    pub chain: String,
    /// 0-based position of the rule in its chain.
    pub index: usize,
    pub action: Action,
    pub comment: Option<String>,
}

/// The outcome for one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    pub trace: Vec<TraceStep>,
    /// The packet mark at the end.
    pub mark: u32,
}

impl Verdict {
    /// The steps that decided: verdicts and mark settings (Accept, Pass), in order, by comment.
    pub fn reasons(&self) -> Vec<String> {
        self.trace
            .iter()
            .filter(|s| match &s.action {
                Action::Accept | Action::Drop => true,
                Action::SetMark { value, .. } => *value != 0,
                _ => false,
            })
            .map(|s| {
                s.comment
                    .clone()
                    .unwrap_or_else(|| format!("{} rule {}", s.chain, s.index))
            })
            .collect()
    }
}

/// A program the kernel would not accept, or a packet that cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("chain {0} is referenced but not defined")]
    NoChain(String),
    #[error("ipset {0} is referenced but not defined")]
    NoSet(String),
    #[error("ipset {0} is {1:?} and cannot match a {2:?} packet")]
    SetFamily(String, Family, Family),
    #[error("jumps nest deeper than {0} chains (a loop?)")]
    TooDeep(usize),
    #[error("source and destination are of different families")]
    MixedFamily,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const MAX_DEPTH: usize = 64;

enum Flow {
    Accept,
    Drop,
    /// Fell off the end of the chain or hit RETURN.
    Return,
}

struct Run<'a> {
    program: &'a Program,
    family: Family,
    pkt: &'a Packet,
    mark: u32,
    trace: Vec<TraceStep>,
}

/// Runs `pkt` through the filter table's built-in chain `builtin` (`INPUT`, `FORWARD`,
/// `OUTPUT`): our inserted hooks, then our appended hooks, then the chain policy ACCEPT (nothing
/// else is installed in the simulated host).
pub fn run(program: &Program, builtin: &str, pkt: &Packet) -> Result<Verdict> {
    let family = pkt.family();
    if matches!(
        (pkt.src, pkt.dst),
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_))
    ) {
        return Err(Error::MixedFamily);
    }
    let mut r = Run {
        program,
        family,
        pkt,
        mark: 0,
        trace: Vec::new(),
    };
    let hooks = |append: bool| {
        program
            .hooks
            .iter()
            .filter(move |(f, h)| {
                *f == family && h.table == Table::Filter && h.builtin == builtin && h.append == append
            })
            .map(|(_, h)| &h.rule)
    };
    let rules: Vec<&crate::program::Rule> = hooks(false).chain(hooks(true)).collect();
    let flow = r.rules(builtin, rules.into_iter(), 0)?;
    Ok(Verdict {
        accepted: !matches!(flow, Flow::Drop),
        trace: r.trace,
        mark: r.mark,
    })
}

impl<'a> Run<'a> {
    fn chain(&mut self, name: &str, depth: usize) -> Result<Flow> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        let chain = self
            .program
            .chains
            .get(&(self.family, Table::Filter, name.to_string()))
            .ok_or_else(|| Error::NoChain(name.to_string()))?;
        self.rules(name, chain.rules.iter(), depth)
    }

    fn rules(
        &mut self,
        chain: &str,
        rules: impl Iterator<Item = &'a crate::program::Rule>,
        depth: usize,
    ) -> Result<Flow> {
        for (index, rule) in rules.enumerate() {
            if !self.matches_all(&rule.matches)? {
                continue;
            }
            self.trace.push(TraceStep {
                chain: chain.to_string(),
                index,
                action: rule.action.clone(),
                comment: rule.comment.clone(),
            });
            match &rule.action {
                Action::Accept => return Ok(Flow::Accept),
                Action::Drop => return Ok(Flow::Drop),
                Action::Return => return Ok(Flow::Return),
                Action::Jump(target) => match self.chain(target, depth + 1)? {
                    Flow::Return => {}
                    terminal => return Ok(terminal),
                },
                // The target's RETURN returns from this chain too.
                Action::Goto(target) => return self.chain(target, depth + 1),
                Action::SetMark { value, mask } => self.mark = (self.mark & !mask) ^ value,
                Action::None => {}
            }
        }
        Ok(Flow::Return)
    }

    fn matches_all(&self, matches: &[Match]) -> Result<bool> {
        for m in matches {
            if !self.matches(m)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn matches(&self, m: &Match) -> Result<bool> {
        let p = self.pkt;
        Ok(match m {
            Match::InInterface(pat) => p.in_iface.as_deref().is_some_and(|i| iface_matches(pat, i)),
            Match::OutInterface(pat) => p.out_iface.as_deref().is_some_and(|i| iface_matches(pat, i)),
            Match::Source { net, negated } => net.contains(&p.src) != *negated,
            Match::Destination { net, negated } => net.contains(&p.dst) != *negated,
            Match::Protocol(proto) => p.protocol == *proto,
            Match::DestPorts(ranges) => {
                matches!(p.protocol, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
                    && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p.dport))
            }
            Match::Mark { value, mask, negated } => ((self.mark & mask) == *value) != *negated,
            Match::CtState(states) => states.contains(&p.ct),
            Match::Set { name, dir, negated } => self.in_set(name, *dir)? != *negated,
        })
    }

    fn in_set(&self, name: &str, dir: SetDir) -> Result<bool> {
        let set = self
            .program
            .sets
            .get(name)
            .ok_or_else(|| Error::NoSet(name.to_string()))?;
        if set.family != self.family {
            return Err(Error::SetFamily(name.to_string(), set.family, self.family));
        }
        let ip = match dir {
            SetDir::Src => self.pkt.src,
            SetDir::Dst => self.pkt.dst,
        };
        Ok(match set.kind {
            // The most specific entry containing the address decides; a nomatch entry excludes.
            SetKind::HashNet | SetKind::HashIp => {
                let mut best: Option<(u8, bool)> = None;
                for m in &set.members {
                    let (net, member) = match m {
                        SetMember::Net(n) => (n, true),
                        SetMember::NoMatch(n) => (n, false),
                        SetMember::IpPort { .. } => continue,
                    };
                    if net.contains(&ip) {
                        let len = net.prefix_len();
                        best = match best {
                            Some((l, _)) if l > len => best,
                            Some((l, false)) if l == len => best,
                            _ => Some((len, member)),
                        };
                    }
                }
                best.is_some_and(|(_, member)| member)
            }
            // `hash:ip,port` matched as `dst,dst`: the address and the destination port.
            SetKind::HashIpPort => {
                dir == SetDir::Dst
                    && set.members.contains(&SetMember::IpPort {
                        ip,
                        protocol: self.pkt.protocol,
                        port: self.pkt.dport,
                    })
            }
        })
    }
}

/// iptables interface matching: a trailing `+` matches any name with that prefix.
pub fn iface_matches(pattern: &str, iface: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => iface.starts_with(prefix),
        None => pattern == iface,
    }
}

/// The reference evaluator: GLOBALPOLICY.md's evaluation written directly over the model, with no
/// chains, marks or sets. Used to cross-check the compiler.
pub mod reference {
    use std::net::IpAddr;

    use crate::{
        compile::{namespace, policies},
        model::{ClusterState, Pod},
        policy::{Action, Direction, Layer, Peer, Policy, PolicyRule, PortMatch},
        program::Protocol,
    };

    /// One direction's decision and the reason.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Decision {
        pub allowed: bool,
        pub reason: String,
    }

    /// Is a new connection from `src` to `dst` on `proto`/`port` allowed (egress of `src` and
    /// ingress of `dst`)?
    pub fn allowed(
        state: &ClusterState,
        src: &Pod,
        dst: &Pod,
        proto: Protocol,
        port: u16,
    ) -> (Decision, Decision) {
        let (policies, _) = policies(state);
        // The addresses the packet of `crate::path` carries: one family, IPv4 first.
        let Some((src_ip, dst_ip)) = crate::path::addresses(src, dst) else {
            let d = Decision {
                allowed: false,
                reason: "no address of one family on both pods".into(),
            };
            return (d.clone(), d);
        };
        let egress = decide(state, &policies, src, Direction::Egress, dst_ip, dst, proto, port);
        let ingress = decide(
            state,
            &policies,
            dst,
            Direction::Ingress,
            src_ip,
            dst,
            proto,
            port,
        );
        (egress, ingress)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        state: &ClusterState,
        policies: &[Policy],
        subject: &Pod,
        dir: Direction,
        peer_ip: IpAddr,
        dst: &Pod,
        proto: Protocol,
        port: u16,
    ) -> Decision {
        let ns = namespace(state, &subject.namespace);
        let applicable: Vec<&Policy> = policies
            .iter()
            .filter(|p| p.rules(dir).is_some() && p.subject.matches(Some(&ns), subject))
            .collect();
        let peer_pod = state.pods.values().find(|p| p.ips.contains(&peer_ip));
        let rule_matches = |r: &PolicyRule| -> bool {
            let peer_ok = r.peers.as_ref().is_none_or(|peers| {
                peers.iter().any(|peer| match peer {
                    Peer::Net { net, except } => Peer::matches_net(net, except, peer_ip),
                    Peer::Pods(set) => {
                        peer_pod.is_some_and(|pp| set.matches(Some(&namespace(state, &pp.namespace)), pp))
                    }
                })
            });
            let port_ok = r.ports.as_ref().is_none_or(|ports| {
                ports.iter().any(|pm| match pm {
                    PortMatch::Protocol(p) => *p == proto,
                    PortMatch::Range(p, lo, hi) => *p == proto && (*lo..=*hi).contains(&port),
                    PortMatch::Named(p, name) => {
                        *p == proto
                            && dst
                                .ports
                                .iter()
                                .any(|np| np.name == *name && np.protocol == *p && np.port == port)
                    }
                })
            });
            peer_ok && port_ok
        };
        let tier = |layer: Layer| -> Option<Decision> {
            for p in applicable.iter().filter(|p| p.layer == layer) {
                for r in p.rules(dir).unwrap_or(&[]) {
                    if rule_matches(r) {
                        let reason = format!("{} {} {}: {:?}", p.id, dir.name(), r.label(), r.action);
                        return match r.action {
                            Action::Accept => Some(Decision {
                                allowed: true,
                                reason,
                            }),
                            Action::Deny => Some(Decision {
                                allowed: false,
                                reason,
                            }),
                            Action::Pass => None,
                        };
                    }
                }
            }
            None
        };
        if let Some(d) = tier(Layer::Admin) {
            return d;
        }
        let nps: Vec<&&Policy> = applicable.iter().filter(|p| p.layer == Layer::Network).collect();
        if !nps.is_empty() {
            for p in &nps {
                for r in p.rules(dir).unwrap_or(&[]) {
                    if rule_matches(r) {
                        return Decision {
                            allowed: true,
                            reason: format!("{} {} {}: Accept", p.id, dir.name(), r.label()),
                        };
                    }
                }
            }
            return Decision {
                allowed: false,
                reason: format!("selected by {} NetworkPolicies, none allows this", nps.len()),
            };
        }
        if let Some(d) = tier(Layer::Baseline) {
            return d;
        }
        Decision {
            allowed: true,
            reason: "no policy decided, allowed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Chain, Hook, Rule};

    fn rule(matches: Vec<Match>, action: Action) -> Rule {
        let comment = Some(format!("{action:?}"));
        Rule {
            matches,
            action,
            comment,
        }
    }

    fn program(chains: Vec<(&str, Vec<Rule>)>) -> Program {
        let mut p = Program::default();
        for (n, rules) in chains {
            p.chains
                .insert((Family::V4, Table::Filter, n.to_string()), Chain { rules });
        }
        p.hooks.push((
            Family::V4,
            Hook {
                table: Table::Filter,
                builtin: "FORWARD".into(),
                rule: rule(vec![], Action::Jump("cara-top".into())),
                append: false,
            },
        ));
        p
    }

    fn pkt() -> Packet {
        Packet {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: Protocol::Udp,
            dport: 53,
            in_iface: Some("cara1".into()),
            out_iface: Some("eth0".into()),
            ct: CtState::New,
        }
    }

    #[test]
    fn goto_returns_to_the_caller_of_the_chain_that_jumped() {
        let p = program(vec![
            (
                "cara-top",
                vec![
                    rule(vec![], Action::Jump("cara-mid".into())),
                    rule(vec![], Action::Drop),
                ],
            ),
            (
                "cara-mid",
                vec![
                    rule(vec![], Action::Goto("cara-leaf".into())),
                    rule(vec![], Action::Accept),
                ],
            ),
            ("cara-leaf", vec![rule(vec![], Action::Return)]),
        ]);
        // leaf RETURN skips the rest of mid and continues in top, which drops.
        assert!(!run(&p, "FORWARD", &pkt()).unwrap().accepted);
    }

    #[test]
    fn marks_are_set_with_xmark_semantics_and_matched_with_masks() {
        let p = program(vec![(
            "cara-top",
            vec![
                rule(
                    vec![],
                    Action::SetMark {
                        value: 0x10000,
                        mask: 0x30000,
                    },
                ),
                rule(
                    vec![Match::Mark {
                        value: 0x10000,
                        mask: 0x10000,
                        negated: true,
                    }],
                    Action::Drop,
                ),
                rule(
                    vec![],
                    Action::SetMark {
                        value: 0,
                        mask: 0x10000,
                    },
                ),
                rule(
                    vec![Match::Mark {
                        value: 0,
                        mask: 0x30000,
                        negated: false,
                    }],
                    Action::Accept,
                ),
                rule(vec![], Action::Drop),
            ],
        )]);
        let v = run(&p, "FORWARD", &pkt()).unwrap();
        assert!(v.accepted);
        assert_eq!(v.mark, 0);
    }

    #[test]
    fn interface_wildcards_ports_and_protocols_match_like_iptables() {
        assert!(iface_matches("cara+", "cara123"));
        assert!(!iface_matches("cara+", "eth0"));
        assert!(iface_matches("cara1", "cara1"));
        let p = program(vec![(
            "cara-top",
            vec![rule(
                vec![
                    Match::InInterface("cara+".into()),
                    Match::Protocol(Protocol::Udp),
                    Match::DestPorts(vec![(50, 60)]),
                ],
                Action::Drop,
            )],
        )]);
        assert!(!run(&p, "FORWARD", &pkt()).unwrap().accepted);
        let mut tcp = pkt();
        tcp.protocol = Protocol::Tcp;
        assert!(run(&p, "FORWARD", &tcp).unwrap().accepted);
    }

    #[test]
    fn missing_chains_sets_and_loops_are_errors() {
        let p = program(vec![(
            "cara-top",
            vec![rule(vec![], Action::Jump("cara-none".into()))],
        )]);
        assert_eq!(
            run(&p, "FORWARD", &pkt()),
            Err(Error::NoChain("cara-none".into()))
        );
        let p = program(vec![(
            "cara-top",
            vec![rule(
                vec![Match::Set {
                    name: "cara-x".into(),
                    dir: SetDir::Src,
                    negated: false,
                }],
                Action::Drop,
            )],
        )]);
        assert_eq!(run(&p, "FORWARD", &pkt()), Err(Error::NoSet("cara-x".into())));
        let p = program(vec![(
            "cara-top",
            vec![rule(vec![], Action::Jump("cara-top".into()))],
        )]);
        assert!(matches!(run(&p, "FORWARD", &pkt()), Err(Error::TooDeep(_))));
    }

    #[test]
    fn hash_net_nomatch_entries_exclude_the_most_specific_range() {
        let mut p = program(vec![(
            "cara-top",
            vec![rule(
                vec![Match::Set {
                    name: "cara-n".into(),
                    dir: SetDir::Src,
                    negated: false,
                }],
                Action::Drop,
            )],
        )]);
        p.sets.insert(
            "cara-n".into(),
            crate::program::IpSet {
                family: Family::V4,
                kind: SetKind::HashNet,
                members: [
                    SetMember::Net("10.0.0.0/8".parse().unwrap()),
                    SetMember::NoMatch("10.0.0.0/24".parse().unwrap()),
                    SetMember::Net("10.0.0.1/32".parse().unwrap()),
                ]
                .into(),
            },
        );
        assert!(
            !run(&p, "FORWARD", &pkt()).unwrap().accepted,
            "the /32 beats the nomatch /24"
        );
        let mut other = pkt();
        other.src = "10.0.0.9".parse().unwrap();
        assert!(
            run(&p, "FORWARD", &other).unwrap().accepted,
            "nomatch /24 beats the /8"
        );
        other.src = "10.5.0.9".parse().unwrap();
        assert!(!run(&p, "FORWARD", &other).unwrap().accepted);
    }
}
