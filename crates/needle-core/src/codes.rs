//! Per-vector int8 codes for the exact passes of filtered searches on f32 collections.
//!
//! A collection without quantization that has payload indexes keeps, beside its f32 vectors,
//! one 64-byte-aligned block per slot holding everything a distance needs: the vector's int8
//! codes (`round(x / s)`, `s = max|x| / 127`), then, in the block's last eight bytes, the scale
//! `s` and the vector's exact squared norm as little-endian f32. A match then costs
//! `ceil((dim + 8) / 64)` cache lines — one at 50 dims, against four for its f32 vector — and an
//! exact pass over the matches of a filter (a posting list, a bitmap) is bound by those lines.
//! The pass keeps the [`keep`] best by code distance and re-ranks them by their f32 vectors
//! (in memory), so the results are the f32 ones whenever the true top k lie among them.
//!
//! The code of a vector is a pure function of the vector (no trained ranges): every replica
//! computes the same bytes whatever its insert history, and nothing is persisted; the codes are
//! built when a collection gets its first index and when a checkpoint is opened, kept by every
//! write, and dropped with the last index (see `Collection::sync_codes`).

use crate::config::Distance;
use crate::distance::int8::{Int8Kernel, Int8RunKernel, int8_kernels};
use crate::hnsw::{Flat, Plain, Query};

/// One cache line of a slot's block.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Line([i8; 64]);

// Every bit pattern is a valid `Line` (64 bytes, no padding).
impl Plain for Line {}

/// The bytes at the end of each block that hold the scale and the squared norm.
const SCALARS: usize = 8;

/// How many candidates an exact pass on the codes keeps for the f32 re-rank: `max(2·k, k + 8)`.
/// At k 10, 20 gave the same recall as 42 (`max(4·k, k + 32)`) on glove50, words-minilm and
/// glove50-10k (1.0 on every exact pass) and ran `in_1%` 1.06–1.28× faster: a pass's top-k
/// insertions grow with the width, `R · (1 + ln(matches / R))`.
pub(crate) fn keep(k: usize) -> usize {
    k.saturating_mul(2).max(k.saturating_add(8))
}

/// Fewer matches than this are passed on the f32 vectors: the re-rank of [`keep`] candidates
/// (~4 µs at k 10 on glove50) costs more than the codes save (~13 ns a match).
pub(crate) const MIN_MATCHES: usize = 400;

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether filtered searches use the codes (on unless a test or bench turned them off).
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the codes' use by filtered searches off or on, process-wide (they are kept either way).
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed)
}

/// The blocks of every slot (tombstoned ones included, as for the f32 vectors).
#[derive(Clone)]
pub(crate) struct InlineCodes {
    dim: usize,
    /// Cache lines per slot.
    lines: usize,
    /// On transparent huge pages where the system allows (as the vectors): an exact pass
    /// touches its matches' blocks at random, and with 4 KB pages nearly each also misses
    /// the TLB.
    data: Flat<Line>,
}

impl std::fmt::Debug for InlineCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineCodes")
            .field("dim", &self.dim)
            .field("slots", &self.slots())
            .finish()
    }
}

impl InlineCodes {
    pub fn new(dim: usize) -> Self {
        InlineCodes {
            dim,
            lines: (dim + SCALARS).div_ceil(64),
            data: Flat::new(),
        }
    }

    /// The codes of `slots` vectors of `dim` floats each, encoded on all threads (the result
    /// does not depend on their number); `None` when the system refuses the memory (they are
    /// an optimisation: searches then read the f32 vectors).
    pub fn build<'v>(
        dim: usize,
        vector: impl Fn(usize) -> &'v [f32] + Sync,
        slots: usize,
    ) -> Option<Self> {
        use rayon::prelude::*;
        let mut c = InlineCodes::new(dim);
        let lines = c.lines;
        c.data.try_reserve(slots.checked_mul(lines)?).ok()?;
        c.data.resize(slots * lines, Line([0; 64]));
        c.data
            .par_chunks_mut(lines.max(1) * 256)
            .enumerate()
            .for_each(|(chunk, blocks)| {
                for (i, block) in blocks.chunks_mut(lines).enumerate() {
                    encode(vector(chunk * 256 + i), block);
                }
            });
        Some(c)
    }

    /// The dimensions of the vectors encoded.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Appends a copy of `from`'s block of `slot` (codes of the same dimensions), into room
    /// reserved before ([`InlineCodes::try_reserve`]).
    pub fn push_copy(&mut self, from: &InlineCodes, slot: u32) {
        debug_assert_eq!(self.lines, from.lines);
        let start = slot as usize * from.lines;
        self.data
            .extend_from_slice(&from.data[start..start + from.lines]);
    }

    /// Cache lines per slot.
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn slots(&self) -> usize {
        self.data.len() / self.lines.max(1)
    }

    /// Gives back the memory past the last block ([`Flat::release_tail`]).
    pub fn release_tail(&self) {
        self.data.release_tail();
    }

    /// Bytes of memory the codes take.
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<Line>()
    }

    pub fn push(&mut self, v: &[f32]) {
        let at = self.data.len();
        self.data.resize(at + self.lines, Line([0; 64]));
        encode(v, &mut self.data[at..]);
    }

    pub fn try_reserve(&mut self, slots: usize) -> std::io::Result<()> {
        self.data.try_reserve(slots.saturating_mul(self.lines))
    }

    /// Slot `slot`'s block, as bytes.
    #[inline(always)]
    fn block(&self, slot: u32) -> &[i8] {
        let start = slot as usize * self.lines;
        let lines = &self.data[start..start + self.lines];
        // SAFETY: `Line` is `repr(C)` over `[i8; 64]` with size 64 (no padding), so `lines` is
        // `64 · lines.len()` initialised, contiguous `i8`s, borrowed for as long as `self`.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), lines.len() * 64) }
    }

    /// Whether these are the codes of the given vectors, byte for byte.
    pub fn encode_the_same<'v>(
        &self,
        vector: impl Fn(usize) -> &'v [f32] + Sync,
        slots: usize,
    ) -> bool {
        InlineCodes::build(self.dim, vector, slots)
            .is_some_and(|fresh| fresh.lines == self.lines && fresh.data == self.data)
    }

    /// Slot `slot`'s block, as stored (for tests: compared with a fresh encoding).
    #[cfg(test)]
    pub fn block_bytes(&self, slot: u32) -> Vec<i8> {
        self.block(slot).to_vec()
    }

    /// A query against these codes, in the units of the collection's f32 kernel.
    pub fn query(&self, q: &[f32], distance: Distance) -> CodesQuery<'_> {
        let (mut codes, scale, norm) = quantize(q);
        // Zeros up to a multiple of 64 (never past the block): the kernel then runs whole
        // SIMD steps with no scalar tail, and the block's bytes past `dim` (zero padding, the
        // scalars) are multiplied by zero.
        codes.resize(self.dim.div_ceil(64) * 64, 0);
        CodesQuery {
            codes: self,
            q: codes,
            q_scale: scale,
            q_norm: norm,
            distance,
            kernel: int8_kernels().dot,
            run: int8_kernels().dot_run,
        }
    }
}

/// The scale, codes and squared norm of `v`.
fn quantize(v: &[f32]) -> (Vec<i8>, f32, f32) {
    // Eight lanes, so that the compiler vectorises the loops (a query is quantized per search).
    let (mut max8, mut norm8) = ([0.0f32; 8], [0.0f32; 8]);
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let a = c[i].abs();
            max8[i] = if a > max8[i] { a } else { max8[i] };
            norm8[i] += c[i] * c[i];
        }
    }
    for (i, x) in rest.iter().enumerate() {
        max8[i] = max8[i].max(x.abs());
        norm8[i] += x * x;
    }
    let max = max8.iter().fold(0.0f32, |m, &x| m.max(x));
    let norm = norm8.iter().sum::<f32>();
    if max == 0.0 || !max.is_finite() {
        return (vec![0; v.len()], 0.0, norm);
    }
    let scale = max / 127.0;
    let inv = 127.0 / max;
    // Rounded half away from zero by truncation (`as` saturates; |x · inv| <= 127 + ε).
    let codes = v
        .iter()
        .map(|x| {
            let y = x * inv;
            (y + 0.5f32.copysign(y)) as i8
        })
        .collect();
    (codes, scale, norm)
}

/// Writes `v`'s block (`blocks` holds its lines).
fn encode(v: &[f32], blocks: &mut [Line]) {
    let (codes, scale, norm) = quantize(v);
    let mut bytes = vec![0i8; blocks.len() * 64];
    bytes[..codes.len()].copy_from_slice(&codes);
    let end = bytes.len();
    for (i, b) in scale
        .to_le_bytes()
        .into_iter()
        .chain(norm.to_le_bytes())
        .enumerate()
    {
        bytes[end - SCALARS + i] = b as i8;
    }
    for (line, chunk) in blocks.iter_mut().zip(bytes.chunks(64)) {
        line.0.copy_from_slice(chunk);
    }
}

/// A quantized query: the approximate distance to any slot, from its block alone.
pub(crate) struct CodesQuery<'a> {
    codes: &'a InlineCodes,
    q: Vec<i8>,
    q_scale: f32,
    q_norm: f32,
    distance: Distance,
    kernel: Int8Kernel,
    run: Int8RunKernel,
}

/// The most slots [`CodesQuery::dist_run`] takes at once.
pub(crate) const RUN: usize = 64;

impl CodesQuery<'_> {
    /// The same query against other codes of the same dimensions (a value-ordered copy,
    /// [`crate::ordered_codes`]): `dist(i)` then reads their block `i`.
    pub fn on<'b>(&self, codes: &'b InlineCodes) -> CodesQuery<'b> {
        CodesQuery {
            codes,
            q: self.q.clone(),
            q_scale: self.q_scale,
            q_norm: self.q_norm,
            distance: self.distance,
            kernel: self.kernel,
            run: self.run,
        }
    }

    /// The distances of the `out.len()` (at most [`RUN`]) consecutive slots from `first`,
    /// each what [`Query::dist`] gives it, bit for bit (the same integer dot product, the
    /// same float steps: [`CodesQuery::finish`]), by one call of the run kernel: the query's
    /// chunks are loaded once for several slots. Slots past the codes: `out` as it was.
    pub fn dist_run(&self, first: u32, out: &mut [f32]) {
        let n = out.len().min(RUN);
        let stride = self.codes.lines * 64;
        let start = first as usize * self.codes.lines;
        let Some(lines) = self.codes.data.get(start..start + n * self.codes.lines) else {
            return;
        };
        // SAFETY: as in `InlineCodes::block`: `n · lines` contiguous lines of 64 `i8`s.
        let bytes =
            unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), lines.len() * 64) };
        let mut dots = [0i32; RUN];
        // The query is at most a block long (`query` pads it to the codes' 64-byte steps).
        (self.run)(&self.q, bytes, stride, &mut dots[..n]);
        for (j, (d, &dot)) in out.iter_mut().zip(&dots[..n]).enumerate() {
            *d = self.finish(&bytes[j * stride..(j + 1) * stride], dot);
        }
    }

    /// The distance to the slot of `block`, whose codes' dot product with the query's is
    /// `dot`.
    #[inline(always)]
    fn finish(&self, block: &[i8], dot: i32) -> f32 {
        let end = block.len();
        let f = |at: usize| {
            f32::from_le_bytes([
                block[at] as u8,
                block[at + 1] as u8,
                block[at + 2] as u8,
                block[at + 3] as u8,
            ])
        };
        let (scale, norm) = (f(end - SCALARS), f(end - SCALARS + 4));
        let ip = scale * self.q_scale * dot as f32;
        match self.distance {
            Distance::Cosine => 1.0 - ip,
            Distance::DotProduct => -ip,
            Distance::Euclidean => norm + self.q_norm - 2.0 * ip,
        }
    }

    /// Hints the CPU to fetch every line of `slot`'s block.
    #[inline(always)]
    pub fn prefetch_all(&self, slot: u32) {
        let start = slot as usize * self.codes.lines;
        if let Some(lines) = self.codes.data.get(start..start + self.codes.lines) {
            for line in lines {
                crate::distance::prefetch((line as *const Line).cast::<u8>());
            }
        }
    }
}

impl Query for CodesQuery<'_> {
    #[inline(always)]
    fn dist(&self, slot: u32) -> f32 {
        let block = self.codes.block(slot);
        self.finish(block, (self.kernel)(&self.q, &block[..self.q.len()]))
    }

    #[inline(always)]
    fn prefetch(&self, slot: u32) {
        self.prefetch_all(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::kernel_for;

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// `dist_run` gives each slot of a run what `dist` gives it, bit for bit, for every metric
    /// and width, runs of every length up to [`RUN`] from every start.
    #[test]
    fn run_distances_are_the_single_ones_bit_for_bit() {
        for dim in [1, 50, 56, 57, 100, 384] {
            let mut r = lcg(dim as u64 + 7);
            let slots = 2 * RUN + 5;
            let mut codes = InlineCodes::new(dim);
            for _ in 0..slots {
                codes.push(&(0..dim).map(|_| r()).collect::<Vec<f32>>());
            }
            let q: Vec<f32> = (0..dim).map(|_| r()).collect();
            for distance in [Distance::Euclidean, Distance::DotProduct, Distance::Cosine] {
                let cq = codes.query(&q, distance);
                for first in [0, 1, 7, RUN - 1, RUN + 5] {
                    for n in [1, 2, 15, 16, 17, 33, RUN] {
                        let n = n.min(slots - first);
                        let mut got = vec![f32::NAN; n];
                        cq.dist_run(first as u32, &mut got);
                        for (j, d) in got.iter().enumerate() {
                            let want = cq.dist((first + j) as u32);
                            assert_eq!(
                                d.to_bits(),
                                want.to_bits(),
                                "dim {dim} {distance:?} first {first} n {n} slot {}: {d} against {want}",
                                first + j
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn code_distances_are_close_to_exact_ones_for_every_metric_and_width() {
        for dim in [1, 7, 50, 56, 57, 100, 384] {
            let mut r = lcg(dim as u64);
            let vecs: Vec<Vec<f32>> = (0..50).map(|_| (0..dim).map(|_| r()).collect()).collect();
            let mut codes = InlineCodes::new(dim);
            vecs.iter().for_each(|v| codes.push(v));
            let built = InlineCodes::build(dim, |s| &vecs[s][..], vecs.len()).unwrap();
            assert_eq!(codes.lines, (dim + 8).div_ceil(64));
            for s in 0..vecs.len() as u32 {
                assert_eq!(
                    codes.block_bytes(s),
                    built.block_bytes(s),
                    "dim {dim} slot {s}"
                );
            }
            let q: Vec<f32> = (0..dim).map(|_| r()).collect();
            for distance in [Distance::Euclidean, Distance::DotProduct, Distance::Cosine] {
                let exact = kernel_for(distance);
                let cq = codes.query(&q, distance);
                for (s, v) in vecs.iter().enumerate() {
                    let want = exact(&q, v);
                    let got = cq.dist(s as u32);
                    let norms = (q.iter().map(|x| x * x).sum::<f32>()
                        * v.iter().map(|x| x * x).sum::<f32>())
                    .sqrt();
                    assert!(
                        (want - got).abs() <= 0.03 * norms + 1e-6,
                        "dim {dim} {distance:?} slot {s}: {got} against {want}"
                    );
                }
            }
        }
    }
}
