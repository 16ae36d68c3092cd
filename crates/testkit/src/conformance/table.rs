//! Truth tables in the upstream netpol format: a header `-` followed by destination pods, then
//! one row per source pod, `.` for connected and `X` for blocked, separated by tabs or spaces.

use std::collections::BTreeMap;

use caracal_policy::model::Key;

/// Who may reach whom. Cells are keyed (source, destination).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Pods in the order of the header (also used for rows when printing).
    pub pods: Vec<Key>,
    pub cells: BTreeMap<(Key, Key), bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("truth table line {line}: {reason}")]
pub struct TableError {
    pub line: usize,
    pub reason: String,
}

fn parse_key(s: &str, line: usize) -> Result<Key, TableError> {
    let (ns, name) = s.split_once('/').ok_or_else(|| TableError {
        line,
        reason: format!("{s:?} is not namespace/pod"),
    })?;
    Ok(Key::new(ns, name))
}

impl Table {
    /// Parses a table; every row and column must be one of `pods`, and each must appear once.
    pub fn parse(text: &str, pods: &[Key]) -> Result<Table, TableError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
            .filter(|(_, l)| !l.is_empty());
        let (hl, header) = lines.next().ok_or(TableError {
            line: 1,
            reason: "empty table".into(),
        })?;
        if header[0] != "-" {
            return Err(TableError {
                line: hl,
                reason: "the header must start with '-'".into(),
            });
        }
        let cols: Vec<Key> = header[1..]
            .iter()
            .map(|s| parse_key(s, hl))
            .collect::<Result<_, _>>()?;
        check_pods(&cols, pods, hl, "columns")?;
        let mut rows = Vec::new();
        let mut cells = BTreeMap::new();
        for (ln, parts) in lines {
            let src = parse_key(parts[0], ln)?;
            if parts.len() != cols.len() + 1 {
                return Err(TableError {
                    line: ln,
                    reason: format!("{} cells, the header has {}", parts.len() - 1, cols.len()),
                });
            }
            for (dst, cell) in cols.iter().zip(&parts[1..]) {
                let v = match *cell {
                    "." => true,
                    "X" | "x" => false,
                    other => {
                        return Err(TableError {
                            line: ln,
                            reason: format!("cell {other:?} is neither '.' nor 'X'"),
                        });
                    }
                };
                cells.insert((src.clone(), dst.clone()), v);
            }
            rows.push(src);
        }
        check_pods(&rows, pods, hl, "rows")?;
        Ok(Table { pods: cols, cells })
    }

    pub fn get(&self, src: &Key, dst: &Key) -> Option<bool> {
        self.cells.get(&(src.clone(), dst.clone())).copied()
    }

    /// Cells that differ, ignoring a pod's cell to itself (never scored).
    pub fn mismatches(&self, other: &Table) -> Vec<(Key, Key)> {
        self.cells
            .iter()
            .filter(|((s, d), v)| s != d && other.get(s, d) != Some(**v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Tab-separated text in the case format (rows in the order of `pods`).
    pub fn render(&self) -> String {
        let mut out = String::from("-");
        for p in &self.pods {
            out.push('\t');
            out.push_str(&p.to_string());
        }
        out.push('\n');
        for s in &self.pods {
            out.push_str(&s.to_string());
            for d in &self.pods {
                out.push('\t');
                out.push(if s == d || self.get(s, d).unwrap_or(false) {
                    '.'
                } else {
                    'X'
                });
            }
            out.push('\n');
        }
        out
    }
}

fn check_pods(seen: &[Key], pods: &[Key], line: usize, what: &str) -> Result<(), TableError> {
    let mut sorted: Vec<&Key> = seen.iter().collect();
    sorted.sort();
    let before = sorted.len();
    sorted.dedup();
    if sorted.len() != before {
        return Err(TableError {
            line,
            reason: format!("a pod appears twice among the {what}"),
        });
    }
    let mut want: Vec<&Key> = pods.iter().collect();
    want.sort();
    if sorted != want {
        return Err(TableError {
            line,
            reason: format!(
                "the {what} must list exactly the model's pods ({})",
                pods.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<Key> {
        vec![Key::new("x", "a"), Key::new("y", "a")]
    }

    #[test]
    fn parses_tabs_or_spaces_and_any_row_order() {
        let t = Table::parse("-\tx/a\ty/a\ny/a  X   .\nx/a . .\n", &pods()).unwrap();
        assert_eq!(t.get(&Key::new("y", "a"), &Key::new("x", "a")), Some(false));
        assert_eq!(t.get(&Key::new("x", "a"), &Key::new("y", "a")), Some(true));
        assert_eq!(Table::parse(&t.render(), &pods()).unwrap(), t);
    }

    #[test]
    fn rejects_tables_that_do_not_list_exactly_the_model() {
        assert!(Table::parse("-\tx/a\nx/a\t.\n", &pods()).is_err());
        assert!(Table::parse("-\tx/a\ty/a\nx/a\t.\t.\n", &pods()).is_err());
        assert!(Table::parse("-\tx/a\ty/a\nx/a\t.\t?\ny/a\t.\t.\n", &pods()).is_err());
    }

    #[test]
    fn mismatches_ignore_the_diagonal() {
        let a = Table::parse("-\tx/a\ty/a\nx/a\t.\t.\ny/a\t.\t.\n", &pods()).unwrap();
        let b = Table::parse("-\tx/a\ty/a\nx/a\tX\tX\ny/a\t.\t.\n", &pods()).unwrap();
        assert_eq!(a.mismatches(&b), vec![(Key::new("x", "a"), Key::new("y", "a"))]);
    }
}
