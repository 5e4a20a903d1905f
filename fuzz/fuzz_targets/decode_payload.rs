//! Arbitrary bytes as a type tag (the first byte) and a payload (the rest),
//! framed with the right length and the right CRC, so every input gets past
//! the checksum into tag, rkyv validation and canonical-form checks.
//!
//! The decoder must never panic, and an accepted frame must re-encode to the
//! same bytes.
#![no_main]

use durability::format::frame::FRAME_OVERHEAD;
use durability_fuzz::{build_frame, check_accepted, check_end, check_rejected, decoder};
use libfuzzer_sys::fuzz_target;

/// The seed the frames are checksummed with.
const SEED: u32 = 0;

fuzz_target!(|data: &[u8]| {
    let Some((&tag, payload)) = data.split_first() else {
        return;
    };
    let decoder = decoder();
    let mut buf = Vec::with_capacity(payload.len() + FRAME_OVERHEAD + 8);
    build_frame(tag, payload, SEED, &mut buf);
    let framed = buf.len();

    let result = decoder.decode(&buf, 0, SEED);
    match &result {
        Ok(Some(frame)) => {
            assert_eq!(frame.len, framed, "accepted frame is not the whole frame");
            check_accepted(&decoder, &buf, 0, SEED, frame);
        }
        Ok(None) => {
            assert!(
                payload.is_empty(),
                "Ok(None) for a {}-byte payload",
                payload.len()
            );
            check_end(&buf, 0);
        }
        Err(err) => check_rejected(&buf, 0, err),
    }

    // Whatever follows a frame does not change how it decodes.
    let mut tailed = buf.clone();
    tailed.extend_from_slice(&[0xff; 8]);
    let with_tail = decoder.decode(&tailed, 0, SEED);
    match (&result, &with_tail) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a.len, b.len);
            assert_eq!(a.entry, b.entry);
        }
        (Ok(None), Ok(None)) => {}
        // Not the messages: rkyv's validation errors quote buffer addresses.
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "trailing bytes changed the error: {a:?} vs {b:?}"
        ),
        (a, b) => panic!("trailing bytes changed the result: {a:?} vs {b:?}"),
    }
});
