//! `search_with` on one thread, k = 10, at a few `ef_search` values, over a collection of
//! `testdata/glove50-10k` (generated vectors when that folder is absent; another data set folder
//! with `NEEDLE_BENCH_DATA=DIR`, e.g. `../shared/data/glove50`).
//!
//! `cargo bench -p needle-benches --bench search`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use needle_benches::collection::{COLLECTION, config, insert_rows};
use needle_benches::timing::search_options;
use needle_benches::{Dataset, Metric, Vecs, synthetic_vectors, testdata_dir};
use needle_core::Database;

const K: usize = 10;
const EFS: [usize; 3] = [16, 64, 128];

/// (label, base, queries, metric).
fn data() -> (String, Vecs<f32>, Vecs<f32>, Metric) {
    let dir = std::env::var_os("NEEDLE_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| testdata_dir().join("glove50-10k"));
    match Dataset::load(&dir) {
        Ok(ds) => (ds.name, ds.base, ds.queries, ds.metric),
        Err(e) => {
            eprintln!("{}: {e}; using generated vectors", dir.display());
            let v = synthetic_vectors(10_200, 50, 7);
            let base =
                Vecs::from_flat(50, v.as_flat()[..10_000 * 50].to_vec()).expect("rows of 50");
            let queries =
                Vecs::from_flat(50, v.as_flat()[10_000 * 50..].to_vec()).expect("rows of 50");
            ("generated-10k".into(), base, queries, Metric::Cosine)
        }
    }
}

fn search(c: &mut Criterion) {
    let (label, base, queries, metric) = data();
    let db = Database::in_memory();
    db.create_collection_with_config(COLLECTION, base.dim(), config(metric, 16, 200))
        .expect("create the collection");
    insert_rows(&db, COLLECTION, &base, usize::MAX).expect("insert the base vectors");

    let mut group = c.benchmark_group(format!("search/{label}"));
    group.throughput(Throughput::Elements(1));
    for ef in EFS {
        let opts = search_options(ef);
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("ef", ef), &ef, |bench, _| {
            bench.iter(|| {
                let q = queries.row(next);
                next = (next + 1) % queries.len();
                black_box(db.search_with(COLLECTION, black_box(q), K, &opts))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
