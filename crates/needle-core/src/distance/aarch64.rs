//! NEON kernels for aarch64.
//!
//! Four 4-lane accumulators (16 floats per iteration) hide the latency of dependent FMAs; a
//! 4-lane loop and a scalar loop take the tail, so any length works. `vld1q_f32` needs no
//! alignment beyond that of `f32`.
//!
//! The `*_entry` functions are safe wrappers around `#[target_feature]` code. They are private
//! and reachable only through [`kernels`], which hands them out after detecting NEON.

use std::arch::aarch64::{vaddq_f32, vaddvq_f32, vdupq_n_f32, vfmaq_f32, vld1q_f32, vsubq_f32};

use super::Kernels;

/// The NEON kernel set, if this CPU has NEON (every aarch64 CPU a Rust target supports does).
pub(super) fn kernels() -> Option<Kernels> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Some(Kernels {
            name: "neon",
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
    // SAFETY: only `kernels()` hands this function out, after detecting NEON.
    unsafe { dot(a, b) }
}

fn l2_squared_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting NEON.
    unsafe { l2_squared(a, b) }
}

fn cosine_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting NEON.
    1.0 - unsafe { dot(a, b) }
}

fn neg_dot_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only `kernels()` hands this function out, after detecting NEON.
    -unsafe { dot(a, b) }
}

/// `Σ aᵢ·bᵢ` over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: NEON by the caller's contract (the intrinsics are unsafe to call before Rust 1.87,
    // and the MSRV is 1.85); every load reads the 4 floats at an index j with j + 4 <= n,
    // inside both slices, which hold at least n floats.
    let mut sum = unsafe {
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let mut acc2 = vdupq_n_f32(0.0);
        let mut acc3 = vdupq_n_f32(0.0);
        while i + 16 <= n {
            acc0 = vfmaq_f32(acc0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            acc1 = vfmaq_f32(acc1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
            acc2 = vfmaq_f32(acc2, vld1q_f32(pa.add(i + 8)), vld1q_f32(pb.add(i + 8)));
            acc3 = vfmaq_f32(acc3, vld1q_f32(pa.add(i + 12)), vld1q_f32(pb.add(i + 12)));
            i += 16;
        }
        while i + 4 <= n {
            acc0 = vfmaq_f32(acc0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
        vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// `Σ (aᵢ − bᵢ)²` over the common prefix of `a` and `b`.
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: as in `dot`: NEON by the caller's contract; every load reads the 4 floats at an
    // index j with j + 4 <= n, inside both slices.
    let mut sum = unsafe {
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let mut acc2 = vdupq_n_f32(0.0);
        let mut acc3 = vdupq_n_f32(0.0);
        while i + 16 <= n {
            let d0 = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            let d1 = vsubq_f32(vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
            let d2 = vsubq_f32(vld1q_f32(pa.add(i + 8)), vld1q_f32(pb.add(i + 8)));
            let d3 = vsubq_f32(vld1q_f32(pa.add(i + 12)), vld1q_f32(pb.add(i + 12)));
            acc0 = vfmaq_f32(acc0, d0, d0);
            acc1 = vfmaq_f32(acc1, d1, d1);
            acc2 = vfmaq_f32(acc2, d2, d2);
            acc3 = vfmaq_f32(acc3, d3, d3);
            i += 16;
        }
        while i + 4 <= n {
            let d = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            acc0 = vfmaq_f32(acc0, d, d);
            i += 4;
        }
        vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)))
    };
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        let d = x - y;
        sum = d.mul_add(d, sum);
    }
    sum
}
