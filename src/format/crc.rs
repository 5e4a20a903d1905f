//! CRC-32C of several independent buffers at once.
//!
//! The `crc32c` crate computes one buffer's CRC. Below 768 bytes it runs a
//! single chain of `crc32` instructions, each waiting for the previous
//! one's result (three cycles of latency, one of throughput on x86), so a
//! 160-byte frame costs about three times what the CPU could do. A scan
//! knows several frames ahead of time, and their CRCs are independent:
//! [`crc32c_append_n`] runs one chain per frame, interleaved, so the chains
//! overlap and the hardware's throughput, not its latency, sets the pace.
//!
//! The result is exactly `crc32c::crc32c_append(seed, buf)` for each pair
//! (tested below against the crate); on a CPU without SSE 4.2, or another
//! architecture, it is computed that way.

/// Buffers shorter than this take one interleave-free chain of 8-byte
/// steps ([`crc32c_append_n`] with one buffer); longer ones go to the
/// crate, whose three-way split pays off from about three 256-byte blocks.
const SHORT: usize = 768;

/// The CRC-32C of `buf` appended to `seed`: `crc32c::crc32c_append`, with
/// short buffers (a frame, typically) taken without the crate's alignment
/// prologue and epilogue of single-byte steps, which for a 160-byte frame
/// are half the instructions and a third of the latency.
#[inline]
pub fn crc32c_append(seed: u32, buf: &[u8]) -> u32 {
    if buf.len() < SHORT {
        crc32c_append_n([seed], [buf])[0]
    } else {
        crc32c::crc32c_append(seed, buf)
    }
}

/// For each `i`, the CRC-32C of `bufs[i]` appended to `seeds[i]`: the same
/// value as `crc32c::crc32c_append(seeds[i], bufs[i])`, computed with the
/// `N` chains interleaved.
#[inline]
pub fn crc32c_append_n<const N: usize>(seeds: [u32; N], bufs: [&[u8]; N]) -> [u32; N] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `append_n` needs SSE 4.2 and nothing else; the CPU has it
        // (just detected at run time).
        return unsafe { x86::append_n(seeds, bufs) };
    }
    let mut out = seeds;
    for (crc, buf) in out.iter_mut().zip(bufs) {
        *crc = crc32c::crc32c_append(*crc, buf);
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use zerocopy::FromBytes;

    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

    /// `buf`'s leading whole 8-byte words, as words (zerocopy: `[u8; 8]`
    /// has alignment 1, so the cast needs no unsafe and cannot fail).
    #[inline(always)]
    fn words(buf: &[u8]) -> &[[u8; 8]] {
        <[[u8; 8]]>::ref_from_bytes(&buf[..buf.len() & !7]).unwrap_or(&[])
    }

    /// See [`super::crc32c_append_n`]. The CRC state is kept inverted, as
    /// the instruction expects (CRC-32C's pre- and post-inversion); the
    /// 8-byte words of the common prefix run interleaved, then each buffer's
    /// rest (its own further words, then 4, 2 and 1 bytes) runs on its own
    /// chain, which the CPU still overlaps with the other chains' rests.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE 4.2.
    ///
    /// The `unsafe` blocks around the intrinsics are needed before Rust
    /// 1.87 (our MSRV is 1.85) and redundant after, hence the `allow`.
    #[target_feature(enable = "sse4.2")]
    #[allow(unused_unsafe)]
    pub(super) unsafe fn append_n<const N: usize>(seeds: [u32; N], bufs: [&[u8]; N]) -> [u32; N] {
        // Plain loops, not `array::map`: its closures are not inlined into
        // a `target_feature` function.
        let mut state = [0u64; N];
        let mut all: [&[[u8; 8]]; N] = [&[]; N];
        let mut common = if N == 0 { 0 } else { usize::MAX };
        for i in 0..N {
            state[i] = u64::from(!seeds[i]);
            all[i] = words(bufs[i]);
            common = common.min(all[i].len());
        }
        let mut heads: [&[[u8; 8]]; N] = [&[]; N];
        for i in 0..N {
            heads[i] = &all[i][..common];
        }
        #[allow(clippy::needless_range_loop)] // `j` indexes every buffer
        for j in 0..common {
            for i in 0..N {
                // SAFETY: this function runs only where SSE 4.2 is present
                // (its contract), which is all the intrinsic needs.
                state[i] = unsafe { _mm_crc32_u64(state[i], u64::from_le_bytes(heads[i][j])) };
            }
        }
        let mut out = [0u32; N];
        for i in 0..N {
            let buf = bufs[i];
            let mut crc = state[i];
            for w in &all[i][common..] {
                // SAFETY: as above.
                crc = unsafe { _mm_crc32_u64(crc, u64::from_le_bytes(*w)) };
            }
            let mut crc = crc as u32;
            let rest = &buf[all[i].len() * 8..];
            let (four, rest) = rest.split_at(rest.len() & 4);
            if let Ok(b) = <[u8; 4]>::try_from(four) {
                // SAFETY: as above.
                crc = unsafe { _mm_crc32_u32(crc, u32::from_le_bytes(b)) };
            }
            let (two, rest) = rest.split_at(rest.len() & 2);
            if let Ok(b) = <[u8; 2]>::try_from(two) {
                // SAFETY: as above.
                crc = unsafe { _mm_crc32_u16(crc, u16::from_le_bytes(b)) };
            }
            if let Some(&b) = rest.first() {
                // SAFETY: as above.
                crc = unsafe { _mm_crc32_u8(crc, b) };
            }
            out[i] = !crc;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::crc32c_append_n;
    use proptest::prelude::*;

    fn reference<const N: usize>(seeds: [u32; N], bufs: [&[u8]; N]) -> [u32; N] {
        let mut out = seeds;
        for i in 0..N {
            out[i] = crc32c::crc32c_append(seeds[i], bufs[i]);
        }
        out
    }

    #[test]
    fn every_length_up_to_300_matches_the_crate() {
        let data: Vec<u8> = (0..320u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for a in 0..300 {
            let b = 299 - a;
            let bufs = [
                &data[..a],
                &data[3..3 + b],
                &data[7..7 + a.min(b)],
                &data[1..1 + a],
            ];
            let seeds = [a as u32, 0, u32::MAX, 0x9E37_79B9];
            assert_eq!(
                crc32c_append_n(seeds, bufs),
                reference(seeds, bufs),
                "lengths {a}/{b}"
            );
            let two = [bufs[0], bufs[1]];
            assert_eq!(crc32c_append_n([1, 2], two), reference([1, 2], two));
        }
        assert_eq!(crc32c_append_n::<0>([], []), [0u32; 0]);
    }

    #[test]
    fn single_buffers_of_every_length_match_the_crate() {
        let data: Vec<u8> = (0..2010u32)
            .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
            .collect();
        for len in (0..1000).chain([1500, 1999]) {
            for start in [0, 1, 5] {
                let b = &data[start..start + len];
                assert_eq!(
                    super::crc32c_append(7, b),
                    crc32c::crc32c_append(7, b),
                    "{len}@{start}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_crate(
            bufs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 3),
            seeds in any::<[u32; 3]>(),
        ) {
            let b = [&bufs[0][..], &bufs[1][..], &bufs[2][..]];
            prop_assert_eq!(crc32c_append_n(seeds, b), reference(seeds, b));
        }
    }
}
