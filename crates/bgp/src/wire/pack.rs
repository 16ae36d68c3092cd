//! Packing many prefixes that share one attribute set into as few UPDATEs as fit the
//! session's largest message (4096 octets, or 65535 with RFC 8654 extended messages).
//!
//! The attributes are encoded once per call and copied into each message; prefixes are
//! appended until the next one would not fit. IPv4 unicast travels in the classic NLRI and
//! Withdrawn Routes fields, IPv6 unicast in MP_REACH_NLRI/MP_UNREACH_NLRI (RFC 4760), which is
//! placed first among the attributes (RFC 7606 §5.1).

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net};

use super::error::EncodeError;
use super::message::{MessageType, finish, start};
use super::options::EncodeOptions;
use super::{Family, HEADER_LEN, Message, PathAttributes, Update, attr_flag, attr_type, attribute, nlri};

/// Longest encoded prefix (an IPv6 /128).
const MAX_PREFIX_LEN: usize = 17;

/// Encodes UPDATEs announcing `prefixes` with `attrs`.
///
/// IPv4 prefixes use `attrs.next_hop` and the classic NLRI field (or, without a NEXT_HOP, an
/// IPv4 MP_REACH_NLRI template in `attrs.mp_reach`). IPv6 prefixes take their next hops (global,
/// and optionally link-local, RFC 2545) from `attrs.mp_reach`, whose own NLRI is ignored.
/// `attrs.mp_unreach` is ignored. Prefixes of both families may be mixed; order is kept within
/// each family.
pub fn encode_updates(
    attrs: &PathAttributes,
    prefixes: &[IpNet],
    opts: &EncodeOptions,
) -> Result<Vec<Bytes>, EncodeError> {
    let max = opts.max_message_len();
    let mut out = Vec::new();
    let v4 = prefixes.iter().filter_map(|p| match p {
        IpNet::V4(p) => Some(*p),
        IpNet::V6(_) => None,
    });
    let v6 = prefixes.iter().filter(|p| matches!(p, IpNet::V6(_))).copied();
    let has_v4 = prefixes.iter().any(|p| p.addr().is_ipv4());
    let has_v6 = prefixes.iter().any(|p| p.addr().is_ipv6());

    if has_v4 {
        if attrs.next_hop.is_some() {
            pack_classic(attrs, v4, opts, max, &mut out)?;
        } else {
            let hops = mp_next_hops(attrs, Family::IPV4_UNICAST)?;
            pack_mp_reach(
                attrs,
                Family::IPV4_UNICAST,
                hops,
                v4.map(IpNet::V4),
                opts,
                max,
                &mut out,
            )?;
        }
    }
    if has_v6 {
        let hops = mp_next_hops(attrs, Family::IPV6_UNICAST)?;
        pack_mp_reach(attrs, Family::IPV6_UNICAST, hops, v6, opts, max, &mut out)?;
    }
    Ok(out)
}

fn mp_next_hops(attrs: &PathAttributes, family: Family) -> Result<&[IpAddr], EncodeError> {
    match &attrs.mp_reach {
        Some(r) if r.family == family && !r.next_hops.is_empty() => Ok(&r.next_hops),
        _ => Err(EncodeError::MissingNextHop { family }),
    }
}

/// The attributes other than MP_REACH/MP_UNREACH, which the packer writes itself.
fn without_mp(attrs: &PathAttributes) -> PathAttributes {
    PathAttributes {
        mp_reach: None,
        mp_unreach: None,
        ..attrs.clone()
    }
}

fn pack_classic(
    attrs: &PathAttributes,
    prefixes: impl Iterator<Item = Ipv4Net>,
    opts: &EncodeOptions,
    max: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    let plain = without_mp(attrs);
    let mut encoded = BytesMut::new();
    attribute::encode_plain(&plain, opts, &mut encoded, true);
    let fixed = HEADER_LEN + 2 + 2 + encoded.len();
    if fixed + 5 > max {
        return Err(EncodeError::AttributesTooLarge { max });
    }
    let mut msg: Option<BytesMut> = None;
    for p in prefixes {
        let need = 1 + usize::from(p.prefix_len()).div_ceil(8);
        if msg.as_ref().is_some_and(|m| m.len() + need > max) {
            out.push(finish(msg.take().unwrap_or_default(), max)?);
        }
        let m = msg.get_or_insert_with(|| {
            let mut m = start(MessageType::Update, max.min(fixed + 1024));
            m.put_u16(0);
            m.put_u16(encoded.len() as u16);
            m.put_slice(&encoded);
            m
        });
        nlri::encode_v4(&p, m);
    }
    if let Some(m) = msg {
        out.push(finish(m, max)?);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn pack_mp_reach(
    attrs: &PathAttributes,
    family: Family,
    next_hops: &[IpAddr],
    prefixes: impl Iterator<Item = IpNet>,
    opts: &EncodeOptions,
    max: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    // NEXT_HOP is pointless when all reachability is in MP_REACH_NLRI (RFC 4760 §3).
    let plain = without_mp(attrs);
    let mut encoded = BytesMut::new();
    attribute::encode_plain(&plain, opts, &mut encoded, false);
    let mut head = BytesMut::new();
    attribute::put_mp_reach_head(family, next_hops, &mut head);
    // Header, two length fields, the MP attribute header (always with a 2-octet length), the
    // MP_REACH head and the other attributes.
    let fixed = HEADER_LEN + 2 + 2 + 4 + head.len() + encoded.len();
    if fixed + MAX_PREFIX_LEN > max {
        return Err(EncodeError::AttributesTooLarge { max });
    }
    let mut msg: Option<BytesMut> = None;
    for p in prefixes {
        let need = nlri::encoded_len(&p);
        if msg.as_ref().is_some_and(|m| m.len() + need + encoded.len() > max) {
            out.push(close_mp(msg.take().unwrap_or_default(), &encoded, max)?);
        }
        let m = msg.get_or_insert_with(|| {
            let mut m = start_mp(attr_type::MP_REACH_NLRI, max.min(fixed + 1024));
            m.put_slice(&head);
            m
        });
        nlri::encode(&p, m);
    }
    if let Some(m) = msg {
        out.push(close_mp(m, &encoded, max)?);
    }
    Ok(())
}

/// Where the MP attribute starts in an UPDATE that has it first and no withdrawn routes: after
/// the header and the two length fields.
const MP_ATTRIBUTE_AT: usize = HEADER_LEN + 2 + 2;

/// Starts an UPDATE with no withdrawn routes whose first attribute is the MP attribute
/// `type_code` (always with a 2-octet length, patched by [`close_mp`]).
fn start_mp(type_code: u8, capacity: usize) -> BytesMut {
    let mut m = start(MessageType::Update, capacity);
    m.put_u16(0);
    m.put_u16(0);
    m.put_u8(attr_flag::OPTIONAL | attr_flag::EXTENDED_LENGTH);
    m.put_u8(type_code);
    m.put_u16(0);
    m
}

/// Ends a [`start_mp`] message: the MP attribute's length (it ends here), the attributes in
/// `rest` after it, the total path attribute length.
fn close_mp(mut m: BytesMut, rest: &[u8], max: usize) -> Result<Bytes, EncodeError> {
    let mp_len = m.len() - (MP_ATTRIBUTE_AT + 4);
    let at = MP_ATTRIBUTE_AT + 2;
    m[at..at + 2].copy_from_slice(&(mp_len as u16).to_be_bytes());
    m.put_slice(rest);
    let attrs_len = m.len() - (HEADER_LEN + 4);
    m[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&(attrs_len as u16).to_be_bytes());
    finish(m, max)
}

/// Encodes UPDATEs withdrawing `prefixes`: IPv4 unicast in Withdrawn Routes, IPv6 unicast in
/// MP_UNREACH_NLRI.
pub fn encode_withdrawals(prefixes: &[IpNet], opts: &EncodeOptions) -> Result<Vec<Bytes>, EncodeError> {
    let max = opts.max_message_len();
    let mut out = Vec::new();
    let mut msg: Option<BytesMut> = None;
    for p in prefixes
        .iter()
        .filter_map(|p| if let IpNet::V4(p) = p { Some(*p) } else { None })
    {
        let need = 1 + usize::from(p.prefix_len()).div_ceil(8);
        // Leave room for the Total Path Attribute Length after the withdrawn routes.
        if msg.as_ref().is_some_and(|m| m.len() + need + 2 > max) {
            out.push(close_withdrawn(msg.take().unwrap_or_default(), max)?);
        }
        let m = msg.get_or_insert_with(|| {
            let mut m = start(MessageType::Update, max.min(1024));
            m.put_u16(0);
            m
        });
        nlri::encode_v4(&p, m);
    }
    if let Some(m) = msg {
        out.push(close_withdrawn(m, max)?);
    }

    let fixed = HEADER_LEN + 2 + 2 + 4 + 3;
    let mut msg: Option<BytesMut> = None;
    for p in prefixes.iter().filter(|p| matches!(p, IpNet::V6(_))) {
        let need = nlri::encoded_len(p);
        if msg.as_ref().is_some_and(|m| m.len() + need > max) {
            out.push(close_mp(msg.take().unwrap_or_default(), &[], max)?);
        }
        let m = msg.get_or_insert_with(|| {
            let mut m = start_mp(attr_type::MP_UNREACH_NLRI, max.min(fixed + 1024));
            m.put_u16(u16::from(Family::IPV6_UNICAST.afi));
            m.put_u8(u8::from(Family::IPV6_UNICAST.safi));
            m
        });
        nlri::encode(p, m);
    }
    if let Some(m) = msg {
        out.push(close_mp(m, &[], max)?);
    }
    Ok(out)
}

fn close_withdrawn(mut m: BytesMut, max: usize) -> Result<Bytes, EncodeError> {
    let len = m.len() - HEADER_LEN - 2;
    m[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&(len as u16).to_be_bytes());
    m.put_u16(0);
    finish(m, max)
}

/// The End-of-RIB marker for `family` (RFC 4724 §2).
pub fn encode_end_of_rib(family: Family, opts: &EncodeOptions) -> Result<Bytes, EncodeError> {
    Message::Update(Update::end_of_rib_for(family)).encode(opts)
}
