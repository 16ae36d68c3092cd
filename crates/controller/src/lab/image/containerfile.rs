//! A reader for the subset of the Containerfile (Dockerfile) syntax the repository's
//! `Containerfile` uses, so the offline builder takes its file list and image configuration from
//! the same text `docker build` reads.
//!
//! Understood: comments, `\` continuations, `FROM image [AS name]`, and in the final stage
//! `COPY [--from=STAGE] SRC... DEST`, `ENV K=V...`, `LABEL k=v...`, `WORKDIR`, and `ENTRYPOINT`
//! / `CMD` in exec (JSON) form. Earlier stages may hold anything; only their names and base
//! images are kept. The final stage refuses anything else (`RUN`, `ADD`, shell-form
//! `ENTRYPOINT`, globs): the offline builder could not reproduce it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};

use super::oci;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
    /// `(keyword upper-cased, arguments)` in order.
    pub instructions: Vec<(String, String)>,
}

/// One file or folder the final stage puts into the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The stage it comes from (`None`: the build context).
    pub from: Option<String>,
    /// The path in that stage (or relative to the context), as written.
    pub source: String,
    /// Where it lands in the image, absolute.
    pub dest: String,
    /// The source ends in `/`: a folder copied with everything in it.
    pub dir: bool,
}

/// What the final stage declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalStage {
    pub base: String,
    pub config: oci::Config,
    pub placements: Vec<Placement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containerfile {
    pub stages: Vec<Stage>,
}

impl Containerfile {
    pub fn parse(text: &str) -> Result<Containerfile> {
        let mut stages: Vec<Stage> = Vec::new();
        for (lineno, line) in logical_lines(text) {
            let (kw, args) = line
                .split_once(char::is_whitespace)
                .unwrap_or((line.as_str(), ""));
            let (kw, args) = (kw.to_ascii_uppercase(), args.trim().to_owned());
            if kw == "FROM" {
                let words: Vec<&str> = args.split_whitespace().collect();
                let stage = match words.as_slice() {
                    [base] => Stage {
                        base: base.to_string(),
                        name: None,
                        instructions: vec![],
                    },
                    [base, as_, name] if as_.eq_ignore_ascii_case("as") => Stage {
                        base: base.to_string(),
                        name: Some(name.to_string()),
                        instructions: vec![],
                    },
                    _ => bail!("Containerfile line {lineno}: FROM {args:?}: write FROM IMAGE [AS NAME]"),
                };
                stages.push(stage);
                continue;
            }
            match stages.last_mut() {
                Some(s) => s.instructions.push((kw, args)),
                None if kw == "ARG" => {}
                None => bail!("Containerfile line {lineno}: {kw} before the first FROM"),
            }
        }
        ensure!(!stages.is_empty(), "Containerfile without a FROM");
        Ok(Containerfile { stages })
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// The final stage's files and configuration.
    pub fn final_stage(&self) -> Result<FinalStage> {
        let stage = self.stages.last().expect("parse refuses an empty file");
        let mut config = oci::Config::default();
        let mut placements = Vec::new();
        let mut env: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for (kw, args) in &stage.instructions {
            let what = || format!("final stage: {kw} {args}");
            match kw.as_str() {
                "COPY" => placements.extend(copy(args).with_context(what)?),
                "ENV" => {
                    for (k, v) in pairs(args).with_context(what)? {
                        let n = env.len();
                        let order = env.get(&k).map_or(n, |e| e.0);
                        env.insert(k, (order, v));
                    }
                }
                "LABEL" => config.labels.extend(pairs(args).with_context(what)?),
                "WORKDIR" => config.working_dir = args.clone(),
                "USER" => config.user = args.clone(),
                "EXPOSE" => config.exposed_ports.extend(args.split_whitespace().map(|p| {
                    if p.contains('/') {
                        p.to_owned()
                    } else {
                        format!("{p}/tcp")
                    }
                })),
                "ENTRYPOINT" => config.entrypoint = exec_form(args).with_context(what)?,
                "CMD" => config.cmd = exec_form(args).with_context(what)?,
                _ => bail!("{}: the offline image builder cannot do {kw}", what()),
            }
        }
        let mut env: Vec<_> = env.into_iter().collect();
        env.sort_by_key(|(_, (order, _))| *order);
        config.env = env.into_iter().map(|(k, (_, v))| format!("{k}={v}")).collect();
        Ok(FinalStage {
            base: stage.base.clone(),
            config,
            placements,
        })
    }
}

/// Lines with comments dropped and `\` continuations joined, each with its first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && cur.is_none()) {
            continue;
        }
        let (body, more) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        let entry = cur.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !more {
            out.extend(cur.take());
        }
    }
    out.extend(cur);
    out
}

/// `COPY [--from=STAGE] SRC... DEST` into one placement per source.
fn copy(args: &str) -> Result<Vec<Placement>> {
    let mut from = None;
    let mut words = Vec::new();
    for w in words_of(args)? {
        if let Some(f) = w.strip_prefix("--from=") {
            from = Some(f.to_owned());
        } else if w.starts_with("--") {
            bail!("COPY option {w} is not supported");
        } else {
            words.push(w);
        }
    }
    let Some((dest, sources)) = words.split_last() else {
        bail!("COPY needs a source and a destination");
    };
    ensure!(!sources.is_empty(), "COPY needs a source and a destination");
    ensure!(
        dest.starts_with('/'),
        "COPY destination {dest:?} must be absolute"
    );
    ensure!(
        sources.len() == 1 || dest.ends_with('/'),
        "COPY of several sources needs a destination folder ending in /"
    );
    sources
        .iter()
        .map(|src| {
            ensure!(
                !src.contains(['*', '?', '[']),
                "COPY source {src:?}: globs are not supported"
            );
            let dir = src.ends_with('/');
            let base = src.trim_end_matches('/').rsplit('/').next().unwrap_or(src);
            let dest = if dir {
                dest.trim_end_matches('/').to_owned()
            } else if dest.ends_with('/') {
                format!("{dest}{base}")
            } else {
                dest.clone()
            };
            Ok(Placement {
                from: from.clone(),
                source: src.clone(),
                dest: if dest.is_empty() { "/".into() } else { dest },
                dir,
            })
        })
        .collect()
}

/// `["a", "b"]`.
fn exec_form(args: &str) -> Result<Vec<String>> {
    serde_json::from_str(args)
        .map_err(|_| anyhow::anyhow!("write the exec form, [\"program\", \"arg\"]: the image has no shell"))
}

/// `K=V K2="v w"` (and the old `K V` form of ENV).
fn pairs(args: &str) -> Result<Vec<(String, String)>> {
    let words = words_of(args)?;
    if words.len() == 2 && !words[0].contains('=') {
        return Ok(vec![(words[0].clone(), words[1].clone())]);
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{w:?} is not KEY=VALUE"))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Splits on whitespace; double quotes group (and `\"` escapes inside them).
fn words_of(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => bail!("unterminated quote in {s:?}"),
                    }
                }
            }
            c if c.is_whitespace() => words.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# a comment
FROM rust:1 AS build
RUN cargo build \
    --release
FROM debian:bookworm-slim AS debian
FROM scratch
COPY --from=debian /usr/sbin/a /usr/sbin/b \
     /usr/sbin/
COPY --from=debian /usr/sbin/a /usr/sbin/c
COPY --from=debian /usr/lib/x/ /usr/lib/x/
COPY crates/cni/cni-conflist.json /etc/caracal/
ENV PATH=/bin A="x y"
ENV PATH=/usr/bin
LABEL org.opencontainers.image.title="caracal" v=1
WORKDIR /
EXPOSE 80 53/udp
ENTRYPOINT ["/usr/local/bin/caracal"]
CMD ["agent"]
"#;

    #[test]
    fn final_stage_gives_placements_and_config() {
        let c = Containerfile::parse(SAMPLE).unwrap();
        assert_eq!(c.stages.len(), 3);
        assert_eq!(
            c.stage("build").unwrap().instructions[0].1,
            "cargo build --release"
        );
        let f = c.final_stage().unwrap();
        assert_eq!(f.base, "scratch");
        let dests: Vec<_> = f.placements.iter().map(|p| (p.dest.as_str(), p.dir)).collect();
        assert_eq!(
            dests,
            [
                ("/usr/sbin/a", false),
                ("/usr/sbin/b", false),
                ("/usr/sbin/c", false),
                ("/usr/lib/x", true),
                ("/etc/caracal/cni-conflist.json", false)
            ]
        );
        assert_eq!(f.placements[2].source, "/usr/sbin/a");
        assert_eq!(f.placements[4].from, None);
        assert_eq!(f.placements[0].from.as_deref(), Some("debian"));
        // A later ENV replaces the value but keeps the variable's place.
        assert_eq!(f.config.env, ["PATH=/usr/bin", "A=x y"]);
        assert_eq!(f.config.labels["org.opencontainers.image.title"], "caracal");
        assert_eq!(f.config.entrypoint, ["/usr/local/bin/caracal"]);
        assert_eq!(f.config.cmd, ["agent"]);
        assert_eq!(f.config.working_dir, "/");
        assert_eq!(f.config.exposed_ports, ["80/tcp", "53/udp"]);
    }

    #[test]
    fn what_the_offline_builder_cannot_do_is_refused() {
        for bad in [
            "FROM scratch\nRUN true",
            "FROM scratch\nADD x /x",
            "FROM scratch\nENTRYPOINT caracal agent",
            "FROM scratch\nCOPY a b /c",
            "FROM scratch\nCOPY *.so /lib/",
            "FROM scratch\nCOPY --chown=1:1 a /a",
            "FROM scratch\nCOPY a rel",
        ] {
            let c = Containerfile::parse(bad).unwrap();
            assert!(c.final_stage().is_err(), "{bad}");
        }
        assert!(Containerfile::parse("COPY a /a").is_err());
        assert!(Containerfile::parse("FROM a b").is_err());
    }
}
