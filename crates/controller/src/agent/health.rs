//! Liveness and readiness of the agent's loops, served over HTTP for the kubelet's probes.
//!
//! Each reconciler registers under its name, beats as its loop turns, and says whether it is
//! ready and, if not, why. `/livez` answers 200 while every loop has beaten within the liveness
//! window; `/readyz` answers 200 once every loop is ready (policy: the first complete snapshot
//! applied; BGP: the speaker configured; CNI: the config list written). Both list every loop
//! with its state, so a failing probe says which loop and why.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loop that has not beaten for this long is stuck.
pub const LIVENESS_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct LoopState {
    last_beat: Instant,
    ready: Result<(), String>,
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
        let mut ok = true;
        let mut out = String::new();
        for (name, s) in loops.iter() {
            let age = now.saturating_duration_since(s.last_beat);
            let live = age <= LIVENESS_WINDOW;
            ok &= live;
            let _ = writeln!(
                out,
                "{name}: {} (last turned {:.1} s ago)",
                if live { "live" } else { "stuck" },
                age.as_secs_f64()
            );
        }
        (ok, out)
    }

    /// (all ready, report).
    pub fn readiness(&self) -> (bool, String) {
        let loops = self.loops.lock().expect("not poisoned");
        let mut ok = true;
        let mut out = String::new();
        for (name, s) in loops.iter() {
            match &s.ready {
                Ok(()) => {
                    let _ = writeln!(out, "{name}: ready");
                }
                Err(why) => {
                    ok = false;
                    let _ = writeln!(out, "{name}: not ready: {why}");
                }
            }
        }
        (ok, out)
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
            s.ready = Ok(());
        });
    }

    /// The loop turned and is not ready, for this reason.
    pub fn not_ready(&self, why: impl Into<String>) {
        let why = why.into();
        self.health.update(self.name, |s| {
            s.last_beat = Instant::now();
            s.ready = Err(why);
        });
    }
}

/// The response to one request line: (status, body).
pub fn respond(health: &Health, request_line: &str) -> (u16, String) {
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
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
    loop {
        let (mut sock, _) = listener.accept().await?;
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            let (code, body) = respond(&health, text.lines().next().unwrap_or(""));
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let reply = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_loop_that_is_not_ready_and_why() {
        let h = Health::default();
        let policy = h.register("policy", "waiting for the first snapshot");
        let bgp = h.register("bgp", "speaker not started");
        let (ok, body) = h.readiness();
        assert!(!ok);
        assert!(
            body.contains("policy: not ready: waiting for the first snapshot"),
            "{body}"
        );
        policy.ready();
        bgp.not_ready("bgp: invalid speaker config");
        let (ok, body) = h.readiness();
        assert!(!ok);
        assert!(body.contains("policy: ready"));
        assert!(body.contains("bgp: not ready: bgp: invalid speaker config"));
        bgp.ready();
        assert!(h.readiness().0);
        assert_eq!(respond(&h, "GET /readyz HTTP/1.1").0, 200);
    }

    #[test]
    fn a_loop_that_stops_turning_fails_liveness() {
        let h = Health::default();
        let l = h.register("policy", "starting");
        let now = Instant::now();
        assert!(h.liveness(now).0);
        let later = now + LIVENESS_WINDOW + Duration::from_secs(1);
        let (ok, body) = h.liveness(later);
        assert!(!ok);
        assert!(body.contains("policy: stuck"), "{body}");
        l.beat();
        assert!(h.liveness(Instant::now()).0);
        assert_eq!(respond(&h, "GET /nope HTTP/1.1").0, 404);
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
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                        .await
                        .unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.unwrap();
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("health server never listened");
        };
        let r = get("/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("cni-config: not ready: no pod CIDR yet"));
        l.ready();
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
        server.abort();
    }
}
