//! The compiler: desired state ([`ClusterState`] and this node's [`LocalEndpoint`]s) to a
//! [`Program`], in the layout of Felix (research/calico.md §1).
//!
//! ```text
//! filter FORWARD  -j cara-FORWARD (inserted)        ... -m mark --mark A/A -j ACCEPT (appended)
//!   cara-FORWARD: clear A|P; -i cara+ -j cara-fw-dispatch; -o cara+ -j cara-tw-dispatch
//!     cara-fw-dispatch: -i <iface> -g cara-fw-<iface> ...; -j DROP (unknown interface)
//!     cara-tw-dispatch: -o <iface> -g cara-tw-<iface> ...; -j DROP (unknown interface)
//! filter INPUT    -j cara-INPUT: clear A|P; -i cara+ -j cara-fw-dispatch (pod to host = egress)
//! filter OUTPUT   -j cara-OUTPUT: host to pod is not policed
//! cara-tw-<iface> (ingress of the pod) / cara-fw-<iface> (egress of the pod):
//!   ESTABLISHED,RELATED ACCEPT; INVALID DROP; clear A|P
//!   Admin tier:    per policy: if !P -j cara-p{i,o}-<policy>; if A RETURN;  then clear P
//!   NetworkPolicy: per policy:        -j cara-p{i,o}-<policy>; if A RETURN;  then DROP
//!   Baseline tier (only without NetworkPolicies): as Admin
//!   set A (nothing decided: allowed)
//! cara-p{i,o}-<policy>: per rule, per peer x port block: match -> MARK A | MARK P | DROP,
//!   then "return on verdict" before the next rule.
//! ```
//!
//! A = [`MARK_ACCEPT`], P = [`MARK_PASS`]. Dispatch uses goto, so an endpoint chain's RETURN goes
//! back to `cara-FORWARD`: forwarded pod-to-pod traffic on one node passes the source's egress
//! chain and then the destination's ingress chain, and since both start by clearing A, the
//! destination's chain decides whether the final ACCEPT fires. Denial is always DROP.
//!
//! Peers become ipsets (`hash:net` of pod addresses per selector, `hash:net` with `nomatch`
//! entries for CIDRs with exceptions, `hash:ip,port` for named ports), so the number of rules per
//! endpoint does not grow with the cluster. Only policies that select a local endpoint are
//! compiled (Felix's "active" policies).

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::{
    model::{ClusterState, Key, LocalEndpoint, NAMESPACE_NAME_LABEL, Namespace, Pod},
    policy::{Action as PAction, Direction, Layer, Peer, PodSet, Policy, PolicyRule, PortMatch},
    program::{
        Action, CHAIN_PREFIX, Chain, CtState, Family, Hook, IFACE_PREFIX, IpSet, MARK_ACCEPT, MARK_PASS,
        MAX_CHAIN_NAME, MAX_SET_NAME, Match, Program, Protocol, Rule, SET_PREFIX, SetDir, SetKind, SetMember,
        Table,
    },
    validate,
};

/// The result of a compile: the program, and the objects that were rejected (and ignored).
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub program: Program,
    pub errors: Vec<validate::Error>,
}

pub const CHAIN_FORWARD: &str = "cara-FORWARD";
pub const CHAIN_INPUT: &str = "cara-INPUT";
pub const CHAIN_OUTPUT: &str = "cara-OUTPUT";
pub const CHAIN_FW_DISPATCH: &str = "cara-fw-dispatch";
pub const CHAIN_TW_DISPATCH: &str = "cara-tw-dispatch";

/// Dispatch chains with more endpoints than this are split by the next interface-name character.
const DISPATCH_FANOUT: usize = 16;
/// `-m multiport` takes at most 15 ports, a range counting as two.
const MULTIPORT_SLOTS: usize = 15;

/// `cara-fw-<iface>`: the pod's egress (traffic from the workload).
pub fn from_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}fw-{iface}")
}

/// `cara-tw-<iface>`: the pod's ingress (traffic to the workload).
pub fn to_workload_chain(iface: &str) -> String {
    format!("{CHAIN_PREFIX}tw-{iface}")
}

/// The chain of one policy for one direction: `cara-pi-<hash>` (ingress), `cara-po-<hash>`.
pub fn policy_chain(id: &crate::policy::PolicyId, dir: Direction) -> String {
    let tag = match dir {
        Direction::Ingress => "pi-",
        Direction::Egress => "po-",
    };
    hashed_name(&format!("{CHAIN_PREFIX}{tag}"), &id.to_string(), MAX_CHAIN_NAME)
}

/// `prefix` + hex of sha256(`key`), cut to `max` bytes (at most 20 hex characters: 80 bits).
pub fn hashed_name(prefix: &str, key: &str, max: usize) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let n = max.saturating_sub(prefix.len()).min(20);
    format!("{prefix}{}", &hex[..n])
}

/// The host-side interface name of a pod (`cara` + 11 hex characters, 15 bytes, the kernel limit).
pub fn iface_name(pod: &Key) -> String {
    hashed_name(IFACE_PREFIX, &pod.to_string(), 15)
}

fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

fn net_family(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn family_digit(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

/// The namespace of `name`, with its `kubernetes.io/metadata.name` label guaranteed.
pub fn namespace<'a>(state: &'a ClusterState, name: &str) -> Cow<'a, Namespace> {
    match state.namespaces.get(name) {
        Some(ns) if ns.labels.get(NAMESPACE_NAME_LABEL).is_some_and(|v| v == name) => Cow::Borrowed(ns),
        Some(ns) => {
            let mut ns = ns.clone();
            ns.labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
            Cow::Owned(ns)
        }
        None => Cow::Owned(Namespace {
            name: name.into(),
            labels: [(NAMESPACE_NAME_LABEL.to_string(), name.to_string())].into(),
        }),
    }
}

/// Validates every policy; returns the valid ones in evaluation order and the errors.
pub fn policies(state: &ClusterState) -> (Vec<Policy>, Vec<validate::Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for np in state.network_policies.values() {
        match validate::network_policy(np) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    for gp in state.global_policies.values() {
        match validate::global_policy(gp) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    out.sort_by(|a, b| (a.layer, a.priority, &a.id).cmp(&(b.layer, b.priority, &b.id)));
    (out, errors)
}

/// Looks pods up by namespace and by label, so that a selector does not scan the whole cluster.
pub struct PodIndex<'a> {
    state: &'a ClusterState,
    by_label: HashMap<(&'a str, &'a str), Vec<&'a Pod>>,
}

impl<'a> PodIndex<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        let mut by_label: HashMap<(&str, &str), Vec<&Pod>> = HashMap::new();
        for pod in state.pods.values() {
            for (k, v) in &pod.labels {
                by_label.entry((k.as_str(), v.as_str())).or_default().push(pod);
            }
        }
        PodIndex { state, by_label }
    }

    /// Every pod in `set`, in a deterministic order.
    pub fn members(&self, set: &PodSet) -> Vec<&'a Pod> {
        let mut ns_cache: HashMap<&'a str, bool> = HashMap::new();
        let mut ns_ok = |pod: &'a Pod| -> bool {
            *ns_cache
                .entry(pod.namespace.as_str())
                .or_insert_with(|| set.namespaces.matches(&namespace(self.state, &pod.namespace)))
        };
        let candidates: Box<dyn Iterator<Item = &'a Pod>> = match (
            &set.namespaces,
            set.pods
                .selector
                .required_label()
                .or_else(|| set.pods.expr.as_ref().and_then(|e| e.required_label())),
        ) {
            (crate::policy::NsMatch::Named(ns), _) => Box::new(
                self.state
                    .pods
                    .range(Key::new(ns.as_str(), "")..)
                    .take_while(move |(k, _)| k.namespace == *ns)
                    .map(|(_, p)| p),
            ),
            (_, Some(kv)) => Box::new(self.by_label.get(&kv).into_iter().flatten().copied()),
            _ => Box::new(self.state.pods.values()),
        };
        candidates
            .filter(|p| set.pods.matches(&p.labels) && ns_ok(p))
            .collect()
    }
}

/// Compiles the program of one node.
pub fn compile(state: &ClusterState, endpoints: &[LocalEndpoint]) -> Compiled {
    let (policies, errors) = policies(state);
    let index = PodIndex::new(state);
    let mut b = Builder {
        state,
        index: &index,
        endpoints,
        program: Program::default(),
        set_cache: HashMap::new(),
    };
    b.build(&policies);
    Compiled {
        program: b.program,
        errors,
    }
}

/// The policies that apply to one endpoint in one direction, by layer, in evaluation order.
#[derive(Default)]
struct Applicable<'p> {
    admin: Vec<&'p Policy>,
    network: Vec<&'p Policy>,
    baseline: Vec<&'p Policy>,
}

struct Builder<'a> {
    state: &'a ClusterState,
    index: &'a PodIndex<'a>,
    endpoints: &'a [LocalEndpoint],
    program: Program,
    /// Set key -> set name, so that each set is computed once per family.
    set_cache: HashMap<(Family, String), Option<String>>,
}

impl Builder<'_> {
    fn build(&mut self, policies: &[Policy]) {
        let mut endpoints: Vec<&LocalEndpoint> = self.endpoints.iter().collect();
        endpoints.sort_by(|a, b| a.iface.cmp(&b.iface));
        endpoints.dedup_by(|a, b| a.iface == b.iface);

        // Which policies apply to which endpoint, per direction.
        let mut per_endpoint: Vec<[Applicable<'_>; 2]> = Vec::new();
        let mut active: BTreeMap<(Direction, usize), ()> = BTreeMap::new();
        for ep in &endpoints {
            let empty = Pod {
                namespace: ep.pod.namespace.clone(),
                name: ep.pod.name.clone(),
                ..Default::default()
            };
            let pod = self.state.pods.get(&ep.pod).unwrap_or(&empty);
            let ns = namespace(self.state, &ep.pod.namespace);
            let mut app: [Applicable<'_>; 2] = Default::default();
            for (pi, p) in policies.iter().enumerate() {
                if !p.subject.matches(Some(&ns), pod) {
                    continue;
                }
                for (di, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
                    let Some(rules) = p.rules(dir) else { continue };
                    let list = match p.layer {
                        // A tier policy without rules for a direction cannot decide anything.
                        Layer::Admin if !rules.is_empty() => &mut app[di].admin,
                        Layer::Baseline if !rules.is_empty() => &mut app[di].baseline,
                        Layer::Network => &mut app[di].network,
                        _ => continue,
                    };
                    list.push(p);
                    active.insert((dir, pi), ());
                }
            }
            per_endpoint.push(app);
        }

        for family in [Family::V4, Family::V6] {
            self.static_chains(family, &endpoints);
            for &(dir, pi) in active.keys() {
                self.policy_chain(family, &policies[pi], dir);
            }
            for (ep, app) in endpoints.iter().zip(&per_endpoint) {
                for (di, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
                    let name = match dir {
                        Direction::Ingress => to_workload_chain(&ep.iface),
                        Direction::Egress => from_workload_chain(&ep.iface),
                    };
                    let chain = endpoint_chain(&ep.pod, dir, &app[di]);
                    self.program.chains.insert((family, Table::Filter, name), chain);
                }
            }
        }
    }

    fn static_chains(&mut self, family: Family, endpoints: &[&LocalEndpoint]) {
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
        let chains = &mut self.program.chains;
        chains.insert((family, Table::Filter, CHAIN_FORWARD.into()), forward);
        chains.insert((family, Table::Filter, CHAIN_INPUT.into()), input);
        chains.insert((family, Table::Filter, CHAIN_OUTPUT.into()), output);
        let ifaces: Vec<&str> = endpoints.iter().map(|e| e.iface.as_str()).collect();
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
            self.program.hooks.push((
                family,
                Hook {
                    table: Table::Filter,
                    builtin: builtin.into(),
                    rule: rule(vec![], Action::Jump(target.into()), "caracal policy"),
                    append: false,
                },
            ));
        }
        self.program.hooks.push((
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

    fn policy_chain(&mut self, family: Family, p: &Policy, dir: Direction) {
        let rules = p.rules(dir).unwrap_or(&[]);
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let expanded = self.expand_rule(family, p, dir, r);
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
        let name = policy_chain(&p.id, dir);
        self.program
            .chains
            .insert((family, Table::Filter, name), Chain { rules: out });
    }

    /// One policy rule as iptables rules: the cross product of its peers and port blocks.
    fn expand_rule(&mut self, family: Family, p: &Policy, dir: Direction, r: &PolicyRule) -> Vec<Rule> {
        let set_dir = match dir {
            Direction::Ingress => SetDir::Src,
            Direction::Egress => SetDir::Dst,
        };
        let peers: Vec<Vec<Match>> = match &r.peers {
            None => vec![vec![]],
            Some(peers) => peers
                .iter()
                .filter_map(|peer| self.peer_match(family, peer, set_dir))
                .collect(),
        };
        let ports: Vec<Vec<Match>> = match &r.ports {
            None => vec![vec![]],
            Some(ports) => self.port_blocks(family, dir, ports),
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
    fn peer_match(&mut self, family: Family, peer: &Peer, dir: SetDir) -> Option<Vec<Match>> {
        match peer {
            Peer::Net { net, except } => {
                if net_family(net) != family {
                    return None;
                }
                if except.is_empty() {
                    let m = match dir {
                        SetDir::Src => Match::Source {
                            net: *net,
                            negated: false,
                        },
                        SetDir::Dst => Match::Destination {
                            net: *net,
                            negated: false,
                        },
                    };
                    return Some(vec![m]);
                }
                let key = format!("net:{net} except {except:?}");
                let name = self.set(family, &key, 'n', SetKind::HashNet, |_| {
                    let mut m = BTreeSet::from([SetMember::Net(*net)]);
                    m.extend(except.iter().map(|e| SetMember::NoMatch(*e)));
                    m
                });
                Some(vec![Match::Set {
                    name,
                    dir,
                    negated: false,
                }])
            }
            Peer::Pods(set) => {
                let key = format!("pods:{}", set.canonical());
                let name = self.set(family, &key, 's', SetKind::HashNet, |b| {
                    b.index
                        .members(set)
                        .into_iter()
                        .flat_map(|p| p.ips.iter())
                        .filter(|ip| family_of(ip) == family)
                        .map(|ip| SetMember::Net(host_net(*ip)))
                        .collect()
                });
                Some(vec![Match::Set {
                    name,
                    dir,
                    negated: false,
                }])
            }
        }
    }

    /// Port matches as blocks: protocol-only, multiport groups per protocol, named-port sets.
    fn port_blocks(&mut self, family: Family, dir: Direction, ports: &[PortMatch]) -> Vec<Vec<Match>> {
        let mut out = Vec::new();
        let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
        for p in ports {
            match p {
                PortMatch::Protocol(proto) => out.push(vec![Match::Protocol(*proto)]),
                PortMatch::Range(proto, lo, hi) => ranges.entry(*proto).or_default().push((*lo, *hi)),
                PortMatch::Named(proto, name) => {
                    let name = self.named_port_set(family, dir, *proto, name);
                    out.push(vec![
                        Match::Protocol(*proto),
                        Match::Set {
                            name,
                            dir: SetDir::Dst,
                            negated: false,
                        },
                    ]);
                }
            }
        }
        for (proto, mut list) in ranges {
            list.sort();
            list.dedup();
            let mut chunk: Vec<(u16, u16)> = Vec::new();
            let mut slots = 0;
            for r in list {
                let need = if r.0 == r.1 { 1 } else { 2 };
                if slots + need > MULTIPORT_SLOTS {
                    out.push(vec![
                        Match::Protocol(proto),
                        Match::DestPorts(std::mem::take(&mut chunk)),
                    ]);
                    slots = 0;
                }
                chunk.push(r);
                slots += need;
            }
            if !chunk.is_empty() {
                out.push(vec![Match::Protocol(proto), Match::DestPorts(chunk)]);
            }
        }
        out
    }

    /// `hash:ip,port` of (pod address, protocol, port) for every pod with a container port
    /// `name`/`proto`: for ingress the local endpoints (the destination is always one of them),
    /// for egress every pod of the cluster (the destination can be anywhere).
    fn named_port_set(&mut self, family: Family, dir: Direction, proto: Protocol, name: &str) -> String {
        let scope = match dir {
            Direction::Ingress => "local",
            Direction::Egress => "cluster",
        };
        let key = format!("port:{scope}:{}:{name}", proto.name());
        self.set(family, &key, 'p', SetKind::HashIpPort, |b| {
            let mut members = BTreeSet::new();
            let mut add = |pod: &Pod| {
                for np in pod.ports.iter().filter(|p| p.name == name && p.protocol == proto) {
                    for ip in pod.ips.iter().filter(|ip| family_of(ip) == family) {
                        members.insert(SetMember::IpPort {
                            ip: *ip,
                            protocol: proto,
                            port: np.port,
                        });
                    }
                }
            };
            match dir {
                Direction::Ingress => {
                    for ep in b.endpoints {
                        if let Some(pod) = b.state.pods.get(&ep.pod) {
                            add(pod);
                        }
                    }
                }
                Direction::Egress => b.state.pods.values().for_each(add),
            }
            members
        })
    }

    /// The set for `key` in `family`, computed once.
    fn set(
        &mut self,
        family: Family,
        key: &str,
        tag: char,
        kind: SetKind,
        members: impl FnOnce(&Self) -> BTreeSet<SetMember>,
    ) -> String {
        if let Some(Some(name)) = self.set_cache.get(&(family, key.to_string())) {
            return name.clone();
        }
        let prefix = format!("{SET_PREFIX}{}{tag}-", family_digit(family));
        let name = hashed_name(&prefix, key, MAX_SET_NAME);
        let members = members(self);
        self.program.sets.insert(
            name.clone(),
            IpSet {
                family,
                kind,
                members,
            },
        );
        self.set_cache
            .insert((family, key.to_string()), Some(name.clone()));
        name
    }
}

fn rule(matches: Vec<Match>, action: Action, comment: &str) -> Rule {
    Rule {
        matches,
        action,
        comment: Some(comment.to_string()),
    }
}

fn mark_is(bit: u32) -> Match {
    Match::Mark {
        value: bit,
        mask: bit,
        negated: false,
    }
}

fn mark_clear(bit: u32) -> Match {
    Match::Mark {
        value: 0,
        mask: bit,
        negated: false,
    }
}

/// The per-endpoint chain of one direction.
fn endpoint_chain(pod: &Key, dir: Direction, app: &Applicable<'_>) -> Chain {
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
fn dispatch(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{self, Packet};
    use crate::model::NamedPort;

    fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ips: &[&str]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            node: Some("n".into()),
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
        }
    }

    fn state(policies: &str) -> ClusterState {
        let mut s = ClusterState::default();
        for (k, p) in [
            (
                Key::new("x", "a"),
                pod("x", "a", &[("app", "web")], &["10.0.0.1", "fd00::1"]),
            ),
            (
                Key::new("x", "b"),
                pod("x", "b", &[("app", "db")], &["10.0.0.2", "fd00::2"]),
            ),
            (
                Key::new("y", "c"),
                pod("y", "c", &[("app", "web")], &["10.0.1.3", "fd00::1:3"]),
            ),
        ] {
            s.pods.insert(k, p);
        }
        crate::manifests::load(&mut s, policies).unwrap();
        s
    }

    fn endpoints(s: &ClusterState, keys: &[Key]) -> Vec<LocalEndpoint> {
        keys.iter()
            .map(|k| LocalEndpoint {
                pod: k.clone(),
                iface: iface_name(k),
                ips: s.pods[k].ips.clone(),
            })
            .collect()
    }

    fn fwd(p: &Program, src: &str, dst: &str, in_if: &str, out_if: &str, port: u16) -> eval::Verdict {
        eval::run(
            p,
            "FORWARD",
            &Packet {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol: Protocol::Tcp,
                dport: port,
                in_iface: Some(in_if.into()),
                out_iface: Some(out_if.into()),
                ct: CtState::New,
            },
        )
        .unwrap()
    }

    const DENY_DB: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n";

    #[test]
    fn hooks_static_chains_and_endpoint_chains_exist_for_both_families() {
        let s = state(DENY_DB);
        let eps = endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")]);
        let p = compile(&s, &eps).program;
        for f in [Family::V4, Family::V6] {
            for name in [
                CHAIN_FORWARD,
                CHAIN_INPUT,
                CHAIN_OUTPUT,
                CHAIN_FW_DISPATCH,
                CHAIN_TW_DISPATCH,
            ] {
                assert!(
                    p.chains.contains_key(&(f, Table::Filter, name.to_string())),
                    "{f:?} {name}"
                );
            }
            for ep in &eps {
                assert!(
                    p.chains
                        .contains_key(&(f, Table::Filter, to_workload_chain(&ep.iface)))
                );
                assert!(
                    p.chains
                        .contains_key(&(f, Table::Filter, from_workload_chain(&ep.iface)))
                );
            }
            let hooks: Vec<_> = p.hooks.iter().filter(|(hf, _)| *hf == f).collect();
            assert_eq!(hooks.len(), 4);
        }
        for (_, _, name) in p.chains.keys() {
            assert!(
                name.len() <= MAX_CHAIN_NAME && name.starts_with(CHAIN_PREFIX),
                "{name}"
            );
        }
        for name in p.sets.keys() {
            assert!(
                name.len() <= MAX_SET_NAME && name.starts_with(SET_PREFIX),
                "{name}"
            );
        }
        let no_rejects = p
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .all(|r| !matches!(&r.action, Action::Jump(t) | Action::Goto(t) if t.contains("REJECT")));
        assert!(no_rejects);
    }

    #[test]
    fn unknown_pod_interfaces_are_dropped_both_ways() {
        let s = state("");
        let p = compile(&s, &endpoints(&s, &[Key::new("x", "a")])).program;
        let v = fwd(&p, "10.0.0.9", "10.0.0.1", "caranew0000001", "eth0", 80);
        assert!(!v.accepted, "traffic from an interface without chains is dropped");
        let v = fwd(&p, "10.9.9.9", "10.0.0.9", "eth0", "caranew0000001", 80);
        assert!(!v.accepted, "traffic to an interface without chains is dropped");
        let v = fwd(
            &p,
            "10.9.9.9",
            "10.0.0.1",
            "eth0",
            &iface_name(&Key::new("x", "a")),
            80,
        );
        assert!(v.accepted, "a known pod without policy is open");
        let v = fwd(&p, "10.9.9.9", "10.9.9.8", "eth0", "eth1", 80);
        assert!(v.accepted, "traffic not touching a pod is left alone");
    }

    #[test]
    fn same_node_traffic_passes_source_egress_and_destination_ingress() {
        let egress_deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: x}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}\n";
        let s = state(&format!("{DENY_DB}---\n{egress_deny}"));
        let (a, b) = (Key::new("x", "a"), Key::new("x", "b"));
        let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
        // a's egress denies everything, although b's ingress admits a on the named port.
        let v = fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080);
        assert!(!v.accepted);
        assert!(
            v.reasons().iter().any(|r| r.contains("x/a egress")),
            "{:?}",
            v.reasons()
        );
        // Without the egress policy the named port opens the flow, other ports stay closed.
        let s = state(DENY_DB);
        let p = compile(&s, &endpoints(&s, &[a.clone(), b.clone()])).program;
        assert!(fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8080).accepted);
        assert!(!fwd(&p, "10.0.0.1", "10.0.0.2", &iface_name(&a), &iface_name(&b), 8081).accepted);
        // Established replies pass even where a new flow would not.
        let mut pkt = Packet {
            src: "10.0.0.2".parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            dport: 40000,
            in_iface: Some(iface_name(&b)),
            out_iface: Some(iface_name(&a)),
            ct: CtState::Established,
        };
        assert!(eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
        pkt.ct = CtState::Invalid;
        assert!(!eval::run(&p, "FORWARD", &pkt).unwrap().accepted);
    }

    #[test]
    fn policy_chains_and_sets_are_shared_between_endpoints() {
        let all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]\n";
        let s = state(all);
        let p = compile(&s, &endpoints(&s, &[Key::new("x", "a"), Key::new("x", "b")])).program;
        let policy_chains: Vec<_> = p
            .chains
            .keys()
            .filter(|(f, _, n)| *f == Family::V4 && n.starts_with("cara-pi-"))
            .collect();
        assert_eq!(policy_chains.len(), 1);
        let v4_sets: Vec<_> = p.sets.values().filter(|s| s.family == Family::V4).collect();
        assert_eq!(v4_sets.len(), 1);
        // Only x/a matches (podSelector without namespaceSelector: own namespace).
        assert_eq!(
            v4_sets[0].members,
            BTreeSet::from([SetMember::Net("10.0.0.1/32".parse().unwrap())])
        );
    }

    #[test]
    fn ipv6_uses_its_own_sets_and_cidrs_of_the_other_family_never_match() {
        let cidr = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.1/32]}}, {podSelector: {matchLabels: {app: web}}}]}]\n";
        let s = state(cidr);
        let b = Key::new("x", "b");
        let p = compile(&s, &endpoints(&s, std::slice::from_ref(&b))).program;
        let bi = iface_name(&b);
        assert!(
            fwd(&p, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
            "excepted, but a is web: the pod peer admits it"
        );
        let p2 = compile(
            &state(&cidr.replace(", {podSelector: {matchLabels: {app: web}}}", "")),
            &endpoints(&s, std::slice::from_ref(&b)),
        )
        .program;
        assert!(
            !fwd(&p2, "10.0.0.1", "10.0.0.2", "eth0", &bi, 80).accepted,
            "excepted address"
        );
        assert!(
            fwd(&p2, "10.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
            "inside the CIDR"
        );
        assert!(
            !fwd(&p2, "11.0.0.7", "10.0.0.2", "eth0", &bi, 80).accepted,
            "outside the CIDR"
        );
        assert!(
            !fwd(&p2, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
            "v4 CIDR never matches v6"
        );
        assert!(
            fwd(&p, "fd00::1", "fd00::2", "eth0", &bi, 80).accepted,
            "v6 pod set holds a's v6 address"
        );
        let nomatch = p2
            .sets
            .values()
            .find(|s| s.members.iter().any(|m| matches!(m, SetMember::NoMatch(_))));
        assert!(nomatch.is_some_and(|s| s.family == Family::V4 && s.kind == SetKind::HashNet));
    }

    #[test]
    fn large_dispatch_is_split_into_child_chains_and_still_finds_every_endpoint() {
        let mut s = ClusterState::default();
        let mut keys = Vec::new();
        for i in 0..200 {
            let k = Key::new("x", format!("p{i}"));
            s.pods.insert(
                k.clone(),
                pod(
                    "x",
                    &format!("p{i}"),
                    &[],
                    &[&format!("10.1.{}.{}", i / 200, i % 200 + 1)],
                ),
            );
            keys.push(k);
        }
        let p = compile(&s, &endpoints(&s, &keys)).program;
        let top = &p.chains[&(Family::V4, Table::Filter, CHAIN_TW_DISPATCH.to_string())];
        assert!(
            top.rules.len() <= 18,
            "top dispatch has {} rules",
            top.rules.len()
        );
        for k in &keys {
            let ip = s.pods[k].ips[0].to_string();
            assert!(
                fwd(&p, "10.9.9.9", &ip, "eth0", &iface_name(k), 80).accepted,
                "{k}"
            );
        }
    }

    #[test]
    fn many_ports_are_split_into_multiport_blocks_of_fifteen_slots() {
        let ports: Vec<String> = (1..=20).map(|p| format!("{{port: {}}}", 1000 + p)).collect();
        let np = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  ingress: [{{ports: [{}, {{port: 2000, endPort: 2010}}]}}]\n",
            ports.join(", ")
        );
        let s = state(&np);
        let a = Key::new("x", "a");
        let p = compile(&s, &endpoints(&s, std::slice::from_ref(&a))).program;
        let chain = p
            .chains
            .iter()
            .find(|((f, _, n), _)| *f == Family::V4 && n.starts_with("cara-pi-"))
            .unwrap()
            .1;
        for r in &chain.rules {
            if let Some(Match::DestPorts(list)) = r.matches.iter().find(|m| matches!(m, Match::DestPorts(_)))
            {
                let slots: usize = list.iter().map(|(a, b)| if a == b { 1 } else { 2 }).sum();
                assert!(slots <= MULTIPORT_SLOTS);
            }
        }
        let ai = iface_name(&a);
        for port in [1001, 1020, 2005] {
            assert!(
                fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, port).accepted,
                "{port}"
            );
        }
        assert!(!fwd(&p, "10.0.1.3", "10.0.0.1", "eth0", &ai, 1021).accepted);
    }

    #[test]
    fn compile_is_deterministic_and_renders() {
        let s = state(DENY_DB);
        let eps = endpoints(&s, &[Key::new("x", "b"), Key::new("x", "a")]);
        let mut rev = eps.clone();
        rev.reverse();
        let p1 = compile(&s, &eps).program;
        assert_eq!(p1, compile(&s, &rev).program);
        crate::render::iptables::render_program(&p1).unwrap();
        crate::render::ipset::render_sets(&p1.sets).unwrap();
    }

    #[test]
    fn invalid_policies_are_reported_and_ignored() {
        let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: nonsense}}]}]\n";
        let s = state(bad);
        let a = Key::new("x", "a");
        let c = compile(&s, &endpoints(&s, std::slice::from_ref(&a)));
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].to_string().contains("ipBlock.cidr"));
        assert!(fwd(&c.program, "10.0.1.3", "10.0.0.1", "eth0", &iface_name(&a), 80).accepted);
    }
}
