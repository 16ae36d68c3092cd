//! Kubernetes LabelSelector matching (`matchLabels` and `matchExpressions` with `In`, `NotIn`,
//! `Exists`, `DoesNotExist`).
//!
//! A [`Selector`] is the validated form. An empty selector (`{}`) selects everything; whether an
//! *absent* selector means "everything" or "nothing" depends on where it sits, so that decision is
//! the caller's (see [`crate::policy`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// One requirement; all requirements of a selector must hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A validated label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// Sorted and deduplicated, so that equal selectors compare and print equal.
    reqs: Vec<Requirement>,
}

/// Why a LabelSelector is invalid (the caller adds the field path).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions[{0}]: unknown operator {1:?} (In, NotIn, Exists, DoesNotExist)")]
    Operator(usize, String),
    #[error("matchExpressions[{0}]: operator {1} needs at least one value")]
    NoValues(usize, String),
    #[error("matchExpressions[{0}]: operator {1} takes no values")]
    Values(usize, String),
    #[error("{0}: invalid label key {1:?}")]
    Key(String, String),
    #[error("matchLabels[{0}]: invalid label value {1:?}")]
    Value(String, String),
}

impl Selector {
    /// The selector that selects everything (`{}`).
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector of requirements (sorted for a canonical form).
    pub fn from_requirements(mut reqs: Vec<Requirement>) -> Self {
        reqs.sort();
        reqs.dedup();
        Selector { reqs }
    }

    /// `key == value` as a selector.
    pub fn label(key: &str, value: &str) -> Self {
        Selector::from_requirements(vec![Requirement::In(
            key.to_string(),
            BTreeSet::from([value.to_string()]),
        )])
    }

    /// Validates a Kubernetes LabelSelector.
    pub fn from_k8s(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            if !is_label_key(k) {
                return Err(SelectorError::Key(format!("matchLabels[{k}]"), k.clone()));
            }
            if !is_label_value(v) {
                return Err(SelectorError::Value(k.clone(), v.clone()));
            }
            reqs.push(Requirement::In(k.clone(), BTreeSet::from([v.clone()])));
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            if !is_label_key(&e.key) {
                return Err(SelectorError::Key(
                    format!("matchExpressions[{i}].key"),
                    e.key.clone(),
                ));
            }
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            let req = match e.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        return Err(SelectorError::NoValues(i, e.operator.clone()));
                    }
                    if let Some(v) = values.iter().find(|v| !is_label_value(v)) {
                        return Err(SelectorError::Value(e.key.clone(), v.clone()));
                    }
                    if e.operator == "In" {
                        Requirement::In(e.key.clone(), values)
                    } else {
                        Requirement::NotIn(e.key.clone(), values)
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        return Err(SelectorError::Values(i, e.operator.clone()));
                    }
                    if e.operator == "Exists" {
                        Requirement::Exists(e.key.clone())
                    } else {
                        Requirement::DoesNotExist(e.key.clone())
                    }
                }
                other => return Err(SelectorError::Operator(i, other.to_string())),
            };
            reqs.push(req);
        }
        Ok(Selector::from_requirements(reqs))
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }

    pub fn is_everything(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    /// A `key=value` pair every selected object must carry, if the selector has one; used to
    /// look candidates up in a label index instead of scanning every pod.
    pub fn required_label(&self) -> Option<(&str, &str)> {
        self.reqs.iter().find_map(|r| match r {
            Requirement::In(k, vs) if vs.len() == 1 => Some((k.as_str(), vs.first()?.as_str())),
            _ => None,
        })
    }
}

impl std::fmt::Display for Selector {
    /// Canonical text, used in set names (hashed) and in explanations.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("{}");
        }
        let parts: Vec<String> = self
            .reqs
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => format!("{k}={}", vs.first().unwrap()),
                Requirement::In(k, vs) => format!("{k} in ({})", join(vs)),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", join(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn join(vs: &BTreeSet<String>) -> String {
    vs.iter().cloned().collect::<Vec<_>>().join(",")
}

/// A Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters, alphanumeric at both ends, `-`, `_`, `.` inside.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return false;
        }
    }
    !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: empty, or at most 63 characters, alphanumeric at both ends, `-`, `_`,
/// `.` inside.
pub fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    v.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn sel(ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>) -> Selector {
        Selector::from_k8s(&LabelSelector {
            match_labels: if ml.is_empty() { None } else { Some(labels(ml)) },
            match_expressions: if me.is_empty() { None } else { Some(me) },
        })
        .unwrap()
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::from_k8s(&LabelSelector::default()).unwrap();
        assert!(s.is_everything());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = sel(&[("app", "db"), ("env", "prod")], vec![]);
        assert!(s.matches(&labels(&[("app", "db"), ("env", "prod"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "db")])));
        assert!(!s.matches(&labels(&[("app", "db"), ("env", "dev")])));
    }

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let in_ = sel(&[], vec![expr("env", "In", &["a", "b"])]);
        assert!(in_.matches(&labels(&[("env", "b")])));
        assert!(!in_.matches(&labels(&[("env", "c")])));
        assert!(!in_.matches(&labels(&[])));
        let notin = sel(&[], vec![expr("env", "NotIn", &["a"])]);
        assert!(notin.matches(&labels(&[])), "NotIn matches an absent key");
        assert!(notin.matches(&labels(&[("env", "b")])));
        assert!(!notin.matches(&labels(&[("env", "a")])));
        let exists = sel(&[], vec![expr("env", "Exists", &[])]);
        assert!(exists.matches(&labels(&[("env", "")])));
        assert!(!exists.matches(&labels(&[])));
        let dne = sel(&[], vec![expr("env", "DoesNotExist", &[])]);
        assert!(dne.matches(&labels(&[])));
        assert!(!dne.matches(&labels(&[("env", "x")])));
    }

    #[test]
    fn invalid_selectors_are_rejected_with_the_reason() {
        let bad_op = LabelSelector {
            match_expressions: Some(vec![expr("a", "Equals", &["x"])]),
            ..Default::default()
        };
        assert!(
            Selector::from_k8s(&bad_op)
                .unwrap_err()
                .to_string()
                .contains("unknown operator")
        );
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert!(matches!(
            Selector::from_k8s(&no_values),
            Err(SelectorError::NoValues(0, _))
        ));
        let values = LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", &["x"])]),
            ..Default::default()
        };
        assert!(matches!(
            Selector::from_k8s(&values),
            Err(SelectorError::Values(0, _))
        ));
        let bad_key = LabelSelector {
            match_labels: Some(labels(&[("-bad", "x")])),
            ..Default::default()
        };
        assert!(Selector::from_k8s(&bad_key).is_err());
    }

    #[test]
    fn label_keys_accept_prefixes() {
        assert!(is_label_key("kubernetes.io/metadata.name"));
        assert!(is_label_key("app"));
        assert!(!is_label_key("Bad.Prefix/x"));
        assert!(!is_label_key("a/"));
        assert!(!is_label_key(""));
    }

    #[test]
    fn canonical_text_ignores_order() {
        let a = sel(&[("b", "2"), ("a", "1")], vec![]);
        let b = sel(&[("a", "1"), ("b", "2")], vec![]);
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), "a=1,b=2");
    }
}
