//! A small, seedable, platform-independent pseudo-random generator (SplitMix64).
//!
//! The simulator must write the same bytes for the same seed on every machine and
//! every run, so it cannot depend on a crate whose stream may change between
//! versions; SplitMix64 is a dozen lines, statistically good enough for synthetic
//! data, and lets every entity (person, enterprise, row) derive its own
//! independent stream from `(seed, stream, index)` without holding any state.

/// SplitMix64 (Steele, Lea & Flood 2014).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// An independent stream for entity `index` of kind `stream` under `seed`.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Rng {
        Rng(mix(seed.wrapping_add(mix(
            stream.wrapping_mul(GOLDEN) ^ mix(index.wrapping_add(GOLDEN))
        ))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`0` when `n == 0`), by multiply-shift (no modulo bias worth noting).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1).max(1) as u64;
        lo + self.below(span) as i64
    }

    /// True with probability `ppm` parts per million (integers only: no floating
    /// point, so the stream is identical on every platform).
    pub fn ppm(&mut self, ppm: u32) -> bool {
        self.below(1_000_000) < u64::from(ppm)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn streams_are_deterministic_and_independent() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(7, 1, 2).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut r = Rng::derive(7, 1, 2);
        let first = r.next_u64();
        assert_ne!(first, r.next_u64());
        assert_ne!(Rng::derive(7, 1, 3).next_u64(), first);
        assert_ne!(Rng::derive(8, 1, 2).next_u64(), first);
        // Pinned values (checked against an independent implementation): the
        // streams must never change, or every seed's exports would.
        assert_eq!(Rng::derive(0, 0, 0).next_u64(), 0x2ce8_09ae_01ca_b7d7);
        let mut r = Rng::derive(42, 1, 7);
        assert_eq!(
            [r.next_u64(), r.next_u64()],
            [0xad5f_a3e7_0b13_1506, 0xca66_905a_ccc3_835c]
        );
        let mut r = Rng::derive(1, 2, 3);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            assert!((5..=9).contains(&r.range(5, 9)));
        }
    }
}
