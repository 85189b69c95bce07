//! `quantization: sq8` on a file: after a checkpoint (written, opened, restored from a snapshot)
//! the f32 vectors used for re-ranking are read from the `.needle` file through a read-only map
//! instead of held in memory; slots written after it stay in memory until the next one. Every
//! answer, vector and checksum equals the all-in-memory database given the same operations, and
//! a cut or damaged file is a typed error at open, never a fault.

mod common;

use common::{read_fvecs, testdata};
use needle_core::{CollectionConfig, Database, Error, Quantization, Record};

fn sq8() -> CollectionConfig {
    CollectionConfig {
        quantization: Quantization::Sq8,
        ..CollectionConfig::default()
    }
}

fn records(base: &[Vec<f32>], from: usize, to: usize) -> Vec<Record> {
    (from..to)
        .map(|i| Record::new(i.to_string(), base[i].clone(), None))
        .collect()
}

/// Ids and distances (bits) of every query's 10 nearest, and a few stored vectors.
type State = (Vec<Vec<(String, u32)>>, Vec<Vec<f32>>);

/// The [`State`] of collection `c`.
fn state(db: &Database, c: &str, queries: &[Vec<f32>]) -> State {
    let answers = queries
        .iter()
        .map(|q| {
            db.search(c, q, 10)
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.distance.to_bits()))
                .collect()
        })
        .collect();
    let vectors = ["1", "999", "2500", "3999"]
        .iter()
        .filter_map(|id| db.get(c, id).unwrap().map(|r| r.vector))
        .collect();
    (answers, vectors)
}

#[test]
fn mapped_vectors_answer_like_vectors_in_memory() {
    let base = read_fvecs(&testdata("words-minilm-4k").join("base.fvecs"));
    let queries: Vec<Vec<f32>> = base.iter().step_by(97).take(40).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    let db = Database::open(&path).unwrap();
    let mem = Database::in_memory();
    let dim = base[0].len();
    for d in [&db, &mem] {
        d.create_collection_with_config("c", dim, sq8()).unwrap();
        d.create_collection("f", dim).unwrap();
        d.insert_batch("c", records(&base, 0, 3_000)).unwrap();
        d.insert_batch("f", records(&base, 0, 1_500)).unwrap();
    }
    let same = |db: &Database, what: &str| {
        assert_eq!(
            state(db, "c", &queries),
            state(&mem, "c", &queries),
            "{what}"
        );
        assert_eq!(
            state(db, "f", &queries),
            state(&mem, "f", &queries),
            "{what}"
        );
        assert_eq!(db.state_checksum(), mem.state_checksum(), "{what}");
    };
    assert_eq!(
        db.mapped_vectors("c").unwrap(),
        0,
        "nothing mapped before a checkpoint"
    );
    db.checkpoint().unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), 3_000);
    assert_eq!(
        db.mapped_vectors("f").unwrap(),
        0,
        "f32 mode keeps its vectors in memory"
    );
    assert_eq!(
        mem.mapped_vectors("c").unwrap(),
        0,
        "memory cannot be mapped"
    );
    same(&db, "after the checkpoint");

    // Writes after the checkpoint: in memory, after the mapped slots.
    for d in [&db, &mem] {
        d.insert_batch("c", records(&base, 3_000, base.len()))
            .unwrap();
        for i in (0..base.len()).step_by(11) {
            d.delete("c", &i.to_string()).unwrap();
        }
        d.insert("c", "2500", base[7].clone(), None).unwrap();
    }
    assert_eq!(db.mapped_vectors("c").unwrap(), 3_000);
    same(&db, "mapped slots and slots in memory");

    // Reopen: the checkpoint's slots mapped, the log's replayed into memory.
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), 3_000);
    same(&db, "after reopening");
    db.checkpoint().unwrap();
    let slots = db.collection_info("c").unwrap();
    let slots = slots.count + slots.deleted;
    assert_eq!(db.mapped_vectors("c").unwrap(), slots, "remapped");
    same(&db, "after the second checkpoint");

    // Compaction builds in memory; the next checkpoint maps again.
    db.compact("c").unwrap();
    mem.compact("c").unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), 0);
    same(&db, "after compaction");
    db.checkpoint().unwrap();
    let live = db.collection_info("c").unwrap().count;
    assert_eq!(db.mapped_vectors("c").unwrap(), live);
    same(&db, "compacted and checkpointed");
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), live);
    same(&db, "compacted, reopened");

    // A snapshot restored into another file-backed database is mapped from its new checkpoint.
    let mut bytes = Vec::new();
    db.write_snapshot(&mut bytes, 3).unwrap();
    let other = Database::open(dir.path().join("other.needle")).unwrap();
    other.restore_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(other.mapped_vectors("c").unwrap(), live);
    same(&other, "restored from a snapshot");
    // Restoring over a mapped database replaces its maps (the old file is gone).
    db.restore_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), live);
    same(&db, "restored over itself");
}

/// A checkpoint cut anywhere, or with a flipped bit in its vectors, does not open (a typed
/// error naming the file), and nothing is mapped from it.
#[test]
fn a_cut_or_damaged_checkpoint_is_a_typed_error_at_open() {
    let base = read_fvecs(&testdata("words-minilm-4k").join("base.fvecs"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection_with_config("c", base[0].len(), sq8())
            .unwrap();
        db.insert_batch("c", records(&base, 0, 1_200)).unwrap();
        db.checkpoint().unwrap();
        assert_eq!(db.mapped_vectors("c").unwrap(), 1_200);
    }
    let good = std::fs::read(&path).unwrap();
    let len = good.len();
    // The vectors take most of the file: these cuts fall inside them and after them.
    for cut in [100, len / 4, len / 2, len - 5, len - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        let _ = std::fs::remove_file(dir.path().join("db.needle-wal"));
        match Database::open(&path) {
            Err(Error::Corrupted { .. }) => {}
            other => panic!("cut at {cut} of {len}: {other:?}"),
        }
    }
    let mut flipped = good.clone();
    flipped[len / 3] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    assert!(matches!(
        Database::open(&path),
        Err(Error::Corrupted { .. })
    ));
    std::fs::write(&path, &good).unwrap();
    let db = Database::open(&path).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), 1_200);
}

/// The resident pages (kB) of this process's maps of `path`, from `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn resident_kb_of_maps_of(path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut inside = false;
    let mut kb = 0;
    for line in smaps.lines() {
        // A map's header line: "start-end perms offset dev inode [path]".
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            inside = line.ends_with(name);
        } else if inside && let Some(rest) = line.strip_prefix("Rss:") {
            kb += rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    kb
}

/// Re-ranking reads the mapped vectors with positioned reads, not through the map: searching
/// leaves none of the map's pages resident in the process (the f32 vectors are not part of
/// its RSS), and the answers are those of the vectors in memory (test above).
#[cfg(target_os = "linux")]
#[test]
fn searches_leave_the_mapped_vectors_out_of_resident_memory() {
    let base = read_fvecs(&testdata("words-minilm-4k").join("base.fvecs"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection_with_config("c", base[0].len(), sq8())
            .unwrap();
        db.insert_batch("c", records(&base, 0, 3_000)).unwrap();
        db.checkpoint().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), 3_000);
    let mut answers = 0;
    for q in base.iter().step_by(7).take(400) {
        answers += db.search("c", q, 10).unwrap().len();
    }
    assert_eq!(answers, 4_000);
    assert_eq!(
        resident_kb_of_maps_of(&path),
        0,
        "searching mapped pages of the vectors into the process"
    );
}

/// Filtered searches under sq8 (exact passes over posting lists, filtered and two-hop walks on
/// a bitmap or on the typed columns, the JSON path of an unindexed filter, the scan fallback)
/// measure distances on the int8 codes and re-rank by positioned reads: none of them maps a
/// page of the f32 vectors into the process, and every answer matches its filter.
#[cfg(target_os = "linux")]
#[test]
fn filtered_searches_leave_the_mapped_vectors_out_of_resident_memory() {
    use needle_core::{Filter, IndexKind, SearchOptions};
    use serde_json::json;
    // More records than the planner scans outright, so that walks are planned too.
    let base = read_fvecs(&testdata("glove50-10k").join("base.fvecs"));
    let meta = |i: usize| json!({"g": (i * 37) % 100, "u": (i * 7) % 100});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection_with_config("c", base[0].len(), sq8())
            .unwrap();
        db.create_index("c", "g", IndexKind::Integer).unwrap();
        let recs = (0..base.len())
            .map(|i| Record::new(i.to_string(), base[i].clone(), Some(meta(i))))
            .collect();
        db.insert_batch("c", recs).unwrap();
        db.checkpoint().unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.mapped_vectors("c").unwrap(), base.len());
    let filters = [
        json!({"g": 5}),
        json!({"g": {"$in": [1, 2, 3]}}),
        json!({"g": {"$lt": 8}}),
        json!({"g": {"$lt": 30}}),
        json!({"g": {"$gte": 40}}),
        json!({"u": 5}),
        json!({"u": {"$lt": 50}}),
        json!({"$or": [{"g": 1}, {"u": {"$lt": 20}}]}),
    ];
    for raw in &filters {
        let filter = Filter::parse(raw).unwrap();
        let opts = SearchOptions::new().with_filter(filter.clone());
        for q in base.iter().step_by(101).take(40) {
            let hits = db.search_with("c", q, 10, &opts).unwrap();
            assert_eq!(hits.len(), 10, "{raw}");
            for h in &hits {
                let row: usize = h.id.parse().unwrap();
                assert!(filter.matches(Some(&meta(row))), "{raw}: row {row}");
            }
        }
    }
    assert_eq!(
        resident_kb_of_maps_of(&path),
        0,
        "filtered searches mapping pages of the vectors into the process"
    );
}
