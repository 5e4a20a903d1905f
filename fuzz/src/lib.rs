//! Shared code for the `durability` fuzz targets: an `Arbitrary` mirror of
//! [`WalEntry`] and the invariants every accepted frame must satisfy.
//!
//! The invariants (checked by [`check_accepted`]):
//!
//! * an accepted frame lies inside the buffer and its `len` matches the
//!   length field;
//! * re-encoding its entry with the same seed gives back exactly the bytes it
//!   was decoded from, whether encoded from the zero-copy view
//!   (`as_borrowed`) or from the owned copy (`to_owned`), through
//!   `encode_to_vec` or `encode_into` (and `encode_entry` for seed 0);
//! * decoding the re-encoded bytes gives the same entry;
//! * the same bytes do not validate under a different seed.
//!
//! And every rejection (checked by [`check_rejected`]) is a corruption error
//! located at the frame's start whose message renders.
//!
//! The targets over whole logs live in their own modules: [`recover`]
//! (`recover_dir`), [`model`] (`model`), with [`log`] (headers, the replay
//! model, read-back checks) and [`scratch`] (scratch directories) shared.

use arbitrary::Arbitrary;
use durability::format::frame::{self, Decoder, Frame, FRAME_OVERHEAD};
use durability::{BorrowedEntry, Error, RunId, WalEntry};
use uuid::Uuid;

/// The payload bound the targets decode with: far above any input the fuzzer
/// builds (so every length it writes is reachable) yet low enough that a
/// lying length field is rejected as too large.
pub const MAX_PAYLOAD: u32 = 1 << 20;

/// The decoder every target uses.
pub fn decoder() -> Decoder {
    Decoder::new(MAX_PAYLOAD)
}

/// A mirror of [`WalEntry`] that derives `Arbitrary` (`WalEntry` does not).
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum FuzzEntry {
    BeginTxn {
        txn_id: u64,
        run_id: [u8; 16],
        timestamp: u64,
    },
    Write {
        run_id: [u8; 16],
        key: Vec<u8>,
        value: Vec<u8>,
        version: u64,
    },
    Delete {
        run_id: [u8; 16],
        key: Vec<u8>,
        version: u64,
    },
    CommitTxn {
        txn_id: u64,
        run_id: [u8; 16],
    },
    AbortTxn {
        txn_id: u64,
        run_id: [u8; 16],
    },
    Checkpoint {
        snapshot_id: [u8; 16],
        version: u64,
        active_runs: Vec<[u8; 16]>,
    },
    Truncate {
        from: u64,
    },
    Raft {
        index: u64,
        term: u64,
        data: Vec<u8>,
    },
}

impl FuzzEntry {
    /// The `WalEntry` with the same fields.
    pub fn to_entry(&self) -> WalEntry {
        match self.clone() {
            FuzzEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => WalEntry::BeginTxn {
                txn_id,
                run_id: RunId::from_bytes(run_id),
                timestamp,
            },
            FuzzEntry::Write {
                run_id,
                key,
                value,
                version,
            } => WalEntry::Write {
                run_id: RunId::from_bytes(run_id),
                key,
                value,
                version,
            },
            FuzzEntry::Delete {
                run_id,
                key,
                version,
            } => WalEntry::Delete {
                run_id: RunId::from_bytes(run_id),
                key,
                version,
            },
            FuzzEntry::CommitTxn { txn_id, run_id } => WalEntry::CommitTxn {
                txn_id,
                run_id: RunId::from_bytes(run_id),
            },
            FuzzEntry::AbortTxn { txn_id, run_id } => WalEntry::AbortTxn {
                txn_id,
                run_id: RunId::from_bytes(run_id),
            },
            FuzzEntry::Checkpoint {
                snapshot_id,
                version,
                active_runs,
            } => WalEntry::Checkpoint {
                snapshot_id: Uuid::from_bytes(snapshot_id),
                version,
                active_runs: active_runs.into_iter().map(RunId::from_bytes).collect(),
            },
            FuzzEntry::Truncate { from } => WalEntry::Truncate { from },
            FuzzEntry::Raft { index, term, data } => WalEntry::Raft { index, term, data },
        }
    }
}

/// The input of the `roundtrip` target: entries written back to back, CRCs
/// seeded with `seed`.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct RoundtripInput {
    pub seed: u32,
    pub entries: Vec<FuzzEntry>,
}

/// Splits a `decode_frame` input into its CRC seed (the first four bytes,
/// little-endian) and the buffer to decode (the rest). Inputs shorter than
/// four bytes decode as a buffer with seed 0.
pub fn split_seed(data: &[u8]) -> (u32, &[u8]) {
    match data.split_first_chunk::<4>() {
        Some((seed, rest)) => (u32::from_le_bytes(*seed), rest),
        None => (0, data),
    }
}

/// Builds a frame around `tag` and `payload` with the right length field and
/// the right CRC for `seed`, appended to `out`.
pub fn build_frame(tag: u8, payload: &[u8], seed: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(tag);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(seed, &[tag]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Encodes `entry` with `seed`, panicking (a harness bug) if it cannot.
pub fn encode(entry: &BorrowedEntry<'_>, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let n = frame::encode_to_vec(entry, seed, &mut out).expect("encode_to_vec failed");
    assert_eq!(
        n,
        out.len(),
        "encode_to_vec returned a length other than it wrote"
    );
    out
}

/// Encodes `entry` with `seed` as a frame of a unit (`continues`: more of
/// the unit follows), panicking (a harness bug) if it cannot.
pub fn encode_unit(entry: &BorrowedEntry<'_>, seed: u32, continues: bool) -> Vec<u8> {
    let mut out = vec![0u8; frame::frame_len(entry)];
    let n = frame::encode_unit_frame(entry, seed, continues, &mut out)
        .expect("encode_unit_frame failed");
    assert_eq!(
        n,
        out.len(),
        "encode_unit_frame returned a length other than it wrote"
    );
    out
}

/// Checks every invariant of a frame `decoder` accepted at `buf[pos..]`.
pub fn check_accepted(decoder: &Decoder, buf: &[u8], pos: usize, seed: u32, frame: &Frame<'_>) {
    let len = frame.len;
    assert!(
        len >= FRAME_OVERHEAD + frame::MIN_PAYLOAD,
        "accepted a frame of {len} bytes, below the minimum"
    );
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .unwrap_or_else(|| {
            panic!(
                "frame at {pos} of {len} bytes runs past the buffer ({})",
                buf.len()
            )
        });
    let bytes = &buf[pos..end];
    let len_field = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(
        len_field + FRAME_OVERHEAD,
        len,
        "frame.len disagrees with the length field"
    );
    assert_eq!(
        bytes[4] & !frame::CONTINUES,
        frame.entry.kind().tag(),
        "kind disagrees with the type tag"
    );
    assert_eq!(
        bytes[4] & frame::CONTINUES != 0,
        frame.continues,
        "continues disagrees with the type byte"
    );

    // The decoder's fast path (a layout check on raw bytes in place of
    // rkyv's validation) accepts nothing the reference path rejects, and
    // both see the same entry.
    let payload = &bytes[frame::HEADER_LEN..len - 4];
    match frame::decode_payload_reference(bytes[4], payload) {
        Ok(reference) => assert_eq!(
            reference.to_owned(),
            frame.entry.to_owned(),
            "the fast and reference paths decode different entries"
        ),
        Err(e) => panic!("decoded a frame the reference path rejects: {e}"),
    }

    // Re-encoding the zero-copy view gives the same bytes.
    let borrowed = frame.entry.as_borrowed();
    assert_eq!(frame::frame_len(&borrowed), len, "frame_len disagrees");
    assert_eq!(
        frame::payload_len(&borrowed),
        len_field,
        "payload_len disagrees"
    );
    let reencoded = encode_unit(&borrowed, seed, frame.continues);
    assert!(
        reencoded == bytes,
        "as_borrowed() re-encodes differently\n entry: {:?}\n input:   {:02x?}\n encoded: {:02x?}",
        frame.entry,
        bytes,
        reencoded
    );

    // So does the owned copy, through every encoder.
    let owned = frame.entry.to_owned();
    assert_eq!(
        borrowed.to_owned(),
        owned,
        "as_borrowed().to_owned() != to_owned()"
    );
    assert_eq!(owned.kind(), frame.entry.kind());
    assert_eq!(owned.run_id(), frame.entry.run_id());
    assert_eq!(owned.txn_id(), frame.entry.txn_id());
    assert_eq!(owned.version(), frame.entry.version());
    let owned_bytes = encode_unit(&owned.as_borrowed(), seed, frame.continues);
    assert!(
        owned_bytes == bytes,
        "to_owned() re-encodes differently: {owned:?}"
    );
    // Without the unit bit, the single-frame encoders give the same frame
    // but for the bit and the CRC that covers it.
    let single = encode(&borrowed, seed);
    if !frame.continues {
        assert!(single == bytes, "encode_to_vec re-encodes differently");
        if seed == 0 {
            assert!(frame::encode_entry(&owned) == bytes, "encode_entry differs");
        }
    } else {
        assert_eq!(single[4] | frame::CONTINUES, bytes[4]);
        assert_eq!(single[..4], bytes[..4]);
        assert_eq!(single[5..len - 4], bytes[5..len - 4]);
    }
    let mut exact = vec![0u8; len];
    assert_eq!(
        frame::encode_unit_frame(&borrowed, seed, frame.continues, &mut exact).ok(),
        Some(len)
    );
    assert!(exact == bytes, "encode_unit_frame re-encodes differently");
    let mut short = vec![0u8; len - 1];
    assert!(
        frame::encode_into(&borrowed, seed, &mut short).is_err(),
        "encode_into accepted a buffer one byte short"
    );

    // The re-encoded bytes decode, alone, to the same entry and bit.
    match decoder.decode(&reencoded, 0, seed) {
        Ok(Some(again)) => {
            assert_eq!(again.len, len);
            assert_eq!(again.entry.to_owned(), owned);
            assert_eq!(again.continues, frame.continues);
        }
        other => panic!("re-encoded frame does not decode: {other:?}"),
    }

    // A frame validates only under the seed it was written with.
    let other_seed = seed ^ 0x8000_0001;
    match decoder.decode(buf, pos, other_seed) {
        Err(Error::Checksum { .. }) => {}
        other => panic!("frame also decodes under another seed: {other:?}"),
    }
}

/// Checks an error `decoder` returned for `buf[pos..]`.
pub fn check_rejected(buf: &[u8], pos: usize, err: &Error) {
    assert!(
        err.is_corruption(),
        "decode returned a non-corruption error: {err:?}"
    );
    assert_eq!(
        err.location().map(|at| at.offset),
        Some(pos as u64),
        "error not located at the frame start: {err:?}"
    );
    assert!(!err.to_string().is_empty());
    let _ = buf;
}

/// Checks that `Ok(None)` (the end of the frames) was returned only where the
/// length field is zero or fewer than four zero bytes remain.
pub fn check_end(buf: &[u8], pos: usize) {
    let rest = buf.get(pos..).unwrap_or(&[]);
    match rest.first_chunk::<4>() {
        Some(len) => assert_eq!(*len, [0; 4], "Ok(None) with a nonzero length field"),
        None => assert!(rest.iter().all(|&b| b == 0), "Ok(None) on a nonzero tail"),
    }
}

/// Decodes frames from `buf[0..]` one after another until the end or the
/// first error, checking each; returns the number of frames accepted.
pub fn walk(decoder: &Decoder, buf: &[u8], seed: u32) -> usize {
    let mut pos = 0usize;
    let mut count = 0usize;
    loop {
        match decoder.decode(buf, pos, seed) {
            Ok(Some(frame)) => {
                check_accepted(decoder, buf, pos, seed, &frame);
                pos += frame.len;
                count += 1;
            }
            Ok(None) => {
                check_end(buf, pos);
                return count;
            }
            Err(err) => {
                check_rejected(buf, pos, &err);
                return count;
            }
        }
    }
}

pub mod log;
pub mod model;
pub mod recover;
pub mod scratch;

/// A list of at most `N` items that takes one byte for its length (a `Vec`
/// inside an `Arbitrary` input would take its length from the end of the
/// data and could swallow the rest of the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Few<T, const N: usize>(pub Vec<T>);

impl<'a, T: Arbitrary<'a>, const N: usize> Arbitrary<'a> for Few<T, N> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=N)?;
        (0..n)
            .map(|_| T::arbitrary(u))
            .collect::<arbitrary::Result<_>>()
            .map(Few)
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, None)
    }
}

impl<T, const N: usize> std::ops::Deref for Few<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> From<Vec<T>> for Few<T, N> {
    fn from(v: Vec<T>) -> Self {
        Few(v)
    }
}

/// A list that, as the last field of an input, takes items until the input
/// is used up (at most `N`; the derived `Vec` stops at each item with
/// probability 1/2 instead, so most random inputs would hold one or two).
/// Elsewhere it is length-prefixed like [`Few`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rest<T, const N: usize>(pub Vec<T>);

impl<'a, T: Arbitrary<'a>, const N: usize> Arbitrary<'a> for Rest<T, N> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Few::<T, N>::arbitrary(u).map(|f| Rest(f.0))
    }

    fn arbitrary_take_rest(mut u: arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut items = Vec::new();
        while !u.is_empty() && items.len() < N {
            items.push(T::arbitrary(&mut u)?);
        }
        Ok(Rest(items))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl<T, const N: usize> std::ops::Deref for Rest<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const N: usize> From<Vec<T>> for Rest<T, N> {
    fn from(v: Vec<T>) -> Self {
        Rest(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of a unit (the bit set on all but its last) pass every check
    /// the decode targets make, beside frames written alone.
    #[test]
    fn unit_frames_pass_the_decode_checks() {
        let run = RunId::from_bytes([3; 16]);
        let entries = [
            BorrowedEntry::BeginTxn {
                txn_id: 1,
                run_id: run,
                timestamp: 9,
            },
            BorrowedEntry::Write {
                run_id: run,
                key: b"k",
                value: b"v",
                version: 1,
            },
            BorrowedEntry::CommitTxn {
                txn_id: 1,
                run_id: run,
            },
        ];
        let seed = 0x1234_5678;
        let mut buf = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            buf.extend(encode_unit(e, seed, i < 2));
        }
        buf.extend(encode(&entries[1], seed));
        buf.extend([0u8; 8]);
        assert_eq!(walk(&decoder(), &buf, seed), 4);
    }
}
