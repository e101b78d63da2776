//! Random delays (probe start, shared answers, known-answer waits): xorshift64*, seeded from the
//! OS once. Not for anything secret; tests seed it themselves.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_os() -> Self {
        Rng::seeded(getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15))
    }

    pub(crate) fn seeded(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration in `[lo, hi]` milliseconds.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}
