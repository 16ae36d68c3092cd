//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional parameters
//! (RFC 9072). The layout is drawn above [`Open`](super::Open).
//!
//! Optional parameter (RFC 5492 §4; RFC 9072 §2 widens Parm. Length to 2 octets when the
//! OPEN's Opt Parm Len is 255 and the first parameter type is 255):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Parm. Type   | Parm. Length  |  Parameter Value ...  |   type 2 = capabilities
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Capability (RFC 5492 §4):
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, Error, Result};
use super::reader::Reader;
use super::{Capability, Family, GracefulRestart, Open};

const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: this Opt Parm Len together with a first parameter type of 255 announces the
/// extended (2-octet) parameter lengths.
const EXTENDED_PARAMS: u8 = 255;

fn malformed(reason: &'static str) -> Error {
    Error::MalformedOpen { reason }
}

/// Decodes an OPEN body (after the header) and applies the checks that need no configuration:
/// version (2/1), hold time (2/6), zero BGP identifier (2/3, RFC 6286 §2.2). Peer AS and
/// identifier collisions are the state machine's business.
pub(crate) fn decode(body: &[u8]) -> Result<Open> {
    let short = || Error::BadMessageLength {
        length: (super::HEADER_LEN + body.len()) as u16,
    };
    let mut r = Reader::new(body);
    let version = r.u8().ok_or_else(short)?;
    if version != 4 {
        return Err(Error::UnsupportedVersion { version });
    }
    let my_as = r.u16().ok_or_else(short)?;
    let hold_time = r.u16().ok_or_else(short)?;
    let router_id = Ipv4Addr::from(r.u32().ok_or_else(short)?);
    let opt_len = r.u8().ok_or_else(short)?;
    if hold_time == 1 || hold_time == 2 {
        return Err(Error::UnacceptableHoldTime { hold_time });
    }
    if router_id.is_unspecified() {
        return Err(Error::BadBgpIdentifier { id: router_id });
    }

    let mut capabilities = Vec::new();
    let rest = r.rest();
    let extended = opt_len == EXTENDED_PARAMS && rest.first() == Some(&EXTENDED_PARAMS);
    let mut params = if extended {
        let mut r = Reader::new(&rest[1..]);
        let len = r
            .u16()
            .ok_or(malformed("extended optional parameters length missing"))?;
        if usize::from(len) != r.len() {
            return Err(malformed(
                "extended optional parameters length disagrees with the message",
            ));
        }
        r
    } else {
        if usize::from(opt_len) != rest.len() {
            return Err(malformed("optional parameters length disagrees with the message"));
        }
        Reader::new(rest)
    };
    while !params.is_empty() {
        let kind = params.u8().ok_or(malformed("truncated optional parameter"))?;
        let len = if extended {
            params.u16()
        } else {
            params.u8().map(u16::from)
        }
        .ok_or(malformed("truncated optional parameter"))?;
        let value = params
            .take(usize::from(len))
            .ok_or(malformed("optional parameter overruns the OPEN"))?;
        if kind != PARAM_CAPABILITIES {
            return Err(Error::UnsupportedOptionalParameter { kind });
        }
        decode_capabilities(value, &mut capabilities)?;
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

fn decode_capabilities(buf: &[u8], out: &mut Vec<Capability>) -> Result<()> {
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let code = r.u8().ok_or(malformed("truncated capability"))?;
        let len = r.u8().ok_or(malformed("truncated capability"))?;
        let value = r
            .take(usize::from(len))
            .ok_or(malformed("capability overruns its parameter"))?;
        out.push(decode_capability(code, value)?);
    }
    Ok(())
}

fn decode_capability(code: u8, value: &[u8]) -> Result<Capability> {
    let cap = match (code, value) {
        (1, [a0, a1, _reserved, safi]) => {
            Capability::Multiprotocol(Family::new(u16::from_be_bytes([*a0, *a1]), *safi))
        }
        (1, _) => return Err(malformed("multiprotocol capability length is not 4")),
        (2, []) => Capability::RouteRefresh,
        (6, []) => Capability::ExtendedMessage,
        (64, _) => Capability::GracefulRestart(decode_graceful_restart(value)?),
        (65, [a, b, c, d]) => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
        (65, _) => return Err(malformed("4-octet AS capability length is not 4")),
        (70, []) => Capability::EnhancedRouteRefresh,
        // Anything else, including known codes with a value where none belongs, is kept
        // verbatim: unknown capabilities are ignored, not refused (RFC 5492 §3).
        _ => Capability::Unknown {
            code,
            value: Bytes::copy_from_slice(value),
        },
    };
    Ok(cap)
}

/// RFC 4724 §3:
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | Address Family Identifier (16 bits)              |
/// +--------------------------------------------------+
/// | Subsequent Address Family Identifier (8 bits)    |
/// +--------------------------------------------------+
/// | Flags for Address Family (8 bits)                |
/// +--------------------------------------------------+
/// | ...                                              |
/// ```
fn decode_graceful_restart(value: &[u8]) -> Result<GracefulRestart> {
    let mut r = Reader::new(value);
    let head = r
        .u16()
        .ok_or(malformed("graceful restart capability shorter than 2 octets"))?;
    if !r.len().is_multiple_of(4) {
        return Err(malformed(
            "graceful restart capability families are not 4 octets each",
        ));
    }
    let mut families = Vec::with_capacity(r.len() / 4);
    while let Some([a0, a1, safi, flags]) = r.array::<4>() {
        families.push((Family::new(u16::from_be_bytes([a0, a1]), safi), flags & 0x80 != 0));
    }
    Ok(GracefulRestart {
        restarting: head & 0x8000 != 0,
        notification: head & 0x4000 != 0,
        restart_time: head & 0x0fff,
        families,
    })
}

/// Capabilities encoded as in the OPEN's Capabilities parameter (code, length, value each),
/// which is also the data of an Unsupported Capability NOTIFICATION (RFC 5492 §3).
pub fn encode_capabilities(caps: &[Capability]) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    for c in caps {
        encode_capability(c, &mut out)?;
    }
    Ok(out.freeze())
}

fn encode_capability(cap: &Capability, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(cap.code());
    match cap {
        Capability::Multiprotocol(f) => {
            out.put_u8(4);
            out.put_u16(u16::from(f.afi));
            out.put_u8(0);
            out.put_u8(u8::from(f.safi));
        }
        Capability::RouteRefresh | Capability::ExtendedMessage | Capability::EnhancedRouteRefresh => {
            out.put_u8(0)
        }
        Capability::GracefulRestart(g) => {
            let len = 2 + 4 * g.families.len();
            if len > 255 {
                return Err(EncodeError::FieldTooLong {
                    what: "graceful restart capability",
                    length: len,
                    max: 255,
                });
            }
            out.put_u8(len as u8);
            let mut head = g.restart_time & 0x0fff;
            if g.restarting {
                head |= 0x8000;
            }
            if g.notification {
                head |= 0x4000;
            }
            out.put_u16(head);
            for (f, forwarding) in &g.families {
                out.put_u16(u16::from(f.afi));
                out.put_u8(u8::from(f.safi));
                out.put_u8(if *forwarding { 0x80 } else { 0 });
            }
        }
        Capability::FourOctetAs(asn) => {
            out.put_u8(4);
            out.put_u32(*asn);
        }
        Capability::Unknown { value, .. } => {
            if value.len() > 255 {
                return Err(EncodeError::FieldTooLong {
                    what: "capability value",
                    length: value.len(),
                    max: 255,
                });
            }
            out.put_u8(value.len() as u8);
            out.put_slice(value);
        }
    }
    Ok(())
}

/// Encodes an OPEN body. Capabilities go into as few parameters as fit 255 octets each; when
/// the parameters exceed 255 octets in total they are sent in the RFC 9072 extended format.
pub(crate) fn encode(open: &Open, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(open.version);
    out.put_u16(open.my_as);
    out.put_u16(open.hold_time);
    out.put_slice(&open.router_id.octets());

    // Group encoded capabilities into parameter values of at most 255 octets.
    let mut groups: Vec<BytesMut> = Vec::new();
    for cap in &open.capabilities {
        let mut one = BytesMut::new();
        encode_capability(cap, &mut one)?;
        match groups.last_mut() {
            Some(g) if g.len() + one.len() <= 255 => g.put_slice(&one),
            _ => groups.push(one),
        }
    }
    let normal_len: usize = groups.iter().map(|g| 2 + g.len()).sum();
    if normal_len <= 254 {
        // 255 itself is avoided: a first parameter type of 255 would never occur here, but
        // peers that implement RFC 9072 loosely key on the length alone.
        out.put_u8(normal_len as u8);
        for g in &groups {
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u8(g.len() as u8);
            out.put_slice(g);
        }
    } else {
        let ext_len: usize = groups.iter().map(|g| 3 + g.len()).sum();
        let ext_len = u16::try_from(ext_len).map_err(|_| EncodeError::OpenTooLarge)?;
        out.put_u8(EXTENDED_PARAMS);
        out.put_u8(EXTENDED_PARAMS);
        out.put_u16(ext_len);
        for g in &groups {
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u16(g.len() as u16);
            out.put_slice(g);
        }
    }
    Ok(())
}
