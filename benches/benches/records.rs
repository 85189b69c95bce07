//! The per-record bookkeeping a user feels: `get`, a metadata-only `update`, an upsert of an
//! existing id (new vector: a new slot, the old one tombstoned), a delete and re-insert, and
//! a scroll page of 100 from a random id, on a collection of 20,000 small vectors (8 dims,
//! so the id index and metadata store weigh more than the graph does). Ids are `doc-<n>`
//! written in a shuffled order, so id order is not slot order. Also a filtered search on a
//! path without a payload index (it reads each candidate's metadata: 1 in 10 records match).
//!
//! `cargo bench -p needle-benches --bench records`

use criterion::{Criterion, criterion_group, criterion_main};
use needle_benches::collection::{COLLECTION, config};
use needle_benches::{Metric, synthetic_vectors};
use needle_core::{Database, Filter, Record, SearchOptions};
use serde_json::json;

const N: usize = 20_000;
const DIM: usize = 8;

/// A fixed permutation of `0..n` (a multiplicative step co-prime with `n`).
fn shuffled(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7_919 + 13) % n).collect()
}

fn records(c: &mut Criterion) {
    let base = synthetic_vectors(N, DIM, 11);
    let db = Database::in_memory();
    db.create_collection_with_config(COLLECTION, DIM, config(Metric::Cosine, 8, 40))
        .expect("create the collection");
    let order = shuffled(N);
    let recs: Vec<Record> = order
        .iter()
        .map(|&i| Record {
            id: format!("doc-{i}"),
            vector: base.row(i).to_vec(),
            // Every other record has metadata.
            metadata: (i % 2 == 0).then(|| json!({"n": i % 10})),
        })
        .collect();
    db.insert_batch(COLLECTION, recs).expect("insert");
    let ids: Vec<String> = order.iter().map(|i| format!("doc-{i}")).collect();

    let mut group = c.benchmark_group("records");
    let mut k = 0usize;
    let mut next = || {
        k = (k + 7_907) % N;
        k
    };
    group.bench_function("get", |b| {
        b.iter(|| db.get(COLLECTION, &ids[next()]).expect("get"))
    });
    let opts = SearchOptions {
        filter: Some(Filter::parse(&json!({"n": 4})).expect("a valid filter")),
        ..SearchOptions::default()
    };
    group.bench_function("search-filtered-no-index", |b| {
        b.iter(|| {
            db.search_with(COLLECTION, base.row(next()), 10, &opts)
                .expect("search")
        })
    });
    group.bench_function("update-metadata", |b| {
        b.iter(|| {
            let i = next();
            db.update(COLLECTION, &ids[i], None, Some(json!({"n": i % 10})))
                .expect("update")
        })
    });
    group.bench_function("upsert-existing", |b| {
        b.iter(|| {
            let i = next();
            let rec = Record {
                id: ids[i].clone(),
                vector: base.row((i + 1) % N).to_vec(),
                metadata: None,
            };
            db.insert_batch(COLLECTION, vec![rec]).expect("upsert")
        })
    });
    group.bench_function("delete-reinsert", |b| {
        b.iter(|| {
            let i = next();
            db.delete(COLLECTION, &ids[i]).expect("delete");
            let rec = Record {
                id: ids[i].clone(),
                vector: base.row(i).to_vec(),
                metadata: None,
            };
            db.insert_batch(COLLECTION, vec![rec]).expect("insert")
        })
    });
    group.bench_function("scroll-100", |b| {
        b.iter(|| {
            let after = &ids[next()];
            db.scroll(COLLECTION, None, Some(after), 100)
                .expect("scroll")
        })
    });
    group.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
