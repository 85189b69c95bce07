//! Int8 kernels for scalar-quantized vectors (`sq8`): `Σ aᵢ·bᵢ` and `Σ (aᵢ − bᵢ)²` over `i8`
//! codes, exact in `i32`.
//!
//! Implementations: scalar (the reference), AVX2 (sign-extend to `i16`, `vpmaddwd`), AVX-512BW
//! (the same on 512 bits) with VNNI for the dot product (`vpdpbusd`, which multiplies unsigned by
//! signed bytes: `a` is biased by +128 and `128·Σb` subtracted), and NEON (`vmull_s8`,
//! `vpadalq_s16`). The best set is chosen once per process. Every kernel is exact, so each is
//! tested for equality with the scalar one.
//!
//! Each set also has a *run* kernel for the dot product ([`Int8RunKernel`]): one query against
//! a run of equally spaced codes (the blocks of [`crate::codes`]), several codes per inner step
//! so that each of the query's SIMD chunks is loaded once for all of them and their sums are
//! reduced together (AVX2: 8 codes, `vphaddd`; AVX-512 VNNI: 16, one `vpdpbusd` a chunk with the
//! *code* biased so that the correction `128·Σq` is the query's, computed once; NEON: 8).
//!
//! Bounds: a product is at most 128² and a squared difference 255², so sums stay inside `i32` for
//! vectors of up to 33,000 dimensions; longer slices are a caller bug (dimensions are capped at
//! the API edge) and would wrap, never panic. Slices of different lengths: only the common prefix
//! is read.

use std::sync::OnceLock;

use super::Simd;

/// An int8 kernel.
pub type Int8Kernel = fn(&[i8], &[i8]) -> i32;

/// `Σ aᵢ·bᵢ`, one element at a time: the reference.
pub fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).fold(0i32, |s, (&x, &y)| {
        s.wrapping_add(i32::from(x) * i32::from(y))
    })
}

/// A run kernel: `out[j] = Σᵢ q[i]·codes[j·stride + i]` for every `j < out.len()` and
/// `i < q.len()` (the dot products of `q` with `out.len()` codes `stride` bytes apart), each
/// equal to [`dot_i8_scalar`]'s. Panics (a caller bug) unless `codes` holds them all: see
/// [`run_fits`].
pub type Int8RunKernel = fn(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]);

/// Whether `codes` holds `n` codes of `len` bytes, `stride` bytes apart.
pub fn run_fits(len: usize, codes: usize, stride: usize, n: usize) -> bool {
    n == 0
        || (n - 1)
            .checked_mul(stride)
            .and_then(|at| at.checked_add(len))
            .is_some_and(|end| end <= codes)
}

/// Panics (a caller bug, see [`Int8RunKernel`]) unless `codes` holds `n` codes of `q.len()`
/// bytes, `stride` bytes apart: the check of every run kernel's entry point, before any SIMD load.
#[track_caller]
fn assert_run_fits(q: &[i8], codes: &[i8], stride: usize, n: usize) {
    assert!(
        run_fits(q.len(), codes.len(), stride, n),
        "a run of {n} codes of {} bytes, {stride} apart, in {} bytes",
        q.len(),
        codes.len()
    );
}

/// [`Int8RunKernel`] one code at a time: the reference.
pub fn dot_i8_run_scalar(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
    assert_run_fits(q, codes, stride, out.len());
    for (j, o) in out.iter_mut().enumerate() {
        let at = j * stride;
        *o = dot_i8_scalar(q, &codes[at..at + q.len()]);
    }
}

/// `Σ (aᵢ − bᵢ)²`, one element at a time: the reference.
pub fn l2_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).fold(0i32, |s, (&x, &y)| {
        let d = i32::from(x) - i32::from(y);
        s.wrapping_add(d * d)
    })
}

/// The scalar kernel for the tail that a SIMD loop leaves.
#[allow(
    dead_code,
    reason = "used by the SIMD kernels of some architectures only"
)]
fn tail<const L2: bool>(a: &[i8], b: &[i8]) -> i32 {
    if L2 {
        l2_i8_scalar(a, b)
    } else {
        dot_i8_scalar(a, b)
    }
}

/// One implementation of both kernels, with the instruction set's name (for benches and logs).
#[derive(Debug, Clone, Copy)]
pub struct Int8Kernels {
    /// `Σ aᵢ·bᵢ`.
    pub dot: Int8Kernel,
    /// `Σ (aᵢ − bᵢ)²`.
    pub l2: Int8Kernel,
    /// `dot` over a run of codes.
    pub dot_run: Int8RunKernel,
    /// Which instruction set: `scalar`, `avx2`, `avx512bw`, `avx512vnni`, `neon`.
    pub name: &'static str,
    /// The `NEEDLE_SIMD` set it belongs to.
    pub simd: Simd,
}

const SCALAR: Int8Kernels = Int8Kernels {
    dot: dot_i8_scalar,
    l2: l2_i8_scalar,
    dot_run: dot_i8_run_scalar,
    name: "scalar",
    simd: Simd::Scalar,
};

/// Every kernel set this CPU can run, best last (for tests and benches).
pub fn available() -> Vec<Int8Kernels> {
    #[allow(unused_mut, reason = "pushed to only on some architectures")]
    let mut all = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    all.extend(x86::available());
    #[cfg(target_arch = "aarch64")]
    all.extend(neon::available());
    all
}

/// The int8 kernel set of this process, chosen on first use: the best of the f32 kernels' set
/// (the CPU's best, or `NEEDLE_SIMD`'s; see [`Simd`]).
pub fn int8_kernels() -> &'static Int8Kernels {
    static K: OnceLock<Int8Kernels> = OnceLock::new();
    K.get_or_init(|| best_within(super::simd()))
}

/// The best int8 set of `simd`, else of a lower one (an AVX-512F CPU without AVX-512BW runs the
/// AVX2 int8 kernels beside the AVX-512F f32 ones).
fn best_within(simd: Simd) -> Int8Kernels {
    fn rank(simd: Simd) -> u8 {
        match simd {
            Simd::Scalar => 0,
            Simd::Avx2 | Simd::Neon => 1,
            Simd::Avx512 => 2,
        }
    }
    available()
        .into_iter()
        .rev()
        .find(|k| rank(k.simd) <= rank(simd))
        .unwrap_or(SCALAR)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 and AVX-512 int8 kernels. The `*_entry` wrappers are handed out only by
    //! [`available`], after detecting the features they need.
    use std::arch::x86_64::*;

    use super::{Int8Kernels, Simd};

    pub(super) fn available() -> Vec<Int8Kernels> {
        let mut v = Vec::new();
        if is_x86_feature_detected!("avx2") {
            v.push(Int8Kernels {
                dot: dot_avx2_entry,
                l2: l2_avx2_entry,
                dot_run: dot_run_avx2_entry,
                name: "avx2",
                simd: Simd::Avx2,
            });
        }
        v.extend(avx512::available());
        v
    }

    fn dot_avx2_entry(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: handed out by `available` only after detecting AVX2.
        unsafe { sum_avx2::<false>(a, b) }
    }
    fn l2_avx2_entry(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: handed out by `available` only after detecting AVX2.
        unsafe { sum_avx2::<true>(a, b) }
    }
    /// Also the run kernel of the AVX-512BW set (without VNNI), where AVX2 is detected.
    pub(super) fn dot_run_avx2_entry(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
        super::assert_run_fits(q, codes, stride, out.len());
        // SAFETY: handed out by `available` only after detecting AVX2; the run fits in `codes`.
        unsafe { dot_run_avx2(q, codes, stride, out) }
    }

    /// The sum of the eight `i32` lanes of `v`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[allow(
        unused_unsafe,
        reason = "value intrinsics are safe here from Rust 1.87 on, unsafe before (MSRV 1.85)"
    )]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum256(v: __m256i) -> i32 {
        // SAFETY: the caller's contract (AVX2; the intrinsics are unsafe to call before Rust
        // 1.87, and the MSRV is 1.85); no memory is read.
        unsafe {
            let lo = _mm256_castsi256_si128(v);
            let hi = _mm256_extracti128_si256::<1>(v);
            let s = _mm_add_epi32(lo, hi);
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }
    }

    /// `Σ aᵢ·bᵢ` (`L2 = false`) or `Σ (aᵢ − bᵢ)²` (`L2 = true`): bytes sign-extended to `i16`,
    /// then `vpmaddwd` sums pairs of products into `i32` lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn sum_avx2<const L2: bool>(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        // SAFETY: AVX2 by the caller's contract; each load reads the 16 bytes at an index j
        // with j + 16 <= n, inside both slices.
        let main = unsafe {
            let mut acc = _mm256_setzero_si256();
            while i + 16 <= n {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
                let (x, y) = if L2 {
                    let d = _mm256_sub_epi16(x, y);
                    (d, d)
                } else {
                    (x, y)
                };
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
                i += 16;
            }
            hsum256(acc)
        };
        main.wrapping_add(super::tail::<L2>(&a[i..n], &b[i..n]))
    }

    /// [`super::Int8RunKernel`] on AVX2: eight codes per step, each 16-byte chunk of `q`
    /// sign-extended once for the eight, their `i32` lanes summed together by [`hsum8`]; the
    /// codes left over (fewer than eight) one at a time.
    ///
    /// # Safety
    /// The CPU must have AVX2, and [`super::run_fits`] must hold.
    #[target_feature(enable = "avx2")]
    unsafe fn dot_run_avx2(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
        let (len, n) = (q.len(), out.len());
        let whole = len / 16 * 16;
        let (pq, pc) = (q.as_ptr(), codes.as_ptr());
        let mut j = 0;
        while j + 8 <= n {
            // SAFETY: AVX2 by the caller's contract; the loads of `q` read the 16 bytes at
            // i + 16 <= whole <= len; code j + c's load reads bytes (j + c)·stride + i up to
            // (j + c)·stride + len, inside `codes` since j + c < n and the run fits.
            let sums = unsafe {
                let mut acc = [_mm256_setzero_si256(); 8];
                let mut i = 0;
                while i < whole {
                    let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i).cast()));
                    for (c, a) in acc.iter_mut().enumerate() {
                        let at = pc.add((j + c) * stride + i);
                        let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(at.cast()));
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, y));
                    }
                    i += 16;
                }
                hsum8(acc)
            };
            for (c, o) in out[j..j + 8].iter_mut().enumerate() {
                let at = (j + c) * stride;
                *o = sums[c].wrapping_add(super::dot_i8_scalar(
                    &q[whole..],
                    &codes[at + whole..at + len],
                ));
            }
            j += 8;
        }
        for (c, o) in out.iter_mut().enumerate().skip(j) {
            let at = c * stride;
            // SAFETY: AVX2 by the caller's contract.
            *o = unsafe { sum_avx2::<false>(q, &codes[at..at + len]) };
        }
    }

    /// The sums of the `i32` lanes of each of eight vectors, in order.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[allow(
        unused_unsafe,
        reason = "value intrinsics are safe here from Rust 1.87 on, unsafe before (MSRV 1.85)"
    )]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum8(v: [__m256i; 8]) -> [i32; 8] {
        // SAFETY: the caller's contract (AVX2); the store writes the 32 bytes of `out`.
        unsafe {
            // Per 128-bit half: [Σ v0, Σ v1, Σ v2, Σ v3] of that half's lanes, then the halves
            // of the two results added.
            let h0 =
                _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            let h1 =
                _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
            let s = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(h0, h1),
                _mm256_permute2x128_si256::<0x31>(h0, h1),
            );
            let mut out = [0i32; 8];
            _mm256_storeu_si256(out.as_mut_ptr().cast(), s);
            out
        }
    }

    /// The AVX-512 kernels: only from Rust 1.89, where their intrinsics are stable.
    #[rustversion::since(1.89)]
    mod avx512 {
        use std::arch::x86_64::*;

        use super::super::{Int8Kernels, Simd};

        pub(super) fn available() -> Vec<Int8Kernels> {
            let mut v = Vec::new();
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                let run: super::super::Int8RunKernel = if is_x86_feature_detected!("avx2") {
                    dot_run_avx512bw_entry
                } else {
                    super::super::dot_i8_run_scalar
                };
                v.push(Int8Kernels {
                    dot: dot_avx512bw_entry,
                    l2: l2_avx512bw_entry,
                    dot_run: run,
                    name: "avx512bw",
                    simd: Simd::Avx512,
                });
                if is_x86_feature_detected!("avx512vnni") {
                    v.push(Int8Kernels {
                        dot: dot_vnni_entry,
                        l2: l2_avx512bw_entry,
                        dot_run: dot_run_vnni_entry,
                        name: "avx512vnni",
                        simd: Simd::Avx512,
                    });
                }
            }
            v
        }

        /// Codes longer than this are done one at a time by the 512-bit kernel in the run kernel
        /// of the AVX-512BW set (no VNNI): criterion `distance/int8_run`, 64 codes, the AVX2 run
        /// kernel against 64 single 512-bit calls was 1.63× / 1.35× at 50 / 384 bytes but 0.66× at
        /// 768 (filt11, docs/benchmarks-history.md).
        const AVX512BW_RUN_MAX_LEN: usize = 512;

        /// The run kernel of the AVX-512BW set: the AVX2 run kernel for short codes, the
        /// 512-bit one-code kernel a code at a time for long ones ([`AVX512BW_RUN_MAX_LEN`]).
        fn dot_run_avx512bw_entry(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
            if q.len() <= AVX512BW_RUN_MAX_LEN {
                return super::dot_run_avx2_entry(q, codes, stride, out);
            }
            super::super::assert_run_fits(q, codes, stride, out.len());
            for (j, o) in out.iter_mut().enumerate() {
                let at = j * stride;
                *o = dot_avx512bw_entry(q, &codes[at..at + q.len()]);
            }
        }

        fn dot_avx512bw_entry(a: &[i8], b: &[i8]) -> i32 {
            // SAFETY: handed out by `available` only after detecting AVX-512F and BW.
            unsafe { sum_avx512bw::<false>(a, b) }
        }
        fn l2_avx512bw_entry(a: &[i8], b: &[i8]) -> i32 {
            // SAFETY: handed out by `available` only after detecting AVX-512F and BW.
            unsafe { sum_avx512bw::<true>(a, b) }
        }
        fn dot_vnni_entry(a: &[i8], b: &[i8]) -> i32 {
            // SAFETY: handed out by `available` only after detecting AVX-512F, BW and VNNI.
            unsafe { dot_vnni(a, b) }
        }

        /// [`sum_avx2`] on 512 bits.
        #[target_feature(enable = "avx512f,avx512bw")]
        fn sum_avx512bw<const L2: bool>(a: &[i8], b: &[i8]) -> i32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = _mm512_setzero_si512();
            let mut i = 0;
            while i + 32 <= n {
                // SAFETY: i + 32 <= n, so the 32-byte loads at i are inside both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_si256(pa.add(i).cast()),
                        _mm256_loadu_si256(pb.add(i).cast()),
                    )
                };
                let (x, y) = (_mm512_cvtepi8_epi16(x), _mm512_cvtepi8_epi16(y));
                let (x, y) = if L2 {
                    let d = _mm512_sub_epi16(x, y);
                    (d, d)
                } else {
                    (x, y)
                };
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
                i += 32;
            }
            _mm512_reduce_add_epi32(acc).wrapping_add(super::super::tail::<L2>(&a[i..n], &b[i..n]))
        }

        fn dot_run_vnni_entry(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
            super::super::assert_run_fits(q, codes, stride, out.len());
            // SAFETY: handed out by `available` only after detecting AVX-512F, BW and VNNI; the
            // run fits in `codes`.
            unsafe { dot_run_vnni(q, codes, stride, out) }
        }

        /// [`super::super::Int8RunKernel`] with `vpdpbusd`: sixteen codes per step, each
        /// 64-byte chunk of `q` loaded once for the sixteen. The *code* is the unsigned operand
        /// (`cᵢ XOR 0x80 = cᵢ + 128`), so each sum is `Σ qᵢ·cᵢ + 128·Σ qᵢ` and the correction is
        /// the query's alone: one `vpdpbusd` per chunk and code (against two in [`dot_vnni`]).
        /// The sixteen sums are reduced together ([`hsum16`]); codes left over one at a time.
        ///
        /// # Safety
        /// [`super::super::run_fits`] must hold.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        unsafe fn dot_run_vnni(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
            let (len, n) = (q.len(), out.len());
            let whole = len / 64 * 64;
            let (pq, pc) = (q.as_ptr(), codes.as_ptr());
            let bias = _mm512_set1_epi8(i8::MIN);
            let sum_q = q[..whole]
                .iter()
                .fold(0i32, |s, &x| s.wrapping_add(i32::from(x)));
            let correction = _mm512_set1_epi32(sum_q.wrapping_mul(128));
            let tail =
                |at: usize| super::super::dot_i8_scalar(&q[whole..], &codes[at + whole..at + len]);
            let mut j = 0;
            while j + 16 <= n {
                let mut acc = [_mm512_setzero_si512(); 16];
                let mut i = 0;
                while i < whole {
                    // SAFETY: i + 64 <= whole <= len, inside `q`.
                    let y = unsafe { _mm512_loadu_si512(pq.add(i).cast()) };
                    for (c, a) in acc.iter_mut().enumerate() {
                        // SAFETY: code j + c's bytes (j + c)·stride + i .. + 64 lie below
                        // (j + c)·stride + len, inside `codes` since j + c < n and the run fits.
                        let x = unsafe { _mm512_loadu_si512(pc.add((j + c) * stride + i).cast()) };
                        *a = _mm512_dpbusd_epi32(*a, _mm512_xor_si512(x, bias), y);
                    }
                    i += 64;
                }
                let sums = _mm512_sub_epi32(hsum16(acc), correction);
                let mut lanes = [0i32; 16];
                // SAFETY: writes the 64 bytes of `lanes`.
                unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), sums) };
                for (c, o) in out[j..j + 16].iter_mut().enumerate() {
                    *o = lanes[c].wrapping_add(tail((j + c) * stride));
                }
                j += 16;
            }
            for (c, o) in out.iter_mut().enumerate().skip(j) {
                let at = c * stride;
                let mut acc = _mm512_setzero_si512();
                let mut i = 0;
                while i < whole {
                    // SAFETY: as above, for one code.
                    let (x, y) = unsafe {
                        (
                            _mm512_loadu_si512(pc.add(at + i).cast()),
                            _mm512_loadu_si512(pq.add(i).cast()),
                        )
                    };
                    acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(x, bias), y);
                    i += 64;
                }
                *o = _mm512_reduce_add_epi32(acc)
                    .wrapping_sub(sum_q.wrapping_mul(128))
                    .wrapping_add(tail(at));
            }
        }

        /// The sums of the `i32` lanes of each of sixteen vectors, in order, as one vector:
        /// pairs interleaved and added within 128-bit lanes twice (each lane then holds four
        /// vectors' partial sums), then the 128-bit lanes of pairs shuffled together and added
        /// twice.
        #[target_feature(enable = "avx512f")]
        fn hsum16(v: [__m512i; 16]) -> __m512i {
            let pair =
                |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
            let quad =
                |a, b| _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
            let q = [
                quad(pair(v[0], v[1]), pair(v[2], v[3])),
                quad(pair(v[4], v[5]), pair(v[6], v[7])),
                quad(pair(v[8], v[9]), pair(v[10], v[11])),
                quad(pair(v[12], v[13]), pair(v[14], v[15])),
            ];
            // q[i]'s 128-bit lane L: [v4i, v4i+1, v4i+2, v4i+3] summed over lane L's four i32.
            let halves = |a, b| {
                _mm512_add_epi32(
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(a, b),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(a, b),
                )
            };
            let (h01, h23) = (halves(q[0], q[1]), halves(q[2], q[3]));
            _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0b10_00_10_00>(h01, h23),
                _mm512_shuffle_i32x4::<0b11_01_11_01>(h01, h23),
            )
        }

        /// `vpdpbusd` multiplies unsigned bytes by signed ones: `Σ (aᵢ + 128)·bᵢ − 128·Σ bᵢ`, with
        /// `aᵢ + 128` as the byte `aᵢ XOR 0x80` and `Σ bᵢ` from a second `vpdpbusd` against ones.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        fn dot_vnni(a: &[i8], b: &[i8]) -> i32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let bias = _mm512_set1_epi8(i8::MIN);
            let ones = _mm512_set1_epi8(1);
            let mut acc = _mm512_setzero_si512();
            let mut sum_b = _mm512_setzero_si512();
            let mut i = 0;
            while i + 64 <= n {
                // SAFETY: i + 64 <= n, so the 64-byte loads at i are inside both slices.
                let (x, y) = unsafe {
                    (
                        _mm512_loadu_si512(pa.add(i).cast()),
                        _mm512_loadu_si512(pb.add(i).cast()),
                    )
                };
                acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(x, bias), y);
                sum_b = _mm512_dpbusd_epi32(sum_b, ones, y);
                i += 64;
            }
            let main = _mm512_reduce_add_epi32(acc)
                .wrapping_sub(_mm512_reduce_add_epi32(sum_b).wrapping_mul(128));
            main.wrapping_add(super::super::dot_i8_scalar(&a[i..n], &b[i..n]))
        }
    }

    /// Before Rust 1.89: no AVX-512 kernels.
    #[rustversion::before(1.89)]
    mod avx512 {
        pub(super) fn available() -> Vec<super::Int8Kernels> {
            Vec::new()
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! NEON int8 kernels (every aarch64 CPU a Rust target supports has NEON).
    use std::arch::aarch64::*;

    use super::{Int8Kernels, Simd};

    pub(super) fn available() -> Vec<Int8Kernels> {
        if std::arch::is_aarch64_feature_detected!("neon") {
            vec![Int8Kernels {
                dot: dot_entry,
                l2: l2_entry,
                dot_run: dot_run_entry,
                name: "neon",
                simd: Simd::Neon,
            }]
        } else {
            Vec::new()
        }
    }

    fn dot_entry(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: handed out by `available` only after detecting NEON.
        unsafe { dot(a, b) }
    }
    fn l2_entry(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: handed out by `available` only after detecting NEON.
        unsafe { l2(a, b) }
    }
    fn dot_run_entry(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
        super::assert_run_fits(q, codes, stride, out.len());
        // SAFETY: handed out by `available` only after detecting NEON; the run fits.
        unsafe { dot_run(q, codes, stride, out) }
    }

    /// [`super::Int8RunKernel`] on NEON: eight codes per step, each 16-byte chunk of `q` loaded
    /// once for the eight, their sums reduced four at a time by pairwise adds (`vpaddq_s32`);
    /// the codes left over one at a time.
    ///
    /// # Safety
    /// The CPU must have NEON, and [`super::run_fits`] must hold.
    #[target_feature(enable = "neon")]
    unsafe fn dot_run(q: &[i8], codes: &[i8], stride: usize, out: &mut [i32]) {
        let (len, n) = (q.len(), out.len());
        let whole = len / 16 * 16;
        let (pq, pc) = (q.as_ptr(), codes.as_ptr());
        let mut j = 0;
        while j + 8 <= n {
            let mut lanes = [0i32; 8];
            // SAFETY: NEON by the caller's contract; the loads of `q` read the 16 bytes at
            // i + 16 <= whole <= len; code j + c's load reads bytes (j + c)·stride + i up to
            // (j + c)·stride + len, inside `codes` since j + c < n and the run fits; the stores
            // write the 32 bytes of `lanes`.
            unsafe {
                let mut acc = [vdupq_n_s32(0); 8];
                let mut i = 0;
                while i < whole {
                    let x = vld1q_s8(pq.add(i));
                    for (c, a) in acc.iter_mut().enumerate() {
                        let y = vld1q_s8(pc.add((j + c) * stride + i));
                        *a = vpadalq_s16(*a, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
                        *a = vpadalq_s16(*a, vmull_high_s8(x, y));
                    }
                    i += 16;
                }
                let s0 = vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
                let s1 = vpaddq_s32(vpaddq_s32(acc[4], acc[5]), vpaddq_s32(acc[6], acc[7]));
                vst1q_s32(lanes.as_mut_ptr(), s0);
                vst1q_s32(lanes.as_mut_ptr().add(4), s1);
            }
            for (c, o) in out[j..j + 8].iter_mut().enumerate() {
                let at = (j + c) * stride;
                *o = lanes[c].wrapping_add(super::dot_i8_scalar(
                    &q[whole..],
                    &codes[at + whole..at + len],
                ));
            }
            j += 8;
        }
        for (c, o) in out.iter_mut().enumerate().skip(j) {
            let at = c * stride;
            // SAFETY: NEON by the caller's contract.
            *o = unsafe { dot(q, &codes[at..at + len]) };
        }
    }

    /// `Σ aᵢ·bᵢ` over the common prefix.
    ///
    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    unsafe fn dot(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        // SAFETY: NEON by the caller's contract (the intrinsics are unsafe to call before Rust
        // 1.87, and the MSRV is 1.85); each load reads the 16 bytes at an index j with
        // j + 16 <= n, inside both slices.
        let main = unsafe {
            let mut acc = vdupq_n_s32(0);
            while i + 16 <= n {
                let (x, y) = (vld1q_s8(pa.add(i)), vld1q_s8(pb.add(i)));
                acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
                acc = vpadalq_s16(acc, vmull_high_s8(x, y));
                i += 16;
            }
            vaddvq_s32(acc)
        };
        main.wrapping_add(super::dot_i8_scalar(&a[i..n], &b[i..n]))
    }

    /// `Σ (aᵢ − bᵢ)²` over the common prefix.
    ///
    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    unsafe fn l2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        // SAFETY: as in `dot`.
        let main = unsafe {
            let mut acc = vdupq_n_s32(0);
            while i + 16 <= n {
                let (x, y) = (vld1q_s8(pa.add(i)), vld1q_s8(pb.add(i)));
                let lo = vsubl_s8(vget_low_s8(x), vget_low_s8(y));
                let hi = vsubl_high_s8(x, y);
                acc = vmlal_s16(acc, vget_low_s16(lo), vget_low_s16(lo));
                acc = vmlal_high_s16(acc, lo, lo);
                acc = vmlal_s16(acc, vget_low_s16(hi), vget_low_s16(hi));
                acc = vmlal_high_s16(acc, hi, hi);
                i += 16;
            }
            vaddvq_s32(acc)
        };
        main.wrapping_add(super::l2_i8_scalar(&a[i..n], &b[i..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seed: u64, len: usize) -> Vec<i8> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8 as i8
            })
            .collect()
    }

    #[test]
    fn every_kernel_equals_the_scalar_one() {
        let kernels = available();
        eprintln!(
            "int8 kernels on this CPU: {:?}",
            kernels.iter().map(|k| k.name).collect::<Vec<_>>()
        );
        let lens: Vec<usize> = (0..=130).chain([383, 384, 385, 768, 1536]).collect();
        for k in &kernels {
            for &len in &lens {
                for seed in 0..4 {
                    let a = data(seed * 2 + 1, len);
                    let b = data(seed * 2 + 2, len);
                    assert_eq!(
                        (k.dot)(&a, &b),
                        dot_i8_scalar(&a, &b),
                        "{} dot len {len}",
                        k.name
                    );
                    assert_eq!(
                        (k.l2)(&a, &b),
                        l2_i8_scalar(&a, &b),
                        "{} l2 len {len}",
                        k.name
                    );
                }
                // The extremes: -128·-128 and (127 − -128)² at every position.
                let lo = vec![i8::MIN; len];
                let hi = vec![i8::MAX; len];
                assert_eq!(
                    (k.dot)(&lo, &lo),
                    dot_i8_scalar(&lo, &lo),
                    "{} dot extremes",
                    k.name
                );
                assert_eq!(
                    (k.dot)(&lo, &hi),
                    dot_i8_scalar(&lo, &hi),
                    "{} dot extremes",
                    k.name
                );
                assert_eq!(
                    (k.l2)(&lo, &hi),
                    l2_i8_scalar(&lo, &hi),
                    "{} l2 extremes",
                    k.name
                );
            }
            // Different lengths read the common prefix.
            let a = data(9, 100);
            let b = data(10, 37);
            assert_eq!((k.dot)(&a, &b), dot_i8_scalar(&a[..37], &b), "{}", k.name);
            assert_eq!((k.l2)(&b, &a), l2_i8_scalar(&b, &a[..37]), "{}", k.name);
        }
    }

    /// Every set's run kernel against one scalar dot product per code: every length 1–70, 384
    /// and 768, runs of odd lengths and around each kernel's step (8, 16), codes packed
    /// (`stride == len`), at an odd stride, and at the codes' block stride; random bytes and
    /// the extremes.
    #[test]
    fn every_run_kernel_equals_the_scalar_dot_of_each_code() {
        let lens: Vec<usize> = (1..=70).chain([384, 768]).collect();
        let runs = [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 47];
        for k in available() {
            for &len in &lens {
                for stride in [len, len + 5, (len + 8).div_ceil(64) * 64] {
                    for &n in &runs {
                        let q = data(len as u64, len);
                        let bytes = if n == 0 { 0 } else { (n - 1) * stride + len };
                        let mut cases = vec![data(len as u64 * 1000 + n as u64, bytes)];
                        if n > 0 {
                            // -128 everywhere against q = -128, and 127 against -128.
                            cases.push(vec![i8::MIN; bytes]);
                            cases.push(vec![i8::MAX; bytes]);
                        }
                        for (case, codes) in cases.iter().enumerate() {
                            let qs = if case == 0 {
                                q.clone()
                            } else {
                                vec![i8::MIN; len]
                            };
                            let mut got = vec![0x5a5a5a5a; n];
                            (k.dot_run)(&qs, codes, stride, &mut got);
                            let want: Vec<i32> = (0..n)
                                .map(|j| dot_i8_scalar(&qs, &codes[j * stride..j * stride + len]))
                                .collect();
                            assert_eq!(
                                got, want,
                                "{} run: len {len} stride {stride} n {n} case {case}",
                                k.name
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_run_must_fit() {
        assert!(run_fits(10, 0, 64, 0));
        assert!(run_fits(10, 10, 64, 1));
        assert!(!run_fits(10, 9, 64, 1));
        assert!(run_fits(10, 74, 64, 2));
        assert!(!run_fits(10, 73, 64, 2));
        assert!(!run_fits(10, usize::MAX, usize::MAX, 3));
        // Refused by the entry point's check, not by a slice index of the kernel's tail (which
        // would hide a check that lets a SIMD load read past the codes).
        for k in available() {
            let r = std::panic::catch_unwind(|| (k.dot_run)(&[1; 10], &[1; 73], 64, &mut [0; 2]));
            let message = r.expect_err("a run past the codes must panic");
            assert_eq!(
                message.downcast_ref::<String>().map(String::as_str),
                Some("a run of 2 codes of 10 bytes, 64 apart, in 73 bytes"),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn the_chosen_set_is_the_best_of_the_f32_kernels_set() {
        assert_eq!(int8_kernels().name, best_within(super::super::simd()).name);
        assert_eq!(
            best_within(super::super::best_simd()).name,
            available().last().map_or("scalar", |k| k.name)
        );
        assert_eq!(best_within(Simd::Scalar).name, "scalar");
        for k in available() {
            assert_eq!(best_within(k.simd).simd, k.simd, "{}", k.name);
        }
    }
}
