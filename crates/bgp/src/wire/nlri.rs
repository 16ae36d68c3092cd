//! Prefixes in NLRI, withdrawn routes, and MP_REACH/MP_UNREACH (RFC 4271 §4.3, RFC 4760 §5).
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet, bits)  |
//! +---------------------------+
//! |   Prefix (variable)       |  ceil(Length / 8) octets, trailing bits ignored
//! +---------------------------+
//! ```
//!
//! Prefixes decode straight into `Ipv4Net`/`IpNet` (a few octets, `Copy`), so a full table
//! costs one vector growth per UPDATE, not an allocation per prefix. Host bits beyond the
//! prefix length are cleared so that equal prefixes compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a run of prefixes could not be parsed; the caller picks the NOTIFICATION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NlriError {
    /// A prefix length beyond the address width.
    BadLength,
    /// A prefix runs past the end of its field.
    Truncated,
}

impl NlriError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NlriError::BadLength => "prefix length exceeds the address width",
            NlriError::Truncated => "prefix runs past the end of its field",
        }
    }
}

/// Appends the IPv4 prefixes in `buf` to `out`.
pub(crate) fn decode_v4(buf: &[u8], out: &mut Vec<Ipv4Net>) -> Result<(), NlriError> {
    // A /24 takes 4 octets: a cheap estimate that avoids most regrowth.
    out.reserve(buf.len() / 4);
    let mut rest = buf;
    while let Some((&len, tail)) = rest.split_first() {
        if len > 32 {
            return Err(NlriError::BadLength);
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = tail.get(..n).ok_or(NlriError::Truncated)?;
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(bytes);
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        let addr = Ipv4Addr::from(u32::from_be_bytes(a) & mask);
        out.push(Ipv4Net::new(addr, len).map_err(|_| NlriError::BadLength)?);
        rest = &tail[n..];
    }
    Ok(())
}

/// Appends the IPv6 prefixes in `buf` to `out`.
pub(crate) fn decode_v6(buf: &[u8], out: &mut Vec<IpNet>) -> Result<(), NlriError> {
    out.reserve(buf.len() / 9);
    let mut rest = buf;
    while let Some((&len, tail)) = rest.split_first() {
        if len > 128 {
            return Err(NlriError::BadLength);
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = tail.get(..n).ok_or(NlriError::Truncated)?;
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(bytes);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        let addr = Ipv6Addr::from(u128::from_be_bytes(a) & mask);
        out.push(IpNet::V6(
            Ipv6Net::new(addr, len).map_err(|_| NlriError::BadLength)?,
        ));
        rest = &tail[n..];
    }
    Ok(())
}

/// Appends IPv4 prefixes as `IpNet` (for MP_REACH/MP_UNREACH of IPv4 unicast).
pub(crate) fn decode_v4_as_ipnet(buf: &[u8], out: &mut Vec<IpNet>) -> Result<(), NlriError> {
    let mut v4 = Vec::new();
    decode_v4(buf, &mut v4)?;
    out.extend(v4.into_iter().map(IpNet::V4));
    Ok(())
}

/// Octets one prefix takes on the wire.
pub(crate) fn encoded_len(p: &IpNet) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8)
}

pub(crate) fn encode_v4(p: &Ipv4Net, out: &mut BytesMut) {
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.put_u8(len);
    out.put_slice(&p.network().octets()[..n]);
}

pub(crate) fn encode(p: &IpNet, out: &mut BytesMut) {
    match p {
        IpNet::V4(p) => encode_v4(p, out),
        IpNet::V6(p) => {
            let len = p.prefix_len();
            let n = usize::from(len).div_ceil(8);
            out.put_u8(len);
            out.put_slice(&p.network().octets()[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_decode_with_host_bits_cleared() {
        let mut out = Vec::new();
        decode_v4(&[24, 10, 1, 2, 32, 1, 2, 3, 4, 0, 9, 10, 255], &mut out).unwrap();
        let want: Vec<Ipv4Net> = ["10.1.2.0/24", "1.2.3.4/32", "0.0.0.0/0", "10.128.0.0/9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn ipv4_prefix_longer_than_32_is_rejected() {
        assert_eq!(
            decode_v4(&[33, 1, 2, 3, 4, 5], &mut Vec::new()),
            Err(NlriError::BadLength)
        );
    }

    #[test]
    fn truncated_prefix_is_rejected() {
        assert_eq!(
            decode_v4(&[24, 10, 1], &mut Vec::new()),
            Err(NlriError::Truncated)
        );
        assert_eq!(
            decode_v6(&[64, 0x20, 0x01, 0x0d, 0xb8], &mut Vec::new()),
            Err(NlriError::Truncated)
        );
    }

    #[test]
    fn ipv6_prefix_round_trips() {
        let p: IpNet = "2001:db8:1::/48".parse().unwrap();
        let mut buf = BytesMut::new();
        encode(&p, &mut buf);
        assert_eq!(&buf[..], &[48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        assert_eq!(encoded_len(&p), buf.len());
        let mut out = Vec::new();
        decode_v6(&buf, &mut out).unwrap();
        assert_eq!(out, vec![p]);
    }
}
