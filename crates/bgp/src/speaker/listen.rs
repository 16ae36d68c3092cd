//! The speaker's sockets: the BGP listeners (with each peer's TCP MD5 key set before `listen`,
//! so a keyed peer's SYN is answered), the accept loop that hands a connection to its peer's
//! session, and the control socket `caracal bgp status` talks to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};

use super::{Directory, Error, Result, SpeakerHandle};
use crate::config::{SpeakerConfig, unspecified};
use crate::control::{self, Request};
use crate::session::{self, ToSession};

pub(super) async fn listen(config: &SpeakerConfig) -> Result<Vec<Arc<TcpListener>>> {
    if config.listen_port == 0 {
        return Ok(vec![]);
    }
    let addrs = match config.listen_address {
        Some(a) => vec![a],
        None => vec![unspecified(false), unspecified(true)],
    };
    let mut out = Vec::new();
    for a in addrs {
        let addr = SocketAddr::new(a, config.listen_port);
        match bind(addr, config) {
            Ok(l) => out.push(Arc::new(l)),
            // Without IPv6 in this namespace, IPv4 alone is fine when no address was asked for.
            Err(e) if config.listen_address.is_none() && a.is_ipv6() => {
                tracing::warn!("not listening on {addr}: {e}");
            }
            Err(source) => return Err(Error::Listen { addr, source }),
        }
    }
    Ok(out)
}

fn bind(addr: SocketAddr, config: &SpeakerConfig) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    for p in &config.peers {
        if let Some(pw) = &p.password
            && p.address.is_ipv4() == addr.is_ipv4()
        {
            crate::md5::set_md5sig(&s, p.address, Some(pw.as_bytes()))?;
        }
    }
    s.bind(&addr.into())?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

pub(super) async fn accept_loop(listener: Arc<TcpListener>, directory: Directory) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = session::normalize(from.ip());
        let tx = directory.lock().expect("directory lock").get(&ip).cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(ToSession::Incoming(stream));
            }
            None => tracing::debug!("refusing connection from unknown {ip}"),
        }
    }
}

pub(super) async fn control_loop(listener: UnixListener, handle: SpeakerHandle) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let body = match control::read_request(&mut stream).await {
                Ok(Some(Request::Status)) => handle
                    .status()
                    .await
                    .ok()
                    .and_then(|s| serde_json::to_vec(&s).ok()),
                Ok(Some(Request::Routes)) => handle
                    .routes()
                    .await
                    .ok()
                    .and_then(|r| serde_json::to_vec(&r).ok()),
                _ => Some(br#"{"error":"unknown request"}"#.to_vec()),
            };
            if let Some(body) = body {
                let _ = stream.write_all(&body).await;
            }
            let _ = stream.shutdown().await;
        });
    }
}
