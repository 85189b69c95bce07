//! `needle check` never writes and tells torn from corrupted; `needle repair` is the explicit fix
//! and keeps a copy of what it cut. The scenario of issue 9, scaled down but still over 10 MB:
//! a log of seven 1,000 × 384 batch records left without its final checkpoint (as an import
//! killed before it finishes leaves it), then one bit flipped in the middle record, or the last
//! record torn.

mod common;

use std::path::{Path, PathBuf};

use common::{fingerprint, needle, vectors};
use needle_core::{CollectionConfig, Database, Record};

const BATCHES: usize = 7;
const BATCH: usize = 1000;
const DIM: usize = 384;

fn wal_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap().to_os_string();
    name.push("-wal");
    db.with_file_name(name)
}

/// A database whose log holds `BATCHES` batch records after an empty checkpoint; returns the
/// records' start offsets in the log.
fn unfinished_import(db: &Path) -> Vec<u64> {
    let d = Database::open(db).unwrap();
    // A cheap graph: the test is about the log's bytes, not the index.
    let config = CollectionConfig {
        m: 4,
        ef_construction: 8,
        ..CollectionConfig::default()
    };
    d.create_collection_with_config("items", DIM, config)
        .unwrap();
    d.checkpoint().unwrap();
    let vs = vectors(BATCHES * BATCH, DIM);
    for b in 0..BATCHES {
        let records = (b * BATCH..(b + 1) * BATCH)
            .map(|i| Record::new(format!("r{i}"), vs[i].clone(), None))
            .collect();
        d.insert_batch("items", records).unwrap();
    }
    drop(d);
    let bytes = std::fs::read(wal_of(db)).unwrap();
    assert!(bytes.len() > 10 << 20, "the log is {} bytes", bytes.len());
    // The log: a 32-byte header, then `len u32 | crc u32 | payload` records.
    let mut starts = Vec::new();
    let mut pos = 32usize;
    while pos < bytes.len() {
        starts.push(pos as u64);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    assert_eq!(pos, bytes.len());
    assert_eq!(starts.len(), BATCHES, "one record per batch");
    starts
}

fn cut_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".cut-"))
        .collect();
    v.sort();
    v
}

#[test]
fn check_reports_a_torn_tail_without_cutting_it_and_repair_cuts_it_keeping_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let starts = unfinished_import(&db);
    let wal = wal_of(&db);
    let full = std::fs::read(&wal).unwrap();
    // Tear the last record: a crash in the middle of its write.
    let torn_at = starts[BATCHES - 1];
    let keep = full.len() - 1000;
    std::fs::write(&wal, &full[..keep]).unwrap();
    let before = fingerprint(&db);
    let torn = keep as u64 - torn_at;

    let out = needle(["check", db.to_str().unwrap()]);
    out.fails(
        1,
        &[
            "t.needle-wal",
            &format!("torn tail of {torn} bytes at offset {torn_at}"),
            "nothing was changed",
        ],
    );
    let out = needle(["check", db.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["damage"], "torn_tail");
    assert_eq!(report["offset"], torn_at);
    assert_eq!(report["torn_bytes"], torn);
    assert_eq!(fingerprint(&db), before, "check changed the files");
    assert!(cut_files(dir.path()).is_empty());

    let out = needle(["repair", db.to_str().unwrap()]);
    let text = out.ok();
    assert!(
        text.contains(&format!(
            "cut a torn tail of {torn} bytes at offset {torn_at}"
        )),
        "{text}"
    );
    let cuts = cut_files(dir.path());
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(
        std::fs::read(&cuts[0]).unwrap(),
        &full[torn_at as usize..keep]
    );
    assert!(text.contains(cuts[0].to_str().unwrap()), "{text}");

    let report = needle(["check", db.to_str().unwrap(), "--json"]).json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["records"], (BATCHES - 1) * BATCH);
    // Nothing left to repair: repair says so and writes nothing.
    let before = fingerprint(&db);
    assert!(
        needle(["repair", db.to_str().unwrap()])
            .ok()
            .contains("nothing to repair")
    );
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn check_reports_a_flipped_bit_mid_log_as_corruption_with_its_offset_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let starts = unfinished_import(&db);
    let wal = wal_of(&db);
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = BATCHES / 2;
    let bad = starts[middle];
    let flip = ((bad + starts[middle + 1]) / 2) as usize;
    bytes[flip] ^= 0x10;
    std::fs::write(&wal, &bytes).unwrap();
    let before = fingerprint(&db);

    let out = needle(["check", db.to_str().unwrap()]);
    out.fails(1, &["corrupted", "t.needle-wal", &format!("offset {bad}")]);
    let out = needle(["check", db.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["damage"], "corrupted");
    assert_eq!(report["offset"], bad);
    assert_eq!(fingerprint(&db), before, "check changed the files");
    // Other commands refuse the file too, and do not cut it either.
    needle(["info", db.to_str().unwrap()]).fails(1, &["corrupted", &format!("offset {bad}")]);
    assert_eq!(fingerprint(&db), before, "info changed the files");

    // repair drops the corrupt record and everything after it, keeping a copy.
    let out = needle(["repair", db.to_str().unwrap()]);
    let text = out.ok();
    assert!(text.contains(&format!("from offset {bad} on")), "{text}");
    let cuts = cut_files(dir.path());
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(std::fs::read(&cuts[0]).unwrap(), &bytes[bad as usize..]);
    let report = needle(["check", db.to_str().unwrap(), "--json"]).json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["records"], middle * BATCH);
}

#[test]
fn repair_refuses_a_damaged_checkpoint_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let input = dir.path().join("in.jsonl");
    common::write_jsonl(&input, 200, 8);
    needle([
        "import",
        db.to_str().unwrap(),
        "items",
        input.to_str().unwrap(),
    ])
    .ok();
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    let before = fingerprint(&db);
    needle(["check", db.to_str().unwrap()]).fails(1, &["corrupted", "t.needle", "offset"]);
    needle(["repair", db.to_str().unwrap()]).fails(
        1,
        &["checkpoint is corrupted at offset", "nothing was changed"],
    );
    assert_eq!(fingerprint(&db), before);
    assert!(cut_files(dir.path()).is_empty());
}

#[test]
fn repair_refuses_a_file_another_process_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let d = Database::open(&db).unwrap();
    d.create_collection("items", 4).unwrap();
    d.insert("items", "a", vec![1.0, 0.0, 0.0, 0.0], None)
        .unwrap();
    // A torn tail behind the open database's back.
    let wal = wal_of(&db);
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&wal, &bytes).unwrap();
    needle(["repair", db.to_str().unwrap()]).fails(1, &["open in another process"]);
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    drop(d);
}
