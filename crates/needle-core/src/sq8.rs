//! Scalar quantization to 8 bits (`sq8`): ranges trained from the data, one `i8` code per
//! component, and the approximate distance between a quantized query and a stored code, computed
//! with the int8 kernels of `distance::int8`.
//!
//! The scheme: per dimension an offset `o_d` (the middle of the trained range `[min_d, max_d]`),
//! one scale `s` for all dimensions (the widest range over 254 steps), and
//! `c_d = clamp(round((x_d − o_d) / s), −127, 127)`, so `x_d ≈ o_d + s·c_d`. One scale for every
//! dimension keeps the distances integer kernels: `|x − y|² ≈ s²·Σ(c_x − c_y)²` and
//! `x·y ≈ Σo² + s·(a(x) + a(y)) + s²·Σ c_x·c_y` with `a(x) = Σ o_d·c_{x,d}` kept per vector.
//! Values outside the trained range are clamped.
//!
//! Owns no graph and no records: the collection decides when to train (see `collection.rs`) and
//! keeps the codes; this module only turns numbers into codes and codes into distances.

use crate::config::Distance;
use crate::distance::int8::{Int8Kernel, int8_kernels};

/// Trained ranges: the per-dimension offsets and the common scale.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sq8Ranges {
    pub offsets: Vec<f32>,
    pub scale: f32,
}

impl Sq8Ranges {
    /// Ranges covering every vector of `data` (`dim` floats each): per dimension the middle of
    /// its minimum and maximum; the scale maps the widest range onto −127..=127. Deterministic:
    /// a function of the values only. `None` when `data` is empty.
    pub fn train(data: &[f32], dim: usize) -> Option<Sq8Ranges> {
        if dim == 0 {
            return None;
        }
        Self::train_on(data.chunks_exact(dim), dim)
    }

    /// [`Sq8Ranges::train`] over vectors of `dim` floats given one by one.
    pub fn train_on<'a>(vectors: impl Iterator<Item = &'a [f32]>, dim: usize) -> Option<Sq8Ranges> {
        let mut min = vec![f32::INFINITY; dim];
        let mut max = vec![f32::NEG_INFINITY; dim];
        let mut any = false;
        for v in vectors {
            any = true;
            for d in 0..dim {
                min[d] = min[d].min(v[d]);
                max[d] = max[d].max(v[d]);
            }
        }
        if dim == 0 || !any {
            return None;
        }
        let widest = (0..dim).map(|d| max[d] - min[d]).fold(0.0f32, f32::max);
        let scale = if widest > 0.0 && widest.is_finite() {
            widest / 254.0
        } else {
            1.0
        };
        let offsets = (0..dim).map(|d| min[d] / 2.0 + max[d] / 2.0).collect();
        Some(Sq8Ranges { offsets, scale })
    }

    /// The codes of `v` appended to `codes`; returns `a(v) = Σ o_d·c_d`.
    pub fn encode_into(&self, v: &[f32], codes: &mut Vec<i8>) -> f32 {
        let mut a = 0.0f32;
        for (x, &o) in v.iter().zip(&self.offsets) {
            let c = ((x - o) / self.scale).round().clamp(-127.0, 127.0) as i8;
            a += o * f32::from(c);
            codes.push(c);
        }
        a
    }

    /// `Σ o_d²`, the constant term of the approximate inner product.
    pub fn offset_norm(&self) -> f32 {
        self.offsets.iter().map(|o| o * o).sum()
    }
}

/// A collection's quantized copy of its vectors: the ranges, one code vector and one `a(x)` per
/// slot, and the slot count when the ranges were trained (retraining is due at twice that).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sq8 {
    pub ranges: Sq8Ranges,
    pub codes: Vec<i8>,
    pub sums: Vec<f32>,
    pub trained_slots: u64,
}

impl Sq8 {
    /// Trains ranges on `vectors` (`dim` floats each, given one by one) and encodes every one
    /// of them.
    pub fn build<'a, I>(vectors: I, dim: usize) -> Option<Sq8>
    where
        I: Iterator<Item = &'a [f32]> + Clone,
    {
        let ranges = Sq8Ranges::train_on(vectors.clone(), dim)?;
        // Sized once (not grown by doubling): a retraining's codes are tens of MB.
        let mut codes = Vec::with_capacity(vectors.size_hint().0.saturating_mul(dim));
        let sums: Vec<f32> = vectors.map(|v| ranges.encode_into(v, &mut codes)).collect();
        let n = sums.len();
        Some(Sq8 {
            ranges,
            codes,
            sums,
            trained_slots: n as u64,
        })
    }

    /// Encodes one more vector (the next slot).
    pub fn push(&mut self, v: &[f32]) {
        let a = self.ranges.encode_into(v, &mut self.codes);
        self.sums.push(a);
    }

    /// Codes and sums for every slot's vector (given one by one), with these ranges.
    pub fn reencoded<'a>(
        ranges: Sq8Ranges,
        vectors: impl Iterator<Item = &'a [f32]>,
        trained_slots: u64,
    ) -> Sq8 {
        let mut codes = Vec::new();
        let sums = vectors.map(|v| ranges.encode_into(v, &mut codes)).collect();
        Sq8 {
            ranges,
            codes,
            sums,
            trained_slots,
        }
    }

    /// A query quantized for distances against these codes.
    pub fn query(&self, q: &[f32], distance: Distance) -> Sq8Query<'_> {
        let mut codes = Vec::with_capacity(q.len());
        let a = self.ranges.encode_into(q, &mut codes);
        let k = int8_kernels();
        let s = self.ranges.scale;
        Sq8Query {
            sq8: self,
            dim: q.len(),
            codes,
            kernel: match distance {
                Distance::Euclidean => k.l2,
                Distance::Cosine | Distance::DotProduct => k.dot,
            },
            l2: distance == Distance::Euclidean,
            s,
            s2: s * s,
            // Cosine: 1 − x·y; dot product: −x·y. Both: base − s·a(x) − s²·dot.
            base: match distance {
                Distance::Cosine => 1.0 - self.ranges.offset_norm() - s * a,
                _ => -self.ranges.offset_norm() - s * a,
            },
        }
    }
}

/// A quantized query: the approximate distance to any slot's code.
pub(crate) struct Sq8Query<'a> {
    sq8: &'a Sq8,
    dim: usize,
    codes: Vec<i8>,
    kernel: Int8Kernel,
    l2: bool,
    s: f32,
    s2: f32,
    base: f32,
}

impl Sq8Query<'_> {
    #[inline(always)]
    pub fn codes_of(&self, slot: u32) -> &[i8] {
        let start = slot as usize * self.dim;
        &self.sq8.codes[start..start + self.dim]
    }

    /// The approximate distance to `slot`, in the units of the collection's f32 kernel.
    #[inline(always)]
    pub fn dist(&self, slot: u32) -> f32 {
        let raw = (self.kernel)(&self.codes, self.codes_of(slot)) as f32;
        if self.l2 {
            self.s2 * raw
        } else {
            self.base - self.s * self.sq8.sums[slot as usize] - self.s2 * raw
        }
    }

    /// Hints the CPU to fetch `slot`'s codes and, outside Euclidean distance, its code sum
    /// (for exact passes, where the slots are known well ahead).
    #[inline(always)]
    pub fn prefetch_all(&self, slot: u32) {
        self.prefetch(slot);
        if !self.l2
            && let Some(sum) = self.sq8.sums.get(slot as usize)
        {
            crate::distance::prefetch((sum as *const f32).cast::<u8>());
        }
    }

    /// Hints the CPU to fetch `slot`'s codes.
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        let start = slot as usize * self.dim;
        if let Some(c) = self.sq8.codes.get(start..start + self.dim) {
            let first = c.as_ptr().cast::<u8>();
            let lines = (first as usize % 64 + c.len()).div_ceil(64).min(8);
            for line in 0..lines {
                crate::distance::prefetch(first.wrapping_add(line * 64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::kernel_for;

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// The approximate distance is close to the exact one for every metric.
    #[test]
    fn approximate_distances_are_close_to_exact_ones() {
        let dim = 64;
        let mut next = lcg(7);
        let mut data: Vec<f32> = (0..200 * dim).map(|_| next() + 0.3).collect();
        for v in data.chunks_exact_mut(dim) {
            crate::distance::normalize(v);
        }
        let sq8 = Sq8::build(data.chunks_exact(dim), dim).expect("data is not empty");
        for distance in [Distance::Cosine, Distance::Euclidean, Distance::DotProduct] {
            let exact = kernel_for(distance);
            for qi in [0usize, 17, 199] {
                let q = &data[qi * dim..(qi + 1) * dim];
                let query = sq8.query(q, distance);
                for slot in [0u32, 5, 100, 150] {
                    let e = exact(q, &data[slot as usize * dim..(slot as usize + 1) * dim]);
                    let a = query.dist(slot);
                    assert!(
                        (e - a).abs() < 0.02,
                        "{distance:?} q {qi} slot {slot}: {e} vs {a}"
                    );
                }
            }
        }
    }

    #[test]
    fn training_is_deterministic_and_clamps_outliers() {
        let data = [0.0f32, -1.0, 2.0, 1.0];
        let r = Sq8Ranges::train(&data, 2).unwrap();
        assert_eq!(r, Sq8Ranges::train(&data, 2).unwrap());
        assert_eq!(r.offsets, vec![1.0, 0.0]);
        let mut codes = Vec::new();
        r.encode_into(&[100.0, -100.0], &mut codes);
        assert_eq!(codes, vec![127, -127]);
        assert!(Sq8Ranges::train(&[], 2).is_none());
    }
}
