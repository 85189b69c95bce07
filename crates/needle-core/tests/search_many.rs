//! `Database::search_many`: per query the same answer as `search_with`, in query order, on one
//! thread and on several, with tombstones, filters and `quantization: sq8`; an invalid query
//! fails the call with its position named.

mod common;

use needle_core::{
    CollectionConfig, Database, Distance, Error, Filter, Quantization, Record, SearchOptions,
    SearchResult,
};
use serde_json::json;

fn random_vectors(rng: &mut common::Rng, n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..dim).map(|_| rng.f32() - 0.5).collect())
        .collect()
}

/// Ids and distances (bit for bit), so two answers compare exactly.
fn key(results: &[SearchResult]) -> Vec<(String, u32)> {
    results
        .iter()
        .map(|r| (r.id.clone(), r.distance.to_bits()))
        .collect()
}

fn check_equal(db: &Database, queries: &[Vec<f32>], k: usize, opts: &SearchOptions, what: &str) {
    let sequential: Vec<_> = queries
        .iter()
        .map(|q| key(&db.search_with("c", q, k, opts).unwrap()))
        .collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let many = pool.install(|| db.search_many("c", queries, k, opts).unwrap());
        assert_eq!(many.len(), queries.len(), "{what}, {threads} threads");
        for (i, (m, s)) in many.iter().zip(&sequential).enumerate() {
            assert_eq!(&key(m), s, "{what}, {threads} threads, query {i}");
        }
    }
}

#[test]
fn search_many_answers_like_search_with_in_query_order() {
    let seed = common::seed("search_many_answers_like_search_with_in_query_order");
    let mut rng = common::Rng(seed);
    let (n, dim) = (1_500, 24);
    let base = random_vectors(&mut rng, n, dim);
    let queries = random_vectors(&mut rng, 60, dim);
    for quantization in [Quantization::None, Quantization::Sq8] {
        let db = Database::in_memory();
        let config = CollectionConfig {
            distance: Distance::Cosine,
            quantization,
            ..CollectionConfig::default()
        };
        db.create_collection_with_config("c", dim, config).unwrap();
        let records = base
            .iter()
            .enumerate()
            .map(|(i, v)| Record::new(format!("r{i}"), v.clone(), Some(json!({"g": i % 3}))))
            .collect();
        db.insert_batch("c", records).unwrap();
        let what = format!("{quantization:?}");
        check_equal(&db, &queries, 10, &SearchOptions::new(), &what);
        check_equal(
            &db,
            &queries,
            5,
            &SearchOptions::new().with_ef_search(16),
            &format!("{what}, ef 16"),
        );
        let filter = Filter::parse(&json!({"g": 1})).unwrap();
        check_equal(
            &db,
            &queries,
            7,
            &SearchOptions::new().with_filter(filter),
            &format!("{what}, filtered"),
        );
        for i in (0..n).step_by(5) {
            db.delete("c", &format!("r{i}")).unwrap();
        }
        check_equal(
            &db,
            &queries,
            10,
            &SearchOptions::new(),
            &format!("{what}, tombstones"),
        );
        assert!(
            db.search_many::<Vec<f32>>("c", &[], 10, &SearchOptions::new())
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn an_invalid_query_fails_search_many_with_its_position() {
    let db = Database::in_memory();
    db.create_collection("c", 3).unwrap();
    db.insert("c", "a", vec![1.0, 0.0, 0.0], None).unwrap();
    let mut queries = vec![vec![1.0, 2.0, 3.0]; 6];
    queries[4] = vec![1.0, f32::NAN, 0.0];
    queries[5] = vec![0.0, 0.0];
    let err = db
        .search_many("c", &queries, 1, &SearchOptions::new())
        .unwrap_err();
    match &err {
        Error::InvalidVector { reason, .. } => {
            assert!(reason.contains("query 4 of the batch"), "{reason}")
        }
        other => panic!("expected InvalidVector, got {other:?}"),
    }
    queries[4] = vec![1.0, 1.0, 0.0];
    assert!(matches!(
        db.search_many("c", &queries, 1, &SearchOptions::new()),
        Err(Error::DimensionMismatch { got: 2, .. })
    ));
    assert!(matches!(
        db.search_many("nope", &queries, 1, &SearchOptions::new()),
        Err(Error::CollectionNotFound { .. })
    ));
}
