//! The one seeded generator of the tests (xorshift64*): every random choice
//! a test makes comes from a seed it prints or names, so every run of it
//! does the same. Shared by path with the Raft crate's tests and the
//! recovery unit tests.

/// A small deterministic generator (xorshift64*).
#[derive(Clone)]
pub struct Rng(u64);

#[allow(dead_code)] // Each test binary uses some of it.
impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, n)` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `n` printable (never zero) bytes.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| b'!' + self.below(90) as u8).collect()
    }
}
