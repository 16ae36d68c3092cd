//! `caracal lab forward`: the one door from the machine into a lab cluster. It listens on a
//! loopback port of the machine's own namespace and connects each client to an address inside
//! the control plane's network namespace, so `kubectl` and `e2e.test` on the machine reach the
//! API server while nothing of the lab listens on, or routes to, the machine's addresses.
//!
//! Sockets belong to the namespace of the thread that creates them: one thread enters the lab's
//! namespace and makes every outgoing connection; the listener stays in the machine's.

use std::{
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::mpsc,
    thread,
};

use anyhow::{Context, Result};

/// A request to the connecting thread: where to, and where to send the stream.
type Request = (SocketAddr, mpsc::Sender<io::Result<TcpStream>>);

/// Spawns the thread that lives in `netns` (a path like `/run/netns/<name>`) and connects there.
fn connector(netns: &Path) -> Result<mpsc::Sender<Request>> {
    let file = std::fs::File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    let (tx, rx) = mpsc::channel::<Request>();
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        let entered = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET);
        let _ = ready_tx.send(entered);
        if entered.is_err() {
            return;
        }
        for (addr, reply) in rx {
            let _ = reply.send(TcpStream::connect(addr));
        }
    });
    ready_rx
        .recv()
        .context("connector thread")?
        .context("entering the lab's network namespace")?;
    Ok(tx)
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Accepts on `listener` forever, joining each client to `target` inside `netns`.
pub fn serve(listener: TcpListener, netns: &Path, target: SocketAddr) -> Result<()> {
    let connect = connector(netns)?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let (tx, rx) = mpsc::channel();
        if connect.send((target, tx)).is_err() {
            anyhow::bail!("connector thread ended");
        }
        let upstream = match rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("connecting to {target}: {e}");
                continue;
            }
            Err(_) => anyhow::bail!("connector thread ended"),
        };
        let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
            (Ok(c), Ok(u)) => (c, u),
            _ => continue,
        };
        thread::spawn(move || pipe(client, upstream));
        thread::spawn(move || pipe(u2, c2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn bytes_cross_both_ways() {
        // In the test's own namespace: the target is a loopback echo server.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_addr = front.local_addr().unwrap();
        thread::spawn(move || serve(front, Path::new("/proc/self/ns/net"), target));
        let mut c = TcpStream::connect(front_addr).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"HELLO");
    }
}
