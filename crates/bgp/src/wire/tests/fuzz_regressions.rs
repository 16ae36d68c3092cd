//! Inputs that once made a fuzz target fail (`crates/bgp/fuzz/regressions/`), replayed
//! through the same checks as `fuzz_targets/message.rs`.

use crate::wire::*;

fn check_message_input(data: &[u8]) {
    let Some((&ctx, bytes)) = data.split_first() else {
        return;
    };
    let opts = SessionOptions {
        four_octet_as: ctx & 1 != 0,
        extended_message: ctx & 2 != 0,
        ebgp: ctx & 4 != 0,
        enforce_first_as: (ctx & 8 != 0).then_some(65001),
        ..SessionOptions::modern(true)
    };
    let mut rest = bytes;
    while let Ok(Some(len)) = frame_len(rest, &opts) {
        let Some(frame) = rest.get(..len) else { break };
        rest = &rest[len..];
        let Ok(msg) = Message::decode(frame, &opts) else {
            continue;
        };
        let Ok(again) = msg.encode(&opts) else { continue };
        let back = Message::decode(&again, &opts).expect("a re-encoded message decodes");
        if opts.four_octet_as {
            assert_eq!(back, msg);
        }
    }
    let _ = Message::decode(bytes, &opts);
}

#[test]
fn fuzz_regressions_pass_the_message_target_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions exists") {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("message-"))
        {
            check_message_input(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no regression inputs found in {}", dir.display());
}
