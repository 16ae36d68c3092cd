//! Validation of NetworkPolicies and GlobalPolicies into the normalized [`Policy`].
//!
//! Every error names the object, the field path and the reason. An invalid object is rejected as
//! a whole (the caller ignores it and reports why); nothing here panics on input. CIDRs with host
//! bits set are accepted and masked, as the Kubernetes API does.

use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use crate::{
    expr,
    globalpolicy::{self, GlobalPolicy, GlobalPort, RuleAction, Tier},
    policy::{Action, Layer, NsMatch, Peer, PodMatch, PodSet, Policy, PolicyId, PolicyRule, PortMatch},
    program::Protocol,
    selector::Selector,
};

/// A rejected object: which one, which field, why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct Error {
    /// `NetworkPolicy ns/name` or `GlobalPolicy name`.
    pub object: String,
    /// The field path, as in `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    pub reason: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

struct Ctx<'a> {
    object: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error {
            object: self.object.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn selector(&self, field: &str, sel: &LabelSelector) -> Result<Selector> {
        Selector::from_k8s(sel).map_err(|e| self.err(field, e.to_string()))
    }

    fn cidr(&self, field: &str, text: &str) -> Result<IpNet> {
        parse_cidr(text).ok_or_else(|| self.err(field, format!("invalid CIDR {text:?}")))
    }
}

/// Parses a CIDR and masks host bits (`10.0.0.7/4` is `0.0.0.0/4`).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    IpNet::from_str(text.trim()).ok().map(|n| n.trunc())
}

fn protocol(ctx: &Ctx<'_>, field: &str, p: Option<&str>) -> Result<Protocol> {
    Protocol::from_k8s(p).ok_or_else(|| {
        ctx.err(
            field,
            format!(
                "unsupported protocol {:?} (TCP, UDP or SCTP)",
                p.unwrap_or_default()
            ),
        )
    })
}

/// An IANA service name, as Kubernetes requires for named container ports: at most 15
/// characters of lower-case letters, digits and `-`, at least one letter, no `-` at either end and
/// no `--`.
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn port(
    ctx: &Ctx<'_>,
    field: &str,
    proto: Protocol,
    port: Option<&IntOrString>,
    end_port: Option<i32>,
) -> Result<PortMatch> {
    match (port, end_port) {
        (None, None) => Ok(PortMatch::Protocol(proto)),
        (None, Some(_)) => Err(ctx.err(format!("{field}.endPort"), "endPort needs a numeric port")),
        (Some(IntOrString::String(name)), end) => {
            if end.is_some() {
                return Err(ctx.err(
                    format!("{field}.endPort"),
                    "endPort cannot be used with a named port",
                ));
            }
            if let Ok(n) = name.parse::<i32>() {
                // A quoted number is a string to Kubernetes, and not a valid port name.
                return Err(ctx.err(
                    format!("{field}.port"),
                    format!("port {n:?} is a string; write the number without quotes"),
                ));
            }
            if !is_port_name(name) {
                return Err(ctx.err(format!("{field}.port"), format!("invalid port name {name:?}")));
            }
            Ok(PortMatch::Named(proto, name.clone()))
        }
        (Some(IntOrString::Int(p)), end) => {
            if !(1..=65535).contains(p) {
                return Err(ctx.err(format!("{field}.port"), format!("port {p} is not in 1..65535")));
            }
            let end = end.unwrap_or(*p);
            if !(1..=65535).contains(&end) {
                return Err(ctx.err(
                    format!("{field}.endPort"),
                    format!("endPort {end} is not in 1..65535"),
                ));
            }
            if end < *p {
                return Err(ctx.err(
                    format!("{field}.endPort"),
                    format!("endPort {end} is below port {p}"),
                ));
            }
            Ok(PortMatch::Range(proto, *p as u16, end as u16))
        }
    }
}

/// Validates and normalizes a NetworkPolicy.
pub fn network_policy(np: &NetworkPolicy) -> Result<Policy> {
    let namespace = np.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = np.metadata.name.clone().unwrap_or_default();
    let object = format!("NetworkPolicy {namespace}/{name}");
    let ctx = Ctx { object: &object };
    if name.is_empty() {
        return Err(ctx.err("metadata.name", "missing"));
    }
    let spec = np.spec.clone().unwrap_or_default();
    let subject = PodSet {
        namespaces: NsMatch::Named(namespace.clone()),
        pods: PodMatch {
            selector: ctx.selector("spec.podSelector", &spec.pod_selector.clone().unwrap_or_default())?,
            expr: None,
        },
    };
    let types = match &spec.policy_types {
        Some(t) if !t.is_empty() => {
            for (i, ty) in t.iter().enumerate() {
                if ty != "Ingress" && ty != "Egress" {
                    return Err(ctx.err(
                        format!("spec.policyTypes[{i}]"),
                        format!("unknown policy type {ty:?} (Ingress or Egress)"),
                    ));
                }
            }
            (t.iter().any(|t| t == "Ingress"), t.iter().any(|t| t == "Egress"))
        }
        // Kubernetes defaulting: Ingress always, Egress when egress rules are present.
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    };
    let mut ingress = None;
    if types.0 {
        let mut rules = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let field = format!("spec.ingress[{i}]");
            rules.push(np_rule(
                &ctx,
                &field,
                i,
                &namespace,
                r.from.as_deref(),
                "from",
                r.ports.as_deref(),
            )?);
        }
        ingress = Some(rules);
    }
    let mut egress = None;
    if types.1 {
        let mut rules = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let field = format!("spec.egress[{i}]");
            rules.push(np_rule(
                &ctx,
                &field,
                i,
                &namespace,
                r.to.as_deref(),
                "to",
                r.ports.as_deref(),
            )?);
        }
        egress = Some(rules);
    }
    Ok(Policy {
        id: PolicyId::Network { namespace, name },
        layer: Layer::Network,
        priority: 0,
        subject,
        ingress,
        egress,
    })
}

fn np_rule(
    ctx: &Ctx<'_>,
    field: &str,
    index: usize,
    namespace: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    peers_name: &str,
    ports: Option<&[NetworkPolicyPort]>,
) -> Result<PolicyRule> {
    // In a NetworkPolicy an empty list means "everything", like an absent one.
    let peers = match peers {
        None | Some([]) => None,
        Some(list) => {
            let mut out = Vec::new();
            for (j, p) in list.iter().enumerate() {
                out.push(np_peer(ctx, &format!("{field}.{peers_name}[{j}]"), namespace, p)?);
            }
            Some(out)
        }
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(list) => {
            let mut out = Vec::new();
            for (j, p) in list.iter().enumerate() {
                let f = format!("{field}.ports[{j}]");
                let proto = protocol(ctx, &format!("{f}.protocol"), p.protocol.as_deref())?;
                out.push(port(ctx, &f, proto, p.port.as_ref(), p.end_port)?);
            }
            Some(out)
        }
    };
    Ok(PolicyRule {
        index,
        name: None,
        action: Action::Accept,
        peers,
        ports,
    })
}

fn np_peer(ctx: &Ctx<'_>, field: &str, namespace: &str, p: &NetworkPolicyPeer) -> Result<Peer> {
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return Err(ctx.err(
                field,
                "ipBlock cannot be combined with podSelector or namespaceSelector",
            ));
        }
        let net = ctx.cidr(&format!("{field}.ipBlock.cidr"), &block.cidr)?;
        let mut except = Vec::new();
        for (k, e) in block.except.iter().flatten().enumerate() {
            let f = format!("{field}.ipBlock.except[{k}]");
            let e = ctx.cidr(&f, e)?;
            if !net.contains(&e) {
                return Err(ctx.err(f, format!("{e} is not inside {net}")));
            }
            except.push(e);
        }
        return Ok(Peer::Net { net, except });
    }
    let namespaces = match &p.namespace_selector {
        None => NsMatch::Named(namespace.to_string()),
        Some(s) => NsMatch::Selector(ctx.selector(&format!("{field}.namespaceSelector"), s)?),
    };
    let pods = match &p.pod_selector {
        None if p.namespace_selector.is_none() => {
            return Err(ctx.err(field, "a peer needs podSelector, namespaceSelector or ipBlock"));
        }
        None => Selector::everything(),
        Some(s) => ctx.selector(&format!("{field}.podSelector"), s)?,
    };
    Ok(Peer::Pods(PodSet {
        namespaces,
        pods: PodMatch {
            selector: pods,
            expr: None,
        },
    }))
}

/// Validates and normalizes a GlobalPolicy.
pub fn global_policy(gp: &GlobalPolicy) -> Result<Policy> {
    let name = gp.name().to_string();
    let object = format!("GlobalPolicy {name}");
    let ctx = Ctx { object: &object };
    if name.is_empty() {
        return Err(ctx.err("metadata.name", "missing"));
    }
    let spec = &gp.spec;
    if !(0..=1000).contains(&spec.priority) {
        return Err(ctx.err("spec.priority", format!("{} is not in 0..1000", spec.priority)));
    }
    let subject = match &spec.subject {
        None => PodSet {
            namespaces: NsMatch::Selector(Selector::everything()),
            pods: PodMatch::everything(),
        },
        Some(s) => gp_podset(
            &ctx,
            "spec.subject",
            s.namespace_selector.as_ref(),
            s.pod_selector.as_ref(),
            s.selector.as_deref(),
        )?,
    };
    let ingress = gp_rules(&ctx, "spec.ingress", spec.ingress.as_deref(), true)?;
    let egress = gp_rules(&ctx, "spec.egress", spec.egress.as_deref(), false)?;
    Ok(Policy {
        id: PolicyId::Global { name },
        layer: match spec.tier {
            Tier::Admin => Layer::Admin,
            Tier::Baseline => Layer::Baseline,
        },
        priority: spec.priority,
        subject,
        ingress: Some(ingress),
        egress: Some(egress),
    })
}

fn gp_podset(
    ctx: &Ctx<'_>,
    field: &str,
    ns: Option<&LabelSelector>,
    pods: Option<&LabelSelector>,
    expr_text: Option<&str>,
) -> Result<PodSet> {
    let namespaces = NsMatch::Selector(match ns {
        None => Selector::everything(),
        Some(s) => ctx.selector(&format!("{field}.namespaceSelector"), s)?,
    });
    let selector = match pods {
        None => Selector::everything(),
        Some(s) => ctx.selector(&format!("{field}.podSelector"), s)?,
    };
    let expr = match expr_text {
        None => None,
        Some(t) => match expr::parse(t).map_err(|e| ctx.err(format!("{field}.selector"), e.to_string()))? {
            expr::Expr::All => None,
            e => Some(e),
        },
    };
    Ok(PodSet {
        namespaces,
        pods: PodMatch { selector, expr },
    })
}

fn gp_rules(
    ctx: &Ctx<'_>,
    field: &str,
    rules: Option<&[globalpolicy::GlobalRule]>,
    ingress: bool,
) -> Result<Vec<PolicyRule>> {
    let mut out = Vec::new();
    for (i, r) in rules.into_iter().flatten().enumerate() {
        let f = format!("{field}[{i}]");
        let (peers, peers_name, wrong, wrong_name) = if ingress {
            (r.from.as_deref(), "from", r.to.as_ref(), "to")
        } else {
            (r.to.as_deref(), "to", r.from.as_ref(), "from")
        };
        if wrong.is_some() {
            return Err(ctx.err(
                format!("{f}.{wrong_name}"),
                format!(
                    "{} rules take `{peers_name}`, not `{wrong_name}`",
                    if ingress { "ingress" } else { "egress" }
                ),
            ));
        }
        let peers = match peers {
            None => None,
            Some([]) => {
                return Err(ctx.err(
                    format!("{f}.{peers_name}"),
                    "must not be empty (omit it to match every peer)",
                ));
            }
            Some(list) => {
                let mut v = Vec::new();
                for (j, p) in list.iter().enumerate() {
                    v.extend(gp_peer(ctx, &format!("{f}.{peers_name}[{j}]"), p)?);
                }
                Some(v)
            }
        };
        let ports = match r.ports.as_deref() {
            None => None,
            Some([]) => {
                return Err(ctx.err(
                    format!("{f}.ports"),
                    "must not be empty (omit it to match every port)",
                ));
            }
            Some(list) => {
                let mut v = Vec::new();
                for (j, p) in list.iter().enumerate() {
                    v.push(gp_port(ctx, &format!("{f}.ports[{j}]"), p)?);
                }
                Some(v)
            }
        };
        if let Some(n) = &r.name
            && n.len() > 100
        {
            return Err(ctx.err(format!("{f}.name"), "longer than 100 characters"));
        }
        out.push(PolicyRule {
            index: i,
            name: r.name.clone(),
            action: match r.action {
                RuleAction::Accept => Action::Accept,
                RuleAction::Deny => Action::Deny,
                RuleAction::Pass => Action::Pass,
            },
            peers,
            ports,
        });
    }
    Ok(out)
}

fn gp_peer(ctx: &Ctx<'_>, field: &str, p: &globalpolicy::Peer) -> Result<Vec<Peer>> {
    let has_selectors = p.namespace_selector.is_some() || p.pod_selector.is_some() || p.selector.is_some();
    match (&p.networks, has_selectors) {
        (Some(_), true) => Err(ctx.err(
            field,
            "a peer has either selectors (namespaceSelector, podSelector, selector) or networks, not both",
        )),
        (None, false) => Err(ctx.err(
            field,
            "an empty peer; give namespaceSelector, podSelector, selector or networks",
        )),
        (Some(nets), false) => {
            if nets.is_empty() {
                return Err(ctx.err(format!("{field}.networks"), "must not be empty"));
            }
            nets.iter()
                .enumerate()
                .map(|(k, n)| {
                    Ok(Peer::Net {
                        net: ctx.cidr(&format!("{field}.networks[{k}]"), n)?,
                        except: Vec::new(),
                    })
                })
                .collect()
        }
        (None, true) => Ok(vec![Peer::Pods(gp_podset(
            ctx,
            field,
            p.namespace_selector.as_ref(),
            p.pod_selector.as_ref(),
            p.selector.as_deref(),
        )?)]),
    }
}

fn gp_port(ctx: &Ctx<'_>, field: &str, p: &GlobalPort) -> Result<PortMatch> {
    let proto = match p.protocol {
        globalpolicy::PortProtocol::Tcp => Protocol::Tcp,
        globalpolicy::PortProtocol::Udp => Protocol::Udp,
        globalpolicy::PortProtocol::Sctp => Protocol::Sctp,
    };
    port(ctx, field, proto, p.port.as_ref(), p.end_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(yaml: &str) -> Result<Policy> {
        network_policy(&serde_yaml::from_str(yaml).unwrap())
    }

    fn gp(spec: &str) -> Result<Policy> {
        let yaml = format!(
            "apiVersion: caracal.dev/v1alpha1\nkind: GlobalPolicy\nmetadata: {{name: g}}\nspec: {spec}"
        );
        global_policy(&serde_yaml::from_str(&yaml).unwrap())
    }

    const NP_HEAD: &str =
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n";

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
        let p = np(&format!("{NP_HEAD}spec: {{podSelector: {{}}}}")).unwrap();
        assert_eq!(p.ingress, Some(vec![]));
        assert_eq!(p.egress, None);
        let p = np(&format!("{NP_HEAD}spec: {{podSelector: {{}}, egress: [{{}}]}}")).unwrap();
        assert!(p.ingress.is_some() && p.egress.as_ref().unwrap().len() == 1);
        let p = np(&format!(
            "{NP_HEAD}spec: {{podSelector: {{}}, policyTypes: [Egress]}}"
        ))
        .unwrap();
        assert_eq!(p.ingress, None);
        assert_eq!(p.egress, Some(vec![]));
    }

    #[test]
    fn non_canonical_cidrs_are_masked() {
        let p = np(&format!(
            "{NP_HEAD}spec:\n  podSelector: {{}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 10.1.2.3/8, except: [10.9.9.9/16]}}}}]}}]"
        ))
        .unwrap();
        let rules = p.ingress.unwrap();
        assert_eq!(
            &rules[0].peers.as_ref().unwrap()[0],
            &Peer::Net {
                net: "10.0.0.0/8".parse().unwrap(),
                except: vec!["10.9.0.0/16".parse().unwrap()]
            }
        );
    }

    #[test]
    fn bad_network_policies_name_field_and_reason() {
        let cases = [
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
                "spec.ingress[0].from[0].ipBlock.cidr",
                "invalid CIDR",
            ),
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
                "spec.ingress[0].from[0].ipBlock.except[0]",
                "not inside",
            ),
            (
                "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
                "spec.ingress[0].from[0]",
                "cannot be combined",
            ),
            ("ingress: [{from: [{}]}]", "spec.ingress[0].from[0]", "needs"),
            (
                "ingress: [{ports: [{port: 0}]}]",
                "spec.ingress[0].ports[0].port",
                "not in 1..65535",
            ),
            (
                "ingress: [{ports: [{port: 70000}]}]",
                "spec.ingress[0].ports[0].port",
                "not in",
            ),
            (
                "ingress: [{ports: [{endPort: 90}]}]",
                "spec.ingress[0].ports[0].endPort",
                "numeric port",
            ),
            (
                "ingress: [{ports: [{port: 90, endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort",
                "below",
            ),
            (
                "ingress: [{ports: [{port: http, endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort",
                "named",
            ),
            (
                "ingress: [{ports: [{port: 80, protocol: ICMP}]}]",
                "spec.ingress[0].ports[0].protocol",
                "unsupported",
            ),
            (
                "ingress: [{ports: [{port: Bad_Name}]}]",
                "spec.ingress[0].ports[0].port",
                "invalid port name",
            ),
            (
                "policyTypes: [Sideways]",
                "spec.policyTypes[0]",
                "unknown policy type",
            ),
            (
                "egress: [{to: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]}]",
                "spec.egress[0].to[0].namespaceSelector",
                "at least one value",
            ),
        ];
        for (spec, field, reason) in cases {
            let e = np(&format!("{NP_HEAD}spec:\n  podSelector: {{}}\n  {spec}")).unwrap_err();
            assert_eq!(e.field, field, "{spec}: {e}");
            assert!(e.reason.contains(reason), "{spec}: {e}");
            assert!(e.to_string().starts_with("NetworkPolicy x/p: "), "{e}");
        }
    }

    #[test]
    fn endport_equal_to_port_is_a_single_port() {
        let p = np(&format!(
            "{NP_HEAD}spec:\n  podSelector: {{}}\n  ingress: [{{ports: [{{port: 80, endPort: 80}}]}}]"
        ))
        .unwrap();
        assert_eq!(
            p.ingress.unwrap()[0].ports,
            Some(vec![PortMatch::Range(Protocol::Tcp, 80, 80)])
        );
    }

    #[test]
    fn peer_with_only_pod_selector_is_confined_to_the_policy_namespace() {
        let p = np(&format!(
            "{NP_HEAD}spec:\n  podSelector: {{}}\n  ingress: [{{from: [{{podSelector: {{}}}}]}}]"
        ))
        .unwrap();
        match &p.ingress.unwrap()[0].peers.as_ref().unwrap()[0] {
            Peer::Pods(s) => assert_eq!(s.namespaces, NsMatch::Named("x".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_global_policies_name_field_and_reason() {
        let cases = [
            ("{priority: 1001}", "spec.priority", "not in 0..1000"),
            ("{priority: -1}", "spec.priority", "not in 0..1000"),
            (
                "{priority: 1, ingress: [{action: Deny, from: []}]}",
                "spec.ingress[0].from",
                "must not be empty",
            ),
            (
                "{priority: 1, egress: [{action: Deny, to: []}]}",
                "spec.egress[0].to",
                "must not be empty",
            ),
            (
                "{priority: 1, egress: [{action: Deny, ports: []}]}",
                "spec.egress[0].ports",
                "must not be empty",
            ),
            (
                "{priority: 1, ingress: [{action: Deny, from: [{}]}]}",
                "spec.ingress[0].from[0]",
                "empty peer",
            ),
            (
                "{priority: 1, ingress: [{action: Deny, from: [{networks: [10.0.0.0/8], podSelector: {}}]}]}",
                "spec.ingress[0].from[0]",
                "not both",
            ),
            (
                "{priority: 1, ingress: [{action: Deny, from: [{networks: [nonsense]}]}]}",
                "spec.ingress[0].from[0].networks[0]",
                "invalid CIDR",
            ),
            (
                "{priority: 1, ingress: [{action: Deny, to: [{podSelector: {}}]}]}",
                "spec.ingress[0].to",
                "not `to`",
            ),
            (
                "{priority: 1, subject: {selector: \"app == db\"}}",
                "spec.subject.selector",
                "at position 7",
            ),
            (
                "{priority: 1, ingress: [{action: Accept, ports: [{port: 80, endPort: 79}]}]}",
                "spec.ingress[0].ports[0].endPort",
                "below",
            ),
        ];
        for (spec, field, reason) in cases {
            let e = gp(spec).unwrap_err();
            assert_eq!(e.field, field, "{spec}: {e}");
            assert!(e.reason.contains(reason), "{spec}: {e}");
        }
    }

    #[test]
    fn global_peer_without_namespace_selector_means_every_namespace() {
        let p = gp("{priority: 5, tier: Baseline, ingress: [{action: Pass, from: [{podSelector: {matchLabels: {a: b}}}]}]}")
            .unwrap();
        assert_eq!(p.layer, Layer::Baseline);
        match &p.ingress.unwrap()[0].peers.as_ref().unwrap()[0] {
            Peer::Pods(s) => assert_eq!(s.namespaces, NsMatch::Selector(Selector::everything())),
            other => panic!("{other:?}"),
        }
    }
}
