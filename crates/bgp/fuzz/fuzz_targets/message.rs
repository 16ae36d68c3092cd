//! Any bytes into the framer and the message decoder, under every session context. A message
//! that decodes must encode again, and over a 4-octet session decode back to the same value.
#![no_main]

use caracal_bgp::wire::{Message, SessionOptions, frame_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctx, bytes)) = data.split_first() else { return };
    let opts = SessionOptions {
        four_octet_as: ctx & 1 != 0,
        extended_message: ctx & 2 != 0,
        ebgp: ctx & 4 != 0,
        enforce_first_as: (ctx & 8 != 0).then_some(65001),
        ..SessionOptions::modern(true)
    };
    // Frame the stream the way the driver does, then decode each message.
    let mut rest = bytes;
    while let Ok(Some(len)) = frame_len(rest, &opts) {
        let Some(frame) = rest.get(..len) else { break };
        rest = &rest[len..];
        let Ok(msg) = Message::decode(frame, &opts) else { continue };
        let Ok(again) = msg.encode(&opts) else { continue };
        let back = Message::decode(&again, &opts).expect("a re-encoded message decodes");
        if opts.four_octet_as {
            assert_eq!(back, msg, "decode(encode(m)) == m");
        }
    }
    // The whole input as one frame too, header checks included.
    let _ = Message::decode(bytes, &opts);
});
