//! `insert_batch` of 2,000 vectors into a fresh collection, on one thread and on all cores
//! (the first 2,000 rows of `testdata/glove50-10k`, or generated vectors when it is absent).
//!
//! `cargo bench -p needle-benches --bench insert`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use needle_benches::collection::{COLLECTION, config, records};
use needle_benches::vecs::read_vecs_head;
use needle_benches::{Metric, Vecs, synthetic_vectors, testdata_dir};
use needle_core::Database;

const N: usize = 2_000;

fn base() -> Vecs<f32> {
    let path = testdata_dir().join("glove50-10k/base.fvecs");
    match read_vecs_head(&path, N) {
        Ok(v) if v.len() == N => v,
        Ok(_) | Err(_) => {
            eprintln!(
                "{}: not readable or short; using generated vectors",
                path.display()
            );
            synthetic_vectors(N, 50, 7)
        }
    }
}

fn insert(c: &mut Criterion) {
    let base = base();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("start one thread");
    let mut group = c.benchmark_group("insert_batch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    let setup = || {
        let db = Database::in_memory();
        db.create_collection_with_config(COLLECTION, base.dim(), config(Metric::Cosine, 16, 200))
            .expect("create the collection");
        (db, records(&base, 0, N))
    };
    group.bench_function("2000/1-thread", |bench| {
        bench.iter_batched(
            setup,
            |(db, recs)| {
                one.install(|| db.insert_batch(COLLECTION, recs))
                    .expect("insert");
                db
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("2000/all-cores", |bench| {
        bench.iter_batched(
            setup,
            |(db, recs)| {
                db.insert_batch(COLLECTION, recs).expect("insert");
                db
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, insert);
criterion_main!(benches);
