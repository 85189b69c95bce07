//! `quantization: sq8`: recall against exact ground truth on the committed subsets (a generous
//! bound below f32's), the mode and the trained ranges kept by reopening (log replay and
//! checkpoint), compaction and snapshots, and the same results for the same operations.

mod common;

use common::{filter_meta as meta, filters, read_fvecs, read_ivecs, testdata};
use needle_core::{CollectionConfig, Database, Quantization, Record, SearchOptions};

const K: usize = 10;

fn config(q: Quantization) -> CollectionConfig {
    CollectionConfig {
        quantization: q,
        ..CollectionConfig::default()
    }
}

fn records(base: &[Vec<f32>], from: usize, to: usize) -> Vec<Record> {
    (from..to)
        .map(|i| Record::new(i.to_string(), base[i].clone(), None))
        .collect()
}

/// Mean recall@10 of `db`'s collection "c" at `ef`.
fn recall(db: &Database, queries: &[Vec<f32>], gt: &[Vec<u32>], ef: usize) -> f64 {
    let opts = SearchOptions::new().with_ef_search(ef);
    let total: f64 = queries
        .iter()
        .zip(gt)
        .map(|(q, truth)| {
            let hits = db.search_with("c", q, K, &opts).unwrap();
            assert_eq!(hits.len(), K);
            let found = hits
                .iter()
                .filter(|h| truth[..K].contains(&h.id.parse::<u32>().unwrap()))
                .count();
            found as f64 / K as f64
        })
        .sum();
    total / queries.len() as f64
}

/// Base vectors, queries, ground truth.
type Loaded = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<Vec<u32>>);

fn load(name: &str) -> Loaded {
    let dir = testdata(name);
    (
        read_fvecs(&dir.join("base.fvecs")),
        read_fvecs(&dir.join("query.fvecs")),
        read_ivecs(&dir.join("gt.ivecs")),
    )
}

fn built(base: &[Vec<f32>], q: Quantization) -> Database {
    let db = Database::in_memory();
    db.create_collection_with_config("c", base[0].len(), config(q))
        .unwrap();
    db.insert_batch("c", records(base, 0, base.len())).unwrap();
    db
}

fn sq8_recall_is_close_to_f32(name: &str) {
    let (base, queries, gt) = load(name);
    let f32_db = built(&base, Quantization::None);
    let sq8_db = built(&base, Quantization::Sq8);
    for ef in [32, 64] {
        let exact = recall(&f32_db, &queries, &gt, ef);
        let quantized = recall(&sq8_db, &queries, &gt, ef);
        eprintln!("{name} ef {ef}: recall@10 f32 {exact:.4}, sq8 {quantized:.4}");
        assert!(
            quantized >= exact - 0.03,
            "{name} ef {ef}: sq8 recall {quantized:.4} more than 0.03 below f32's {exact:.4}"
        );
    }
}

#[test]
fn sq8_recall_on_glove50_is_close_to_f32() {
    sq8_recall_is_close_to_f32("glove50-10k");
}

#[test]
fn sq8_recall_on_words_minilm_is_close_to_f32() {
    sq8_recall_is_close_to_f32("words-minilm-4k");
}

/// The answers of every query, ids and distances.
fn answers(db: &Database, queries: &[Vec<f32>]) -> Vec<Vec<(String, u32)>> {
    queries
        .iter()
        .map(|q| {
            db.search("c", q, K)
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.distance.to_bits()))
                .collect()
        })
        .collect()
}

/// Reopening (log replay, then checkpoint), a snapshot restored elsewhere and a second database
/// given the same operations all keep the mode and answer every query alike; compaction keeps
/// the mode and the recall.
#[test]
fn sq8_survives_reopen_checkpoint_snapshot_and_compaction_deterministically() {
    let (base, queries, gt) = load("words-minilm-4k");
    let queries = &queries[..50];
    let gt = &gt[..50];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    let ops = |db: &Database| {
        db.create_collection_with_config("c", base[0].len(), config(Quantization::Sq8))
            .unwrap();
        // Below the training threshold first, then past it, then past twice that (retraining).
        db.insert_batch("c", records(&base, 0, 600)).unwrap();
        db.insert_batch("c", records(&base, 600, 1_500)).unwrap();
        db.insert_batch("c", records(&base, 1_500, base.len()))
            .unwrap();
        for i in (0..base.len()).step_by(7) {
            db.delete("c", &i.to_string()).unwrap();
        }
    };
    let db = Database::open(&path).unwrap();
    ops(&db);
    let before = answers(&db, queries);
    let checksum = db.state_checksum();
    drop(db);

    let other = Database::in_memory();
    ops(&other);
    assert_eq!(
        answers(&other, queries),
        before,
        "same operations, same answers"
    );
    assert_eq!(other.state_checksum(), checksum);

    // Log replay.
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.collection_info("c").unwrap().config.quantization,
        Quantization::Sq8
    );
    assert_eq!(answers(&db, queries), before, "after replaying the log");
    assert_eq!(db.state_checksum(), checksum);
    // Checkpoint, reopen.
    db.checkpoint().unwrap();
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(answers(&db, queries), before, "after a checkpoint");
    assert_eq!(db.state_checksum(), checksum);

    // Snapshot into another database.
    let mut bytes = Vec::new();
    db.write_snapshot(&mut bytes, 5).unwrap();
    let restored = Database::in_memory();
    restored.restore_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(answers(&restored, queries), before, "after a snapshot");

    // Compaction retrains on the live records; the mode stays and so does recall.
    db.compact("c").unwrap();
    assert_eq!(
        db.collection_info("c").unwrap().config.quantization,
        Quantization::Sq8
    );
    let live: Vec<Vec<u32>> = gt.to_vec();
    let r = recall(&db, queries, &live, 64);
    eprintln!("after compaction: recall@10 {r:.4} (a seventh of the records deleted)");
    assert!(r >= 0.75, "recall {r:.4} after compaction");
    let compacted = answers(&db, queries);
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(answers(&db, queries), compacted, "compaction replayed");
}

/// Whether row `i` matches `filter` (the filters of [`filters`], evaluated by the library).
fn matches(filter: &needle_core::Filter, i: usize) -> bool {
    filter.matches(Some(&meta(i)))
}

/// Under sq8 a filtered search measures distances on the int8 codes (walks, exact passes and
/// scans alike) and re-ranks the best by their f32 vectors: on glove50-10k with a payload
/// index on two of the three paths, its recall@10 against the exact filtered ground truth is
/// within 0.03 of the f32 collection's on every filter from 1 % to 50 %, and every answer
/// matches the filter.
#[test]
fn sq8_filtered_recall_is_close_to_f32() {
    use needle_core::Filter;
    let (base, queries, _) = load("glove50-10k");
    let queries = &queries[..100];
    let dbs: Vec<Database> = [Quantization::None, Quantization::Sq8]
        .into_iter()
        .map(|q| common::filtered_collection(&base, config(q)))
        .collect();
    for raw in filters() {
        let filter = Filter::parse(&raw).unwrap();
        let opts = SearchOptions::new()
            .with_ef_search(64)
            .with_filter(filter.clone());
        let mut recalls = [0.0f64; 2];
        for q in queries {
            let truth = common::brute_force(&base, q, K, |i| matches(&filter, i));
            for (db, r) in dbs.iter().zip(recalls.iter_mut()) {
                let hits = db.search_with("c", q, K, &opts).unwrap();
                assert_eq!(hits.len(), K, "{raw}");
                for h in &hits {
                    let row: usize = h.id.parse().unwrap();
                    assert!(matches(&filter, row), "{raw}: row {row} does not match");
                }
                let found = hits
                    .iter()
                    .filter(|h| truth.contains(&h.id.parse::<usize>().unwrap()))
                    .count();
                *r += found as f64 / K as f64 / queries.len() as f64;
            }
        }
        let [exact, quantized] = recalls;
        eprintln!("{raw}: filtered recall@10 f32 {exact:.4}, sq8 {quantized:.4}");
        assert!(
            quantized >= exact - 0.03 && quantized >= 0.9,
            "{raw}: sq8 filtered recall {quantized:.4} (f32 {exact:.4})"
        );
    }
}
