//! A reader of the OpenMetrics text the agent serves: the tests scrape `/metrics` and look
//! figures up by name and labels instead of searching the text.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: its samples and each metric family's declared type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

impl Exposition {
    /// The value of the sample named `name` whose labels include every pair of `labels`;
    /// `None` if there is none, and an error in the test's message if more than one match.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut hits = self.matching(name, labels);
        let first = hits.next()?;
        assert!(
            hits.next().is_none(),
            "more than one {name} sample matches {labels:?}"
        );
        Some(first.value)
    }

    /// Every sample named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }
}

/// Parses OpenMetrics text; it must end with `# EOF` and every sample must belong to a family
/// declared by a `# TYPE` line before it.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let err = |reason| ParseError {
            line: i + 1,
            reason,
            text: line.to_string(),
        };
        if eof {
            return Err(err("text after # EOF"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE without a type"))?;
            out.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue; // HELP, UNIT
        }
        let sample = parse_sample(line).ok_or_else(|| err("not a sample"))?;
        if !out.types.keys().any(|family| belongs(&sample.name, family)) {
            return Err(err("sample of an undeclared family"));
        }
        out.samples.push(sample);
    }
    if !eof {
        return Err(ParseError {
            line: text.lines().count(),
            reason: "no # EOF at the end",
            text: String::new(),
        });
    }
    Ok(out)
}

/// A sample of `family`: the family's name, or it with a suffix the type adds.
fn belongs(sample: &str, family: &str) -> bool {
    sample == family
        || sample.strip_prefix(family).is_some_and(|suffix| {
            ["_total", "_created", "_bucket", "_count", "_sum", "_info"].contains(&suffix)
        })
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (key, r) = rest.split_once("=\"")?;
            let (value, r) = quoted(r)?;
            labels.insert(key.to_string(), value);
            rest = r.strip_prefix(',').unwrap_or(r);
        }
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The text up to the closing quote, unescaped, and what follows the quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels_and_unknown_ones_refused() {
        let text = "# HELP x_total things\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\n# TYPE y gauge\ny 2.5\n# EOF\n";
        let e = parse(text).unwrap();
        assert_eq!(e.get("x_total", &[("a", "1")]), Some(3.0));
        assert_eq!(e.get("x_total", &[("b", "q\"uote")]), Some(3.0));
        assert_eq!(e.get("x_total", &[("a", "2")]), None);
        assert_eq!(e.get("y", &[]), Some(2.5));
        assert_eq!(e.types["x"], "counter");
        assert!(parse("y 1\n# EOF\n").is_err(), "undeclared family");
        assert!(parse("# TYPE y gauge\ny 1\n").is_err(), "no EOF");
        assert!(
            parse("# TYPE y gauge\ny{a=\"1} 1\n# EOF\n").is_err(),
            "unterminated label"
        );
    }
}
