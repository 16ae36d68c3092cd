//! The validated, normalized form shared by both policy kinds: what [`crate::validate`] produces
//! from a NetworkPolicy or a GlobalPolicy, and what the compiler and the reference evaluator
//! consume. Defaults are resolved here (policyTypes, absent selectors, protocol TCP, masked CIDRs),
//! so later stages never look at the API objects again.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    expr::Expr,
    model::{Namespace, Pod},
    program::Protocol,
    selector::{Labels, Selector},
};

/// Where a policy sits in the evaluation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Admin,
    Network,
    Baseline,
}

/// Traffic direction relative to the selected pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Which policy: `NetworkPolicy ns/name` or `GlobalPolicy name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyId {
    Network { namespace: String, name: String },
    Global { name: String },
}

impl PolicyId {
    /// The id of the NetworkPolicy `key`.
    pub fn network(key: &crate::model::Key) -> PolicyId {
        PolicyId::Network {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyId::Network { namespace, name } => write!(f, "NetworkPolicy {namespace}/{name}"),
            PolicyId::Global { name } => write!(f, "GlobalPolicy {name}"),
        }
    }
}

/// Which namespaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsMatch {
    /// Exactly this namespace (a NetworkPolicy's own).
    Named(String),
    /// Namespaces whose labels match (`{}` = all).
    Selector(Selector),
}

impl NsMatch {
    pub fn matches(&self, ns: &Namespace) -> bool {
        match self {
            NsMatch::Named(n) => *n == ns.name,
            NsMatch::Selector(s) => s.matches(&ns.labels),
        }
    }
}

/// Which pods within the matched namespaces: a LabelSelector and an optional expression.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodMatch {
    pub selector: Selector,
    pub expr: Option<Expr>,
}

impl PodMatch {
    pub fn everything() -> Self {
        PodMatch {
            selector: Selector::everything(),
            expr: None,
        }
    }
    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector.matches(labels) && self.expr.as_ref().is_none_or(|e| e.matches(labels))
    }
}

/// A set of pods: namespaces and pods within them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodSet {
    pub namespaces: NsMatch,
    pub pods: PodMatch,
}

impl PodSet {
    /// Does this set hold `pod`? `ns` is the pod's namespace, if known (an unknown namespace has
    /// only its name label).
    pub fn matches(&self, ns: Option<&Namespace>, pod: &Pod) -> bool {
        let ns_ok = match ns {
            Some(ns) => self.namespaces.matches(ns),
            None => self.namespaces.matches(&Namespace {
                name: pod.namespace.clone(),
                labels: [(
                    crate::model::NAMESPACE_NAME_LABEL.to_string(),
                    pod.namespace.clone(),
                )]
                .into(),
            }),
        };
        ns_ok && self.pods.matches(&pod.labels)
    }

    /// Canonical text, hashed into set names and shown in explanations.
    pub fn canonical(&self) -> String {
        let ns = match &self.namespaces {
            NsMatch::Named(n) => format!("ns={n}"),
            NsMatch::Selector(s) => format!("nsSelector={s}"),
        };
        match &self.pods.expr {
            Some(e) => format!("{ns};pods={};expr={e}", self.pods.selector),
            None => format!("{ns};pods={}", self.pods.selector),
        }
    }
}

/// A peer of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Pods(PodSet),
    /// A masked CIDR minus masked exceptions (all of the same family, inside `net`).
    Net {
        net: IpNet,
        except: Vec<IpNet>,
    },
}

impl Peer {
    pub fn matches_net(net: &IpNet, except: &[IpNet], ip: IpAddr) -> bool {
        net.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
    }
}

/// A destination-port match.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// Every port of a protocol.
    Protocol(Protocol),
    /// An inclusive range (a single port is `p..=p`).
    Range(Protocol, u16, u16),
    /// A named container port of the destination pod, with this protocol.
    Named(Protocol, String),
}

impl PortMatch {
    pub fn protocol(&self) -> Protocol {
        match self {
            PortMatch::Protocol(p) | PortMatch::Range(p, ..) | PortMatch::Named(p, _) => *p,
        }
    }
}

/// What a matching rule does. NetworkPolicy rules are all `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Accept,
    Deny,
    Pass,
}

/// One rule of one direction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    /// Position in the policy's list for this direction.
    pub index: usize,
    pub name: Option<String>,
    pub action: Action,
    /// `None` = every peer (any address).
    pub peers: Option<Vec<Peer>>,
    /// `None` = every port of every protocol.
    pub ports: Option<Vec<PortMatch>>,
}

impl PolicyRule {
    /// "rule 2 (from-dev)" for explanations.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("rule {} ({n})", self.index),
            None => format!("rule {}", self.index),
        }
    }
}

/// A validated policy of either kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    pub id: PolicyId,
    pub layer: Layer,
    /// GlobalPolicy priority (0 for NetworkPolicies, which are unordered: they form a union).
    pub priority: i32,
    pub subject: PodSet,
    /// `None`: the policy does not apply to this direction (NetworkPolicy policyTypes).
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
}

impl Policy {
    pub fn rules(&self, dir: Direction) -> Option<&[PolicyRule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// The evaluation order within a layer: priority, then name.
    pub fn order_key(&self) -> (i32, &PolicyId) {
        (self.priority, &self.id)
    }
}
