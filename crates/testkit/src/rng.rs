//! A tiny deterministic generator for crash tests: seeded from the clock (or
//! `WEFT_TEST_SEED`) and printed, so a failing run can be replayed exactly.

/// Xorshift64; good enough to scatter kill points, not for anything else.
pub struct Rng(u64);

impl Rng {
    /// Seeds from `WEFT_TEST_SEED` or the clock, and prints the seed under `test`.
    pub fn new(test: &str) -> Self {
        let seed = std::env::var("WEFT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: WEFT_TEST_SEED={seed}");
        Self(seed | 1)
    }

    /// A number below `below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}
