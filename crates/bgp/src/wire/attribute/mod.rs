//! Path attributes (RFC 4271 §4.3, §5) and their RFC 7606 error treatments.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|   flags: Optional, Transitive, Partial, Extended Length
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Attr. Length (1 or 2 octets)  |   2 octets when Extended Length is set
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attribute value (variable)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Decoding parses the attribute block once into [`PathAttributes`] and records, per
//! malformed attribute, the RFC 7606 action it calls for. AS_PATH and AGGREGATOR are 2 or 4
//! octets per AS depending on the session (RFC 6793); towards a 2-octet peer the encoder
//! substitutes AS_TRANS and adds AS4_PATH/AS4_AGGREGATOR, and the decoder merges them back
//! (RFC 6793 §4.2.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::nlri::{self, NlriError};
use super::options::{DecodeOptions, EncodeOptions};
use super::reader::Reader;
use super::update::{Action, AttrIssue};
use super::{
    AS_TRANS, Aggregator, AsPath, AsSegment, Family, LargeCommunity, MpReach, MpUnreach, Origin,
    PathAttributes, RawAttribute, SegmentKind, attr_flag as flag, attr_type as ty,
};

const WELL_KNOWN: u8 = flag::TRANSITIVE;
const OPTIONAL_TRANSITIVE: u8 = flag::OPTIONAL | flag::TRANSITIVE;
const OPTIONAL_NON_TRANSITIVE: u8 = flag::OPTIONAL;

mod encode;
#[cfg(test)]
mod tests;

pub(crate) use encode::{encode, encode_plain, put_mp_reach_head};

/// The Optional and Transitive bits each attribute caracal recognises must carry.
fn expected_flags(type_code: u8) -> Option<u8> {
    Some(match type_code {
        ty::ORIGIN | ty::AS_PATH | ty::NEXT_HOP | ty::LOCAL_PREF | ty::ATOMIC_AGGREGATE => WELL_KNOWN,
        ty::MULTI_EXIT_DISC
        | ty::ORIGINATOR_ID
        | ty::CLUSTER_LIST
        | ty::MP_REACH_NLRI
        | ty::MP_UNREACH_NLRI => OPTIONAL_NON_TRANSITIVE,
        ty::AGGREGATOR
        | ty::COMMUNITIES
        | ty::EXTENDED_COMMUNITIES
        | ty::AS4_PATH
        | ty::AS4_AGGREGATOR
        | ty::IPV6_EXTENDED_COMMUNITIES
        | ty::LARGE_COMMUNITIES
        | ty::OTC => OPTIONAL_TRANSITIVE,
        _ => return None,
    })
}

/// Partial may only be set on optional transitive attributes (RFC 4271 §4.3).
fn flags_ok(flags: u8, want: u8) -> bool {
    let ot = flags & (flag::OPTIONAL | flag::TRANSITIVE);
    ot == want && (want == OPTIONAL_TRANSITIVE || flags & flag::PARTIAL == 0)
}

/// The result of parsing an attribute block.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) attrs: PathAttributes,
    pub(crate) issues: Vec<AttrIssue>,
    /// Type codes present in the block, malformed or not (for the missing-attribute check).
    pub(crate) seen: [u64; 4],
    /// An attribute header or length ran past the end of the block; the attributes after it
    /// are unknown.
    pub(crate) overrun: Option<Error>,
}

impl Parsed {
    pub(crate) fn has(&self, type_code: u8) -> bool {
        self.seen[usize::from(type_code >> 6)] & (1 << (type_code & 63)) != 0
    }

    fn mark(&mut self, type_code: u8) {
        self.seen[usize::from(type_code >> 6)] |= 1 << (type_code & 63);
    }

    fn issue(&mut self, action: Action, type_code: u8, error: Error) {
        self.issues.push(AttrIssue {
            action,
            type_code,
            error,
        });
    }
}

/// Parses the path attribute block of an UPDATE. `Err` means session reset; everything
/// milder is recorded in [`Parsed::issues`].
pub(crate) fn decode(buf: &[u8], opts: &DecodeOptions) -> Result<Parsed, Error> {
    let mut p = Parsed::default();
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let mut rest = buf;
    while !rest.is_empty() {
        let mut r = Reader::new(rest);
        let header = (r.u8(), r.u8());
        let (Some(flags), Some(type_code)) = header else {
            p.overrun = Some(Error::MalformedAttributeList {
                reason: "truncated attribute header",
            });
            break;
        };
        let len = if flags & flag::EXTENDED_LENGTH != 0 {
            r.u16()
        } else {
            r.u8().map(u16::from)
        };
        let Some(len) = len else {
            p.overrun = Some(Error::MalformedAttributeList {
                reason: "truncated attribute length",
            });
            break;
        };
        let Some(value) = r.take(usize::from(len)) else {
            let attribute = Bytes::copy_from_slice(rest);
            p.overrun = Some(Error::AttributeLength { type_code, attribute });
            break;
        };
        let whole = &rest[..rest.len() - r.len()];
        rest = &rest[whole.len()..];

        if p.has(type_code) {
            // RFC 7606 §3 g: repeated MP attributes reset the session, other repeats are
            // dropped and the first occurrence is used.
            if matches!(type_code, ty::MP_REACH_NLRI | ty::MP_UNREACH_NLRI) {
                return Err(Error::MalformedAttributeList {
                    reason: "MP_REACH_NLRI or MP_UNREACH_NLRI repeated",
                });
            }
            p.issue(
                Action::AttributeDiscard,
                type_code,
                Error::DuplicateAttribute { type_code },
            );
            continue;
        }
        p.mark(type_code);

        let attr = Attr {
            flags,
            type_code,
            value,
            whole,
        };
        match expected_flags(type_code) {
            Some(want) if !flags_ok(flags, want) => {
                let error = Error::AttributeFlags {
                    type_code,
                    attribute: attr.bytes(),
                };
                match type_code {
                    // RFC 7606 §7.6, §7.7 and RFC 6793 §6: these are discarded whatever the
                    // error.
                    ty::ATOMIC_AGGREGATE | ty::AGGREGATOR | ty::AS4_AGGREGATOR => {
                        p.issue(Action::AttributeDiscard, type_code, error)
                    }
                    ty::LOCAL_PREF if opts.ebgp => p.issue(Action::AttributeDiscard, type_code, error),
                    // The MP attributes are still parsed so that their prefixes can be
                    // withdrawn (RFC 7606 §3 c, §5.3).
                    ty::MP_REACH_NLRI | ty::MP_UNREACH_NLRI => {
                        p.issue(Action::TreatAsWithdraw, type_code, error);
                        decode_known(&attr, opts, &mut p, &mut as4_path, &mut as4_aggregator)?;
                    }
                    _ => p.issue(Action::TreatAsWithdraw, type_code, error),
                }
            }
            Some(_) => decode_known(&attr, opts, &mut p, &mut as4_path, &mut as4_aggregator)?,
            None if flags & flag::OPTIONAL == 0 => {
                return Err(Error::UnrecognizedWellKnownAttribute {
                    type_code,
                    attribute: attr.bytes(),
                });
            }
            None if flags & flag::TRANSITIVE != 0 => p.attrs.unknown.push(RawAttribute {
                // Passed on with Partial set (RFC 4271 §5): we did not recognise it.
                flags: (flags & (flag::OPTIONAL | flag::TRANSITIVE)) | flag::PARTIAL,
                type_code,
                value: Bytes::copy_from_slice(value),
            }),
            // Unrecognised optional non-transitive attributes are quietly ignored (§5).
            None => {}
        }
    }
    if !opts.four_octet_as {
        merge_as4(&mut p.attrs, as4_path, as4_aggregator);
    }
    // Canonical order (the order they are sent in), so that equal attribute sets compare
    // equal whatever order the peer used.
    p.attrs.unknown.sort_by_key(|u| u.type_code);
    Ok(p)
}

struct Attr<'a> {
    flags: u8,
    type_code: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

impl Attr<'_> {
    fn bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.whole)
    }
    fn length_error(&self) -> Error {
        Error::AttributeLength {
            type_code: self.type_code,
            attribute: self.bytes(),
        }
    }
    fn optional_error(&self, reason: &'static str) -> Error {
        Error::OptionalAttribute {
            type_code: self.type_code,
            reason,
            attribute: self.bytes(),
        }
    }
    fn u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.value).ok().map(u32::from_be_bytes)
    }
}

fn decode_known(
    a: &Attr<'_>,
    opts: &DecodeOptions,
    p: &mut Parsed,
    as4_path: &mut Option<AsPath>,
    as4_aggregator: &mut Option<Aggregator>,
) -> Result<(), Error> {
    use Action::{AttributeDiscard as Discard, TreatAsWithdraw as Withdraw};
    let t = a.type_code;
    // ORIGINATOR_ID and CLUSTER_LIST only mean something inside an AS (RFC 7606 §7.9, §7.10).
    let reflection_action = if opts.ebgp { Discard } else { Withdraw };
    match t {
        // RFC 7606 §7.1.
        ty::ORIGIN => match a.value {
            [0] => p.attrs.origin = Some(Origin::Igp),
            [1] => p.attrs.origin = Some(Origin::Egp),
            [2] => p.attrs.origin = Some(Origin::Incomplete),
            [_] => p.issue(Withdraw, t, Error::InvalidOrigin { attribute: a.bytes() }),
            _ => p.issue(Withdraw, t, a.length_error()),
        },
        // RFC 7606 §7.2, RFC 7607.
        ty::AS_PATH => match decode_as_path(a.value, opts.four_octet_as) {
            Ok(path) => match check_as_path(&path, opts) {
                Ok(()) => p.attrs.as_path = Some(path),
                Err(reason) => p.issue(Withdraw, t, Error::MalformedAsPath { reason }),
            },
            Err(reason) => p.issue(Withdraw, t, Error::MalformedAsPath { reason }),
        },
        // RFC 7606 §7.3; martian next hops are invalid (RFC 4271 §6.3).
        ty::NEXT_HOP => match a.u32().map(Ipv4Addr::from) {
            Some(nh) if is_martian(nh) => {
                p.issue(Withdraw, t, Error::InvalidNextHop { attribute: a.bytes() })
            }
            Some(nh) => p.attrs.next_hop = Some(nh),
            None => p.issue(Withdraw, t, a.length_error()),
        },
        // RFC 7606 §7.4.
        ty::MULTI_EXIT_DISC => match a.u32() {
            Some(v) => p.attrs.med = Some(v),
            None => p.issue(Withdraw, t, a.length_error()),
        },
        // RFC 7606 §7.5.
        ty::LOCAL_PREF if opts.ebgp => p.issue(
            Discard,
            t,
            Error::UnexpectedAttribute {
                type_code: t,
                reason: "LOCAL_PREF from an external peer",
            },
        ),
        ty::LOCAL_PREF => match a.u32() {
            Some(v) => p.attrs.local_pref = Some(v),
            None => p.issue(Withdraw, t, a.length_error()),
        },
        // RFC 7606 §7.6.
        ty::ATOMIC_AGGREGATE if a.value.is_empty() => p.attrs.atomic_aggregate = true,
        ty::ATOMIC_AGGREGATE => p.issue(Discard, t, a.length_error()),
        // RFC 7606 §7.7, RFC 7607 (AS 0).
        ty::AGGREGATOR => match decode_aggregator(a.value, opts.four_octet_as) {
            Some(agg) if agg.asn == 0 => p.issue(Discard, t, a.optional_error("aggregator AS 0")),
            Some(agg) => p.attrs.aggregator = Some(agg),
            None => p.issue(Discard, t, a.length_error()),
        },
        // RFC 7606 §7.8.
        ty::COMMUNITIES => {
            if a.value.is_empty() || !a.value.len().is_multiple_of(4) {
                p.issue(Withdraw, t, a.length_error());
            } else {
                p.attrs.communities = a
                    .value
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
        }
        // RFC 7606 §7.9.
        ty::ORIGINATOR_ID => match a.u32() {
            Some(v) => p.attrs.originator_id = Some(Ipv4Addr::from(v)),
            None => p.issue(reflection_action, t, a.length_error()),
        },
        // RFC 7606 §7.10.
        ty::CLUSTER_LIST => {
            if a.value.is_empty() || !a.value.len().is_multiple_of(4) {
                p.issue(reflection_action, t, a.length_error());
            } else {
                p.attrs.cluster_list = a
                    .value
                    .chunks_exact(4)
                    .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                    .collect();
            }
        }
        // RFC 7606 §7.11, §5.3: the NLRI cannot be located, so the session is reset.
        ty::MP_REACH_NLRI => p.attrs.mp_reach = decode_mp_reach(a, opts)?,
        // RFC 7606 §7.12, §5.3.
        ty::MP_UNREACH_NLRI => p.attrs.mp_unreach = decode_mp_unreach(a, opts)?,
        // RFC 7606 §7.14, §7.15: checked, then passed on as is.
        ty::EXTENDED_COMMUNITIES | ty::IPV6_EXTENDED_COMMUNITIES => {
            let size = if t == ty::EXTENDED_COMMUNITIES { 8 } else { 20 };
            if a.value.is_empty() || !a.value.len().is_multiple_of(size) {
                p.issue(Withdraw, t, a.length_error());
            } else {
                p.attrs.unknown.push(raw(a));
            }
        }
        // RFC 9234 §5: a 4-octet AS; AS 0 is never valid (RFC 7607).
        ty::OTC => match a.u32() {
            Some(0) => p.issue(Withdraw, t, a.optional_error("OTC AS 0")),
            Some(_) => p.attrs.unknown.push(raw(a)),
            None => p.issue(Withdraw, t, a.length_error()),
        },
        // RFC 6793 §6: a malformed AS4_PATH or AS4_AGGREGATOR is discarded; between two
        // 4-octet speakers a well-formed one is ignored (§4.1).
        ty::AS4_PATH => match decode_as_path(a.value, true) {
            Ok(path) if path.asns().any(|asn| asn == 0) => {
                p.issue(Discard, t, a.optional_error("AS 0 in AS4_PATH"))
            }
            Ok(path) if !opts.four_octet_as => *as4_path = Some(path),
            Ok(_) => {}
            Err(reason) => p.issue(Discard, t, a.optional_error(reason)),
        },
        ty::AS4_AGGREGATOR => match decode_aggregator(a.value, true) {
            Some(agg) if agg.asn == 0 => p.issue(Discard, t, a.optional_error("aggregator AS 0")),
            Some(agg) if !opts.four_octet_as => *as4_aggregator = Some(agg),
            Some(_) => {}
            None => p.issue(Discard, t, a.length_error()),
        },
        // RFC 8092 §6 (the same rule as communities).
        ty::LARGE_COMMUNITIES => {
            if a.value.is_empty() || !a.value.len().is_multiple_of(12) {
                p.issue(Withdraw, t, a.length_error());
            } else {
                p.attrs.large_communities = a
                    .value
                    .chunks_exact(12)
                    .map(|c| LargeCommunity {
                        global: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                        local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                        local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                    })
                    .collect();
            }
        }
        _ => p.attrs.unknown.push(raw(a)),
    }
    Ok(())
}

fn raw(a: &Attr<'_>) -> RawAttribute {
    RawAttribute {
        flags: a.flags & (flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL),
        type_code: a.type_code,
        value: Bytes::copy_from_slice(a.value),
    }
}

/// Next hops that can never be a host on a link (RFC 4271 §6.3 "semantically incorrect").
fn is_martian(nh: Ipv4Addr) -> bool {
    nh.is_unspecified() || nh.is_loopback() || nh.is_multicast() || nh.is_broadcast()
}

/// AS_PATH segments (RFC 4271 §4.3):
///
/// ```text
/// +------------+--------------+-----------------------------+
/// | type (1)   | count (1)    | count × AS (2 or 4 octets)  |
/// +------------+--------------+-----------------------------+
/// ```
pub(crate) fn decode_as_path(buf: &[u8], four_octet: bool) -> Result<AsPath, &'static str> {
    let width = if four_octet { 4 } else { 2 };
    let mut r = Reader::new(buf);
    let mut segments = Vec::new();
    while !r.is_empty() {
        let (Some(kind), Some(count)) = (r.u8(), r.u8()) else {
            return Err("truncated segment header");
        };
        let kind = match kind {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return Err("invalid segment type"),
        };
        if count == 0 {
            return Err("empty segment");
        }
        let bytes = r
            .take(usize::from(count) * width)
            .ok_or("segment overruns the attribute")?;
        let asns = if four_octet {
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            bytes
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        segments.push(AsSegment { kind, asns });
    }
    Ok(AsPath { segments })
}

/// Semantic AS_PATH checks: AS 0 (RFC 7607 §2), confederation segments from an external peer
/// (RFC 7606 §7.2; caracal does not run confederations), and optionally the first AS (RFC 4271
/// §6.3).
fn check_as_path(path: &AsPath, opts: &DecodeOptions) -> Result<(), &'static str> {
    if path.asns().any(|asn| asn == 0) {
        return Err("AS 0 in AS_PATH");
    }
    if opts.ebgp && path.segments.iter().any(|s| s.kind.is_confed()) {
        return Err("confederation segment from an external peer");
    }
    if let (true, Some(peer_as)) = (opts.ebgp, opts.enforce_first_as)
        && path.first_as() != Some(peer_as)
    {
        return Err("first AS is not the peer's AS");
    }
    Ok(())
}

fn decode_aggregator(value: &[u8], four_octet: bool) -> Option<Aggregator> {
    match (four_octet, value) {
        (true, [a, b, c, d, w, x, y, z]) => Some(Aggregator {
            asn: u32::from_be_bytes([*a, *b, *c, *d]),
            address: Ipv4Addr::new(*w, *x, *y, *z),
        }),
        (false, [a, b, w, x, y, z]) => Some(Aggregator {
            asn: u32::from(u16::from_be_bytes([*a, *b])),
            address: Ipv4Addr::new(*w, *x, *y, *z),
        }),
        _ => None,
    }
}

/// RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH received from a
/// 2-octet speaker.
fn merge_as4(attrs: &mut PathAttributes, as4_path: Option<AsPath>, as4_aggregator: Option<Aggregator>) {
    // RFC 6793 §4.2.3: when both aggregator attributes arrive and AGGREGATOR is not AS_TRANS,
    // an old speaker aggregated after the AS4 values were added: they are stale.
    match (attrs.aggregator, as4_aggregator) {
        (Some(agg), Some(_)) if agg.asn != u32::from(AS_TRANS) => return,
        (Some(_), Some(a4)) => attrs.aggregator = Some(a4),
        _ => {}
    }
    let (Some(as_path), Some(mut as4)) = (attrs.as_path.as_ref(), as4_path) else {
        return;
    };
    // Confederation segments never belong in AS4_PATH (RFC 6793 §3).
    as4.segments.retain(|s| !s.kind.is_confed());
    let n = as_path.route_len();
    let m = as4.route_len();
    if n < m {
        return;
    }
    let mut keep = n - m;
    let mut merged: Vec<AsSegment> = Vec::new();
    for seg in &as_path.segments {
        match seg.kind {
            // Confederation segments are not counted and stay in front (RFC 6793 §4.2.3).
            SegmentKind::ConfedSequence | SegmentKind::ConfedSet => merged.push(seg.clone()),
            _ if keep == 0 => break,
            SegmentKind::Sequence => {
                let take = keep.min(seg.asns.len());
                merged.push(AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: seg.asns[..take].to_vec(),
                });
                keep -= take;
            }
            SegmentKind::Set => {
                merged.push(seg.clone());
                keep -= 1;
            }
        }
    }
    for seg in as4.segments {
        match merged.last_mut() {
            Some(last)
                if last.kind == SegmentKind::Sequence
                    && seg.kind == SegmentKind::Sequence
                    && last.asns.len() + seg.asns.len() <= 255 =>
            {
                last.asns.extend(seg.asns)
            }
            _ => merged.push(seg),
        }
    }
    attrs.as_path = Some(AsPath { segments: merged });
}

/// MP_REACH_NLRI (RFC 4760 §3):
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Length of Next Hop Network Address (1 octet)            |
/// +---------------------------------------------------------+
/// | Network Address of Next Hop (variable)                  |
/// +---------------------------------------------------------+
/// | Reserved (1 octet)                                      |
/// +---------------------------------------------------------+
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
///
/// IPv6 next hops are 16 octets (global) or 32 (global then link-local, RFC 2545 §3).
/// Families caracal does not route, or that were not negotiated, are ignored (`Ok(None)`).
fn decode_mp_reach(a: &Attr<'_>, opts: &DecodeOptions) -> Result<Option<MpReach>, Error> {
    let truncated = || Error::MalformedAttributeList {
        reason: "MP_REACH_NLRI truncated",
    };
    let mut r = Reader::new(a.value);
    let afi = r.u16().ok_or_else(truncated)?;
    let safi = r.u8().ok_or_else(truncated)?;
    let nh_len = r.u8().ok_or_else(truncated)?;
    let nh = r.take(usize::from(nh_len)).ok_or_else(truncated)?;
    let _reserved = r.u8().ok_or_else(truncated)?;
    let family = Family::new(afi, safi);
    let bad_nh = || Error::MalformedAttributeList {
        reason: "MP_REACH_NLRI next hop length invalid for the family",
    };
    let next_hops: Vec<IpAddr> = if family == Family::IPV4_UNICAST {
        let nh: [u8; 4] = nh.try_into().map_err(|_| bad_nh())?;
        vec![IpAddr::V4(Ipv4Addr::from(nh))]
    } else if family == Family::IPV6_UNICAST {
        match nh.len() {
            16 | 32 => nh
                .chunks_exact(16)
                .map(|c| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                })
                .collect(),
            _ => return Err(bad_nh()),
        }
    } else {
        return Ok(None);
    };
    if !opts.has_family(family) {
        return Ok(None);
    }
    let mut prefixes = Vec::new();
    let parsed = if family == Family::IPV4_UNICAST {
        nlri::decode_v4_as_ipnet(r.rest(), &mut prefixes)
    } else {
        nlri::decode_v6(r.rest(), &mut prefixes)
    };
    parsed.map_err(|e: NlriError| a.optional_error(e.reason()))?;
    Ok(Some(MpReach {
        family,
        next_hops,
        nlri: prefixes,
    }))
}

/// MP_UNREACH_NLRI (RFC 4760 §4): AFI (2), SAFI (1), withdrawn routes.
fn decode_mp_unreach(a: &Attr<'_>, opts: &DecodeOptions) -> Result<Option<MpUnreach>, Error> {
    let mut r = Reader::new(a.value);
    let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
        return Err(Error::MalformedAttributeList {
            reason: "MP_UNREACH_NLRI truncated",
        });
    };
    let family = Family::new(afi, safi);
    let mut withdrawn = Vec::new();
    let parsed = if family == Family::IPV4_UNICAST {
        nlri::decode_v4_as_ipnet(r.rest(), &mut withdrawn)
    } else if family == Family::IPV6_UNICAST {
        nlri::decode_v6(r.rest(), &mut withdrawn)
    } else {
        return Ok(None);
    };
    parsed.map_err(|e| a.optional_error(e.reason()))?;
    if !opts.has_family(family) {
        return Ok(None);
    }
    Ok(Some(MpUnreach { family, withdrawn }))
}
