//! What the codec must know about a session: the capabilities both sides negotiated and the
//! kind of peer. The width of AS numbers in AS_PATH (RFC 6793), the largest message (RFC 8654),
//! the families that may appear (RFC 4760) and several RFC 7606 treatments depend on it.

use super::{Capability, Family, MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, Open};

/// The negotiated parameters of a session, used both to decode and to encode.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionOptions {
    /// Both sides announced the 4-octet AS capability (RFC 6793 §4): AS_PATH and AGGREGATOR
    /// carry 4-octet AS numbers and AS4_PATH/AS4_AGGREGATOR are not used.
    pub four_octet_as: bool,
    /// Both sides announced the extended message capability (RFC 8654): messages other than
    /// OPEN and KEEPALIVE may be up to 65535 octets.
    pub extended_message: bool,
    /// Families both sides announced; MP_REACH/MP_UNREACH for others are ignored.
    pub families: Vec<Family>,
    /// The peer is in another AS. LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST errors and
    /// confederation segments are treated differently for external peers (RFC 7606 §7).
    pub ebgp: bool,
    /// For an external peer: its AS, to require as the first AS of every AS_PATH (RFC 4271
    /// §6.3 "MAY check"; a mismatch is a malformed AS_PATH, treat-as-withdraw per RFC 7606
    /// §7.2). `None` (the default) skips the check, as route servers do not prepend their AS.
    pub enforce_first_as: Option<u32>,
}

/// Decoding context (the same value as [`SessionOptions`]).
pub type DecodeOptions = SessionOptions;
/// Encoding context (the same value as [`SessionOptions`]).
pub type EncodeOptions = SessionOptions;

impl Default for SessionOptions {
    /// The context before capabilities are known: 2-octet AS numbers, 4096-octet messages,
    /// IPv4 unicast only (RFC 4760 §8), external peer.
    fn default() -> Self {
        SessionOptions {
            four_octet_as: false,
            extended_message: false,
            families: vec![Family::IPV4_UNICAST],
            ebgp: true,
            enforce_first_as: None,
        }
    }
}

impl SessionOptions {
    /// Options for a session where both sides support everything caracal does.
    pub fn modern(ebgp: bool) -> SessionOptions {
        SessionOptions {
            four_octet_as: true,
            extended_message: false,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            ebgp,
            enforce_first_as: None,
        }
    }

    /// What two OPENs negotiate: a capability is in use when both sides announced it
    /// (RFC 5492 §3, RFC 6793 §4, RFC 8654 §3); families are the intersection (RFC 4760 §8).
    pub fn negotiate(local: &Open, remote: &Open, ebgp: bool) -> SessionOptions {
        let both = |code: u8| local.has_capability(code) && remote.has_capability(code);
        let theirs = remote.families();
        let families = local
            .families()
            .into_iter()
            .filter(|f| theirs.contains(f))
            .collect();
        SessionOptions {
            four_octet_as: both(Capability::FourOctetAs(0).code()),
            extended_message: both(Capability::ExtendedMessage.code()),
            families,
            ebgp,
            enforce_first_as: None,
        }
    }

    /// The largest message this session may carry (OPEN and KEEPALIVE stay at 4096 but are
    /// far smaller anyway).
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    /// Whether routes of `family` are exchanged on this session.
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }
}
