//! SplitMix64: the one seeded generator of the project (household worlds, RISE dataset order,
//! tiny test models, the trainer's initialisation, data order and dropout). Integer-only state,
//! no library generator, so a seed gives the same numbers on every platform and version.

/// SplitMix64 (Steele, Lea and Flood; Vigna's reference constants): a tiny, fast, portable
/// pseudo-random generator. Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by multiply-and-shift (Lemire), so without a
    /// modulo's bias worth speaking of.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with `p` percent chance.
    pub fn percent(&mut self, p: u8) -> bool {
        self.below(100) < usize::from(p)
    }

    /// A float in [0, 1) from the top 24 bits.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// The current state (to save and restore a stream).
    pub fn state(&self) -> u64 {
        self.state
    }
}

/// A seed from bytes (FNV-1a, then one SplitMix64 step to spread it): the same bytes give the
/// same seed on every platform and version.
pub fn seed_from(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    SplitMix64::new(h).next_u64()
}

/// Fisher-Yates driven by SplitMix64 from `seed` (index by modulo): the same order for the
/// same seed everywhere.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outputs_match_the_reference_implementation() {
        // Vigna's splitmix64.c from seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn shuffle_is_a_permutation_and_depends_on_the_seed() {
        let identity: [u32; 50] = core::array::from_fn(|i| i as u32);
        let (mut a, mut b) = (identity, identity);
        shuffle(&mut a, 1);
        shuffle(&mut b, 2);
        assert_ne!(a, b);
        assert_ne!(a, identity);
        a.sort_unstable();
        assert_eq!(a, identity);
    }
}
