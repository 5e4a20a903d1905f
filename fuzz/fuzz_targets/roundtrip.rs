//! Structured entries: encode them back to back (CRC seeded with the input's
//! seed), decode them again, and get the same entries.
//!
//! Checks, for every entry: `encode_entry` and `encode_to_vec(as_borrowed(),
//! 0, ..)` agree; the decoded frame's `len` is the encoded length; the decoded
//! entry's `to_owned()` equals the original; the frame passes every check of
//! `check_accepted`; and after the last frame, zero fill reads as the end.
#![no_main]

use durability::format::frame::{self, FRAME_OVERHEAD};
use durability_fuzz::{check_accepted, check_end, decoder, encode, RoundtripInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: RoundtripInput| {
    let RoundtripInput { seed, entries } = input;
    let entries: Vec<_> = entries.iter().map(|e| e.to_entry()).collect();
    let decoder = decoder();

    let mut log = Vec::new();
    let mut lens = Vec::with_capacity(entries.len());
    for entry in &entries {
        let borrowed = entry.as_borrowed();
        let plain = frame::encode_entry(entry);
        assert!(
            plain == encode(&borrowed, 0),
            "encode_entry and encode_to_vec(as_borrowed, 0) disagree for {entry:?}"
        );
        assert_eq!(plain.len(), frame::frame_len(&borrowed));
        assert_eq!(plain.len(), frame::payload_len(&borrowed) + FRAME_OVERHEAD);

        // encode_to_vec appends, leaving what was there alone.
        let start = log.len();
        let n = frame::encode_to_vec(&borrowed, seed, &mut log).expect("encode_to_vec failed");
        assert_eq!(n, log.len() - start);
        assert_eq!(n, plain.len());
        // The seed changes only the CRC.
        assert!(log[start..start + n - 4] == plain[..n - 4]);
        lens.push(n);
    }
    log.extend_from_slice(&[0; 16]);

    let mut pos = 0;
    for (entry, &len) in entries.iter().zip(&lens) {
        let frame = match decoder.decode(&log, pos, seed) {
            Ok(Some(frame)) => frame,
            other => panic!("entry {entry:?} at {pos} does not decode: {other:?}"),
        };
        assert_eq!(frame.len, len, "frame.len is not the encoded length");
        assert_eq!(&frame.entry.to_owned(), entry, "decoded entry differs");
        assert_eq!(frame.entry.as_borrowed(), entry.as_borrowed());
        check_accepted(&decoder, &log, pos, seed, &frame);
        pos += len;
    }
    match decoder.decode(&log, pos, seed) {
        Ok(None) => check_end(&log, pos),
        other => panic!("zero fill after the last frame: {other:?}"),
    }
});
