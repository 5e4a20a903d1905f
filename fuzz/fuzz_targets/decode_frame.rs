//! Arbitrary bytes through the decoder: the first four bytes are the CRC
//! seed, the rest a buffer of frames decoded one after another from offset 0
//! until the end marker or the first error.
//!
//! The decoder must never panic, and every frame it accepts must re-encode
//! (same seed) to exactly the bytes it was decoded from.
#![no_main]

use durability_fuzz::{check_end, decoder, split_seed, walk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seed, buf) = split_seed(data);
    let decoder = decoder();
    walk(&decoder, buf, seed);

    // Positions at and past the end of the buffer are the end of the frames.
    for pos in [buf.len(), buf.len() + 1, usize::MAX] {
        match decoder.decode(buf, pos, seed) {
            Ok(None) => check_end(buf, pos),
            other => panic!(
                "decode at {pos} past a {}-byte buffer: {other:?}",
                buf.len()
            ),
        }
    }
});
