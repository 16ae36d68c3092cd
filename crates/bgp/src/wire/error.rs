//! Decoding errors, one variant per NOTIFICATION code and subcode they lead to (RFC 4271 §6,
//! RFC 4760 §7, RFC 6793, RFC 7606, RFC 7313 §5, RFC 8654 §4, RFC 9072).
//!
//! [`Error::to_notification`] builds the NOTIFICATION to send, with the data field each RFC
//! asks for. Whether an UPDATE error resets the session or is handled by treat-as-withdraw or
//! attribute discard is decided by `update.rs` (RFC 7606), not here.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::Notification;
use super::notification::ErrorCode;

// The codes by their RFC 4271 §4.5 names; the subcodes beside them are each variant's.
const MESSAGE_HEADER: u8 = ErrorCode::MessageHeader as u8;
const OPEN: u8 = ErrorCode::Open as u8;
const UPDATE: u8 = ErrorCode::Update as u8;
const ROUTE_REFRESH: u8 = ErrorCode::RouteRefresh as u8;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // -- 1: Message Header Error (RFC 4271 §6.1) -------------------------------------------
    /// 1/1: the marker is not all ones.
    #[error("message header: marker is not all ones (connection not synchronized)")]
    ConnectionNotSynchronized,
    /// 1/2: the length field is out of range for the message type; data is the length field.
    #[error("message header: bad message length {length}")]
    BadMessageLength { length: u16 },
    /// 1/3: unknown message type; data is the type.
    #[error("message header: bad message type {kind}")]
    BadMessageType { kind: u8 },

    // -- 2: OPEN Message Error (RFC 4271 §6.2, RFC 5492, RFC 9072) ---------------------------
    /// 2/0: the OPEN is malformed in a way RFC 4271 has no subcode for (bad parameter or
    /// capability lengths).
    #[error("OPEN: malformed ({reason})")]
    MalformedOpen { reason: &'static str },
    /// 2/1: data is the largest version we support (4), as 2 octets.
    #[error("OPEN: unsupported version {version}")]
    UnsupportedVersion { version: u8 },
    /// 2/2.
    #[error("OPEN: bad peer AS {asn}")]
    BadPeerAs { asn: u32 },
    /// 2/3.
    #[error("OPEN: bad BGP identifier {id}")]
    BadBgpIdentifier { id: Ipv4Addr },
    /// 2/4: an optional parameter other than capabilities.
    #[error("OPEN: unsupported optional parameter type {kind}")]
    UnsupportedOptionalParameter { kind: u8 },
    /// 2/6: hold time 1 or 2 seconds (RFC 4271 §4.2).
    #[error("OPEN: unacceptable hold time {hold_time}")]
    UnacceptableHoldTime { hold_time: u16 },
    /// 2/7 (RFC 5492 §5): data is the capabilities we require and the peer lacks.
    #[error("OPEN: unsupported capability")]
    UnsupportedCapability { capabilities: Bytes },

    // -- 3: UPDATE Message Error (RFC 4271 §6.3, RFC 7606) -----------------------------------
    /// 3/1: lengths do not add up, or MP_REACH/MP_UNREACH is broken or repeated.
    #[error("UPDATE: malformed attribute list ({reason})")]
    MalformedAttributeList { reason: &'static str },
    /// 3/1 as well: an attribute other than MP_REACH/MP_UNREACH appears twice (RFC 7606 §3 g:
    /// the repeats are discarded).
    #[error("UPDATE: attribute {type_code} appears more than once")]
    DuplicateAttribute { type_code: u8 },
    /// 3/1 as well, never sent: an attribute that has no business on this session and is
    /// ignored (LOCAL_PREF from an external peer, RFC 7606 §7.5).
    #[error("UPDATE: attribute {type_code} ignored ({reason})")]
    UnexpectedAttribute { type_code: u8, reason: &'static str },
    /// 3/2: data is the attribute.
    #[error("UPDATE: unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnownAttribute { type_code: u8, attribute: Bytes },
    /// 3/3: data is the missing type code.
    #[error("UPDATE: missing well-known attribute {type_code}")]
    MissingWellKnownAttribute { type_code: u8 },
    /// 3/4: data is the attribute.
    #[error("UPDATE: attribute {type_code} has wrong flags")]
    AttributeFlags { type_code: u8, attribute: Bytes },
    /// 3/5: data is the attribute.
    #[error("UPDATE: attribute {type_code} has a wrong length")]
    AttributeLength { type_code: u8, attribute: Bytes },
    /// 3/6: data is the attribute.
    #[error("UPDATE: invalid ORIGIN")]
    InvalidOrigin { attribute: Bytes },
    /// 3/8: data is the attribute.
    #[error("UPDATE: invalid NEXT_HOP")]
    InvalidNextHop { attribute: Bytes },
    /// 3/9: data is the attribute.
    #[error("UPDATE: optional attribute {type_code} is malformed ({reason})")]
    OptionalAttribute {
        type_code: u8,
        reason: &'static str,
        attribute: Bytes,
    },
    /// 3/10.
    #[error("UPDATE: invalid network field ({reason})")]
    InvalidNetworkField { reason: &'static str },
    /// 3/11.
    #[error("UPDATE: malformed AS_PATH ({reason})")]
    MalformedAsPath { reason: &'static str },

    // -- 7: ROUTE-REFRESH Message Error (RFC 7313 §5) ---------------------------------------
    /// 7/1: data is the complete message.
    #[error("ROUTE-REFRESH: invalid message length")]
    InvalidRouteRefreshLength { message: Bytes },
}

impl Error {
    /// The NOTIFICATION (code, subcode) this error leads to.
    pub fn code(&self) -> (u8, u8) {
        use Error::*;
        match self {
            ConnectionNotSynchronized => (MESSAGE_HEADER, 1),
            BadMessageLength { .. } => (MESSAGE_HEADER, 2),
            BadMessageType { .. } => (MESSAGE_HEADER, 3),
            MalformedOpen { .. } => (OPEN, 0),
            UnsupportedVersion { .. } => (OPEN, 1),
            BadPeerAs { .. } => (OPEN, 2),
            BadBgpIdentifier { .. } => (OPEN, 3),
            UnsupportedOptionalParameter { .. } => (OPEN, 4),
            UnacceptableHoldTime { .. } => (OPEN, 6),
            UnsupportedCapability { .. } => (OPEN, 7),
            MalformedAttributeList { .. } | DuplicateAttribute { .. } | UnexpectedAttribute { .. } => {
                (UPDATE, 1)
            }
            UnrecognizedWellKnownAttribute { .. } => (UPDATE, 2),
            MissingWellKnownAttribute { .. } => (UPDATE, 3),
            AttributeFlags { .. } => (UPDATE, 4),
            AttributeLength { .. } => (UPDATE, 5),
            InvalidOrigin { .. } => (UPDATE, 6),
            InvalidNextHop { .. } => (UPDATE, 8),
            OptionalAttribute { .. } => (UPDATE, 9),
            InvalidNetworkField { .. } => (UPDATE, 10),
            MalformedAsPath { .. } => (UPDATE, 11),
            InvalidRouteRefreshLength { .. } => (ROUTE_REFRESH, 1),
        }
    }

    /// The NOTIFICATION to send for this error, with the data field RFC 4271 §6 and the
    /// later RFCs ask for.
    pub fn to_notification(&self) -> Notification {
        use Error::*;
        let (code, subcode) = self.code();
        let data = match self {
            BadMessageLength { length } => Bytes::copy_from_slice(&length.to_be_bytes()),
            BadMessageType { kind } => Bytes::copy_from_slice(&[*kind]),
            UnsupportedVersion { .. } => Bytes::from_static(&[0, 4]),
            BadPeerAs { asn } => match u16::try_from(*asn) {
                Ok(a) => Bytes::copy_from_slice(&a.to_be_bytes()),
                Err(_) => Bytes::copy_from_slice(&asn.to_be_bytes()),
            },
            BadBgpIdentifier { id } => Bytes::copy_from_slice(&id.octets()),
            UnsupportedOptionalParameter { kind } => Bytes::copy_from_slice(&[*kind]),
            UnacceptableHoldTime { hold_time } => Bytes::copy_from_slice(&hold_time.to_be_bytes()),
            UnsupportedCapability { capabilities } => capabilities.clone(),
            MissingWellKnownAttribute { type_code } => Bytes::copy_from_slice(&[*type_code]),
            UnrecognizedWellKnownAttribute { attribute, .. }
            | AttributeFlags { attribute, .. }
            | AttributeLength { attribute, .. }
            | InvalidOrigin { attribute }
            | InvalidNextHop { attribute }
            | OptionalAttribute { attribute, .. } => attribute.clone(),
            InvalidRouteRefreshLength { message } => message.clone(),
            ConnectionNotSynchronized
            | MalformedOpen { .. }
            | MalformedAttributeList { .. }
            | DuplicateAttribute { .. }
            | UnexpectedAttribute { .. }
            | InvalidNetworkField { .. }
            | MalformedAsPath { .. } => Bytes::new(),
        };
        Notification { code, subcode, data }
    }
}

impl From<&Error> for Notification {
    fn from(e: &Error) -> Self {
        e.to_notification()
    }
}

/// Why a value could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {length} octets exceeds the session maximum of {max}")]
    TooLarge { length: usize, max: usize },
    #[error("a single prefix with these attributes does not fit in a {max}-octet message")]
    AttributesTooLarge { max: usize },
    #[error("{family} prefixes need a next hop (NEXT_HOP or MP_REACH_NLRI next hops)")]
    MissingNextHop { family: super::Family },
    #[error("the OPEN parameters exceed 65535 octets")]
    OpenTooLarge,
    #[error("{what} is too long ({length} octets, at most {max})")]
    FieldTooLong {
        what: &'static str,
        length: usize,
        max: usize,
    },
}
