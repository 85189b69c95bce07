//! Bit-packed layer-0 links (links11: sq8 collections whose `u32` links outweigh their codes,
//! `4 + 8·m > 4 + dim`) through the public API (break11): node counts at exact powers of two
//! and one past (the packed width is what the capacity needs: 10 bits at 1,024, 11 one past),
//! through checkpoints and reopen (a file's links re-packed at its exact count), m 2, 16 and
//! 128 (count fields of 3, 6 and 9 bits), deletes and compaction, `Database::check` on the
//! file, and searches running while batches grow the array past 1,024 and 2,048 nodes (the
//! grown copy made under the read lock and swapped in). Replays with `NEEDLE_SEED`.

mod common;

use std::collections::BTreeSet;

use common::{Rng, seed};
use needle_core::{CollectionConfig, Database, Quantization, Record, SearchOptions};

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.f32() - 0.5).collect()
}

fn config(m: usize) -> CollectionConfig {
    CollectionConfig {
        m,
        ef_construction: 40,
        quantization: Quantization::Sq8,
        ..CollectionConfig::default()
    }
}

/// Ids of the `k` nearest of each query, at a wide `ef`.
fn answers(db: &Database, queries: &[Vec<f32>], k: usize) -> Vec<Vec<String>> {
    let opts = SearchOptions::new().with_ef_search(200);
    queries
        .iter()
        .map(|q| {
            db.search_with("c", q, k, &opts)
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect()
        })
        .collect()
}

fn recall(db: &Database, base: &[(String, Vec<f32>)], queries: &[Vec<f32>], k: usize) -> f64 {
    let vecs: Vec<Vec<f32>> = base.iter().map(|(_, v)| v.clone()).collect();
    let got = answers(db, queries, k);
    let mut hit = 0;
    for (q, got) in queries.iter().zip(&got) {
        let want: BTreeSet<&str> = common::brute_force(&vecs, q, k, |_| true)
            .into_iter()
            .map(|i| base[i].0.as_str())
            .collect();
        hit += got.iter().filter(|g| want.contains(g.as_str())).count();
    }
    hit as f64 / (queries.len() * k) as f64
}

#[test]
fn packed_links_at_powers_of_two_survive_reopen_compaction_and_check() {
    let seed = seed("packed_links_at_powers_of_two_survive_reopen_compaction_and_check");
    let mut rng = Rng(seed);
    let dim = 8;
    for m in [2usize, 16, 128] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.needle");
        let mut db = Database::open(&path).unwrap();
        db.create_collection_with_config("c", dim, config(m))
            .unwrap();
        let queries: Vec<Vec<f32>> = (0..20).map(|_| vector(&mut rng, dim)).collect();
        let mut base: Vec<(String, Vec<f32>)> = Vec::new();
        // Counts at which the file is reopened: its links re-packed for exactly that many.
        for target in [1023usize, 1024, 1025, 1100] {
            let batch: Vec<Record> = (base.len()..target)
                .map(|i| {
                    let v = vector(&mut rng, dim);
                    base.push((format!("r{i}"), v.clone()));
                    Record::new(format!("r{i}"), v, None)
                })
                .collect();
            db.insert_batch("c", batch).unwrap();
            let before = answers(&db, &queries, 10);
            let checksum = db.state_checksum();
            db.checkpoint().unwrap();
            drop(db);
            let report = Database::check(&path).unwrap();
            assert_eq!(report.collections, vec![("c".to_string(), target)], "m {m}");
            db = Database::open(&path).unwrap();
            assert_eq!(
                db.state_checksum(),
                checksum,
                "seed {seed} m {m} n {target}"
            );
            assert_eq!(
                answers(&db, &queries, 10),
                before,
                "seed {seed} m {m} n {target}: the reopened graph answers otherwise"
            );
            let r = recall(&db, &base, &queries, 10);
            assert!(r >= 0.9, "seed {seed} m {m} n {target}: recall {r}");
        }
        // Deletes, then compaction (a new graph of the live records), then check.
        let mut kept = Vec::new();
        for (i, (id, v)) in base.into_iter().enumerate() {
            if i % 7 == 3 {
                assert!(db.delete("c", &id).unwrap());
            } else {
                kept.push((id, v));
            }
        }
        db.compact("c").unwrap();
        let r = recall(&db, &kept, &queries, 10);
        assert!(r >= 0.9, "seed {seed} m {m} compacted: recall {r}");
        let checksum = db.state_checksum();
        db.checkpoint().unwrap();
        drop(db);
        let report = Database::check(&path).unwrap();
        assert_eq!(report.collections, vec![("c".to_string(), kept.len())]);
        let db = Database::open(&path).unwrap();
        assert_eq!(db.state_checksum(), checksum, "seed {seed} m {m} compacted");
    }
}

/// Searches run while a writer's batches grow the packed array past 1,024 and 2,048 nodes
/// (each growth re-packs with one bit more): every answer holds inserted ids only, each
/// once, nearest first; afterwards the graph finds its nearest neighbours.
#[test]
fn searches_during_packed_growth_see_consistent_links() {
    let seed = seed("searches_during_packed_growth_see_consistent_links");
    let mut rng = Rng(seed);
    let dim = 8;
    let db = Database::in_memory();
    db.create_collection_with_config("c", dim, config(16))
        .unwrap();
    let total = 2_200usize;
    let base: Vec<(String, Vec<f32>)> = (0..total)
        .map(|i| (format!("r{i}"), vector(&mut rng, dim)))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for r in 0..2u64 {
            let (db, done) = (&db, &done);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (r + 1));
                let mut rounds = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || rounds < 5 {
                    rounds += 1;
                    let q = vector(&mut rng, dim);
                    let got = db.search("c", &q, 10).unwrap();
                    let ids: BTreeSet<&str> = got.iter().map(|h| h.id.as_str()).collect();
                    assert_eq!(ids.len(), got.len(), "seed {seed}: an id twice");
                    for h in &got {
                        let i: usize = h.id[1..].parse().unwrap();
                        assert!(i < total, "seed {seed}: {}", h.id);
                    }
                    assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
                }
            });
        }
        // Batches of 97 and 1 so that the node count passes 1,024 and 2,048 both in a batch
        // and one at a time.
        let mut at = 0;
        while at < total {
            let n = if (1020..1030).contains(&at) || (2044..2054).contains(&at) {
                1
            } else {
                97.min(total - at)
            };
            let batch = base[at..at + n]
                .iter()
                .map(|(id, v)| Record::new(id.clone(), v.clone(), None))
                .collect();
            db.insert_batch("c", batch).unwrap();
            at += n;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let queries: Vec<Vec<f32>> = (0..20).map(|_| vector(&mut rng, dim)).collect();
    let r = recall(&db, &base, &queries, 10);
    assert!(r >= 0.9, "seed {seed}: recall {r}");
}
