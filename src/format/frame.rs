//! The frame codec: one entry on disk, over plain byte slices.
//!
//! ```text
//! offset 0      4      5                 5+N        9+N
//!        +------+------+-----------------+----------+
//!        | len  | type | payload (N = len bytes)    | crc  |
//!        | u32  | u8   | rkyv ArchivedWalEntry      | u32  |
//!        +------+------+-----------------+----------+
//! ```
//!
//! All integers are little-endian. `len` counts the payload only, so a frame
//! occupies `len + 9` bytes. `crc` is CRC-32C over `[type][payload]`, started
//! from a caller-chosen `seed` (the log derives it from the frame's LSN and the
//! log's id, so a frame only validates at the position it was written for; a
//! standalone buffer uses seed 0). A `len` of 0 is not a frame: it marks the
//! end of the frames in a zero-filled region.
//!
//! Decoding checks, in order and before touching anything the length points
//! at: the length against the limit and the bytes available, the CRC, the
//! type tag, rkyv's bytecheck validation of the payload, the payload's entry
//! type against the tag, and that the payload is in the canonical form the
//! encoder writes (so any accepted frame re-encodes to the same bytes). This
//! module knows nothing of files; see `DESIGN.md` for the byte layout.

use rkyv::api::low::{access, to_bytes_in_with_alloc, LowSerializer};
use rkyv::rancor::{self, Failure};
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::vec::ArchivedVec;
use rkyv::Serialize;

use crate::error::{Error, Location, Result};
use crate::format::entry::{ArchivedWalEntry, BorrowedEntry, EntryKind, WalEntry};
pub use crate::format::view::EntryRef;

/// Bytes before the payload: length (4) and type (1).
pub const HEADER_LEN: usize = 5;
/// Bytes a frame adds to its payload: header and CRC.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + 4;
/// The size of the archived root: every payload ends with one.
pub const ROOT_LEN: usize = std::mem::size_of::<ArchivedWalEntry>();
/// The smallest valid payload: a root with no out-of-line data.
pub const MIN_PAYLOAD: usize = ROOT_LEN;
/// The default maximum payload length accepted by [`Decoder::default`].
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 << 20;
/// The high bit of a frame's type byte: more frames of the same unit (an
/// [`append_batch`](crate::Wal::append_batch)) follow this one. The unit
/// ends at its first frame without the bit; a reader or recovery that
/// cannot see that frame takes none of the unit (DESIGN.md §3, §10). The
/// low seven bits are the entry's tag.
pub const CONTINUES: u8 = 0x80;

// Layout facts the codec relies on (the `unaligned` rkyv format): every
// archived type has alignment 1, so a payload may start at any byte.
const _: () = assert!(std::mem::align_of::<ArchivedWalEntry>() == 1);
const _: () = assert!(ROOT_LEN == 41);
const _: () = assert!(std::mem::size_of::<ArchivedVec<u8>>() == 8);

/// Bytes of the root used by each variant (tag + fields); the rest of the
/// root is zero in canonical form. Indexed by tag.
const VARIANT_LEN: [usize; 9] = [0, 33, 41, 33, 25, 25, 33, 9, 25];

/// A decoded frame: a zero-copy view of its entry and the bytes it occupies.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The entry, borrowed from the decoded buffer.
    pub entry: EntryRef<'a>,
    /// Bytes the frame occupies (`payload + 9`).
    pub len: usize,
    /// More frames of the same unit follow ([`CONTINUES`]).
    pub continues: bool,
}

/// The serializer rkyv runs when encoding straight into a byte slice.
type SliceSerializer<'b> = LowSerializer<Buffer<'b>, SubAllocator<'b>, Failure>;

/// The payload length of `entry`'s archive.
#[inline]
pub fn payload_len(entry: &BorrowedEntry<'_>) -> usize {
    ROOT_LEN
        + match entry {
            BorrowedEntry::Write { key, value, .. } => key.len() + value.len(),
            BorrowedEntry::Delete { key, .. } => key.len(),
            BorrowedEntry::Checkpoint { active_runs, .. } => active_runs.len() * 16,
            BorrowedEntry::Raft { data, .. } => data.len(),
            _ => 0,
        }
}

/// The bytes `entry` occupies as a frame.
#[inline]
pub fn frame_len(entry: &BorrowedEntry<'_>) -> usize {
    payload_len(entry) + FRAME_OVERHEAD
}

/// Encodes `entry` as one frame at the start of `out`, CRC seeded with
/// `seed`, and returns the frame's length. Allocates nothing.
///
/// Fails with [`Error::EntryTooLarge`] if `out` is shorter than
/// [`frame_len`] or the payload does not fit a `u32`.
pub fn encode_into(entry: &BorrowedEntry<'_>, seed: u32, out: &mut [u8]) -> Result<usize> {
    encode_unit_frame(entry, seed, false, out)
}

/// [`encode_into`] for a frame of a unit of several: `continues` sets
/// [`CONTINUES`] (every frame of the unit but its last).
pub fn encode_unit_frame(
    entry: &BorrowedEntry<'_>,
    seed: u32,
    continues: bool,
    out: &mut [u8],
) -> Result<usize> {
    let payload = payload_len(entry);
    let total = payload + FRAME_OVERHEAD;
    if total > out.len() || payload > u32::MAX as usize {
        return Err(Error::EntryTooLarge {
            len: payload as u64,
            max: out.len().saturating_sub(FRAME_OVERHEAD) as u64,
        });
    }
    let frame = &mut out[..total];
    let written = serialize(entry, &mut frame[HEADER_LEN..HEADER_LEN + payload])?;
    debug_assert_eq!(written, payload, "payload_len disagrees with rkyv");
    frame[..4].copy_from_slice(&(payload as u32).to_le_bytes());
    frame[4] = entry.kind().tag() | if continues { CONTINUES } else { 0 };
    // One pass over [type][payload], which are adjacent.
    let crc = crate::format::crc::crc32c_append(seed, &frame[4..HEADER_LEN + payload]);
    frame[HEADER_LEN + payload..].copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}

fn serialize<T>(entry: &T, body: &mut [u8]) -> Result<usize>
where
    T: for<'b> Serialize<SliceSerializer<'b>>,
{
    let len = body.len();
    match to_bytes_in_with_alloc::<_, _, Failure>(entry, Buffer::from(body), SubAllocator::empty())
    {
        Ok(buf) => Ok(buf.len()),
        // Only a too-small buffer makes rkyv fail here, and `body` is sized
        // exactly; report it as a size problem rather than panic.
        Err(_) => Err(Error::EntryTooLarge {
            len: len as u64,
            max: len as u64,
        }),
    }
}

/// Encodes `entry` as one frame appended to `out` (reusing its capacity),
/// CRC seeded with `seed`; returns the frame's length.
pub fn encode_to_vec(entry: &BorrowedEntry<'_>, seed: u32, out: &mut Vec<u8>) -> Result<usize> {
    let start = out.len();
    let total = frame_len(entry);
    out.resize(start + total, 0);
    let result = encode_into(entry, seed, &mut out[start..]);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `entry` as one frame with seed 0, in a new vector.
///
/// # Panics
///
/// If the payload exceeds `u32::MAX` bytes, which no frame can hold.
pub fn encode_entry(entry: &WalEntry) -> Vec<u8> {
    let mut out = Vec::new();
    encode_to_vec(&entry.as_borrowed(), 0, &mut out).expect("entry payload exceeds u32::MAX bytes");
    out
}

/// Decodes frames from byte slices, with a limit on the payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    max_payload: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Decoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes before
    /// looking at them.
    pub const fn new(max_payload: u32) -> Self {
        Decoder { max_payload }
    }

    /// The payload limit.
    pub const fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Decodes the frame that starts at `buf[pos..]`, its CRC seeded with `seed`.
    ///
    /// Returns `Ok(None)` where the length field is zero (or fewer than four
    /// bytes remain and they are all zero): the end of the frames. Errors
    /// carry `pos` as their offset. Never panics, whatever `buf` holds.
    #[inline]
    pub fn decode<'a>(&self, buf: &'a [u8], pos: usize, seed: u32) -> Result<Option<Frame<'a>>> {
        self.decode_inner(buf, pos, Some(seed))
    }

    /// [`decode`](Self::decode) without the CRC check, for a frame whose CRC
    /// [`verify_ahead`](Self::verify_ahead) has just checked, in the same
    /// immutable bytes, at the same position and with the same seed. Every
    /// other check runs.
    #[inline(always)]
    pub(crate) fn decode_crc_verified<'a>(
        &self,
        buf: &'a [u8],
        pos: usize,
    ) -> Result<Option<Frame<'a>>> {
        self.decode_inner(buf, pos, None)
    }

    #[inline(always)]
    fn decode_inner<'a>(
        &self,
        buf: &'a [u8],
        pos: usize,
        seed: Option<u32>,
    ) -> Result<Option<Frame<'a>>> {
        let at = || Location::at(pos as u64);
        let rest = buf.get(pos..).unwrap_or(&[]);
        let Some(len_bytes) = rest.first_chunk::<4>() else {
            if rest.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err(Error::Truncated {
                at: at(),
                needed: 4,
                available: rest.len() as u64,
            });
        };
        let len = u32::from_le_bytes(*len_bytes);
        if len == 0 {
            return Ok(None);
        }
        if len > self.max_payload {
            return Err(Error::TooLarge {
                at: at(),
                len: len.into(),
                max: self.max_payload.into(),
            });
        }
        let len = len as usize;
        if len < MIN_PAYLOAD {
            return Err(Error::TooSmall {
                at: at(),
                len: len as u64,
                min: MIN_PAYLOAD as u64,
            });
        }
        let total = len + FRAME_OVERHEAD;
        let Some(frame) = rest.get(..total) else {
            return Err(Error::Truncated {
                at: at(),
                needed: total as u64,
                available: rest.len() as u64,
            });
        };
        let (covered, crc_bytes) = frame[4..].split_at(1 + len);
        if let Some(seed) = seed {
            let stored = u32::from_le_bytes(crc_bytes.try_into().unwrap_or([0; 4]));
            let computed = crate::format::crc::crc32c_append(seed, covered);
            if stored != computed {
                return Err(Error::Checksum {
                    at: at(),
                    expected: stored,
                    got: computed,
                });
            }
        }
        let continues = covered[0] & CONTINUES != 0;
        let tag = covered[0] & !CONTINUES;
        let payload = &covered[1..];
        if canonical_layout(tag, payload) {
            // SAFETY: `canonical_layout` proved that `payload` holds a valid
            // `ArchivedWalEntry` root in its last ROOT_LEN bytes (where
            // rkyv's `access` looks): the discriminant byte is a variant's
            // (1..=8), every field of that variant other than the vectors is
            // a byte array or a little-endian integer (`RunId`, `Uuid`,
            // `u64_le`, `u32_le`), for which every bit pattern is valid, and
            // each vector's relative pointer and length name bytes inside
            // `payload` before the root. The archive types have alignment 1
            // (asserted at the top of this module), so any address is
            // aligned. That is everything bytecheck would verify; the
            // reference, tied to `buf`'s lifetime, reads only `payload`.
            let archived = unsafe { rkyv::access_unchecked::<ArchivedWalEntry>(payload) };
            return Ok(Some(Frame {
                entry: EntryRef { archived },
                len: total,
                continues,
            }));
        }
        checked_payload(covered[0], payload, pos).map(|entry| {
            Some(Frame {
                entry,
                len: total,
                continues,
            })
        })
    }

    /// Finds the frames that follow one another from `buf[pos..]` (at most
    /// `N`), checks their CRCs together (the seed of the frame at offset `p`
    /// is `seed_of(p)`), and writes the offsets of the leading run of frames
    /// whose CRC matches to `out`, returning how many there are. Only the
    /// lengths are read to find the frames, each bounds-checked exactly as
    /// [`decode`](Self::decode) checks it; the first frame that would fail
    /// any check ends the run, so `decode` reports it as before.
    #[inline]
    pub(crate) fn verify_ahead<const N: usize>(
        &self,
        buf: &[u8],
        pos: usize,
        seed_of: impl Fn(usize) -> u32,
        out: &mut [usize; N],
    ) -> usize {
        let mut covered: [&[u8]; N] = [&[]; N];
        let mut stored = [0u32; N];
        let mut seeds = [0u32; N];
        let mut n = 0;
        let mut p = pos;
        while n < N {
            let Some(len_bytes) = buf.get(p..).and_then(|r| r.first_chunk::<4>()) else {
                break;
            };
            let len = u32::from_le_bytes(*len_bytes);
            if len == 0 || len > self.max_payload || (len as usize) < MIN_PAYLOAD {
                break;
            }
            let total = len as usize + FRAME_OVERHEAD;
            let Some(frame) = buf.get(p..).and_then(|r| r.get(..total)) else {
                break;
            };
            let (body, crc) = frame[4..].split_at(total - 8);
            covered[n] = body;
            stored[n] = u32::from_le_bytes(crc.try_into().unwrap_or([0; 4]));
            seeds[n] = seed_of(p);
            out[n] = p;
            n += 1;
            p += total;
        }
        let computed = if n == N {
            crate::format::crc::crc32c_append_n(seeds, covered)
        } else {
            let mut c = seeds;
            for i in 0..n {
                c[i] = crate::format::crc::crc32c_append(seeds[i], covered[i]);
            }
            c
        };
        (0..n).take_while(|&i| computed[i] == stored[i]).count()
    }
}

/// A forward scan's window of frames whose CRCs were checked together
/// ([`Decoder::verify_ahead`]), over one immutable buffer. A frame is
/// decoded without its own CRC check only when it starts at the next offset
/// of the window; anywhere else (a jump, a restart, the first frame that
/// failed) the window is refilled from there, and a frame that cannot join
/// it is decoded on its own, with the error [`Decoder::decode`] gives.
///
/// The buffer must be the same bytes, unchanged, for every call until
/// [`reset`](Self::reset): the caller resets it when it moves to another.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ahead {
    offs: [usize; AHEAD],
    next: u8,
    len: u8,
}

/// Frames whose CRCs a scan checks together: four chains hide the `crc32`
/// instruction's latency (three cycles, one per cycle throughput).
const AHEAD: usize = 4;

impl Ahead {
    /// Forgets the window (the scan moved to other bytes).
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.len = 0;
    }

    /// Decodes the frame at `buf[pos..]` as [`Decoder::decode`] does with
    /// seed `seed_of(pos)`; `seed_of(p)` is the seed of the frame at `p`.
    #[inline]
    pub(crate) fn decode<'a>(
        &mut self,
        dec: &Decoder,
        buf: &'a [u8],
        pos: usize,
        seed_of: impl Fn(usize) -> u32,
    ) -> Result<Option<Frame<'a>>> {
        if self.next < self.len && self.offs[self.next as usize] == pos {
            self.next += 1;
            return dec.decode_crc_verified(buf, pos);
        }
        let n = dec.verify_ahead(buf, pos, &seed_of, &mut self.offs);
        self.len = n as u8;
        if n > 0 {
            self.next = 1;
            dec.decode_crc_verified(buf, pos)
        } else {
            self.next = 0;
            dec.decode(buf, pos, seed_of(pos))
        }
    }
}

/// The payload checks after the CRC, through rkyv's validation: the slow
/// path, taken when [`canonical_layout`] does not accept the payload. It
/// gives every error its precise kind and message (and accepts what
/// `canonical_layout` would, were that ever narrower than it should be).
#[cold]
#[inline(never)]
fn checked_payload(type_byte: u8, payload: &[u8], pos: usize) -> Result<EntryRef<'_>> {
    let at = || Location::at(pos as u64);
    let tag = type_byte & !CONTINUES;
    let Some(kind) = EntryKind::from_tag(tag) else {
        return Err(Error::UnknownType {
            at: at(),
            tag: type_byte,
        });
    };
    let archived = match access::<ArchivedWalEntry, Failure>(payload) {
        Ok(archived) => archived,
        Err(_) => return Err(invalid_payload(payload, pos)),
    };
    let entry = EntryRef { archived };
    if entry.kind() != kind {
        return Err(Error::TypeMismatch {
            at: at(),
            tag,
            payload_tag: entry.kind().tag(),
        });
    }
    if let Err(detail) = check_canonical(payload, entry) {
        return Err(Error::InvalidPayload {
            at: at(),
            detail: detail.to_string(),
        });
    }
    Ok(entry)
}

/// Decodes a frame's payload through the reference path alone (rkyv's
/// bytecheck validation, then the canonical-form check), for the fuzz
/// targets to hold the fast path to: whatever [`Decoder::decode`] accepts,
/// this must accept as the same entry.
#[doc(hidden)]
pub fn decode_payload_reference(tag: u8, payload: &[u8]) -> Result<EntryRef<'_>> {
    if payload.len() < MIN_PAYLOAD {
        return Err(Error::TooSmall {
            at: Location::at(0),
            len: payload.len() as u64,
            min: MIN_PAYLOAD as u64,
        });
    }
    checked_payload(tag, payload, 0)
}

/// The vectors of each variant, indexed by tag: (offset of the vector in
/// the root, element size). A vector is a 4-byte relative pointer (from the
/// vector's own address) and a 4-byte length, little-endian.
const VECTORS: [&[(usize, usize)]; 9] = [
    &[],
    &[],                 // BeginTxn: tag, txn_id, run_id, timestamp
    &[(17, 1), (25, 1)], // Write: tag, run_id, key, value, version
    &[(17, 1)],          // Delete: tag, run_id, key, version
    &[],                 // CommitTxn: tag, txn_id, run_id
    &[],                 // AbortTxn: tag, txn_id, run_id
    &[(25, 16)],         // Checkpoint: tag, snapshot_id, version, active_runs
    &[],                 // Truncate: tag, from
    &[(17, 1)],          // Raft: tag, index, term, data
];

/// True if `payload` is exactly what the encoder writes for a `tag` entry:
/// the root's discriminant is `tag`, each vector points at the next bytes
/// of the packed out-of-line data (from byte 0, in field order), the data
/// ends where the root starts, and the root's bytes past the variant's
/// fields are zero. Reads only bytes of `payload`, all bounds-checked.
///
/// This is the canonical-form check of [`check_canonical`] done on the raw
/// bytes, and it implies everything rkyv's validation checks (see the
/// SAFETY argument at its use), so a frame it accepts needs no bytecheck.
/// Anything it rejects goes through the reference path, which decides.
#[inline(always)]
fn canonical_layout(tag: u8, payload: &[u8]) -> bool {
    let Some(root_at) = payload.len().checked_sub(ROOT_LEN) else {
        return false;
    };
    let root = &payload[root_at..];
    let t = tag as usize;
    if t == 0 || t >= VARIANT_LEN.len() || root[0] != tag {
        return false;
    }
    let mut cursor: usize = 0;
    for &(field, elem) in VECTORS[t] {
        let Some(bytes) = root.get(field..field + 8) else {
            return false;
        };
        let rel = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        // The pointer's target, from the vector's own position.
        let from = (root_at + field) as i64;
        if from + i64::from(rel) != cursor as i64 {
            return false;
        }
        let Some(end) = len.checked_mul(elem).and_then(|b| cursor.checked_add(b)) else {
            return false;
        };
        cursor = end;
    }
    cursor == root_at && root[VARIANT_LEN[t]..].iter().all(|&b| b == 0)
}

/// The cold path: validate again with an error type that explains itself.
#[cold]
fn invalid_payload(payload: &[u8], pos: usize) -> Error {
    let detail = match access::<ArchivedWalEntry, rancor::Error>(payload) {
        Err(e) => describe_addresses(&e.to_string(), payload),
        Ok(_) => "payload failed validation".to_string(),
    };
    Error::InvalidPayload {
        at: Location::at(pos as u64),
        detail,
    }
}

/// rkyv's messages name memory addresses; rewrite each one that falls in
/// (or near) the payload as an offset into it, so the message is the same on
/// every run and means something to whoever reads it.
fn describe_addresses(msg: &str, payload: &[u8]) -> String {
    let base = payload.as_ptr() as usize;
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        let digits = rest[i + 2..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - i - 2);
        let hex = &rest[i + 2..i + 2 + digits];
        match usize::from_str_radix(hex, 16) {
            Ok(addr) if digits >= 8 => {
                let off = addr as isize - base as isize;
                out.push_str(&format!("payload{off:+}"));
            }
            _ => out.push_str(&rest[i..i + 2 + digits]),
        }
        rest = &rest[i + 2 + digits..];
    }
    out.push_str(rest);
    out
}

/// Checks that `payload` is laid out exactly as the encoder lays it out:
/// out-of-line data packed in field order from byte 0, then the root, whose
/// bytes past the variant's fields are zero. Validation alone allows gaps,
/// reordering and junk padding; a canonical frame re-encodes to itself.
#[inline]
fn check_canonical(payload: &[u8], entry: EntryRef<'_>) -> Result<(), &'static str> {
    let base = payload.as_ptr() as usize;
    let mut cursor = 0usize;
    let mut take = |ptr: *const u8, len: usize| -> Result<(), &'static str> {
        if (ptr as usize).wrapping_sub(base) != cursor {
            return Err("non-canonical layout: out-of-line data is not packed in field order");
        }
        cursor += len;
        Ok(())
    };
    match entry.archived {
        ArchivedWalEntry::Write { key, value, .. } => {
            take(key.as_ptr(), key.len())?;
            take(value.as_ptr(), value.len())?;
        }
        ArchivedWalEntry::Delete { key, .. } => take(key.as_ptr(), key.len())?,
        ArchivedWalEntry::Checkpoint { active_runs, .. } => {
            take(active_runs.as_ptr().cast(), active_runs.len() * 16)?
        }
        ArchivedWalEntry::Raft { data, .. } => take(data.as_ptr(), data.len())?,
        _ => {}
    }
    if cursor + ROOT_LEN != payload.len() {
        return Err("non-canonical layout: bytes between the data and the root");
    }
    let root = &payload[cursor..];
    let used = VARIANT_LEN[entry.kind().tag() as usize];
    if root[used..].iter().any(|&b| b != 0) {
        return Err("non-canonical layout: nonzero padding in the root");
    }
    Ok(())
}

/// The decoder the log reads its own files with. `max_entry_size` limits
/// appends only: a log written under a larger limit (or with larger
/// segments and the default limit) must read back whole under a smaller
/// one, or a write open would discard its large entries as damage. The
/// bound that remains is structural: a frame must fit in the segment that
/// holds it, which every read checks before touching the payload.
pub(crate) const READ_DECODER: Decoder = Decoder::new(u32::MAX);
