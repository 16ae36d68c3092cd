//! Liveness and readiness of the agent's loops, served over HTTP for the kubelet's probes.
//!
//! Each reconciler registers under its name, beats as its loop turns, and says whether it is
//! ready and, if not, why. `/livez` answers 200 while every loop has beaten within the liveness
//! window; `/readyz` answers 200 once every loop is ready (policy: the first complete snapshot
//! applied; BGP: the speaker configured; CNI: the config list written). Both bodies start with
//! a line naming the loops at fault, then list every loop with its state, for how long, and
//! why, so a failing probe says which loop and why.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::metrics::server::Reply;

/// A loop that has not beaten for this long is stuck.
pub const LIVENESS_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct LoopState {
    last_beat: Instant,
    ready: Result<(), String>,
    /// When `ready` last changed between ready and not ready.
    since: Instant,
}

/// The agent's loops, shared by the reconcilers and the HTTP server.
#[derive(Clone, Debug, Default)]
pub struct Health {
    loops: Arc<Mutex<BTreeMap<&'static str, LoopState>>>,
}

/// One loop's handle on [`Health`].
#[derive(Clone, Debug)]
pub struct LoopHealth {
    health: Health,
    name: &'static str,
}

impl Health {
    /// Registers a loop, not ready until it says so.
    pub fn register(&self, name: &'static str, why_not_ready: &str) -> LoopHealth {
        self.loops.lock().expect("not poisoned").insert(
            name,
            LoopState {
                last_beat: Instant::now(),
                ready: Err(why_not_ready.to_string()),
                since: Instant::now(),
            },
        );
        LoopHealth {
            health: self.clone(),
            name,
        }
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut LoopState)) {
        if let Some(s) = self.loops.lock().expect("not poisoned").get_mut(name) {
            f(s);
        }
    }

    /// (all live, report) at `now`.
    pub fn liveness(&self, now: Instant) -> (bool, String) {
        let loops = self.loops.lock().expect("not poisoned");
        let mut stuck = Vec::new();
        let mut out = String::new();
        for (name, s) in loops.iter() {
            let age = now.saturating_duration_since(s.last_beat);
            if age <= LIVENESS_WINDOW {
                let _ = writeln!(out, "{name}: live (last turned {:.1} s ago)", age.as_secs_f64());
            } else {
                stuck.push(*name);
                let _ = writeln!(
                    out,
                    "{name}: stuck (last turned {:.1} s ago, more than the {} s allowed)",
                    age.as_secs_f64(),
                    LIVENESS_WINDOW.as_secs()
                );
            }
        }
        (stuck.is_empty(), summary(&stuck, "live", "stuck") + &out)
    }

    /// (all ready, report) at `now`.
    pub fn readiness_at(&self, now: Instant) -> (bool, String) {
        let loops = self.loops.lock().expect("not poisoned");
        let mut failing = Vec::new();
        let mut out = String::new();
        for (name, s) in loops.iter() {
            let secs = now.saturating_duration_since(s.since).as_secs();
            match &s.ready {
                Ok(()) => {
                    let _ = writeln!(out, "{name}: ready (for {secs} s)");
                }
                Err(why) => {
                    failing.push(*name);
                    let _ = writeln!(out, "{name}: not ready (for {secs} s): {why}");
                }
            }
        }
        (failing.is_empty(), summary(&failing, "ready", "not ready") + &out)
    }

    /// (all ready, report).
    pub fn readiness(&self) -> (bool, String) {
        self.readiness_at(Instant::now())
    }
}

/// The first line of a report: `ready`, or `not ready: bgp, policy`.
fn summary(failing: &[&str], good: &str, bad: &str) -> String {
    if failing.is_empty() {
        format!("{good}\n")
    } else {
        format!("{bad}: {}\n", failing.join(", "))
    }
}

impl LoopHealth {
    /// The loop turned.
    pub fn beat(&self) {
        self.health.update(self.name, |s| s.last_beat = Instant::now());
    }

    /// The loop turned and is ready.
    pub fn ready(&self) {
        self.health.update(self.name, |s| {
            s.last_beat = Instant::now();
            if s.ready.is_err() {
                s.since = s.last_beat;
            }
            s.ready = Ok(());
        });
    }

    /// The loop turned and is not ready, for this reason.
    pub fn not_ready(&self, why: impl Into<String>) {
        let why = why.into();
        self.health.update(self.name, |s| {
            s.last_beat = Instant::now();
            if s.ready.is_ok() {
                s.since = s.last_beat;
            }
            s.ready = Err(why);
        });
    }
}

/// The response to one request path: (status, body).
pub fn respond(health: &Health, path: &str) -> (u16, String) {
    let (ok, body) = match path {
        "/livez" => health.liveness(Instant::now()),
        "/readyz" => health.readiness(),
        _ => return (404, "not found: try /livez or /readyz\n".into()),
    };
    (if ok { 200 } else { 503 }, body)
}

/// Serves `/livez` and `/readyz` on `addr` until the task is dropped.
pub async fn serve(health: Health, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("health endpoint on {addr}: {e}"))?;
    tracing::info!(%addr, "serving /livez and /readyz");
    crate::metrics::server::serve(listener, move |p| {
        let (status, body) = respond(&health, p);
        Reply::text(status, body)
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_loop_that_is_not_ready_why_and_for_how_long() {
        let h = Health::default();
        let policy = h.register("policy", "waiting for the first snapshot");
        let bgp = h.register("bgp", "speaker not started");
        let (ok, body) = h.readiness_at(Instant::now() + Duration::from_secs(7));
        assert!(!ok);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines[0], "not ready: bgp, policy", "{body}");
        assert!(
            lines.contains(&"policy: not ready (for 7 s): waiting for the first snapshot"),
            "{body}"
        );
        policy.ready();
        bgp.not_ready("bgp: invalid speaker config");
        let (ok, body) = h.readiness();
        assert!(!ok);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines[0], "not ready: bgp", "{body}");
        assert!(lines.contains(&"policy: ready (for 0 s)"), "{body}");
        assert!(
            lines.contains(&"bgp: not ready (for 0 s): bgp: invalid speaker config"),
            "{body}"
        );
        bgp.ready();
        let (ok, body) = h.readiness();
        assert!(ok);
        assert_eq!(body.lines().next(), Some("ready"));
        assert_eq!(respond(&h, "/readyz").0, 200);
    }

    #[test]
    fn a_loop_that_stops_turning_fails_liveness_and_is_named() {
        let h = Health::default();
        let l = h.register("policy", "starting");
        h.register("bgp", "starting");
        let now = Instant::now();
        assert!(h.liveness(now).0);
        let later = now + LIVENESS_WINDOW + Duration::from_secs(1);
        let (ok, body) = h.liveness(later);
        assert!(!ok);
        assert_eq!(body.lines().next(), Some("stuck: bgp, policy"), "{body}");
        assert!(body.contains("policy: stuck (last turned 61."), "{body}");
        assert!(body.contains("more than the 60 s allowed"), "{body}");
        l.beat();
        let (ok, body) = h.liveness(Instant::now());
        assert!(ok);
        assert_eq!(body.lines().next(), Some("live"), "{body}");
        assert_eq!(respond(&h, "/nope").0, 404);
    }

    #[tokio::test]
    async fn probes_are_answered_over_http() {
        let h = Health::default();
        let l = h.register("cni-config", "no pod CIDR yet");
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let server = tokio::spawn(serve(h.clone(), addr));
        let get = |path: &'static str| async move {
            for _ in 0..50 {
                if let Ok(r) = crate::metrics::server::get(addr, path).await {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("health server never listened");
        };
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("cni-config: not ready (for 0 s): no pod CIDR yet"),
            "{body}"
        );
        l.ready();
        assert_eq!(get("/readyz").await.0, 200);
        assert_eq!(get("/livez").await.0, 200);
        server.abort();
    }
}
