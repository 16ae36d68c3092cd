//! NOTIFICATION (RFC 4271 §4.5) and the shutdown communication carried by Cease subcodes 2
//! and 4 (RFC 9003).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Shutdown communication data (RFC 9003 §2): a length octet, then that many octets of UTF-8.

use bytes::{BufMut, Bytes, BytesMut};

use super::Notification;
use super::error::{Error, Result};

/// A `u8`-valued code from an IANA registry: the enum, its wire value and the way back.
macro_rules! wire_code {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* $v = $n,)*
        }

        impl $name {
            /// The value for `v`, when it is one this speaker knows.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($n => Some(Self::$v),)*
                    _ => None,
                }
            }
        }

        impl From<$name> for u8 {
            fn from(c: $name) -> u8 {
                c as u8
            }
        }
    };
}

wire_code! {
    /// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5).
    pub enum ErrorCode {
        MessageHeader = 1,
        Open = 2,
        Update = 3,
        HoldTimerExpired = 4,
        Fsm = 5,
        Cease = 6,
        RouteRefresh = 7,
    }
}

wire_code! {
    /// Cease subcodes (RFC 4486, RFC 8538, RFC 9003).
    pub enum CeaseSubcode {
        MaxPrefixes = 1,
        AdministrativeShutdown = 2,
        PeerDeconfigured = 3,
        AdministrativeReset = 4,
        ConnectionRejected = 5,
        OtherConfigurationChange = 6,
        ConnectionCollisionResolution = 7,
        OutOfResources = 8,
        HardReset = 9,
    }
}

wire_code! {
    /// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492).
    pub enum OpenSubcode {
        Unspecific = 0,
        UnsupportedVersion = 1,
        BadPeerAs = 2,
        BadBgpId = 3,
        UnsupportedOptionalParameter = 4,
        UnacceptableHoldTime = 6,
        UnsupportedCapability = 7,
    }
}

wire_code! {
    /// Finite State Machine Error subcodes (RFC 6608).
    pub enum FsmSubcode {
        Unspecified = 0,
        UnexpectedInOpenSent = 1,
        UnexpectedInOpenConfirm = 2,
        UnexpectedInEstablished = 3,
    }
}

/// Longest shutdown communication (RFC 9003 §2).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

impl Notification {
    /// A NOTIFICATION with `code`, `subcode` and no data. The builders below name the
    /// subcodes; this is for the codes whose subcodes the codec's [`Error`] already names.
    pub fn new(code: ErrorCode, subcode: u8) -> Notification {
        Notification {
            code: code.into(),
            subcode,
            data: Bytes::new(),
        }
    }

    /// Hold Timer Expired (4/0).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(ErrorCode::HoldTimerExpired, 0)
    }

    /// A Finite State Machine Error (RFC 6608).
    pub fn fsm_error(subcode: FsmSubcode) -> Notification {
        Notification::new(ErrorCode::Fsm, subcode.into())
    }

    /// An OPEN Message Error with its data (RFC 4271 §6.2 says what each subcode carries).
    pub fn open_error(subcode: OpenSubcode, data: Bytes) -> Notification {
        Notification {
            data,
            ..Notification::new(ErrorCode::Open, subcode.into())
        }
    }

    /// A Cease with `subcode` and no data.
    pub fn cease(subcode: CeaseSubcode) -> Notification {
        Notification::new(ErrorCode::Cease, subcode.into())
    }

    /// The error code, when it is one this speaker knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u8(self.code)
    }

    /// The Cease subcode of a Cease this speaker knows.
    pub fn cease_subcode(&self) -> Option<CeaseSubcode> {
        match self.error_code() {
            Some(ErrorCode::Cease) => CeaseSubcode::from_u8(self.subcode),
            _ => None,
        }
    }

    /// A Cease/Administrative Shutdown (`reset == false`) or Administrative Reset (`true`)
    /// with a shutdown communication (RFC 9003). An empty message sends no data at all. The one
    /// rule for a longer message: it is cut to [`MAX_SHUTDOWN_COMMUNICATION`] octets on a
    /// character boundary, since stopping a session must not fail over its explanation.
    pub fn shutdown(reset: bool, message: &str) -> Notification {
        let subcode = if reset {
            CeaseSubcode::AdministrativeReset
        } else {
            CeaseSubcode::AdministrativeShutdown
        };
        let mut end = message.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let mut n = Notification::cease(subcode);
        if !message.is_empty() {
            let mut data = BytesMut::with_capacity(1 + message.len());
            data.put_u8(message.len() as u8);
            data.put_slice(message.as_bytes());
            n.data = data.freeze();
        }
        n
    }

    /// A Cease with `subcode`, carrying `reason` as shutdown communication when the subcode
    /// takes one (Administrative Shutdown or Reset, RFC 9003).
    pub fn cease_with(subcode: CeaseSubcode, reason: Option<&str>) -> Notification {
        match (subcode, reason) {
            (CeaseSubcode::AdministrativeShutdown, Some(r)) => Notification::shutdown(false, r),
            (CeaseSubcode::AdministrativeReset, Some(r)) => Notification::shutdown(true, r),
            _ => Notification::cease(subcode),
        }
    }

    /// A Hard Reset (Cease 6/9, RFC 8538 §3) carrying `inner`: its code, subcode and data.
    pub fn hard_reset(inner: &Notification) -> Notification {
        let mut data = BytesMut::with_capacity(inner.data.len() + 2);
        data.put_u8(inner.code);
        data.put_u8(inner.subcode);
        data.put_slice(&inner.data);
        Notification {
            data: data.freeze(),
            ..Notification::cease(CeaseSubcode::HardReset)
        }
    }

    /// Whether this is a Hard Reset (RFC 8538 §3).
    pub fn is_hard_reset(&self) -> bool {
        self.cease_subcode() == Some(CeaseSubcode::HardReset)
    }

    /// The shutdown communication (RFC 9003) of a Cease/Administrative Shutdown or Reset.
    /// `None` when there is none or it is malformed (length beyond the data or not UTF-8):
    /// RFC 9003 §4 says such a message is to be treated as if absent, not as an error.
    pub fn shutdown_communication(&self) -> Option<&str> {
        if !matches!(
            self.cease_subcode(),
            Some(CeaseSubcode::AdministrativeShutdown | CeaseSubcode::AdministrativeReset)
        ) {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        if text.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    /// A short human description: "Cease/Administrative Shutdown (6/2): maintenance".
    pub fn describe(&self) -> String {
        let name = match (self.code, self.subcode) {
            (1, 1) => "Message Header Error/Connection Not Synchronized",
            (1, 2) => "Message Header Error/Bad Message Length",
            (1, 3) => "Message Header Error/Bad Message Type",
            (1, _) => "Message Header Error",
            (2, 1) => "OPEN Message Error/Unsupported Version Number",
            (2, 2) => "OPEN Message Error/Bad Peer AS",
            (2, 3) => "OPEN Message Error/Bad BGP Identifier",
            (2, 4) => "OPEN Message Error/Unsupported Optional Parameter",
            (2, 6) => "OPEN Message Error/Unacceptable Hold Time",
            (2, 7) => "OPEN Message Error/Unsupported Capability",
            (2, _) => "OPEN Message Error",
            (3, 1) => "UPDATE Message Error/Malformed Attribute List",
            (3, 2) => "UPDATE Message Error/Unrecognized Well-known Attribute",
            (3, 3) => "UPDATE Message Error/Missing Well-known Attribute",
            (3, 4) => "UPDATE Message Error/Attribute Flags Error",
            (3, 5) => "UPDATE Message Error/Attribute Length Error",
            (3, 6) => "UPDATE Message Error/Invalid ORIGIN Attribute",
            (3, 8) => "UPDATE Message Error/Invalid NEXT_HOP Attribute",
            (3, 9) => "UPDATE Message Error/Optional Attribute Error",
            (3, 10) => "UPDATE Message Error/Invalid Network Field",
            (3, 11) => "UPDATE Message Error/Malformed AS_PATH",
            (3, _) => "UPDATE Message Error",
            (4, _) => "Hold Timer Expired",
            (5, _) => "Finite State Machine Error",
            (6, 1) => "Cease/Maximum Number of Prefixes Reached",
            (6, 2) => "Cease/Administrative Shutdown",
            (6, 3) => "Cease/Peer De-configured",
            (6, 4) => "Cease/Administrative Reset",
            (6, 5) => "Cease/Connection Rejected",
            (6, 6) => "Cease/Other Configuration Change",
            (6, 7) => "Cease/Connection Collision Resolution",
            (6, 8) => "Cease/Out of Resources",
            (6, 9) => "Cease/Hard Reset",
            (6, _) => "Cease",
            (7, _) => "ROUTE-REFRESH Message Error",
            _ => "Unknown error",
        };
        // A Hard Reset carries the NOTIFICATION it stands for (RFC 8538 §3).
        if let (6, 9, [code, subcode, data @ ..]) = (self.code, self.subcode, &self.data[..]) {
            let inner = Notification {
                code: *code,
                subcode: *subcode,
                data: Bytes::copy_from_slice(data),
            };
            return format!("{name} (6/9) of {}", inner.describe());
        }
        match self.shutdown_communication() {
            Some(msg) => format!("{name} ({}/{}): {msg}", self.code, self.subcode),
            None => format!("{name} ({}/{})", self.code, self.subcode),
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Decodes a NOTIFICATION body (after the header). The header check already guaranteed the
/// two fixed octets, but the body is checked again so this is safe on its own.
pub(crate) fn decode(body: &[u8]) -> Result<Notification> {
    match body {
        [code, subcode, data @ ..] => Ok(Notification {
            code: *code,
            subcode: *subcode,
            data: Bytes::copy_from_slice(data),
        }),
        _ => Err(Error::BadMessageLength {
            length: (super::HEADER_LEN + body.len()) as u16,
        }),
    }
}

pub(crate) fn encode(n: &Notification, out: &mut BytesMut) {
    out.put_u8(n.code);
    out.put_u8(n.subcode);
    out.put_slice(&n.data);
}
