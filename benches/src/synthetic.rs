//! Generated vectors for when no real data set is at hand: seeded, clustered, deterministic.

use crate::vecs::Vecs;

/// `n` vectors of `dim` values around 32 random centres (so that neighbourhoods exist, unlike
/// uniform noise), the same for the same `seed` on every machine.
///
/// ```
/// let v = needle_benches::synthetic_vectors(100, 8, 7);
/// assert_eq!((v.len(), v.dim()), (100, 8));
/// assert_eq!(v, needle_benches::synthetic_vectors(100, 8, 7));
/// ```
pub fn synthetic_vectors(n: usize, dim: usize, seed: u64) -> Vecs<f32> {
    const CENTRES: usize = 32;
    let dim = dim.max(1);
    let mut rng = SplitMix64(seed);
    let centres: Vec<f32> = (0..CENTRES * dim).map(|_| rng.next_f32()).collect();
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next_u64() % CENTRES as u64) as usize;
        let centre = &centres[c * dim..(c + 1) * dim];
        data.extend(centre.iter().map(|x| x + 0.35 * rng.next_f32()));
    }
    Vecs::from_flat(dim, data).expect("n * dim values make n rows of dim > 0")
}

/// splitmix64 (Steele, Lea & Flood): tiny and good enough for test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}
