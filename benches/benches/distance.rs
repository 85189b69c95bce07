//! The distance kernels per metric and dimension: the run-time chosen (SIMD) kernel against the
//! scalar reference.
//!
//! The int8 kernels of the quantized mode (`sq8`): every set this CPU runs (scalar, AVX2,
//! AVX-512BW, AVX-512 VNNI, NEON), beside the f32 kernel at the same dimension.
//!
//! The f32 kernel sets side by side (`distance/sets`): every set this CPU runs (scalar, AVX2,
//! AVX-512, NEON), cosine at 50, 384 and 768 dimensions, one distance at a time and four at
//! once (`*_x4`: the time of four distances, one query against four vectors).
//!
//! The int8 run kernels (`distance/int8_run`): one query against a run of 64 codes laid out as
//! the int8 codes of filtered passes lay them (one 64-byte-aligned block per code, the query
//! padded to 64-byte steps), by every set's run kernel (`run_*`) and by 64 calls of its
//! one-at-a-time kernel (`single_*`): the time of the 64 dot products.
//!
//! `cargo bench -p needle-benches --bench distance`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use needle_benches::synthetic_vectors;
use needle_core::__private::{
    dot_scalar, f32_kernels_available, int8_kernels_available, kernel_for, l2_squared_scalar,
};
use needle_core::Distance;

/// What `kernel_for` returns.
type Kernel = fn(&[f32], &[f32]) -> f32;

const DIMS: [usize; 4] = [50, 128, 384, 768];

fn cosine_scalar(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot_scalar(a, b)
}

fn neg_dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    -dot_scalar(a, b)
}

/// The scalar kernel with the same meaning as `kernel_for(distance)`.
fn scalar_for(distance: Distance) -> Kernel {
    match distance {
        Distance::Cosine => cosine_scalar,
        Distance::Euclidean => l2_squared_scalar,
        Distance::DotProduct => neg_dot_scalar,
    }
}

fn kernels(c: &mut Criterion) {
    for distance in [Distance::Cosine, Distance::Euclidean, Distance::DotProduct] {
        let mut group = c.benchmark_group(format!("distance/{distance:?}"));
        for dim in DIMS {
            let v = synthetic_vectors(2, dim, 42);
            let (a, b) = (v.row(0), v.row(1));
            group.throughput(Throughput::Elements(dim as u64));
            for (name, kernel) in [
                ("simd", kernel_for(distance)),
                ("scalar", scalar_for(distance)),
            ] {
                group.bench_with_input(BenchmarkId::new(name, dim), &dim, |bench, _| {
                    bench.iter(|| kernel(black_box(a), black_box(b)))
                });
            }
        }
        group.finish();
    }
}

fn int8(c: &mut Criterion) {
    let mut group = c.benchmark_group("distance/int8");
    for dim in DIMS {
        let v = synthetic_vectors(2, dim, 42);
        let code = |row: &[f32]| -> Vec<i8> {
            row.iter()
                .map(|&x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
                .collect()
        };
        let (a, b) = (code(v.row(0)), code(v.row(1)));
        group.throughput(Throughput::Elements(dim as u64));
        for k in int8_kernels_available() {
            group.bench_with_input(
                BenchmarkId::new(format!("dot_{}", k.name), dim),
                &dim,
                |bench, _| bench.iter(|| (k.dot)(black_box(&a), black_box(&b))),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("l2_{}", k.name), dim),
                &dim,
                |bench, _| bench.iter(|| (k.l2)(black_box(&a), black_box(&b))),
            );
        }
        let f32_dot = kernel_for(Distance::DotProduct);
        let (fa, fb) = (v.row(0), v.row(1));
        group.bench_with_input(BenchmarkId::new("f32_dot_simd", dim), &dim, |bench, _| {
            bench.iter(|| f32_dot(black_box(fa), black_box(fb)))
        });
    }
    group.finish();
}

fn sets(c: &mut Criterion) {
    let mut group = c.benchmark_group("distance/sets");
    for dim in [50, 384, 768] {
        let v = synthetic_vectors(5, dim, 42);
        let a = v.row(0);
        let bs = [v.row(1), v.row(2), v.row(3), v.row(4)];
        group.throughput(Throughput::Elements(dim as u64));
        for (name, one, four) in f32_kernels_available(Distance::Cosine) {
            group.bench_with_input(BenchmarkId::new(name, dim), &dim, |bench, _| {
                bench.iter(|| one(black_box(a), black_box(bs[0])))
            });
            if let Some(four) = four {
                group.bench_with_input(
                    BenchmarkId::new(format!("{name}_x4"), dim),
                    &dim,
                    |bench, _| bench.iter(|| four(black_box(a), black_box(bs))),
                );
            }
        }
    }
    group.finish();
}

fn int8_run(c: &mut Criterion) {
    const RUN: usize = 64;
    let mut group = c.benchmark_group("distance/int8_run");
    for dim in [50usize, 384, 768] {
        // The codes' layout: a block of ceil((dim + 8) / 64) lines per code, the query's codes
        // padded with zeros to a multiple of 64.
        let stride = (dim + 8).div_ceil(64) * 64;
        let len = dim.div_ceil(64) * 64;
        let v = synthetic_vectors(RUN + 1, dim, 42);
        let code = |row: &[f32]| -> Vec<i8> {
            let mut c: Vec<i8> = row
                .iter()
                .map(|&x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
                .collect();
            c.resize(stride, 0);
            c
        };
        let mut q = code(v.row(0));
        q.truncate(len);
        let codes: Vec<i8> = (1..=RUN).flat_map(|r| code(v.row(r))).collect();
        let mut out = [0i32; RUN];
        group.throughput(Throughput::Elements(RUN as u64));
        for k in int8_kernels_available() {
            group.bench_with_input(
                BenchmarkId::new(format!("run_{}", k.name), dim),
                &dim,
                |bench, _| {
                    bench.iter(|| {
                        (k.dot_run)(black_box(&q), black_box(&codes), stride, &mut out);
                        black_box(&out);
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("single_{}", k.name), dim),
                &dim,
                |bench, _| {
                    bench.iter(|| {
                        for (j, o) in out.iter_mut().enumerate() {
                            *o = (k.dot)(black_box(&q), &codes[j * stride..j * stride + len]);
                        }
                        black_box(&out);
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, int8, sets, int8_run);
criterion_main!(benches);
