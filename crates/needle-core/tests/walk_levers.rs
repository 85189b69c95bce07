//! The walk's speed levers (prefetching whole link blocks, prefetching a node's links when it
//! enters the beam or only near its front, the greedy descent's prefetches, one distance at a
//! time below the four-at-once kernels' floor) and the four-at-once kernels themselves change
//! no result and no graph, and no prefetch reads out of bounds: for every dimension from 1 to
//! 70, m from 2 to 128, all three distances, graphs with tombstones and per-value graphs, sq8,
//! an empty collection and a one-record one, every lever mask gives the same ids and the same
//! distances bit for bit, and builds the same state (checksum).
//!
//! Alone in its binary: the levers and the value-graph threshold are process-wide. Set
//! `NEEDLE_SLOW=1` for 600 records a shape (150-220 by default).

mod common;

use common::{Rng, seed};
use needle_core::__private::{set_batched_distances, set_value_graph_min_records, set_walk_levers};
use needle_core::{
    CollectionConfig, Database, Distance, Filter, IndexKind, Quantization, Record, SearchOptions,
};
use serde_json::json;

/// Every lever on (the default); the masks tried are every combination of the first five bits.
const ALL_LEVERS: u32 = u32::MAX;
const MASKS: u32 = 32;
const MS: [usize; 10] = [2, 3, 4, 5, 7, 8, 12, 16, 24, 128];
const DISTANCES: [Distance; 3] = [Distance::Euclidean, Distance::Cosine, Distance::DotProduct];

/// Every lever mask, with the four-at-once kernels on and off.
fn settings() -> Vec<(u32, bool)> {
    (0..MASKS)
        .chain([ALL_LEVERS])
        .flat_map(|mask| [(mask, true), (mask, false)])
        .collect()
}

fn set(setting: (u32, bool)) {
    set_walk_levers(setting.0);
    set_batched_distances(setting.1);
}

/// A collection of `n` records (every 5th deleted, some replaced) with an integer index whose
/// values have graphs of their own.
fn build(
    dim: usize,
    m: usize,
    distance: Distance,
    q: Quantization,
    n: usize,
    seed: u64,
) -> Database {
    let db = Database::in_memory();
    let config = CollectionConfig {
        distance,
        m,
        ef_construction: 24,
        ef_search: 16,
        quantization: q,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("c", dim, config).unwrap();
    db.create_index("c", "v", IndexKind::Integer).unwrap();
    let mut rng = Rng(seed);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let v = (0..dim).map(|_| rng.f32() - 0.5).collect();
            Record::new(format!("r{i}"), v, Some(json!({ "v": i % 3 })))
        })
        .collect();
    for batch in records.chunks(97) {
        db.insert_batch("c", batch.to_vec()).unwrap();
    }
    let doomed: Vec<String> = (0..n).step_by(5).map(|i| format!("r{i}")).collect();
    db.delete_many("c", &doomed).unwrap();
    for i in (1..n).step_by(11).filter(|i| i % 5 != 0) {
        let v = (0..dim).map(|_| rng.f32() - 0.5).collect();
        db.update("c", &format!("r{i}"), Some(v), None).unwrap();
    }
    db
}

/// Ids and distance bits of unfiltered and filtered searches, at several k and ef.
fn answers(db: &Database, dim: usize, seed: u64) -> Vec<Vec<(String, u32)>> {
    let mut rng = Rng(seed ^ 0x5eed);
    let mut out = Vec::new();
    for i in 0..6 {
        let q: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
        for (k, ef) in [(1, Some(1)), (10, None), (25, Some(64))] {
            for filter in [
                None,
                Some(json!({ "v": i % 3 })),
                Some(json!({ "v": { "$lt": 2 } })),
            ] {
                let opts = SearchOptions {
                    filter: filter.map(|f| Filter::parse(&f).unwrap()),
                    ef_search: ef,
                    ..SearchOptions::default()
                };
                out.push(
                    db.search_with("c", &q, k, &opts)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.id, r.distance.to_bits()))
                        .collect(),
                );
            }
        }
    }
    out
}

/// Searches and builds alike under every setting, for one collection shape.
fn same_under_every_setting(
    dim: usize,
    m: usize,
    distance: Distance,
    q: Quantization,
    n: usize,
    seed: u64,
) {
    set((ALL_LEVERS, true));
    let db = build(dim, m, distance, q, n, seed);
    let expected = answers(&db, dim, seed);
    for setting in settings() {
        set(setting);
        assert_eq!(
            answers(&db, dim, seed),
            expected,
            "dim {dim}, m {m}, {distance:?}, {q:?}, {n} records, levers {setting:?}: seed {seed}"
        );
    }
    // The graph built with every lever off and one distance at a time is the same.
    set((0, false));
    let plain = build(dim, m, distance, q, n, seed);
    set((ALL_LEVERS, true));
    assert_eq!(
        plain.state_checksum(),
        db.state_checksum(),
        "dim {dim}, m {m}, {distance:?}, {q:?}: another graph without the levers: seed {seed}"
    );
}

#[test]
fn every_lever_gives_the_same_results_and_graphs() {
    let seed = seed("every_lever_gives_the_same_results_and_graphs");
    set_value_graph_min_records(30);
    let slow = std::env::var_os("NEEDLE_SLOW").is_some();
    for dim in 1..=70 {
        let m = MS[dim % MS.len()];
        let distance = DISTANCES[dim % 3];
        let n = if slow { 600 } else { 150 + dim };
        same_under_every_setting(dim, m, distance, Quantization::None, n, seed ^ dim as u64);
    }
    // sq8 walks int8 codes (trained from 1,000 records on).
    for dim in [1, 15, 63, 64, 65] {
        let m = MS[dim % MS.len()];
        same_under_every_setting(dim, m, DISTANCES[dim % 3], Quantization::Sq8, 1_100, seed);
    }
    // The first and last node, alone: an empty collection, then one record.
    for setting in settings() {
        set(setting);
        for dim in [1, 64, 65] {
            let db = Database::in_memory();
            db.create_collection("c", dim).unwrap();
            assert!(db.search("c", &vec![0.5; dim], 5).unwrap().is_empty());
            db.insert("c", "only", vec![0.25; dim], None).unwrap();
            let found = db.search("c", &vec![0.5; dim], 5).unwrap();
            assert_eq!(found.len(), 1, "levers {setting:?}");
            db.delete("c", "only").unwrap();
            assert!(db.search("c", &vec![0.5; dim], 5).unwrap().is_empty());
        }
    }
    set((ALL_LEVERS, true));
}
