//! Recorded runs of the speaker's core: one JSON line per input, with the time since start, the
//! outputs the core gave and when it next wanted to wake. [`replay`] feeds the inputs to a fresh
//! core at the same times and checks that every decision comes out the same: a reload that
//! resets other sessions, a graceful restart that keeps routes longer, an MRAI that holds an
//! UPDATE back all show as a line whose outputs differ.
//!
//! ```text
//! {"at":{"secs":0,"nanos":0},"input":{"start":{...}},"outputs":[{"spawn":{...}}],"wake":null}
//! {"at":{"secs":1,"nanos":52000},"input":{"sessions":[...]},"outputs":[{"send":{...}}],"wake":{...}}
//! ```

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::core::{Core, Input, Output};

#[derive(Serialize, Deserialize)]
struct Line {
    at: Duration,
    input: Value,
    outputs: Value,
    wake: Option<Duration>,
}

/// Writes a run's lines as they happen (each line flushed, so a crash keeps what came before).
/// TCP MD5 passwords never reach the file: each is written as `redacted-N`, the same N for the
/// same password, so a password change still shows (and replays) as one.
pub struct Recorder {
    file: File,
    base: Option<Instant>,
    passwords: Vec<String>,
}

/// The input as it will be recorded (taken before the core consumes it).
pub fn input_value(input: &Input) -> Value {
    serde_json::to_value(input).unwrap_or_else(|e| Value::String(format!("unrecordable input: {e}")))
}

impl Recorder {
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Recorder {
            file: File::create(path)?,
            base: None,
            passwords: Vec::new(),
        })
    }

    /// Replaces every `password` string in `v`; a replayed recording's are kept as they are.
    fn redact(&mut self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    match value {
                        Value::String(pw) if key == "password" && !pw.starts_with("redacted-") => {
                            let n = match self.passwords.iter().position(|p| p == pw) {
                                Some(n) => n,
                                None => {
                                    self.passwords.push(pw.clone());
                                    self.passwords.len() - 1
                                }
                            };
                            *pw = format!("redacted-{n}");
                        }
                        other => self.redact(other),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact(i)),
            _ => {}
        }
    }

    /// Records one input; the first one sets the run's start.
    pub fn write(&mut self, now: Instant, mut input: Value, outputs: &[Output], wake: Option<Instant>) {
        let base = *self.base.get_or_insert(now);
        let mut outputs = serde_json::to_value(outputs).unwrap_or(Value::Null);
        self.redact(&mut input);
        self.redact(&mut outputs);
        let line = Line {
            at: now.saturating_duration_since(base),
            input,
            outputs,
            wake: wake.map(|w| w.saturating_duration_since(base)),
        };
        let result = serde_json::to_writer(&mut self.file, &line)
            .map_err(std::io::Error::other)
            .and_then(|()| self.file.write_all(b"\n"));
        if let Err(e) = result {
            tracing::warn!("cannot record the speaker's events: {e}");
        }
    }
}

/// Where a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {error}")]
    Parse { line: usize, error: String },
    #[error("line 1 must be the start input")]
    NoStart,
    #[error(
        "line {line}: the {what} differ from the recording\n  recorded: {recorded}\n  replayed: {replayed}"
    )]
    Diverged {
        line: usize,
        what: &'static str,
        recorded: String,
        replayed: String,
    },
}

/// What a replay went through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Inputs replayed, the start included.
    pub inputs: usize,
    /// Outputs the core gave, all equal to the recorded ones.
    pub outputs: usize,
}

/// Replays a recording, checking every line's outputs and wake-up time.
pub fn replay(recording: impl BufRead) -> Result<Replayed, ReplayError> {
    let base = Instant::now();
    let mut core: Option<Core> = None;
    let mut replayed = Replayed::default();
    for (i, text) in recording.lines().enumerate() {
        let line_no = i + 1;
        let parse = |error: String| ReplayError::Parse { line: line_no, error };
        let text = text.map_err(|e| parse(e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let input: Input = serde_json::from_value(line.input).map_err(|e| parse(format!("input: {e}")))?;
        let now = base + line.at;
        let outputs = match (&mut core, input) {
            (
                None,
                Input::Start {
                    config,
                    routes_found,
                    report_changes,
                },
            ) => {
                let (c, outputs) = Core::start(config, routes_found, report_changes, now);
                core = Some(c);
                outputs
            }
            (None, _) => return Err(ReplayError::NoStart),
            (Some(c), input) => c.handle(input, now),
        };
        let core = core.as_ref().expect("started");
        replayed.inputs += 1;
        replayed.outputs += outputs.len();
        let got = serde_json::to_value(&outputs).map_err(|e| parse(format!("outputs: {e}")))?;
        if got != line.outputs {
            return Err(ReplayError::Diverged {
                line: line_no,
                what: "outputs",
                recorded: line.outputs.to_string(),
                replayed: got.to_string(),
            });
        }
        let wake = core.next_wake().map(|w| w.saturating_duration_since(base));
        if wake != line.wake {
            return Err(ReplayError::Diverged {
                line: line_no,
                what: "wake-up times",
                recorded: format!("{:?}", line.wake),
                replayed: format!("{wake:?}"),
            });
        }
    }
    if core.is_none() {
        return Err(ReplayError::NoStart);
    }
    Ok(replayed)
}
