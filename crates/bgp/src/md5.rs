//! TCP MD5 signatures (RFC 2385) on a socket.
//!
//! The one place in the crate with `unsafe`: Linux configures TCP MD5 keys with
//! `setsockopt(IPPROTO_TCP, TCP_MD5SIG, struct tcp_md5sig)`, which neither `nix` nor `socket2`
//! wraps, so the struct is declared here and passed by pointer. The call only reads the struct.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// `struct tcp_md5sig` from `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; libc::TCP_MD5SIG_MAXKEYLEN],
}

/// Installs (`Some(key)`) or removes (`None`) the MD5 key for connections with `peer` on
/// `socket` (a listening or a not yet connected socket).
pub fn set_md5sig(socket: &impl AsRawFd, peer: std::net::IpAddr, key: Option<&[u8]>) -> std::io::Result<()> {
    let key = key.unwrap_or(&[]);
    if key.len() > libc::TCP_MD5SIG_MAXKEYLEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "MD5 key longer than 80 bytes",
        ));
    }
    let sockaddr = socket2::SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: an all-zero bit pattern is valid for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let len = (sockaddr.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are valid for `len` bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sockaddr.as_ptr() as *const u8,
            &mut sig.addr as *mut libc::sockaddr_storage as *mut u8,
            len,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a valid, initialised tcp_md5sig and the length passed is its size; the
    // kernel copies it and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const TcpMd5Sig as *const libc::c_void,
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_can_be_set_and_removed_on_a_tcp_socket() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let peer = "127.0.0.2".parse().unwrap();
        set_md5sig(&s, peer, Some(b"secret")).unwrap();
        set_md5sig(&s, peer, None).unwrap();
    }

    #[test]
    fn overlong_key_is_refused() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let e = set_md5sig(&s, "127.0.0.2".parse().unwrap(), Some(&[0u8; 81])).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
