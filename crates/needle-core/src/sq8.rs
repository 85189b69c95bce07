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
            let c = self.code(*x, o);
            a += o * f32::from(c);
            codes.push(c);
        }
        a
    }

    /// Whether value `x`, in a dimension of offset `o`, lies outside the trained range (its code
    /// clamped, off by more than s/2).
    #[inline(always)]
    fn clamps(&self, x: f32, o: f32) -> bool {
        ((x - o) / self.scale).abs() > 127.0
    }

    /// The code of value `x` in a dimension of offset `o`.
    #[inline(always)]
    fn code(&self, x: f32, o: f32) -> i8 {
        ((x - o) / self.scale).round().clamp(-127.0, 127.0) as i8
    }

    /// `Σ o_d²`, the constant term of the approximate inner product.
    pub fn offset_norm(&self) -> f32 {
        self.offsets.iter().map(|o| o * o).sum()
    }
}

/// One cache line: [`Sq8`]'s blocks are kept in lines, so that the first starts on one.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Line([u8; 64]);

const LINE: usize = std::mem::size_of::<Line>();

/// Lines of codes the walk keeps prefetched ahead of its distances ([`Sq8Query::lookahead`]):
/// at 50 dimensions a block is one line, so all of an expanded node's fresh neighbours (up to
/// 32) are prefetched at once, where the f32 walk prefetches 4 vectors ahead (a burst of its
/// 4-line vectors fills the miss queue). glove50 sq8, CPU per query, 3-4 interleaved passes,
/// two sittings: 4 ahead 51.8-58.1 / 78.2-89.1 / 131.3-147.0 µs at ef 32 / 64 / 128; all
/// fresh ones 44.2-48.9 / 69.4-73.3 / 112.5-122.1 (−11 % to −18 %; 8 or 12 ahead: between).
/// At 384 dimensions (7 lines a block: 4 ahead, as before) all at once was 7-15 % slower.
const PREFETCH_AHEAD_LINES: usize = 32;

/// The bytes of `lines`.
fn lines_mut(lines: &mut [Line]) -> &mut [u8] {
    // SAFETY: `Line` is `repr(C)` over `[u8; 64]` (no padding), and any byte value is valid.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * LINE) }
}

/// Bytes per slot for `dim` codes and their sum: one whole cache line where both fit in one
/// (up to 60 dimensions), so a distance reads exactly one line; otherwise packed, 4-byte
/// aligned (at 384 dimensions line-aligned blocks measured no faster and took 15 % more
/// memory: docs/benchmarks-history.md, issue 12 round five).
fn block_bytes(dim: usize) -> usize {
    if 4 + dim <= LINE {
        LINE
    } else {
        (4 + dim).next_multiple_of(4)
    }
}

/// A collection's quantized copy of its vectors: the ranges, one block per slot, and the slot
/// count when the ranges were trained (retraining is due at twice that).
///
/// A slot's block holds `a(x)` (an `f32`, little-endian) in its first 4 bytes and the slot's
/// `dim` codes right after ([`block_bytes`]): a distance reads the lines of one block and
/// nothing else (at 50 dimensions one line, where separate code and sum arrays touched two or
/// three). The layout is in memory only: checkpoints keep the ranges, and the codes are
/// computed again at open.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sq8 {
    pub ranges: Sq8Ranges,
    /// The blocks, slot after slot, from the first line's first byte; the last line padded.
    lines: Vec<Line>,
    /// Bytes per block ([`block_bytes`]).
    stride: usize,
    /// Slots encoded.
    slots: usize,
    /// One bit per slot: a component lay outside the trained range, so its code was clamped and
    /// its error is not bounded by s/2 (such slots are always re-ranked: see
    /// [`Sq8Query::error_sigma`]). Vectors written after training can be; retraining clears it.
    clamped: Vec<u64>,
    pub trained_slots: u64,
}

impl Sq8 {
    /// No codes yet, for vectors of `ranges.offsets.len()` dimensions.
    fn empty(ranges: Sq8Ranges, trained_slots: u64) -> Sq8 {
        let stride = block_bytes(ranges.offsets.len());
        Sq8 {
            ranges,
            lines: Vec::new(),
            stride,
            slots: 0,
            clamped: Vec::new(),
            trained_slots,
        }
    }

    /// Lines holding `slots` blocks.
    fn lines_for(&self, slots: usize) -> usize {
        slots.saturating_mul(self.stride).div_ceil(LINE)
    }

    /// Trains ranges on `vectors` (`dim` floats each, given one by one) and encodes every one
    /// of them.
    pub fn build<'a, I>(vectors: I, dim: usize) -> Option<Sq8>
    where
        I: Iterator<Item = &'a [f32]> + Clone,
    {
        let ranges = Sq8Ranges::train_on(vectors.clone(), dim)?;
        let mut sq8 = Sq8::reencoded(ranges, vectors, 0);
        sq8.trained_slots = sq8.len() as u64;
        Some(sq8)
    }

    /// Slots encoded.
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Room for `slots` more slots, or the allocator's refusal.
    pub fn try_reserve(&mut self, slots: usize) -> Result<(), std::collections::TryReserveError> {
        let need = self.lines_for(self.slots.saturating_add(slots));
        self.lines
            .try_reserve(need.saturating_sub(self.lines.len()))?;
        let words = self.slots.saturating_add(slots).div_ceil(64);
        self.clamped
            .try_reserve(words.saturating_sub(self.clamped.len()))
    }

    /// Encodes one more vector (the next slot).
    pub fn push(&mut self, v: &[f32]) {
        let at = self.slots * self.stride;
        let slot = self.slots;
        self.slots += 1;
        if self.clamped.len() * 64 < self.slots {
            self.clamped.push(0);
        }
        let mut out_of_range = false;
        self.lines
            .resize(self.lines_for(self.slots), Line([0; LINE]));
        let block = &mut lines_mut(&mut self.lines)[at..at + self.stride];
        let (sum, codes) = block.split_at_mut(4);
        let mut a = 0.0f32;
        for ((x, &o), b) in v.iter().zip(&self.ranges.offsets).zip(codes) {
            let c = self.ranges.code(*x, o);
            out_of_range |= self.ranges.clamps(*x, o);
            a += o * f32::from(c);
            *b = c as u8;
        }
        sum.copy_from_slice(&a.to_le_bytes());
        if out_of_range {
            self.clamped[slot / 64] |= 1 << (slot % 64);
        }
    }

    /// Codes and sums for every slot's vector (given one by one), with these ranges.
    pub fn reencoded<'a>(
        ranges: Sq8Ranges,
        vectors: impl Iterator<Item = &'a [f32]>,
        trained_slots: u64,
    ) -> Sq8 {
        let mut sq8 = Sq8::empty(ranges, trained_slots);
        // Sized once (not grown by doubling): a retraining's codes are tens of MB.
        sq8.lines
            .reserve_exact(sq8.lines_for(vectors.size_hint().0));
        for v in vectors {
            sq8.push(v);
        }
        sq8
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `Line` is `repr(C)` over `[u8; 64]`: no padding, every byte initialised.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.lines.len() * LINE)
        }
    }

    /// `slot`'s block: `a(x)`, then the codes, then padding.
    #[inline(always)]
    fn block(&self, slot: u32) -> &[u8] {
        let start = slot as usize * self.stride;
        &self.bytes()[start..start + self.stride]
    }

    /// `slot`'s codes.
    #[inline(always)]
    pub fn codes(&self, slot: u32) -> &[i8] {
        let b = &self.block(slot)[4..4 + self.ranges.offsets.len()];
        // SAFETY: `i8` and `u8` have the same size and alignment, and every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
    }

    /// Whether a component of `slot`'s vector lay outside the trained range.
    #[inline(always)]
    pub fn is_clamped(&self, slot: u32) -> bool {
        let slot = slot as usize;
        self.clamped
            .get(slot / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// `slot`'s `a(x) = Σ o_d·c_d`.
    #[inline(always)]
    pub fn sum(&self, slot: u32) -> f32 {
        let b = self.block(slot);
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A query quantized for distances against these codes.
    pub fn query(&self, q: &[f32], distance: Distance) -> Sq8Query<'_> {
        let mut codes = Vec::with_capacity(q.len());
        let a = self.ranges.encode_into(q, &mut codes);
        let k = int8_kernels();
        let s = self.ranges.scale;
        // Outside the trained range a component's error is not bounded by s/2.
        let clamped = q
            .iter()
            .zip(&self.ranges.offsets)
            .any(|(x, &o)| self.ranges.clamps(*x, o));
        Sq8Query {
            sq8: self,
            distance,
            clamped,
            codes,
            kernel: match distance {
                Distance::Euclidean => k.l2,
                Distance::Cosine | Distance::DotProduct => k.dot,
            },
            l2: distance == Distance::Euclidean,
            lookahead: (PREFETCH_AHEAD_LINES / self.stride.div_ceil(LINE))
                .max(crate::hnsw::LOOKAHEAD),
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
    distance: Distance,
    /// Whether a component of the query lay outside the trained range (its code clamped).
    clamped: bool,
    codes: Vec<i8>,
    kernel: Int8Kernel,
    l2: bool,
    /// How many fresh neighbours ahead the walk prefetches their blocks.
    lookahead: usize,
    s: f32,
    s2: f32,
    base: f32,
}

impl Sq8Query<'_> {
    /// The approximate distance to `slot`, in the units of the collection's f32 kernel.
    #[inline(always)]
    pub fn dist(&self, slot: u32) -> f32 {
        let raw = (self.kernel)(&self.codes, self.sq8.codes(slot)) as f32;
        if self.l2 {
            self.s2 * raw
        } else {
            self.base - self.s * self.sq8.sum(slot) - self.s2 * raw
        }
    }

    /// The standard deviation of `dist(slot) − exact distance` for `slot` at approximate
    /// distance `approx`, or `None` where it is not known. Each component of the query and of a
    /// stored vector is off by at most s/2, spread evenly (variance s²/12), so for unit vectors
    /// (cosine) `q·x − q̂·x̂ = q·(x − x̂) + (q − q̂)·x̂` has variance `s²·(|q|² + |x̂|²)/12 ≈
    /// s²/6`; for Euclidean `|q̂ − x̂|² − |q − x|² ≈ 2(q − x)·(e_q − e_x)`, variance
    /// `4·d·s²/6`. Unknown for dot product (stored vectors of any length) and where the query
    /// or the slot's vector lies outside the trained ranges. Measured on glove50 (s = 0.0062): σ 0.00255 against
    /// s/√6 = 0.00254, the largest error of 6,000 4.4σ.
    pub fn error_sigma(&self, slot: u32, approx: f32) -> Option<f32> {
        if self.clamped || self.sq8.is_clamped(slot) {
            return None;
        }
        let unit = self.s / 6f32.sqrt();
        match self.distance {
            Distance::Cosine => Some(unit),
            Distance::Euclidean => Some(2.0 * approx.max(0.0).sqrt() * unit),
            Distance::DotProduct => None,
        }
    }

    /// How many fresh neighbours ahead of the distance being computed the walk prefetches
    /// their blocks: [`PREFETCH_AHEAD_LINES`] lines' worth, at least the f32 walk's 4.
    #[inline(always)]
    pub fn lookahead(&self) -> usize {
        self.lookahead
    }

    /// Hints the CPU to fetch every line `dist(slot)` reads (the same as
    /// [`Sq8Query::prefetch`]: a slot's code sum is in its block).
    #[inline(always)]
    pub fn prefetch_all(&self, slot: u32) {
        self.prefetch(slot);
    }

    /// Hints the CPU to fetch `slot`'s block (its codes and code sum).
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        if (slot as usize) < self.sq8.slots {
            let start = slot as usize * self.sq8.stride;
            let first = self.sq8.lines.as_ptr().cast::<u8>().wrapping_add(start);
            let lines = (start % LINE + self.sq8.stride).div_ceil(LINE).min(8);
            for line in 0..lines {
                crate::distance::prefetch(first.wrapping_add(line * LINE));
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

    /// Every slot's block holds its own codes and code sum, whatever the dimension (below, at
    /// and past a line's 60 codes); up to 60 dimensions, each block is one cache line.
    #[test]
    fn each_slot_keeps_its_codes_and_sum_in_one_aligned_block() {
        for dim in [1usize, 50, 59, 60, 61, 64, 124, 125, 384] {
            let mut next = lcg(dim as u64);
            let data: Vec<f32> = (0..37 * dim).map(|_| next()).collect();
            let mut sq8 = Sq8::build(data.chunks_exact(dim).take(30), dim).expect("not empty");
            for v in data.chunks_exact(dim).skip(30) {
                sq8.push(v);
            }
            assert_eq!(sq8.len(), 37);
            let stride = if dim <= 60 {
                64
            } else {
                (dim + 4).next_multiple_of(4)
            };
            assert_eq!(sq8.stride, stride, "dim {dim}");
            for (slot, v) in data.chunks_exact(dim).enumerate() {
                let mut codes = Vec::new();
                let a = sq8.ranges.encode_into(v, &mut codes);
                let slot = slot as u32;
                assert_eq!(sq8.codes(slot), codes.as_slice(), "dim {dim} slot {slot}");
                assert_eq!(
                    sq8.sum(slot).to_bits(),
                    a.to_bits(),
                    "dim {dim} slot {slot}"
                );
                let at = sq8.block(slot).as_ptr() as usize;
                assert_eq!(at % 4, 0);
                if dim <= 60 {
                    assert_eq!(at % 64, 0, "dim {dim}: one line per slot");
                }
            }
            let again = Sq8::reencoded(sq8.ranges.clone(), data.chunks_exact(dim), 30);
            assert_eq!(again, sq8, "dim {dim}");
        }
    }

    /// `error_sigma` is the spread of `dist − exact` measured on random unit vectors (within a
    /// quarter), for cosine and Euclidean; unknown for dot product and clamped queries.
    #[test]
    fn the_error_sigma_is_the_measured_spread() {
        let dim = 50;
        let mut next = lcg(11);
        let mut data: Vec<f32> = (0..2_000 * dim).map(|_| next()).collect();
        for v in data.chunks_exact_mut(dim) {
            crate::distance::normalize(v);
        }
        let (queries, base) = data.split_at(200 * dim);
        let sq8 = Sq8::build(base.chunks_exact(dim), dim).expect("data is not empty");
        for distance in [Distance::Cosine, Distance::Euclidean] {
            let exact = kernel_for(distance);
            let (mut sum2, mut predicted2, mut n) = (0.0f64, 0.0f64, 0.0f64);
            for q in queries.chunks_exact(dim) {
                let query = sq8.query(q, distance);
                if query.clamped {
                    continue;
                }
                for slot in (0..1_800u32).step_by(7) {
                    let e = exact(q, &base[slot as usize * dim..(slot as usize + 1) * dim]);
                    let a = query.dist(slot);
                    let sigma = query.error_sigma(slot, a).expect("known for this distance");
                    sum2 += f64::from(a - e).powi(2);
                    predicted2 += f64::from(sigma).powi(2);
                    n += 1.0;
                }
            }
            assert!(n > 10_000.0, "{distance:?}: {n} pairs");
            let ratio = (sum2 / predicted2).sqrt();
            assert!(
                (0.75..1.25).contains(&ratio),
                "{distance:?}: measured / predicted spread {ratio}"
            );
        }
        let q = &queries[..dim];
        assert!(
            sq8.query(q, Distance::DotProduct)
                .error_sigma(0, 0.5)
                .is_none()
        );
        let far: Vec<f32> = q.iter().map(|x| x * 100.0).collect();
        assert!(
            sq8.query(&far, Distance::Cosine)
                .error_sigma(0, 0.5)
                .is_none()
        );
        // A stored vector outside the ranges: its error is not known either.
        let mut sq8 = sq8;
        let slot = sq8.len() as u32;
        sq8.push(&far);
        assert!(sq8.is_clamped(slot) && !sq8.is_clamped(slot - 1) && !sq8.is_clamped(0));
        let query = sq8.query(q, Distance::Cosine);
        assert!(query.error_sigma(slot, 0.5).is_none());
        assert!(query.error_sigma(slot - 1, 0.5).is_some());
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
