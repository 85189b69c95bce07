//! Recall@10 against exact ground truth on real embeddings (the committed subsets in
//! `testdata/`), at default settings: plain, and filtered at 0.1%, 1%, 10% and 50% selectivity.

mod common;

use common::{brute_force, read_fvecs, read_ivecs, testdata};
use needle_core::{Database, Filter, Record, SearchOptions};
use serde_json::json;

const K: usize = 10;

/// Each row gets a `bucket` in 0..1000 from a fixed hash of its number, so `bucket < t` matches
/// about t/1000 of the rows.
fn bucket(row: usize) -> u64 {
    let mut z = (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (z ^ (z >> 29)) % 1000
}

/// The database, the base vectors, the queries and the ground truth.
type Loaded = (Database, Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<u32>>);

fn load(name: &str) -> Loaded {
    let dir = testdata(name);
    let base = read_fvecs(&dir.join("base.fvecs"));
    let queries = read_fvecs(&dir.join("query.fvecs"));
    let gt = read_ivecs(&dir.join("gt.ivecs"));
    let db = Database::in_memory();
    db.create_collection(name, base[0].len()).unwrap();
    let records = base
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Record::new(
                i.to_string(),
                v.clone(),
                Some(json!({"bucket": bucket(i), "row": i})),
            )
        })
        .collect();
    db.insert_batch(name, records).unwrap();
    (db, base, queries, gt)
}

fn recall(found: &[String], truth: &[usize]) -> f64 {
    let hits = found
        .iter()
        .filter(|id| truth.contains(&id.parse::<usize>().unwrap()))
        .count();
    hits as f64 / truth.len().max(1) as f64
}

fn plain_recall(name: &str) -> f64 {
    let (db, _base, queries, gt) = load(name);
    let total: f64 = queries
        .iter()
        .zip(&gt)
        .map(|(q, truth)| {
            let ids: Vec<String> = db
                .search(name, q, K)
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(ids.len(), K);
            let truth: Vec<usize> = truth[..K].iter().map(|&x| x as usize).collect();
            recall(&ids, &truth)
        })
        .sum();
    let r = total / queries.len() as f64;
    eprintln!("{name}: recall@10 = {r:.4} at default settings");
    r
}

#[test]
fn glove50_recall_at_default_settings() {
    let r = plain_recall("glove50-10k");
    assert!(r >= 0.95, "recall@10 {r:.4} < 0.95");
}

#[test]
fn words_minilm_recall_at_default_settings() {
    let r = plain_recall("words-minilm-4k");
    assert!(r >= 0.95, "recall@10 {r:.4} < 0.95");
}

#[test]
fn filtered_recall_at_each_selectivity() {
    let name = "glove50-10k";
    let (db, base, queries, _gt) = load(name);
    for (threshold, label) in [(1u64, "0.1%"), (10, "1%"), (100, "10%"), (500, "50%")] {
        let filter = Filter::parse(&json!({"bucket": {"$lt": threshold}})).unwrap();
        let matching = (0..base.len()).filter(|&i| bucket(i) < threshold).count();
        let opts = SearchOptions::new().with_filter(filter);
        let mut total = 0.0;
        for q in &queries {
            let hits = db.search_with(name, q, K, &opts).unwrap();
            assert_eq!(
                hits.len(),
                K.min(matching),
                "{label}: k results whenever k records match"
            );
            for h in &hits {
                let row: usize = h.id.parse().unwrap();
                assert!(
                    bucket(row) < threshold,
                    "{label}: a result does not match the filter"
                );
            }
            let truth = brute_force(&base, q, K, |i| bucket(i) < threshold);
            let ids: Vec<String> = hits.into_iter().map(|h| h.id).collect();
            total += recall(&ids, &truth);
        }
        let r = total / queries.len() as f64;
        eprintln!("{name}: filter matching {label} ({matching} rows): recall@10 = {r:.4}");
        assert!(r >= 0.95, "{label}: filtered recall@10 {r:.4} < 0.95");
    }
}

#[test]
fn deletes_and_updates_keep_search_working() {
    let name = "glove50-10k";
    let (db, base, queries, _gt) = load(name);
    // Delete every third row, move every fifth (a vector update), then check recall on the rest.
    for i in (0..base.len()).step_by(3) {
        assert!(db.delete(name, &i.to_string()).unwrap());
    }
    for i in (1..base.len()).step_by(5) {
        if i % 3 != 0 {
            let moved: Vec<f32> = base[i].iter().map(|x| -x).collect();
            db.update(name, &i.to_string(), Some(moved), None).unwrap();
        }
    }
    let current = |i: usize| -> Vec<f32> {
        if i % 5 == 1 {
            base[i].iter().map(|x| -x).collect()
        } else {
            base[i].clone()
        }
    };
    let live: Vec<Vec<f32>> = (0..base.len()).map(current).collect();
    let measure = |db: &Database| {
        let mut total = 0.0;
        for q in &queries[..100] {
            let hits = db.search(name, q, K).unwrap();
            assert!(
                hits.iter().all(|h| h.id.parse::<usize>().unwrap() % 3 != 0),
                "a deleted record came back"
            );
            let truth = brute_force(&live, q, K, |i| i % 3 != 0);
            total += recall(&hits.into_iter().map(|h| h.id).collect::<Vec<_>>(), &truth);
        }
        total / 100.0
    };
    let before = measure(&db);
    eprintln!("after deleting 1/3 and moving 1/5: recall@10 = {before:.4}");
    assert!(before >= 0.90, "recall with tombstones {before:.4}");
    db.compact(name).unwrap();
    let after = measure(&db);
    eprintln!("after compact: recall@10 = {after:.4}");
    assert!(after >= 0.95, "recall after compact {after:.4}");
    assert_eq!(db.collection_info(name).unwrap().deleted, 0);
}
