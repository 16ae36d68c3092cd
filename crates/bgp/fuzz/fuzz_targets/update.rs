//! Any bytes as an UPDATE body, decoded with RFC 7606 treatments under each session context.
#![no_main]

use caracal_bgp::wire::{SessionOptions, UpdateOutcome, decode_update};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ctx in 0..4u8 {
        let opts = SessionOptions { four_octet_as: ctx & 1 != 0, ..SessionOptions::modern(ctx & 2 != 0) };
        match decode_update(data, &opts) {
            // A withdrawal announces nothing.
            UpdateOutcome::TreatAsWithdraw { update, .. } => assert_eq!(update.announced_prefixes().count(), 0),
            UpdateOutcome::Ok(u) | UpdateOutcome::AttributeDiscard { update: u, .. } => {
                let _ = u.end_of_rib();
            }
            UpdateOutcome::SessionReset(e) => {
                let _ = e.to_notification();
            }
        }
    }
});
