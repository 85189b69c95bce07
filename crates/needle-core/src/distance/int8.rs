//! Int8 kernels for scalar-quantized vectors (`sq8`): `Σ aᵢ·bᵢ` and `Σ (aᵢ − bᵢ)²` over `i8`
//! codes, exact in `i32`.
//!
//! Implementations: scalar (the reference), AVX2 (sign-extend to `i16`, `vpmaddwd`), AVX-512BW
//! (the same on 512 bits) with VNNI for the dot product (`vpdpbusd`, which multiplies unsigned by
//! signed bytes: `a` is biased by +128 and `128·Σb` subtracted), and NEON (`vmull_s8`,
//! `vpadalq_s16`). The best set is chosen once per process. Every kernel is exact, so each is
//! tested for equality with the scalar one.
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
    /// Which instruction set: `scalar`, `avx2`, `avx512bw`, `avx512vnni`, `neon`.
    pub name: &'static str,
    /// The `NEEDLE_SIMD` set it belongs to.
    pub simd: Simd,
}

const SCALAR: Int8Kernels = Int8Kernels {
    dot: dot_i8_scalar,
    l2: l2_i8_scalar,
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

    /// The AVX-512 kernels: only from Rust 1.89, where their intrinsics are stable.
    #[rustversion::since(1.89)]
    mod avx512 {
        use std::arch::x86_64::*;

        use super::super::{Int8Kernels, Simd};

        pub(super) fn available() -> Vec<Int8Kernels> {
            let mut v = Vec::new();
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                v.push(Int8Kernels {
                    dot: dot_avx512bw_entry,
                    l2: l2_avx512bw_entry,
                    name: "avx512bw",
                    simd: Simd::Avx512,
                });
                if is_x86_feature_detected!("avx512vnni") {
                    v.push(Int8Kernels {
                        dot: dot_vnni_entry,
                        l2: l2_avx512bw_entry,
                        name: "avx512vnni",
                        simd: Simd::Avx512,
                    });
                }
            }
            v
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
