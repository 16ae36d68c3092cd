//! Communities (RFC 1997) and large communities (RFC 8092) as operators write them:
//! `ASN:value` and `global:local1:local2`, and the well-known communities by name.

use super::LargeCommunity;

/// NO_EXPORT: not advertised outside the AS (RFC 1997).
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
/// NO_ADVERTISE: not advertised to any peer (RFC 1997).
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
/// NO_EXPORT_SUBCONFED: not advertised to external peers, confederation members included.
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// `ASN:value`, the upper and lower 16 bits.
pub fn format(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

/// `ASN:value` (each 0-65535), or `no_export`, `no_advertise`, `no_export_subconfed`.
pub fn parse(s: &str) -> Option<u32> {
    match s {
        "no_export" => return Some(NO_EXPORT),
        "no_advertise" => return Some(NO_ADVERTISE),
        "no_export_subconfed" => return Some(NO_EXPORT_SUBCONFED),
        _ => {}
    }
    let (asn, value) = s.split_once(':')?;
    Some((u32::from(asn.parse::<u16>().ok()?) << 16) | u32::from(value.parse::<u16>().ok()?))
}

/// `global:local1:local2`.
pub fn format_large(c: &LargeCommunity) -> String {
    format!("{}:{}:{}", c.global, c.local1, c.local2)
}

/// `global:local1:local2`, each 0-4294967295 (RFC 8092 §3).
pub fn parse_large(s: &str) -> Option<LargeCommunity> {
    let mut parts = s.split(':').map(|x| x.parse::<u32>().ok());
    let c = LargeCommunity {
        global: parts.next()??,
        local1: parts.next()??,
        local2: parts.next()??,
    };
    parts.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_read_and_write_as_operators_write_them() {
        assert_eq!(parse("65001:100"), Some(65001 << 16 | 100));
        assert_eq!(format(65001 << 16 | 100), "65001:100");
        assert_eq!(parse("no_export"), Some(NO_EXPORT));
        assert_eq!(parse(&format(NO_ADVERTISE)), Some(NO_ADVERTISE));
        for bad in ["65536:1", "1:65536", "1", "1:2:3", "a:b", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let l = LargeCommunity {
            global: 4_200_000_000,
            local1: 1,
            local2: 2,
        };
        assert_eq!(parse_large("4200000000:1:2"), Some(l));
        assert_eq!(format_large(&l), "4200000000:1:2");
        for bad in ["1:2", "1:2:3:4", "1::2", "4294967296:1:2"] {
            assert_eq!(parse_large(bad), None, "{bad}");
        }
    }
}
