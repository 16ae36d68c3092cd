//! Encoding path attributes: type-code order, MP_REACH_NLRI and MP_UNREACH_NLRI first, the
//! Extended Length flag when a value needs it, AS4_PATH/AS4_AGGREGATOR towards 2-octet peers.

use super::*;

fn put_header(out: &mut BytesMut, flags: u8, type_code: u8, len: usize) {
    let flags = flags & !(flag::EXTENDED_LENGTH | 0x0f);
    if len > 255 {
        out.put_u8(flags | flag::EXTENDED_LENGTH);
        out.put_u8(type_code);
        out.put_u16(len as u16);
    } else {
        out.put_u8(flags);
        out.put_u8(type_code);
        out.put_u8(len as u8);
    }
}

fn as_path_len(path: &AsPath, width: usize, include_confed: bool) -> usize {
    path.segments
        .iter()
        .filter(|s| include_confed || !s.kind.is_confed())
        .flat_map(|s| s.asns.chunks(255))
        .map(|c| 2 + width * c.len())
        .sum()
}

fn put_as_path(out: &mut BytesMut, path: &AsPath, four_octet: bool, include_confed: bool) {
    for seg in path
        .segments
        .iter()
        .filter(|s| include_confed || !s.kind.is_confed())
    {
        for chunk in seg.asns.chunks(255) {
            out.put_u8(seg.kind.code());
            out.put_u8(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    out.put_u32(asn);
                } else {
                    out.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                }
            }
        }
    }
}

pub(crate) fn encode_mp_reach(r: &MpReach, out: &mut BytesMut) {
    let nh_len: usize = r
        .next_hops
        .iter()
        .map(|nh| if nh.is_ipv4() { 4 } else { 16 })
        .sum();
    let len = 5 + nh_len + r.nlri.iter().map(nlri::encoded_len).sum::<usize>();
    put_header(out, OPTIONAL_NON_TRANSITIVE, ty::MP_REACH_NLRI, len);
    put_mp_reach_head(r.family, &r.next_hops, out);
    for p in &r.nlri {
        nlri::encode(p, out);
    }
}

/// AFI, SAFI, next hops and the reserved octet: the part of MP_REACH_NLRI before the NLRI.
pub(crate) fn put_mp_reach_head(family: Family, next_hops: &[IpAddr], out: &mut BytesMut) {
    let nh_len: usize = next_hops.iter().map(|nh| if nh.is_ipv4() { 4 } else { 16 }).sum();
    out.put_u16(u16::from(family.afi));
    out.put_u8(u8::from(family.safi));
    out.put_u8(nh_len as u8);
    for nh in next_hops {
        match nh {
            IpAddr::V4(a) => out.put_slice(&a.octets()),
            IpAddr::V6(a) => out.put_slice(&a.octets()),
        }
    }
    out.put_u8(0);
}

pub(crate) fn encode_mp_unreach(u: &MpUnreach, out: &mut BytesMut) {
    let len = 3 + u.withdrawn.iter().map(nlri::encoded_len).sum::<usize>();
    put_header(out, OPTIONAL_NON_TRANSITIVE, ty::MP_UNREACH_NLRI, len);
    out.put_u16(u16::from(u.family.afi));
    out.put_u8(u8::from(u.family.safi));
    for p in &u.withdrawn {
        nlri::encode(p, out);
    }
}

/// Encodes all attributes, MP_REACH_NLRI and MP_UNREACH_NLRI first (RFC 7606 §5.1), the
/// rest in type-code order (RFC 4271 §5).
pub(crate) fn encode(attrs: &PathAttributes, opts: &EncodeOptions, out: &mut BytesMut) {
    if let Some(r) = &attrs.mp_reach {
        encode_mp_reach(r, out);
    }
    if let Some(u) = &attrs.mp_unreach {
        encode_mp_unreach(u, out);
    }
    encode_plain(attrs, opts, out, true);
}

/// Encodes every attribute except MP_REACH_NLRI and MP_UNREACH_NLRI (and NEXT_HOP unless
/// `with_next_hop`).
pub(crate) fn encode_plain(
    attrs: &PathAttributes,
    opts: &EncodeOptions,
    out: &mut BytesMut,
    with_next_hop: bool,
) {
    let four = opts.four_octet_as;
    let mut unknown: Vec<&RawAttribute> = attrs.unknown.iter().collect();
    unknown.sort_by_key(|u| u.type_code);
    let mut unknown = unknown.into_iter().peekable();
    let mut flush_below = |code: u8, out: &mut BytesMut| {
        while let Some(u) = unknown.next_if(|u| u.type_code < code) {
            // Only optional attributes survive decoding; a well-known code here would be
            // the caller's own construction and is sent as given.
            put_header(out, u.flags, u.type_code, u.value.len());
            out.put_slice(&u.value);
        }
    };

    flush_below(ty::ORIGIN, out);
    if let Some(origin) = attrs.origin {
        put_header(out, WELL_KNOWN, ty::ORIGIN, 1);
        out.put_u8(origin.code());
    }
    flush_below(ty::AS_PATH, out);
    let mut needs_as4_path = false;
    if let Some(path) = &attrs.as_path {
        put_header(
            out,
            WELL_KNOWN,
            ty::AS_PATH,
            as_path_len(path, if four { 4 } else { 2 }, true),
        );
        put_as_path(out, path, four, true);
        needs_as4_path = !four && path.asns().any(|asn| asn > u32::from(u16::MAX));
    }
    flush_below(ty::NEXT_HOP, out);
    if let (Some(nh), true) = (attrs.next_hop, with_next_hop) {
        put_header(out, WELL_KNOWN, ty::NEXT_HOP, 4);
        out.put_slice(&nh.octets());
    }
    flush_below(ty::MULTI_EXIT_DISC, out);
    if let Some(med) = attrs.med {
        put_header(out, OPTIONAL_NON_TRANSITIVE, ty::MULTI_EXIT_DISC, 4);
        out.put_u32(med);
    }
    flush_below(ty::LOCAL_PREF, out);
    if let Some(lp) = attrs.local_pref {
        put_header(out, WELL_KNOWN, ty::LOCAL_PREF, 4);
        out.put_u32(lp);
    }
    flush_below(ty::ATOMIC_AGGREGATE, out);
    if attrs.atomic_aggregate {
        put_header(out, WELL_KNOWN, ty::ATOMIC_AGGREGATE, 0);
    }
    flush_below(ty::AGGREGATOR, out);
    let mut as4_aggregator = None;
    if let Some(agg) = attrs.aggregator {
        if four {
            put_header(out, OPTIONAL_TRANSITIVE, ty::AGGREGATOR, 8);
            out.put_u32(agg.asn);
        } else {
            put_header(out, OPTIONAL_TRANSITIVE, ty::AGGREGATOR, 6);
            let short = u16::try_from(agg.asn).ok();
            out.put_u16(short.unwrap_or(AS_TRANS));
            as4_aggregator = short.is_none().then_some(agg);
        }
        out.put_slice(&agg.address.octets());
    }
    flush_below(ty::COMMUNITIES, out);
    if !attrs.communities.is_empty() {
        put_header(
            out,
            OPTIONAL_TRANSITIVE,
            ty::COMMUNITIES,
            4 * attrs.communities.len(),
        );
        for c in &attrs.communities {
            out.put_u32(*c);
        }
    }
    flush_below(ty::ORIGINATOR_ID, out);
    if let Some(id) = attrs.originator_id {
        put_header(out, OPTIONAL_NON_TRANSITIVE, ty::ORIGINATOR_ID, 4);
        out.put_slice(&id.octets());
    }
    flush_below(ty::CLUSTER_LIST, out);
    if !attrs.cluster_list.is_empty() {
        put_header(
            out,
            OPTIONAL_NON_TRANSITIVE,
            ty::CLUSTER_LIST,
            4 * attrs.cluster_list.len(),
        );
        for id in &attrs.cluster_list {
            out.put_slice(&id.octets());
        }
    }
    flush_below(ty::AS4_PATH, out);
    if let (true, Some(path)) = (needs_as4_path, &attrs.as_path) {
        put_header(
            out,
            OPTIONAL_TRANSITIVE,
            ty::AS4_PATH,
            as_path_len(path, 4, false),
        );
        put_as_path(out, path, true, false);
    }
    flush_below(ty::AS4_AGGREGATOR, out);
    if let Some(agg) = as4_aggregator {
        put_header(out, OPTIONAL_TRANSITIVE, ty::AS4_AGGREGATOR, 8);
        out.put_u32(agg.asn);
        out.put_slice(&agg.address.octets());
    }
    flush_below(ty::LARGE_COMMUNITIES, out);
    if !attrs.large_communities.is_empty() {
        put_header(
            out,
            OPTIONAL_TRANSITIVE,
            ty::LARGE_COMMUNITIES,
            12 * attrs.large_communities.len(),
        );
        for c in &attrs.large_communities {
            out.put_u32(c.global);
            out.put_u32(c.local1);
            out.put_u32(c.local2);
        }
    }
    flush_below(u8::MAX, out);
    // 255 itself (reserved for development) sorts last.
    for u in unknown {
        put_header(out, u.flags, u.type_code, u.value.len());
        out.put_slice(&u.value);
    }
}
