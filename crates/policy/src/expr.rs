//! The label-expression language of GlobalPolicy `selector` fields (GLOBALPOLICY.md), parsed
//! with nom:
//!
//! ```text
//! expr    := or
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" expr ")" | "all()" | "has(" key ")"
//!          | key "==" str | key "!=" str | key "in" set | key "not" "in" set
//! set     := "{" [ str ( "," str )* ] "}"
//! str     := '…' | "…"           (no escapes)
//! ```
//!
//! An empty expression is `all()`. Errors carry the 0-based character position.

use std::collections::BTreeSet;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while, take_while1},
    character::complete::multispace0,
    combinator::{cut, map, opt},
    error::{ErrorKind, ParseError},
    multi::separated_list0,
    sequence::{delimited, preceded},
};

use crate::selector::{Labels, is_label_key};

/// A parsed label expression.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    All,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A parse error: what was expected, and where (0-based character position).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: expected {expected}")]
pub struct ExprError {
    pub position: usize,
    pub expected: String,
}

/// nom error that remembers the innermost expectation.
#[derive(Debug)]
struct PErr<'a> {
    rest: &'a str,
    expected: &'static str,
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(rest: &'a str, _: ErrorKind) -> Self {
        PErr {
            rest,
            expected: "a term",
        }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep whichever alternative got further.
        if other.rest.len() <= self.rest.len() {
            other
        } else {
            self
        }
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

/// Labels the errors of `p` with what it expected.
fn expect<'a, T>(
    expected: &'static str,
    mut p: impl Parser<&'a str, Output = T, Error = PErr<'a>>,
) -> impl Parser<&'a str, Output = T, Error = PErr<'a>> {
    move |i: &'a str| {
        p.parse(i).map_err(|e| {
            e.map(|mut err| {
                if err.rest.len() >= i.trim_start().len() {
                    err.expected = expected;
                    err.rest = i;
                }
                err
            })
        })
    }
}

fn ws<'a, T>(
    p: impl Parser<&'a str, Output = T, Error = PErr<'a>>,
) -> impl Parser<&'a str, Output = T, Error = PErr<'a>> {
    preceded(multispace0, p)
}

fn key(i: &str) -> Res<'_, String> {
    let (rest, k) = expect(
        "a label key",
        ws(take_while1(|c: char| {
            c.is_ascii_alphanumeric() || "-_./".contains(c)
        })),
    )
    .parse(i)?;
    if !is_label_key(k) {
        let start = i.len() - i.trim_start().len();
        return Err(nom::Err::Failure(PErr {
            rest: &i[start..],
            expected: "a valid label key",
        }));
    }
    Ok((rest, k.to_string()))
}

fn string(i: &str) -> Res<'_, String> {
    let single = delimited(
        tag("'"),
        take_while(|c| c != '\''),
        cut(expect("a closing '", tag("'"))),
    );
    let double = delimited(
        tag("\""),
        take_while(|c| c != '"'),
        cut(expect("a closing \"", tag("\""))),
    );
    map(
        expect("a quoted string", ws(alt((single, double)))),
        str::to_string,
    )
    .parse(i)
}

fn set(i: &str) -> Res<'_, BTreeSet<String>> {
    let (i, _) = expect("'{'", ws(tag("{"))).parse(i)?;
    let (i, items) = separated_list0(ws(tag(",")), string).parse(i)?;
    let (i, _) = cut(expect("',' or '}'", ws(tag("}")))).parse(i)?;
    Ok((i, items.into_iter().collect()))
}

fn comparison(i: &str) -> Res<'_, Expr> {
    let (i, k) = key(i)?;
    let eq = map(preceded(ws(tag("==")), cut(string)), {
        let k = k.clone();
        move |v| Expr::Eq(k.clone(), v)
    });
    let ne = map(preceded(ws(tag("!=")), cut(string)), {
        let k = k.clone();
        move |v| Expr::Ne(k.clone(), v)
    });
    let in_ = map(preceded(ws(tag("in")), cut(set)), {
        let k = k.clone();
        move |v| Expr::In(k.clone(), v)
    });
    let not_in = map(
        preceded((ws(tag("not")), cut(expect("'in'", ws(tag("in"))))), cut(set)),
        {
            let k = k.clone();
            move |v| Expr::NotIn(k.clone(), v)
        },
    );
    cut(expect("'==', '!=', 'in' or 'not in'", alt((eq, ne, in_, not_in)))).parse(i)
}

fn primary(i: &str) -> Res<'_, Expr> {
    let paren = delimited(ws(tag("(")), cut(or_expr), cut(expect("')'", ws(tag(")")))));
    let all = map(
        (ws(tag("all")), ws(tag("(")), cut(expect("')'", ws(tag(")"))))),
        |_| Expr::All,
    );
    let has = map(
        (
            ws(tag("has")),
            ws(tag("(")),
            cut(key),
            cut(expect("')'", ws(tag(")")))),
        ),
        |(_, _, k, _)| Expr::Has(k),
    );
    alt((paren, all, has, comparison)).parse(i)
}

fn unary(i: &str) -> Res<'_, Expr> {
    alt((
        map(preceded(ws(tag("!")), cut(unary)), |e| Expr::Not(Box::new(e))),
        primary,
    ))
    .parse(i)
}

/// `term (op term)*`, folded into `wrap(terms)` when there is more than one term.
fn chain<'a>(
    i: &'a str,
    op: &'static str,
    term: fn(&'a str) -> Res<'a, Expr>,
    wrap: fn(Vec<Expr>) -> Expr,
) -> Res<'a, Expr> {
    let (mut i, first) = term(i)?;
    let mut terms = vec![first];
    while let (rest, Some(_)) = opt(ws(tag(op))).parse(i)? {
        let (rest, t) = cut(expect("a term", term)).parse(rest)?;
        terms.push(t);
        i = rest;
    }
    let e = if terms.len() == 1 {
        terms.pop().expect("one term")
    } else {
        wrap(terms)
    };
    Ok((i, e))
}

fn and_expr(i: &str) -> Res<'_, Expr> {
    chain(i, "&&", unary, Expr::And)
}

fn or_expr(i: &str) -> Res<'_, Expr> {
    chain(i, "||", and_expr, Expr::Or)
}

/// The most `(` and `!` one expression may hold.
pub const MAX_NESTING: usize = 256;

/// Parses an expression; empty (or only whitespace) means `all()`.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let position = |rest: &str| text[..text.len() - rest.len()].chars().count();
    if text.trim().is_empty() {
        return Ok(Expr::All);
    }
    // The parser recurses on '(' and '!': bound the nesting so that no input can exhaust the stack.
    let mut nesting = 0;
    for (i, c) in text.chars().enumerate() {
        if c == '(' || c == '!' {
            nesting += 1;
            if nesting > MAX_NESTING {
                return Err(ExprError {
                    position: i,
                    expected: format!("at most {MAX_NESTING} '(' and '!' in one expression"),
                });
            }
        }
    }
    match or_expr(text) {
        Ok((rest, e)) => {
            let trimmed = rest.trim_start();
            if trimmed.is_empty() {
                Ok(e)
            } else {
                Err(ExprError {
                    position: position(trimmed),
                    expected: "'&&', '||' or the end".into(),
                })
            }
        }
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let rest = e.rest.trim_start();
            Err(ExprError {
                position: position(rest),
                expected: e.expected.into(),
            })
        }
        Err(nom::Err::Incomplete(_)) => Err(ExprError {
            position: text.chars().count(),
            expected: "more input".into(),
        }),
    }
}

impl Expr {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Expr::All => true,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => labels.get(k) == Some(v),
            Expr::Ne(k, v) => labels.get(k) != Some(v),
            Expr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Expr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }

    /// A `key == value` every match must carry (a top-level conjunct), for label-index lookups.
    pub fn required_label(&self) -> Option<(&str, &str)> {
        match self {
            Expr::Eq(k, v) => Some((k, v)),
            Expr::In(k, vs) if vs.len() == 1 => Some((k, vs.first()?)),
            Expr::And(es) => es.iter().find_map(Expr::required_label),
            _ => None,
        }
    }
}

impl std::fmt::Display for Expr {
    /// Canonical text (fully parenthesised, single quotes), stable for hashing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |vs: &BTreeSet<String>| vs.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
        match self {
            Expr::All => write!(f, "all()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == '{v}'"),
            Expr::Ne(k, v) => write!(f, "{k} != '{v}'"),
            Expr::In(k, vs) => write!(f, "{k} in {{{}}}", set(vs)),
            Expr::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", set(vs)),
            Expr::Not(e) => write!(f, "!({e})"),
            Expr::And(es) | Expr::Or(es) => {
                let op = if matches!(self, Expr::And(_)) {
                    " && "
                } else {
                    " || "
                };
                let parts: Vec<String> = es.iter().map(|e| format!("({e})")).collect();
                f.write_str(&parts.join(op))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(expr: &str, pairs: &[(&str, &str)]) -> bool {
        parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(&labels(pairs))
    }

    #[test]
    fn every_documented_form_matches_as_specified() {
        assert!(m("k == 'v'", &[("k", "v")]));
        assert!(!m("k == 'v'", &[]));
        assert!(m("k != 'v'", &[]), "!= matches an absent label");
        assert!(!m("k != 'v'", &[("k", "v")]));
        assert!(m("k in {'a', 'b'}", &[("k", "b")]));
        assert!(!m("k in {'a', 'b'}", &[]));
        assert!(m("k not in {'a', 'b'}", &[]));
        assert!(!m("k not in {'a'}", &[("k", "a")]));
        assert!(m("has(k)", &[("k", "")]));
        assert!(m("!has(k)", &[]));
        assert!(m("!k == 'v'", &[("k", "w")]));
        assert!(m("!(k == 'v' || has(x))", &[("k", "w")]));
        assert!(m("all()", &[]));
        assert!(m("", &[]));
        assert!(m("  ", &[]));
        assert!(m("k == \"v\"", &[("k", "v")]));
        assert!(m(
            "kubernetes.io/metadata.name == 'x'",
            &[("kubernetes.io/metadata.name", "x")]
        ));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // a || (b && c)
        assert!(m("has(a) || has(b) && has(c)", &[("a", "")]));
        assert!(!m("has(a) || has(b) && has(c)", &[("b", "")]));
        assert!(m("(has(a) || has(b)) && has(c)", &[("b", ""), ("c", "")]));
    }

    #[test]
    fn errors_name_the_zero_based_position() {
        let e = parse("tier == db").unwrap_err();
        assert_eq!(e.position, 8, "{e}");
        assert!(e.expected.contains("quoted string"));
        let e = parse("has(a) &&").unwrap_err();
        assert_eq!(e.position, 9, "{e}");
        assert_eq!(e.expected, "a term");
        let e = parse("k = 'v'").unwrap_err();
        assert_eq!(e.position, 2, "{e}");
        let e = parse("k in {'a' 'b'}").unwrap_err();
        assert_eq!(e.position, 10, "{e}");
        let e = parse("has(a) has(b)").unwrap_err();
        assert_eq!(e.position, 7, "{e}");
        let e = parse("(has(a)").unwrap_err();
        assert_eq!(e.position, 7, "{e}");
        let e = parse("k == 'v").unwrap_err();
        assert!(e.expected.contains("closing"), "{e}");
        let e = parse("-bad == 'x'").unwrap_err();
        assert_eq!(e.position, 0, "{e}");
    }

    #[test]
    fn absurd_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.position, MAX_NESTING);
        let bangs = format!("{}has(a)", "!".repeat(100_000));
        assert!(parse(&bangs).is_err());
        assert!(parse(&format!("{}has(a){}", "(".repeat(50), ")".repeat(50))).is_ok());
    }

    #[test]
    fn canonical_text_reparses_to_the_same_expression() {
        for text in [
            "a == 'b' && (has(c) || d not in {'x','y'})",
            "!has(a)",
            "all()",
            "k in {}",
        ] {
            let e = parse(text).unwrap();
            assert_eq!(parse(&e.to_string()).unwrap(), e, "{text} -> {e}");
        }
    }

    #[test]
    fn required_label_finds_a_top_level_equality() {
        assert_eq!(
            parse("has(x) && app == 'db'").unwrap().required_label(),
            Some(("app", "db"))
        );
        assert_eq!(parse("app == 'db' || has(x)").unwrap().required_label(), None);
    }
}
