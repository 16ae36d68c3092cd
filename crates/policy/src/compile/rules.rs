//! Rule expansion: a policy's rules as iptables rules (peers x port blocks), with the sets
//! their peers and named ports need.

use super::*;

impl Compiler {
    pub(super) fn policy_chain(&mut self, family: Family, p: &Policy, dir: Direction, fill: Fill) -> Chain {
        let rules = p.rules(dir).unwrap_or(&[]);
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let expanded = self.expand_rule(family, p, dir, r, fill);
            out.extend(expanded);
            if i + 1 < rules.len() && p.layer != Layer::Network {
                out.push(rule(
                    vec![Match::Mark {
                        value: 0,
                        mask: MARK_ACCEPT | MARK_PASS,
                        negated: true,
                    }],
                    Action::Return,
                    "return on verdict",
                ));
            }
        }
        Chain { rules: out }
    }

    /// One policy rule as iptables rules: the cross product of its peers and port blocks.
    fn expand_rule(
        &mut self,
        family: Family,
        p: &Policy,
        dir: Direction,
        r: &PolicyRule,
        fill: Fill,
    ) -> Vec<Rule> {
        let set_dir = match dir {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let peers: Vec<Vec<Match>> = match &r.peers {
            None => vec![vec![]],
            Some(peers) => peers
                .iter()
                .filter_map(|peer| self.peer_match(family, peer, set_dir, fill))
                .collect(),
        };
        let ports: Vec<Vec<Match>> = match &r.ports {
            None => vec![vec![]],
            Some(ports) => self.port_blocks(family, dir, ports, fill),
        };
        let action = match r.action {
            PAction::Accept => Action::SetMark {
                value: MARK_ACCEPT,
                mask: MARK_ACCEPT,
            },
            PAction::Pass => Action::SetMark {
                value: MARK_PASS,
                mask: MARK_PASS,
            },
            PAction::Deny => Action::Drop,
        };
        let comment = format!("{} {} {}: {:?}", p.id, dir.name(), r.label(), r.action);
        let mut out = Vec::new();
        for peer in &peers {
            for port in &ports {
                let mut matches = port.clone();
                matches.extend(peer.iter().cloned());
                out.push(Rule {
                    matches,
                    action: action.clone(),
                    comment: Some(comment.clone()),
                });
            }
        }
        out
    }

    /// The match of one peer in `family`, or `None` when the peer cannot match that family.
    fn peer_match(&mut self, family: Family, peer: &Peer, dir: SetDir, fill: Fill) -> Option<Vec<Match>> {
        let name = match peer {
            Peer::Net { net, except } => {
                if net_family(net) != family {
                    return None;
                }
                if except.is_empty() {
                    return Some(vec![match dir {
                        SetDir::Src => Match::Source {
                            net: *net,
                            negated: false,
                        },
                        SetDir::Dst => Match::Destination {
                            net: *net,
                            negated: false,
                        },
                    }]);
                }
                let key = format!("net:{net} except {except:?}");
                let members = || {
                    let mut m = BTreeSet::from([SetMember::Net(*net)]);
                    m.extend(except.iter().map(|e| SetMember::NoMatch(*e)));
                    m
                };
                self.ensure_set(
                    family,
                    &key,
                    'n',
                    SetKind::HashNet,
                    SetDef::Net,
                    Some(members()),
                    fill,
                )
            }
            Peer::Pods(set) => {
                let key = pods_set_key(set);
                self.ensure_set(
                    family,
                    &key,
                    's',
                    SetKind::HashNet,
                    SetDef::Pods(set.clone()),
                    None,
                    fill,
                )
            }
        };
        Some(vec![Match::Set {
            name,
            dir,
            negated: false,
        }])
    }

    /// Port matches as blocks: protocol-only, one list of ranges per protocol, named-port sets.
    fn port_blocks(
        &mut self,
        family: Family,
        dir: Direction,
        ports: &[PortMatch],
        fill: Fill,
    ) -> Vec<Vec<Match>> {
        let mut out = Vec::new();
        let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
        for p in ports {
            match p {
                PortMatch::Protocol(proto) => out.push(vec![Match::Protocol(*proto)]),
                PortMatch::Range(proto, lo, hi) => ranges.entry(*proto).or_default().push((*lo, *hi)),
                PortMatch::Named(proto, name) => {
                    let (key, def) = named_port_set(dir, *proto, name);
                    let set = self.ensure_set(family, &key, 'p', SetKind::HashIpPort, def, None, fill);
                    out.push(vec![
                        Match::Protocol(*proto),
                        Match::Set {
                            name: set,
                            dir: SetDir::Dst,
                            negated: false,
                        },
                    ]);
                }
            }
        }
        // One block per protocol with all its ports: packing them into `-m multiport` matches
        // of 15 slots is the iptables renderer's business (`render::iptables::render_rule`).
        for (proto, mut list) in ranges {
            list.sort();
            list.dedup();
            out.push(vec![Match::Protocol(proto), Match::DestPorts(list)]);
        }
        out
    }
}
