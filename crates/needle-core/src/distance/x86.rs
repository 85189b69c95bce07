//! AVX2+FMA kernels for x86_64.
//!
//! Four 8-lane accumulators (32 floats per iteration) hide the latency of dependent FMAs; an
//! 8-lane loop and a scalar loop take the tail, so any length works. Loads are unaligned: a
//! slice may start anywhere.
//!
//! The `*_entry` functions are safe wrappers around `#[target_feature]` code. They are private
//! and reachable only through [`kernels`], which hands them out after detecting AVX2 and FMA.

use std::arch::x86_64::{
    __m256, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps, _mm256_add_ps,
    _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm256_sub_ps,
};

use super::Kernels;

/// The AVX2+FMA kernel set, if this CPU has both features.
pub(super) fn kernels() -> Option<Kernels> {
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        Some(Kernels {
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
#[target_feature(enable = "avx2,fma")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n and both slices hold at least n floats, so the four 8-float
        // unaligned loads at i, i + 8, i + 16 and i + 24 stay inside both slices.
        unsafe {
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
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n and both slices hold at least n floats.
        unsafe {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        }
        i += 8;
    }
    let mut sum = horizontal_sum(_mm256_add_ps(
        _mm256_add_ps(acc0, acc1),
        _mm256_add_ps(acc2, acc3),
    ));
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// `Σ (aᵢ − bᵢ)²` over the common prefix of `a` and `b`.
#[target_feature(enable = "avx2,fma")]
fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n and both slices hold at least n floats, so the four 8-float
        // unaligned loads at i, i + 8, i + 16 and i + 24 stay inside both slices.
        let (d0, d1, d2, d3) = unsafe {
            (
                _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))),
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                ),
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 16)),
                    _mm256_loadu_ps(pb.add(i + 16)),
                ),
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 24)),
                    _mm256_loadu_ps(pb.add(i + 24)),
                ),
            )
        };
        acc0 = _mm256_fmadd_ps(d0, d0, acc0);
        acc1 = _mm256_fmadd_ps(d1, d1, acc1);
        acc2 = _mm256_fmadd_ps(d2, d2, acc2);
        acc3 = _mm256_fmadd_ps(d3, d3, acc3);
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n and both slices hold at least n floats.
        let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc0 = _mm256_fmadd_ps(d, d, acc0);
        i += 8;
    }
    let mut sum = horizontal_sum(_mm256_add_ps(
        _mm256_add_ps(acc0, acc1),
        _mm256_add_ps(acc2, acc3),
    ));
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        let d = x - y;
        sum = d.mul_add(d, sum);
    }
    sum
}

/// The sum of the eight lanes of `v`.
#[target_feature(enable = "avx2,fma")]
fn horizontal_sum(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let single = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
    _mm_cvtss_f32(single)
}
