//! Codec tests: byte vectors per message and attribute, the RFC 7606 case table, OPENs
//! captured from real BIRD, FRR and GoBGP, and property-based round trips.

mod captured;
mod fuzz_regressions;
mod rfc7606;
mod roundtrip;
mod throughput;
mod vectors;

/// Parses hex with optional whitespace and `:` separators; `#` starts a comment that runs
/// to the end of the line (test data only).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").bytes())
        .filter(|b| b.is_ascii_hexdigit())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// A whole message: marker, length computed from the body, type.
pub(crate) fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

/// An UPDATE with the given withdrawn routes, attribute block and NLRI (all raw).
pub(crate) fn update_msg(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    msg(2, &body)
}
