//! The chain layout (see the module documentation of [`super`]): the static chains and hooks,
//! the per-endpoint chains with their tiers, and the dispatch chains.

use super::*;

/// Dispatch chains with more endpoints than this are split by the next interface-name character.
pub(super) const DISPATCH_FANOUT: usize = 16;

/// The policies that apply to one endpoint in one direction, by layer, in evaluation order.
#[derive(Default)]
pub(super) struct Applicable<'p> {
    pub(super) admin: Vec<&'p Policy>,
    pub(super) network: Vec<&'p Policy>,
    pub(super) baseline: Vec<&'p Policy>,
}

pub(super) fn static_chains(
    chains: &mut BTreeMap<(Family, Table, String), Chain>,
    hooks: &mut Vec<(Family, Hook)>,
    family: Family,
    endpoints: &[LocalEndpoint],
) {
    let wildcard = format!("{IFACE_PREFIX}+");
    let clear = Rule {
        matches: vec![],
        action: Action::SetMark {
            value: 0,
            mask: MARK_ACCEPT | MARK_PASS,
        },
        comment: Some("clear caracal mark bits".into()),
    };
    let forward = Chain {
        rules: vec![
            clear.clone(),
            rule(
                vec![Match::InInterface(wildcard.clone())],
                Action::Jump(CHAIN_FW_DISPATCH.into()),
                "from a pod: its egress policy",
            ),
            rule(
                vec![Match::OutInterface(wildcard.clone())],
                Action::Jump(CHAIN_TW_DISPATCH.into()),
                "to a pod: its ingress policy",
            ),
        ],
    };
    let input = Chain {
        rules: vec![
            clear,
            rule(
                vec![Match::InInterface(wildcard.clone())],
                Action::Jump(CHAIN_FW_DISPATCH.into()),
                "pod to host: the pod's egress policy",
            ),
        ],
    };
    let output = Chain {
        rules: vec![rule(
            vec![Match::OutInterface(wildcard)],
            Action::Return,
            "host to pod is not policed (kubelet probes)",
        )],
    };
    chains.insert((family, Table::Filter, CHAIN_FORWARD.into()), forward);
    chains.insert((family, Table::Filter, CHAIN_INPUT.into()), input);
    chains.insert((family, Table::Filter, CHAIN_OUTPUT.into()), output);
    let ifaces: Vec<&str> = endpoints
        .iter()
        .filter(|e| has_family_or_unknown(e, family))
        .map(|e| e.iface.as_str())
        .collect();
    dispatch(
        chains,
        family,
        CHAIN_FW_DISPATCH,
        true,
        &ifaces,
        IFACE_PREFIX.len(),
    );
    dispatch(
        chains,
        family,
        CHAIN_TW_DISPATCH,
        false,
        &ifaces,
        IFACE_PREFIX.len(),
    );

    for (builtin, target) in [
        ("INPUT", CHAIN_INPUT),
        ("FORWARD", CHAIN_FORWARD),
        ("OUTPUT", CHAIN_OUTPUT),
    ] {
        hooks.push((
            family,
            Hook {
                table: Table::Filter,
                builtin: builtin.into(),
                rule: rule(vec![], Action::Jump(target.into()), "caracal policy"),
                append: false,
            },
        ));
    }
    hooks.push((
        family,
        Hook {
            table: Table::Filter,
            builtin: "FORWARD".into(),
            rule: rule(
                vec![Match::Mark {
                    value: MARK_ACCEPT,
                    mask: MARK_ACCEPT,
                    negated: false,
                }],
                Action::Accept,
                "accepted by caracal policy",
            ),
            append: true,
        },
    ));
}
pub(super) fn rule(matches: Vec<Match>, action: Action, comment: &str) -> Rule {
    Rule {
        matches,
        action,
        comment: Some(comment.to_string()),
    }
}

pub(super) fn mark_is(bit: u32) -> Match {
    Match::Mark {
        value: bit,
        mask: bit,
        negated: false,
    }
}

pub(super) fn mark_clear(bit: u32) -> Match {
    Match::Mark {
        value: 0,
        mask: bit,
        negated: false,
    }
}

/// The per-endpoint chain of one direction.
pub(super) fn endpoint_chain(pod: &Key, dir: Direction, app: &Applicable<'_>) -> Chain {
    let mut rules = vec![
        rule(
            vec![Match::CtState(vec![CtState::Related, CtState::Established])],
            Action::Accept,
            "established or related: replies pass",
        ),
        rule(
            vec![Match::CtState(vec![CtState::Invalid])],
            Action::Drop,
            "conntrack invalid",
        ),
        Rule {
            matches: vec![],
            action: Action::SetMark {
                value: 0,
                mask: MARK_ACCEPT | MARK_PASS,
            },
            comment: Some(format!("{pod} {}", dir.name())),
        },
    ];
    let tier = |rules: &mut Vec<Rule>, list: &[&Policy], guard: bool| {
        for p in list {
            let mut m = Vec::new();
            if guard {
                m.push(mark_clear(MARK_PASS));
            }
            rules.push(Rule {
                matches: m,
                action: Action::Jump(policy_chain(&p.id, dir)),
                comment: Some(p.id.to_string()),
            });
            rules.push(Rule {
                matches: vec![mark_is(MARK_ACCEPT)],
                action: Action::Return,
                comment: Some(format!("accepted by {}", p.id)),
            });
        }
    };
    if !app.admin.is_empty() {
        tier(&mut rules, &app.admin, true);
        rules.push(Rule {
            matches: vec![],
            action: Action::SetMark {
                value: 0,
                mask: MARK_PASS,
            },
            comment: Some("end of Admin tier".into()),
        });
    }
    if !app.network.is_empty() {
        tier(&mut rules, &app.network, false);
        rules.push(Rule {
            matches: vec![],
            action: Action::Drop,
            comment: Some(format!(
                "{pod} {}: selected by {} NetworkPolicies, none allows this",
                dir.name(),
                app.network.len()
            )),
        });
        return Chain { rules };
    }
    if !app.baseline.is_empty() {
        tier(&mut rules, &app.baseline, true);
    }
    rules.push(Rule {
        matches: vec![],
        action: Action::SetMark {
            value: MARK_ACCEPT,
            mask: MARK_ACCEPT,
        },
        comment: Some(format!("{pod} {}: no policy decided, allowed", dir.name())),
    });
    Chain { rules }
}

/// A dispatch chain (and children): `-i|-o <iface> -g cara-fw|tw-<iface>` per endpoint, split
/// into child chains by the next character of the interface name when large, each ending in DROP
/// so that a pod interface without chains carries no traffic.
pub(super) fn dispatch(
    chains: &mut BTreeMap<(Family, Table, String), Chain>,
    family: Family,
    name: &str,
    from_workload: bool,
    ifaces: &[&str],
    depth: usize,
) {
    let iface_match = |s: String| {
        if from_workload {
            Match::InInterface(s)
        } else {
            Match::OutInterface(s)
        }
    };
    let target = |iface: &str| {
        if from_workload {
            from_workload_chain(iface)
        } else {
            to_workload_chain(iface)
        }
    };
    let mut rules = Vec::new();
    let child_name_len = name.len() + 2;
    if ifaces.len() <= DISPATCH_FANOUT || child_name_len > MAX_CHAIN_NAME {
        for iface in ifaces {
            rules.push(Rule {
                matches: vec![iface_match(iface.to_string())],
                action: Action::Goto(target(iface)),
                comment: None,
            });
        }
    } else {
        let mut groups: BTreeMap<Option<char>, Vec<&str>> = BTreeMap::new();
        for iface in ifaces {
            groups
                .entry(iface[depth.min(iface.len())..].chars().next())
                .or_default()
                .push(iface);
        }
        for (c, group) in groups {
            match (c, group.len()) {
                (Some(c), n) if n > 1 => {
                    let child = format!("{name}-{c}");
                    let prefix = format!("{}{c}+", &group[0][..depth]);
                    rules.push(Rule {
                        matches: vec![iface_match(prefix)],
                        action: Action::Goto(child.clone()),
                        comment: None,
                    });
                    dispatch(chains, family, &child, from_workload, &group, depth + 1);
                }
                _ => {
                    for iface in group {
                        rules.push(Rule {
                            matches: vec![iface_match(iface.to_string())],
                            action: Action::Goto(target(iface)),
                            comment: None,
                        });
                    }
                }
            }
        }
    }
    rules.push(rule(
        vec![],
        Action::Drop,
        "unknown pod interface: no policy programmed yet",
    ));
    chains.insert((family, Table::Filter, name.to_string()), Chain { rules });
}
