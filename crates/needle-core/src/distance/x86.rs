//! AVX-512 and AVX2+FMA kernels for x86_64.
//!
//! AVX2: four 8-lane accumulators (32 floats per iteration) hide the latency of dependent FMAs;
//! an 8-lane loop and a scalar loop take the tail, so any length works.
//! AVX-512 (preferred when the CPU has it): four 16-lane accumulators, chunk k into accumulator
//! k mod 4, and a short last chunk read without a scalar loop (see `avx512::load16`), so dim 50
//! is 4 independent FMAs rather than 6 + 2 scalar ones. Both sets have four-at-once forms
//! (`sum4`, bit for bit the single kernel; AVX-512's from 64 floats on), which HNSW walks use. On the Zen 4 VM of simd9
//! (docs/benchmarks-history.md, "Issue 12 (simd9)"), words-minilm searched 11-17 % faster with the
//! AVX-512 four-at-once form than with the AVX-512 kernels one at a time, the same as AVX2
//! within 5 %; glove50 the same with either set within this VM's noise.
//! Loads are unaligned: a slice may start anywhere.
//!
//! The `*_entry` functions are safe wrappers around `#[target_feature]` code. They are private
//! and reachable only through [`avx2_kernels`] and [`avx512_kernels`], which hand them out after detecting the features.

use std::arch::x86_64::{
    __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps, _mm256_add_ps,
    _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm256_sub_ps,
};

use super::Kernels;

/// The AVX-512F kernel set, if this CPU has it and the compiler is Rust 1.89 or later (the
/// AVX-512 intrinsics are stable from 1.89; older compilers build the AVX2 kernels only).
#[rustversion::since(1.89)]
pub(super) fn avx512_kernels() -> Option<Kernels> {
    avx512::kernels()
}

/// Before Rust 1.89 there are no AVX-512 kernels.
#[rustversion::before(1.89)]
pub(super) fn avx512_kernels() -> Option<Kernels> {
    None
}

/// The AVX2+FMA kernel set, if this CPU has both features.
pub(super) fn avx2_kernels() -> Option<Kernels> {
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        Some(Kernels {
            name: "avx2",
            dot: dot_entry,
            l2_squared: l2_squared_entry,
            cosine: cosine_entry,
            neg_dot: neg_dot_entry,
        })
    } else {
        None
    }
}

fn dot_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting AVX2 and FMA.
    unsafe { dot(a, b) }
}

fn l2_squared_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting AVX2 and FMA.
    unsafe { l2_squared(a, b) }
}

fn cosine_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting AVX2 and FMA.
    1.0 - unsafe { dot(a, b) }
}

fn neg_dot_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting AVX2 and FMA.
    -unsafe { dot(a, b) }
}

/// `Σ aᵢ·bᵢ` over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: the caller's contract gives AVX2 and FMA (the intrinsics are unsafe to call before
    // Rust 1.87, and the MSRV is 1.85); every load reads the 8 floats at an index j with
    // j + 8 <= n, inside both slices, which hold at least n floats.
    let mut sum = unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        while i + 32 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            acc2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                acc2,
            );
            acc3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                acc3,
            );
            i += 32;
        }
        while i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        horizontal_sum(_mm256_add_ps(
            _mm256_add_ps(acc0, acc1),
            _mm256_add_ps(acc2, acc3),
        ))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// `Σ (aᵢ − bᵢ)²` over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: as in `dot`: AVX2 and FMA by the caller's contract; every load reads the 8 floats
    // at an index j with j + 8 <= n, inside both slices.
    let mut sum = unsafe {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        while i + 32 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
            );
            let d2 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
            );
            let d3 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
            );
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            acc2 = _mm256_fmadd_ps(d2, d2, acc2);
            acc3 = _mm256_fmadd_ps(d3, d3, acc3);
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc0 = _mm256_fmadd_ps(d, d, acc0);
            i += 8;
        }
        horizontal_sum(_mm256_add_ps(
            _mm256_add_ps(acc0, acc1),
            _mm256_add_ps(acc2, acc3),
        ))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        let d = x - y;
        sum = d.mul_add(d, sum);
    }
    sum
}

/// `Σ aᵢ·bᵢ` (`L2 = false`) or `Σ (aᵢ − bᵢ)²` (`L2 = true`) for four `b`s of `a`'s length at
/// once, each bit for bit what [`dot`] or [`l2_squared`] returns: the same four accumulators per
/// vector, the same order of additions, so a search gives the same distances (and graph)
/// whichever way a distance was computed. Each 8-float block of `a` is loaded once for the four
/// vectors (faiss's batch of four in its HNSW search), and the four vectors' loads are in flight
/// together.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(
    clippy::needless_range_loop,
    reason = "j indexes the query's block and each vector's accumulator alike"
)]
unsafe fn sum4<const L2: bool>(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n = a.len();
    if b.iter().any(|v| v.len() != n) {
        // SAFETY: this function's own contract (AVX2 and FMA).
        return b.map(|v| unsafe { if L2 { l2_squared(a, v) } else { dot(a, v) } });
    }
    /// One step of an accumulator: `acc + q·x`, or `acc + (q − x)²`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[allow(
        unused_unsafe,
        reason = "value intrinsics are safe here from Rust 1.87 on, unsafe before (MSRV 1.85)"
    )]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn step<const L2: bool>(q: __m256, x: __m256, acc: __m256) -> __m256 {
        // SAFETY: the caller's contract (AVX2 and FMA); no memory is read.
        unsafe {
            if L2 {
                let d = _mm256_sub_ps(q, x);
                _mm256_fmadd_ps(d, d, acc)
            } else {
                _mm256_fmadd_ps(q, x, acc)
            }
        }
    }
    let pa = a.as_ptr();
    let pb = b.map(<[f32]>::as_ptr);
    let mut i = 0;
    let mut out = [0.0; 4];
    // SAFETY: AVX2 and FMA by the caller's contract; `a` and each `b` hold n floats, and every
    // load reads the 8 floats at an index j with j + 8 <= n (i + 8·j' for j' < 4 while
    // i + 32 <= n, then i while i + 8 <= n).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 4]; 4];
        while i + 32 <= n {
            for j in 0..4 {
                let qa = _mm256_loadu_ps(pa.add(i + 8 * j));
                for (v, p) in pb.iter().enumerate() {
                    acc[v][j] = step::<L2>(qa, _mm256_loadu_ps(p.add(i + 8 * j)), acc[v][j]);
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            let qa = _mm256_loadu_ps(pa.add(i));
            for (v, p) in pb.iter().enumerate() {
                acc[v][0] = step::<L2>(qa, _mm256_loadu_ps(p.add(i)), acc[v][0]);
            }
            i += 8;
        }
        for v in 0..4 {
            let [a0, a1, a2, a3] = acc[v];
            out[v] = horizontal_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        }
    }
    for v in 0..4 {
        let mut sum = out[v];
        for (x, y) in a[i..n].iter().zip(&b[v][i..n]) {
            sum = if L2 {
                let d = x - y;
                d.mul_add(d, sum)
            } else {
                x.mul_add(*y, sum)
            };
        }
        out[v] = sum;
    }
    out
}

fn dot4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: only `batch_for` hands this function out, for a kernel of `avx2_kernels()`,
    // which detected AVX2 and FMA.
    unsafe { sum4::<false>(a, b) }
}

fn l2_squared4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as `dot4_entry`.
    unsafe { sum4::<true>(a, b) }
}

fn cosine4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as `dot4_entry`.
    unsafe { sum4::<false>(a, b) }.map(|d| 1.0 - d)
}

fn neg_dot4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    // SAFETY: as `dot4_entry`.
    unsafe { sum4::<false>(a, b) }.map(|d| -d)
}

/// The four-at-once form of `kernel` when it is one of the AVX2 or AVX-512 kernels (bit for bit
/// the same distances), else `None`.
pub(super) fn batch_for(kernel: super::Kernel) -> Option<super::Kernel4> {
    avx2_batch_for(kernel).or_else(|| avx512_batch_for(kernel))
}

/// The fewest dimensions at which `kernel`'s four-at-once form is worth calling: 64 for the
/// AVX-512 kernels (below that their `sum4` makes four single calls, and the walk measured
/// 4-6 % faster calling the single kernel directly, docs/benchmarks-history.md, speed10), 0
/// for the AVX2 ones (their four-at-once form has no such floor).
pub(super) fn batch_from(kernel: super::Kernel) -> usize {
    if avx512_batch_for(kernel).is_some() {
        64
    } else {
        0
    }
}

#[rustversion::since(1.89)]
fn avx512_batch_for(kernel: super::Kernel) -> Option<super::Kernel4> {
    avx512::batch_for(kernel)
}

#[rustversion::before(1.89)]
fn avx512_batch_for(_kernel: super::Kernel) -> Option<super::Kernel4> {
    None
}

/// The four-at-once form of `kernel` when it is one of the AVX2 kernels.
fn avx2_batch_for(kernel: super::Kernel) -> Option<super::Kernel4> {
    type K = super::Kernel;
    let k = kernel as usize;
    let pairs: [(K, super::Kernel4); 4] = [
        (dot_entry, dot4_entry),
        (l2_squared_entry, l2_squared4_entry),
        (cosine_entry, cosine4_entry),
        (neg_dot_entry, neg_dot4_entry),
    ];
    pairs
        .into_iter()
        .find(|&(one, _)| one as usize == k)
        .map(|(_, four)| four)
}

/// The sum of the eight lanes of `v`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[allow(
    unused_unsafe,
    reason = "value intrinsics are safe here from Rust 1.87 on, unsafe before (MSRV 1.85)"
)]
#[target_feature(enable = "avx2,fma")]
unsafe fn horizontal_sum(v: __m256) -> f32 {
    // SAFETY: the caller's contract (AVX2); no memory is read.
    unsafe {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
        _mm_cvtss_f32(single)
    }
}

#[rustversion::since(1.89)]
mod avx512 {
    //! The AVX-512F kernels: 16 floats a chunk; chunk k adds into accumulator k mod 4, so four
    //! chunks in a row are independent FMAs (at 50 dimensions: three whole chunks and a masked
    //! one, four FMAs with no chain); the last chunk, if short, is one masked load.
    //! [`sum4`] computes four distances with the same operations in the same order.

    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
        _mm512_maskz_mov_ps, _mm512_reduce_add_ps, _mm512_setzero_ps, _mm512_sub_ps,
    };

    use super::super::{Kernel, Kernel4, Kernels};

    /// The AVX-512F kernel set, if this CPU has it.
    pub(in super::super) fn kernels() -> Option<Kernels> {
        if std::arch::is_x86_feature_detected!("avx512f") {
            Some(Kernels {
                name: "avx512",
                dot: dot_entry,
                l2_squared: l2_squared_entry,
                cosine: cosine_entry,
                neg_dot: neg_dot_entry,
            })
        } else {
            None
        }
    }

    /// The four-at-once form of `kernel` when it is one of these kernels, else `None`.
    pub(super) fn batch_for(kernel: Kernel) -> Option<Kernel4> {
        let k = kernel as usize;
        let pairs: [(Kernel, Kernel4); 4] = [
            (dot_entry, dot4_entry),
            (l2_squared_entry, l2_squared4_entry),
            (cosine_entry, cosine4_entry),
            (neg_dot_entry, neg_dot4_entry),
        ];
        pairs
            .into_iter()
            .find(|&(one, _)| one as usize == k)
            .map(|(_, four)| four)
    }

    fn dot_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only `kernels()` hands this function out, after detecting AVX-512F.
        unsafe { sum::<false>(a, b) }
    }

    fn l2_squared_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only `kernels()` hands this function out, after detecting AVX-512F.
        unsafe { sum::<true>(a, b) }
    }

    fn cosine_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only `kernels()` hands this function out, after detecting AVX-512F.
        1.0 - unsafe { sum::<false>(a, b) }
    }

    fn neg_dot_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only `kernels()` hands this function out, after detecting AVX-512F.
        -unsafe { sum::<false>(a, b) }
    }

    fn dot4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: only `batch_for` hands this function out, for a kernel of `kernels()`, which
        // detected AVX-512F.
        unsafe { sum4::<false>(a, b) }
    }

    fn l2_squared4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: as `dot4_entry`.
        unsafe { sum4::<true>(a, b) }
    }

    fn cosine4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: as `dot4_entry`.
        unsafe { sum4::<false>(a, b) }.map(|d| 1.0 - d)
    }

    fn neg_dot4_entry(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: as `dot4_entry`.
        unsafe { sum4::<false>(a, b) }.map(|d| -d)
    }

    /// The 16 floats at `p + i`; when fewer than 16 are left before `n`, those and zeros in
    /// the other lanes. A short last chunk of a slice of at least 16 floats is read as the slice's
    /// last 16 floats, the lanes already counted zeroed: a masked load past the slice's end
    /// would touch the next cache line, and sq8's one-line blocks measured 30 % slower searches
    /// with masked int8 tails reading into the next block (docs/benchmarks-history.md, simd9).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `i < n` and `p` points to at least `n` floats.
    #[inline(always)]
    unsafe fn load16(p: *const f32, i: usize, n: usize) -> __m512 {
        let rest = n - i;
        // SAFETY: the caller's contract: AVX-512F, and every lane read lies in 0..n, inside the slice (the
        // 16 floats at i, or at n − 16 ≥ 0, or the masked lanes i..n, whose masked-off lanes
        // are neither read nor able to fault: AVX-512 fault suppression).
        unsafe {
            if rest >= 16 {
                _mm512_loadu_ps(p.add(i))
            } else if n >= 16 {
                let fresh = (0xffff_u32 << (16 - rest)) as __mmask16;
                _mm512_maskz_mov_ps(fresh, _mm512_loadu_ps(p.add(n - 16)))
            } else {
                _mm512_maskz_loadu_ps(((1u32 << rest) - 1) as __mmask16, p.add(i))
            }
        }
    }

    // `step`, `finish` and `load16` are `unsafe fn`s with `inline(always)` rather than
    // `#[target_feature]` functions, which cannot be `inline(always)`: left as calls, each
    // `__m512` would go through memory (at 50 dimensions the four-at-once kernel measured 2.5x
    // slower that way).

    /// One chunk's step: `acc + q·x` or `acc + (q − x)²`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn step<const L2: bool>(q: __m512, x: __m512, acc: __m512) -> __m512 {
        // SAFETY: the caller's contract (AVX-512F); no memory is read.
        unsafe {
            if L2 {
                let d = _mm512_sub_ps(q, x);
                _mm512_fmadd_ps(d, d, acc)
            } else {
                _mm512_fmadd_ps(q, x, acc)
            }
        }
    }

    /// The sum of the four accumulators' lanes, in one fixed order.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline(always)]
    unsafe fn finish(acc: [__m512; 4]) -> f32 {
        // SAFETY: the caller's contract (AVX-512F); no memory is read.
        unsafe {
            _mm512_reduce_add_ps(_mm512_add_ps(
                _mm512_add_ps(acc[0], acc[1]),
                _mm512_add_ps(acc[2], acc[3]),
            ))
        }
    }

    /// `Σ aᵢ·bᵢ` (`L2 = false`) or `Σ (aᵢ − bᵢ)²` (`L2 = true`) over the common prefix.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: AVX-512F by the caller's contract; i + 16·j + 16 <= i + 64 <= n,
                // inside both slices.
                *acc = unsafe {
                    step::<L2>(
                        _mm512_loadu_ps(pa.add(i + 16 * j)),
                        _mm512_loadu_ps(pb.add(i + 16 * j)),
                        *acc,
                    )
                };
            }
            i += 64;
        }
        // Fewer than 64 left: at most four chunks, the last one masked if short.
        for acc in &mut acc {
            if i >= n {
                break;
            }
            // SAFETY: AVX-512F by the caller's contract; i < n, and both slices hold n floats.
            *acc = unsafe { step::<L2>(load16(pa, i, n), load16(pb, i, n), *acc) };
            i += 16;
        }
        // SAFETY: AVX-512F by the caller's contract.
        unsafe { finish(acc) }
    }

    /// [`sum`] from `a` to four `b`s at once, bit for bit the same four results: the same
    /// chunks into the same accumulators in the same order. Each chunk of `a` is loaded once.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum4<const L2: bool>(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        let n = a.len();
        if n < 64 || b.iter().any(|v| v.len() != n) {
            // Under 64 floats, one at a time: at 50 dimensions the four-at-once loop took
            // 47-65 ns for four distances against 8.5-14 ns for one (criterion, two runs;
            // glove50 searches the same within this VM's noise either way).
            // SAFETY: this function's own contract (AVX-512F).
            return b.map(|v| unsafe { sum::<L2>(a, v) });
        }
        let pa = a.as_ptr();
        let pb = b.map(<[f32]>::as_ptr);
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        let mut i = 0;
        while i + 64 <= n {
            for j in 0..4 {
                // SAFETY: i + 16·j + 16 <= n, inside `a` and every `b` (all n floats long).
                let q = unsafe { _mm512_loadu_ps(pa.add(i + 16 * j)) };
                for (acc, p) in acc.iter_mut().zip(&pb) {
                    // SAFETY: AVX-512F by the caller's contract; the load as for `q`.
                    acc[j] = unsafe { step::<L2>(q, _mm512_loadu_ps(p.add(i + 16 * j)), acc[j]) };
                }
            }
            i += 64;
        }
        for j in 0..4 {
            if i >= n {
                break;
            }
            // SAFETY: AVX-512F by the caller's contract; i < n, and `a` and every `b` hold n
            // floats.
            let q = unsafe { load16(pa, i, n) };
            for (acc, p) in acc.iter_mut().zip(&pb) {
                // SAFETY: as for `q`.
                acc[j] = unsafe { step::<L2>(q, load16(*p, i, n), acc[j]) };
            }
            i += 16;
        }
        // No closure here: a closure would not inherit AVX-512F, and `finish` would not inline.
        let mut out = [0.0; 4];
        for (out, acc) in out.iter_mut().zip(acc) {
            // SAFETY: AVX-512F by the caller's contract.
            *out = unsafe { finish(acc) };
        }
        out
    }
}
