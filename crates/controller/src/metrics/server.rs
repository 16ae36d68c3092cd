//! The agent's small HTTP/1.1 server: one GET per connection, answered from memory. Serves
//! `/metrics` on `metrics_listen` and the probes on `health_listen` ([`crate::agent::health`]).

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::Metrics;

/// One answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// The path of a request line (`GET /metrics?x HTTP/1.1` → `/metrics`).
pub fn path(request_line: &str) -> &str {
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    target.split('?').next().unwrap_or(target)
}

/// The answer of the metrics port.
pub fn metrics_reply(metrics: &Metrics, path: &str) -> Reply {
    match path {
        "/metrics" => Reply {
            status: 200,
            content_type: super::CONTENT_TYPE,
            body: metrics.encode(),
        },
        _ => Reply::text(404, "not found: try /metrics\n"),
    }
}

/// Answers every connection on `listener` with `handler(path)` until the task is dropped.
pub async fn serve<H>(listener: TcpListener, handler: H) -> std::io::Result<()>
where
    H: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (mut sock, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut n = 0;
            // Only the request line matters; it fits in the first read unless the client
            // dribbles, so read until a line ends, within a deadline.
            let read = async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].contains(&b'\n') {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            let reply = handler(path(text.lines().next().unwrap_or("")));
            let reason = match reply.status {
                200 => "OK",
                404 => "Not Found",
                503 => "Service Unavailable",
                _ => "",
            };
            let head = format!(
                "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply.status,
                reply.content_type,
                reply.body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(reply.body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Serves `/metrics` on `listener`.
pub async fn serve_metrics(metrics: Metrics, listener: TcpListener) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics");
    }
    serve(listener, move |path| metrics_reply(&metrics, path)).await
}

/// A GET over a fresh connection: (status, body). For tests and `caracal` subcommands that
/// read the agent's endpoints on this node.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 10 s"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status"))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_drops_the_query() {
        assert_eq!(path("GET /metrics?name[]=x HTTP/1.1"), "/metrics");
        assert_eq!(path("GET /livez HTTP/1.1"), "/livez");
        assert_eq!(path(""), "");
    }
}
