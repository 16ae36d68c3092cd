//! The message header and framing (RFC 4271 §4.1), and dispatch to each message type.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ROUTE-REFRESH body (RFC 2918 §3, subtype per RFC 7313 §3.2):
//!
//! ```text
//! 0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subt. | SAFI  |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, Error, Result};
use super::options::{DecodeOptions, EncodeOptions};
use super::update::Treatment;
use super::{Family, HEADER_LEN, MAX_MESSAGE_LEN, Message, RouteRefresh, notification, open, update};

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

impl MessageType {
    fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// Smallest valid total length (RFC 4271 §4.2-§4.5, RFC 2918 §3).
    fn min_len(self) -> usize {
        match self {
            MessageType::Open => 29,
            MessageType::Update => 23,
            MessageType::Notification => 21,
            MessageType::Keepalive => 19,
            MessageType::RouteRefresh => 23,
        }
    }
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }
}

const MARKER: [u8; 16] = [0xff; 16];

/// Frames a byte stream: `Ok(None)` until a whole header is buffered, then the length of the
/// first message. Marker and length are checked here so that a corrupt stream is refused
/// before the driver waits for a length it should never trust.
pub fn frame_len(buf: &[u8], opts: &DecodeOptions) -> Result<Option<usize>> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16] != MARKER {
        return Err(Error::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let len = usize::from(length);
    if len < HEADER_LEN || len > opts.max_message_len() {
        return Err(Error::BadMessageLength { length });
    }
    Ok(Some(len))
}

/// Checks the header of one complete message and returns its type and body.
fn split<'a>(frame: &'a [u8], opts: &DecodeOptions) -> Result<(MessageType, &'a [u8])> {
    let Some(len) = frame_len(frame, opts)? else {
        return Err(Error::BadMessageLength {
            length: frame.len() as u16,
        });
    };
    let length = len as u16;
    if len != frame.len() {
        return Err(Error::BadMessageLength { length });
    }
    let kind = frame[18];
    let ty = MessageType::from_code(kind).ok_or(Error::BadMessageType { kind })?;
    // OPEN and KEEPALIVE never exceed 4096 octets, even with extended messages (RFC 8654 §3).
    let too_long = matches!(ty, MessageType::Open | MessageType::Keepalive) && len > MAX_MESSAGE_LEN;
    if len < ty.min_len() || too_long || (ty == MessageType::Keepalive && len != HEADER_LEN) {
        return Err(Error::BadMessageLength { length });
    }
    Ok((ty, &frame[HEADER_LEN..]))
}

impl Message {
    /// Decodes one complete message (header included). RFC 7606 is applied to UPDATEs: a
    /// treat-as-withdraw UPDATE comes back as one that only withdraws, discarded attributes
    /// are missing, and only session-reset errors are returned as `Err`. Use
    /// [`Message::decode_with_outcome`] to learn which treatment was applied.
    pub fn decode(frame: &[u8], opts: &DecodeOptions) -> Result<Message> {
        Message::decode_with_outcome(frame, opts).map(|(m, _)| m)
    }

    /// Like [`Message::decode`], also returning the RFC 7606 treatment applied to an UPDATE
    /// (`None` for a clean UPDATE and for other messages).
    pub fn decode_with_outcome(frame: &[u8], opts: &DecodeOptions) -> Result<(Message, Option<Treatment>)> {
        let (ty, body) = split(frame, opts)?;
        let msg = match ty {
            MessageType::Open => Message::Open(open::decode(body)?),
            MessageType::Update => {
                let outcome = update::decode_update(body, opts);
                let (update, rest) = outcome.into_parts()?;
                return Ok((Message::Update(update), rest));
            }
            MessageType::Notification => Message::Notification(notification::decode(body)?),
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => Message::RouteRefresh(decode_route_refresh(frame, body)?),
        };
        Ok((msg, None))
    }

    /// Encodes the message with its header. Fails if it would exceed the session's largest
    /// message (use [`super::encode_updates`] to split many prefixes over several UPDATEs).
    pub fn encode(&self, opts: &EncodeOptions) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::with_capacity(64);
        out.put_slice(&MARKER);
        out.put_u16(0); // patched below
        out.put_u8(self.message_type() as u8);
        match self {
            Message::Open(o) => open::encode(o, &mut out)?,
            Message::Update(u) => update::encode(u, opts, &mut out),
            Message::Notification(n) => notification::encode(n, &mut out),
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                out.put_u16(u16::from(rr.family.afi));
                out.put_u8(rr.subtype);
                out.put_u8(u8::from(rr.family.safi));
            }
        }
        let max = match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
            _ => opts.max_message_len(),
        };
        finish(out, max)
    }
}

/// Patches the length into a message built after a zeroed header and checks its size.
pub(crate) fn finish(mut out: BytesMut, max: usize) -> Result<Bytes, EncodeError> {
    if out.len() > max {
        return Err(EncodeError::TooLarge {
            length: out.len(),
            max,
        });
    }
    let len = (out.len() as u16).to_be_bytes();
    out[16..18].copy_from_slice(&len);
    Ok(out.freeze())
}

/// Starts a message of type `ty`: marker, a length to be patched by [`finish`], type.
pub(crate) fn start(ty: MessageType, capacity: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(capacity);
    out.put_slice(&MARKER);
    out.put_u16(0);
    out.put_u8(ty as u8);
    out
}

fn decode_route_refresh(frame: &[u8], body: &[u8]) -> Result<RouteRefresh> {
    let length = frame.len() as u16;
    match body {
        [a0, a1, subtype, safi] => Ok(RouteRefresh {
            family: Family::new(u16::from_be_bytes([*a0, *a1]), *safi),
            subtype: *subtype,
        }),
        // RFC 7313 §5: a wrong length with the enhanced-refresh subtypes 1 and 2 is a
        // ROUTE-REFRESH error carrying the whole message; otherwise a header error.
        [_, _, 1 | 2, ..] => Err(Error::InvalidRouteRefreshLength {
            message: Bytes::copy_from_slice(frame),
        }),
        _ => Err(Error::BadMessageLength { length }),
    }
}
