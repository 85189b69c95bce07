//! Distance kernels: the inner loop of every search and every insert.
//!
//! Owns the scalar reference implementations, the SIMD kernels (AVX-512F or AVX2+FMA on x86_64 in `x86`,
//! NEON on aarch64 in `aarch64`), the choice between them at run time, vector normalisation and
//! the prefetch hint. Knows nothing of graphs, records or files: a kernel takes two `f32` slices
//! of the same length and returns a number where smaller is nearer.
//!
//! The kernel set is chosen once per process, on first use, and cached: the best this CPU runs,
//! or the one the environment variable `NEEDLE_SIMD` names (`scalar`, `avx2`, `avx512`, `neon`;
//! see [`Simd`]), for the f32 kernels here and the int8 kernels of `int8` alike. Every SIMD
//! kernel is tested against the scalar reference on every length from 0 to 70 and on 100, 127, 384
//! and 768.
//!
//! Slices of different lengths are a caller bug (dimensions are checked at the API edge); the
//! kernels then read only the common prefix, so they stay memory-safe and never panic.

use std::sync::OnceLock;

use crate::config::Distance;

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub(crate) mod int8;
#[cfg(target_arch = "x86_64")]
mod x86;

/// A distance function over two vectors of the same length: smaller is nearer.
///
/// Obtain one with [`kernel_for`]; it is a plain function pointer, cheap to copy into each
/// collection.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// A kernel's distances from one vector to four others at once, each bit for bit what the
/// kernel returns for that pair (see `x86::sum4`).
pub type Kernel4 = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

/// The four-at-once form of `kernel`, where its set has one (AVX2 and AVX-512).
pub fn batch_for(kernel: Kernel) -> Option<Kernel4> {
    #[cfg(target_arch = "x86_64")]
    {
        x86::batch_for(kernel)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernel;
        None
    }
}

/// The fewest dimensions at which a search calls `kernel`'s four-at-once form (from
/// [`batch_for`]) rather than the kernel four times: 0 where the form has no floor.
pub(crate) fn batch_from(kernel: Kernel) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        x86::batch_from(kernel)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernel;
        0
    }
}

/// The dot product `Σ aᵢ·bᵢ`, one element at a time: the reference every SIMD kernel is tested
/// against. Reads only the common prefix if the lengths differ.
///
/// ```
/// use needle_core::__private::dot_scalar;
/// assert_eq!(dot_scalar(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The squared Euclidean distance `Σ (aᵢ − bᵢ)²`, one element at a time: the reference every
/// SIMD kernel is tested against. Reads only the common prefix if the lengths differ.
///
/// ```
/// use needle_core::__private::l2_squared_scalar;
/// assert_eq!(l2_squared_scalar(&[0.0, 0.0], &[3.0, 4.0]), 25.0);
/// ```
pub fn l2_squared_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum()
}

fn cosine_scalar(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot_scalar(a, b)
}

fn neg_dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    -dot_scalar(a, b)
}

/// One implementation of every kernel, all for the same instruction set.
#[derive(Debug, Clone, Copy)]
struct Kernels {
    /// The instruction set, as `NEEDLE_SIMD` names it ([`Simd::name`]).
    name: &'static str,
    dot: Kernel,
    l2_squared: Kernel,
    /// `1 − a·b`, for vectors already normalised to unit length.
    cosine: Kernel,
    /// `−a·b`, so that a larger inner product is nearer.
    neg_dot: Kernel,
}

const SCALAR: Kernels = Kernels {
    name: "scalar",
    dot: dot_scalar,
    l2_squared: l2_squared_scalar,
    cosine: cosine_scalar,
    neg_dot: neg_dot_scalar,
};

/// A kernel set, as the environment variable `NEEDLE_SIMD` names it.
///
/// By default every kernel (f32 and int8) uses the best set this CPU runs; `NEEDLE_SIMD` forces
/// another one for the whole process, read once at the first kernel lookup: to measure one set
/// against another on the same machine, or to see how an older CPU would fare. A set the CPU
/// cannot run, or an unknown name, gets a warning on stderr and the best set instead.
/// Results may differ in the last bits of a float from one set to another (and so may graphs
/// built with them); files and replicas never depend on the set (graphs are stored, replicas
/// apply commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// The one-element-at-a-time reference kernels (`NEEDLE_SIMD=scalar`).
    Scalar,
    /// x86_64 AVX2 with FMA; int8 with AVX2 (`NEEDLE_SIMD=avx2`).
    Avx2,
    /// x86_64 AVX-512F; int8 with AVX-512BW, and VNNI for the dot product where present
    /// (`NEEDLE_SIMD=avx512`).
    Avx512,
    /// aarch64 NEON (`NEEDLE_SIMD=neon`).
    Neon,
}

impl Simd {
    /// The name `NEEDLE_SIMD` takes for this set.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
            Simd::Neon => "neon",
        }
    }

    /// The set `name` names, if any.
    fn parse(name: &str) -> Option<Simd> {
        [Simd::Scalar, Simd::Avx2, Simd::Avx512, Simd::Neon]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// The f32 kernels of `simd`, if this CPU (and this compiler: AVX-512 needs Rust 1.89) runs them.
fn kernels_of(simd: Simd) -> Option<Kernels> {
    match simd {
        Simd::Scalar => Some(SCALAR),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => x86::avx2_kernels(),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => x86::avx512_kernels(),
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => aarch64::kernels(),
        #[allow(
            unreachable_patterns,
            reason = "which sets exist depends on the architecture"
        )]
        _ => None,
    }
}

/// The sets this CPU runs, best first (`scalar` last).
pub fn runnable_simd() -> Vec<Simd> {
    [Simd::Avx512, Simd::Avx2, Simd::Neon, Simd::Scalar]
        .into_iter()
        .filter(|&s| kernels_of(s).is_some())
        .collect()
}

/// The best set this CPU runs.
fn best_simd() -> Simd {
    runnable_simd()[0]
}

/// The set to use for `NEEDLE_SIMD` = `requested` (`None`: unset), and a warning when the
/// request cannot be honoured (an unknown name, or a set this CPU cannot run).
fn resolve_simd(requested: Option<&str>) -> (Simd, Option<String>) {
    let best = best_simd();
    let Some(value) = requested else {
        return (best, None);
    };
    match Simd::parse(value.trim()) {
        Some(simd) if kernels_of(simd).is_some() => (simd, None),
        Some(_) => (
            best,
            Some(format!(
                "NEEDLE_SIMD={value}: this CPU cannot run that kernel set; using {}",
                best.name()
            )),
        ),
        None => (
            best,
            Some(format!(
                "NEEDLE_SIMD={value}: unknown kernel set (expected scalar, avx2, avx512 or \
                 neon); using {}",
                best.name()
            )),
        ),
    }
}

/// The kernel set of this process: `NEEDLE_SIMD`'s, else the best, decided on first use (with
/// any warning printed then, once).
pub(crate) fn simd() -> Simd {
    static SIMD: OnceLock<Simd> = OnceLock::new();
    *SIMD.get_or_init(|| {
        let requested = std::env::var("NEEDLE_SIMD").ok();
        let (simd, warning) = resolve_simd(requested.as_deref());
        if let Some(warning) = warning {
            eprintln!("needle: warning: {warning}");
        }
        simd
    })
}

/// The f32 kernel set of this process (see [`simd`]).
fn kernels() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(|| kernels_of(simd()).unwrap_or(SCALAR))
}

/// Every f32 kernel set this CPU runs, with its name, `distance`'s kernel and that kernel's
/// four-at-once form (for benches that compare the sets in one run).
pub fn f32_kernels_available(distance: Distance) -> Vec<(&'static str, Kernel, Option<Kernel4>)> {
    runnable_simd()
        .into_iter()
        .filter_map(kernels_of)
        .map(|k| {
            let one = match distance {
                Distance::Cosine => k.cosine,
                Distance::Euclidean => k.l2_squared,
                Distance::DotProduct => k.neg_dot,
            };
            (k.name, one, batch_for(one))
        })
        .collect()
}

/// The names of the f32 and the int8 kernel sets this process uses (for benchmarks' logs).
pub fn kernel_names() -> (&'static str, &'static str) {
    (kernels().name, int8::int8_kernels().name)
}

/// The distance function for `distance`, where smaller is nearer, using the fastest
/// instruction set this CPU supports or the one `NEEDLE_SIMD` forces ([`Simd`]; chosen once per
/// process):
///
/// - [`Distance::Cosine`] gives `1 − a·b`; both vectors must already be unit length (the
///   database normalises them on insert and on query).
/// - [`Distance::Euclidean`] gives the squared distance `|a − b|²` (same order as `|a − b|`).
/// - [`Distance::DotProduct`] gives `−a·b`.
///
/// ```
/// use needle_core::{Distance, __private::kernel_for};
/// let l2 = kernel_for(Distance::Euclidean);
/// assert_eq!(l2(&[0.0, 0.0], &[3.0, 4.0]), 25.0);
/// assert_eq!(kernel_for(Distance::DotProduct)(&[1.0, 2.0], &[3.0, 4.0]), -11.0);
/// ```
pub fn kernel_for(distance: Distance) -> Kernel {
    let kernels = kernels();
    match distance {
        Distance::Cosine => kernels.cosine,
        Distance::Euclidean => kernels.l2_squared,
        Distance::DotProduct => kernels.neg_dot,
    }
}

/// The dot product `a·b` with the fastest kernel this CPU supports.
#[inline]
#[allow(dead_code, reason = "part of the module's interface; no caller yet")]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// The squared Euclidean distance `|a − b|²` with the fastest kernel this CPU supports.
#[inline]
#[allow(dead_code, reason = "part of the module's interface; no caller yet")]
pub(crate) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_squared)(a, b)
}

/// Scales `v` to unit length in place and returns true; returns false, leaving `v` unchanged,
/// when its norm is zero or not finite (a NaN or infinite component).
///
/// The norm is accumulated in `f64`: components whose squares overflow or underflow `f32` still
/// normalise, and the result is as close to unit length as `f32` allows.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    true
}

/// Hints the CPU to load the cache line holding `ptr` into all cache levels, ahead of a read.
///
/// Only a hint: safe to call with any pointer (null, dangling, unaligned), it never faults and
/// has no effect the program can observe except speed. A no-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint. It does not dereference the address in the architectural
    // sense: it never faults, whatever the address, and changes no state the program can see.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 (Steele, Lea & Flood): tiny, good enough for test data, no dependency.
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

        fn vector(&mut self, len: usize, scale: f32) -> Vec<f32> {
            (0..len).map(|_| self.next_f32() * scale).collect()
        }
    }

    /// The seed from `NEEDLE_SEED`, or a fresh one; printed so a failure can be replayed.
    fn test_rng(test: &str) -> SplitMix64 {
        SplitMix64(needle_testkit::seed(test))
    }

    /// Every kernel set this CPU can run other than the scalar one, with its name.
    fn simd_kernel_sets() -> Vec<(&'static str, Kernels)> {
        let mut sets = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::avx2_kernels() {
            sets.push((k.name, k));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::avx512_kernels() {
            sets.push((k.name, k));
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(k) = aarch64::kernels() {
            sets.push((k.name, k));
        }
        if sets.is_empty() {
            eprintln!("no SIMD kernels on this CPU: only the scalar kernels are tested");
        }
        sets
    }

    fn lengths() -> impl Iterator<Item = usize> {
        // 100 and 127: after AVX-512's 64-float steps, three and four more chunks.
        (0..=70).chain([100, 127, 384, 768])
    }

    /// The four-at-once kernels return, bit for bit, what their one-at-a-time kernel returns for
    /// each of the four vectors (searches and builds must not depend on which was used).
    #[test]
    fn batch_of_four_is_bit_identical_to_one_at_a_time() {
        let mut rng = test_rng("batch_of_four_is_bit_identical_to_one_at_a_time");
        let sets = simd_kernel_sets();
        let mut checked = 0;
        for (name, k) in &sets {
            for (what, one) in [
                ("dot", k.dot),
                ("l2_squared", k.l2_squared),
                ("cosine", k.cosine),
                ("neg_dot", k.neg_dot),
            ] {
                let Some(four) = batch_for(one) else {
                    continue;
                };
                checked += 1;
                for n in lengths() {
                    let a = rng.vector(n, 3.0);
                    let bs: Vec<Vec<f32>> = (0..4).map(|_| rng.vector(n, 3.0)).collect();
                    let got = four(&a, [&bs[0], &bs[1], &bs[2], &bs[3]]);
                    for (v, b) in bs.iter().enumerate() {
                        assert_eq!(
                            got[v].to_bits(),
                            one(&a, b).to_bits(),
                            "{name} {what}, length {n}, vector {v}"
                        );
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            let with_four = usize::from(x86::avx2_kernels().is_some())
                + usize::from(x86::avx512_kernels().is_some());
            assert!(
                checked >= 4 * with_four,
                "the AVX2 and AVX-512 kernels have four-at-once forms"
            );
        }
        let _ = checked;
    }

    /// `got` agrees with `want` to a relative 1e-4 of `magnitude` (Σ|terms|), the size rounding
    /// errors scale with even when the sum itself cancels to near zero.
    fn assert_close(got: f32, want: f32, magnitude: f64, what: &str) {
        let tolerance = 1e-4 * (magnitude + f64::from(want.abs()));
        let error = (f64::from(got) - f64::from(want)).abs();
        assert!(
            error <= tolerance,
            "{what}: got {got}, want {want} (error {error:e} > tolerance {tolerance:e})"
        );
    }

    fn check_against_scalar(name: &str, k: &Kernels, a: &[f32], b: &[f32]) {
        let dot_magnitude: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) * f64::from(*y)).abs())
            .sum();
        let l2_magnitude = f64::from(l2_squared_scalar(a, b));
        let n = a.len();
        let want_dot = dot_scalar(a, b);
        assert_close(
            (k.dot)(a, b),
            want_dot,
            dot_magnitude,
            &format!("{name} dot, len {n}"),
        );
        assert_close(
            (k.l2_squared)(a, b),
            l2_squared_scalar(a, b),
            l2_magnitude,
            &format!("{name} l2_squared, len {n}"),
        );
        assert_close(
            (k.cosine)(a, b),
            1.0 - want_dot,
            dot_magnitude,
            &format!("{name} cosine, len {n}"),
        );
        assert_close(
            (k.neg_dot)(a, b),
            -want_dot,
            dot_magnitude,
            &format!("{name} neg_dot, len {n}"),
        );
    }

    #[test]
    fn simd_kernels_match_scalar_on_every_length() {
        let mut rng = test_rng("simd_kernels_match_scalar_on_every_length");
        for (name, k) in simd_kernel_sets() {
            for len in lengths() {
                for scale in [1e-3, 1.0, 1e3] {
                    // Offsets 0..3 start the slices off any alignment, as arbitrary slices may.
                    for offset in 0..3 {
                        let a = rng.vector(len + offset, scale);
                        let b = rng.vector(len + offset, scale);
                        check_against_scalar(name, &k, &a[offset..], &b[offset..]);
                    }
                }
            }
        }
    }

    #[test]
    fn dispatched_kernels_match_scalar() {
        let mut rng = test_rng("dispatched_kernels_match_scalar");
        let dispatched = Kernels {
            name: "dispatched",
            dot,
            l2_squared,
            cosine: kernel_for(Distance::Cosine),
            neg_dot: kernel_for(Distance::DotProduct),
        };
        assert_eq!(
            kernel_for(Distance::Euclidean)(&[1.0, 2.0], &[4.0, 6.0]),
            l2_squared(&[1.0, 2.0], &[4.0, 6.0])
        );
        for len in lengths() {
            let a = rng.vector(len, 1.0);
            let b = rng.vector(len, 1.0);
            check_against_scalar("dispatched", &dispatched, &a, &b);
            check_against_scalar("scalar", &SCALAR, &a, &b);
        }
    }

    #[test]
    fn kernels_read_only_the_common_prefix_of_unequal_lengths() {
        let mut rng = test_rng("kernels_read_only_the_common_prefix_of_unequal_lengths");
        let mut sets = simd_kernel_sets();
        sets.push(("scalar", SCALAR));
        for (name, k) in sets {
            for (la, lb) in [(0, 5), (7, 40), (33, 32), (100, 67)] {
                let a = rng.vector(la, 1.0);
                let b = rng.vector(lb, 1.0);
                let n = la.min(lb);
                assert_close(
                    (k.dot)(&a, &b),
                    dot_scalar(&a[..n], &b[..n]),
                    n as f64,
                    &format!("{name} dot, lengths {la} and {lb}"),
                );
                assert_close(
                    (k.l2_squared)(&a, &b),
                    l2_squared_scalar(&a[..n], &b[..n]),
                    4.0 * n as f64,
                    &format!("{name} l2_squared, lengths {la} and {lb}"),
                );
            }
        }
    }

    #[test]
    fn kernel_for_each_metric_orders_nearer_as_smaller() {
        let x = [1.0, 0.0, 0.0];
        let y = [0.0, 1.0, 0.0];
        let minus_x = [-1.0, 0.0, 0.0];

        let cosine = kernel_for(Distance::Cosine);
        assert_eq!(cosine(&x, &x), 0.0);
        assert_eq!(cosine(&x, &y), 1.0);
        assert_eq!(cosine(&x, &minus_x), 2.0);

        let euclidean = kernel_for(Distance::Euclidean);
        assert_eq!(euclidean(&[1.0, 1.0], &[4.0, 5.0]), 25.0);
        assert_eq!(euclidean(&x, &x), 0.0);

        let dot_product = kernel_for(Distance::DotProduct);
        assert_eq!(dot_product(&[1.0, 2.0], &[3.0, 4.0]), -11.0);
        // A larger inner product is nearer.
        assert!(dot_product(&[1.0, 1.0], &[2.0, 2.0]) < dot_product(&[1.0, 1.0], &[1.0, 1.0]));

        for distance in [Distance::Cosine, Distance::Euclidean, Distance::DotProduct] {
            let k = kernel_for(distance);
            let long_a = vec![0.5f32; 384];
            let long_b = vec![0.25f32; 384];
            let want = match distance {
                Distance::Cosine => 1.0 - 48.0,
                Distance::Euclidean => 24.0,
                Distance::DotProduct => -48.0,
            };
            assert_eq!(k(&long_a, &long_b), want, "{distance:?} on 384 dims");
        }
    }

    /// `NEEDLE_SIMD`'s value picks the set of that name where this CPU runs it; unset, the best
    /// set; anything else, the best set and a warning naming the value and the set used.
    /// (`tests/simd_switch.rs` checks the variable itself, in child processes.)
    #[test]
    fn needle_simd_values_resolve_to_their_set_or_warn() {
        let best = best_simd();
        assert_eq!(resolve_simd(None), (best, None));
        let runnable = runnable_simd();
        assert_eq!((runnable[0], runnable.last()), (best, Some(&Simd::Scalar)));
        for simd in [Simd::Scalar, Simd::Avx2, Simd::Avx512, Simd::Neon] {
            let (got, warning) = resolve_simd(Some(simd.name()));
            if runnable.contains(&simd) {
                assert_eq!((got, warning), (simd, None), "{simd:?}");
                assert_eq!(kernels_of(got).map(|k| k.name), Some(simd.name()));
            } else {
                assert_eq!(got, best, "{simd:?}");
                let warning = warning.expect("a set the CPU cannot run is warned about");
                assert!(warning.contains(simd.name()) && warning.contains("cannot run"));
                assert!(
                    warning.ends_with(&format!("using {}", best.name())),
                    "{warning}"
                );
            }
        }
        for bad in ["", "AVX9", "sse"] {
            let (got, warning) = resolve_simd(Some(bad));
            assert_eq!(got, best, "{bad:?}");
            let warning = warning.expect("an unknown value is warned about");
            assert!(
                warning.contains(&format!("NEEDLE_SIMD={bad}:")) && warning.contains("unknown"),
                "{warning}"
            );
        }
        // The process's own set is one it runs, and the f32 kernels handed out are that set's.
        assert!(runnable.contains(&simd()));
        assert_eq!(kernels().name, simd().name());
    }

    #[test]
    fn normalize_scales_to_unit_length() {
        let mut rng = test_rng("normalize_scales_to_unit_length");
        for len in lengths().filter(|&n| n > 0) {
            let mut v = rng.vector(len, 10.0);
            let original = v.clone();
            assert!(normalize(&mut v), "len {len}");
            let norm = dot_scalar(&v, &v).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "len {len}: norm {norm}");
            // Same direction: every component scaled by the same positive factor.
            let (i, _) = original
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                .expect("len > 0");
            let factor = v[i] / original[i];
            assert!(factor > 0.0);
            for (got, orig) in v.iter().zip(&original) {
                assert!((got - orig * factor).abs() <= 1e-6, "len {len}");
            }
        }

        let mut v = [3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, [0.6, 0.8]);
    }

    #[test]
    fn normalize_handles_components_that_overflow_or_underflow_f32_squares() {
        // 3e30 and 4e30 are not exact in f32, so the result is 0.6 and 0.8 within rounding.
        for scale in [1e30f32, 1e-30] {
            let mut v = [3.0 * scale, 4.0 * scale];
            assert!(normalize(&mut v), "scale {scale}");
            assert!(
                (v[0] - 0.6).abs() <= 1e-6 && (v[1] - 0.8).abs() <= 1e-6,
                "{v:?}"
            );
        }

        let mut subnormal = [f32::from_bits(1), 0.0];
        assert!(normalize(&mut subnormal));
        assert_eq!(subnormal, [1.0, 0.0]);
    }

    #[test]
    fn normalize_refuses_zero_and_non_finite_vectors_and_leaves_them_unchanged() {
        let mut empty: [f32; 0] = [];
        assert!(!normalize(&mut empty));

        let mut zero = [0.0f32, -0.0, 0.0];
        assert!(!normalize(&mut zero));
        assert_eq!(zero, [0.0, -0.0, 0.0]);

        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = [1.0, bad, 2.0];
            assert!(!normalize(&mut v), "{bad}");
            assert_eq!(v[0], 1.0);
            assert_eq!(v[2], 2.0);
        }
    }

    /// Searches call the AVX-512 four-at-once kernels only from 64 floats (below that they
    /// make four single calls, slower in the walk than calling the kernel directly); the AVX2
    /// ones have no floor.
    #[test]
    fn four_at_once_floor_is_64_floats_for_avx512_only() {
        let mut seen = 0;
        for simd in runnable_simd() {
            let Some(k) = kernels_of(simd) else { continue };
            for one in [k.dot, k.l2_squared, k.cosine, k.neg_dot] {
                if batch_for(one).is_none() {
                    continue;
                }
                seen += 1;
                let floor = if simd == Simd::Avx512 { 64 } else { 0 };
                assert_eq!(batch_from(one), floor, "{simd:?}");
            }
        }
        eprintln!("{seen} four-at-once kernels checked");
    }

    #[test]
    fn prefetch_accepts_any_pointer() {
        let data = [1u8; 64];
        prefetch(data.as_ptr());
        prefetch(data.as_ptr().wrapping_add(1_000_000));
        prefetch(std::ptr::null());
        prefetch(std::ptr::dangling());
        prefetch(usize::MAX as *const u8);
        assert_eq!(data[0], 1);
    }
}
