//! How `open` reads the write-ahead log: a stale log (of an older checkpoint) is ignored without
//! reading its records, a zeroed or short header is an empty log, and a corrupt record in the
//! middle of a large log is reported, never cut.

use std::path::{Path, PathBuf};

use needle_core::{CollectionConfig, Database, Error, Record};

fn wal_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", p.display()))
}

fn record(i: usize, dim: usize) -> Record {
    let v = (0..dim)
        .map(|j| ((i * 31 + j * 7) % 97) as f32 + 1.0)
        .collect();
    Record::new(format!("r{i}"), v, None)
}

/// Item 6: a log left behind by an older checkpoint (its reset never happened) is damaged in
/// the middle. It is not this checkpoint's log, so its records are never read: open succeeds.
#[test]
fn a_corrupt_stale_log_does_not_block_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.needle");
    let old_log;
    {
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 4).unwrap();
        for i in 0..5 {
            db.insert_batch("c", vec![record(i, 4)]).unwrap();
        }
        old_log = std::fs::read(wal_of(&path)).unwrap();
        db.checkpoint().unwrap();
    }
    let mut stale = old_log.clone();
    stale[32 + 9] ^= 0x40; // inside the first record's payload; four valid records follow
    std::fs::write(wal_of(&path), &stale).unwrap();
    let db = Database::open(&path).expect("a stale log is ignored, damaged or not");
    assert_eq!(db.count("c").unwrap(), 5);
    assert_eq!(db.open_report().wal_records_replayed, 0);
}

/// Item 7: a crash while the log was reset (truncated, header not yet on disk, or its sector
/// zeroed) leaves a short or all-zero header: an empty log, not "bad magic".
#[test]
fn a_zeroed_or_short_log_header_is_an_empty_log() {
    for (name, bytes) in [
        ("zeroed header", vec![0u8; 24]),
        ("zeroed sector", vec![0u8; 512]),
        ("short header", b"NEEDLW".to_vec()),
        ("empty", Vec::new()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.needle");
        {
            let db = Database::open(&path).unwrap();
            db.create_collection("c", 4).unwrap();
            db.insert("c", "a", vec![1.0, 2.0, 3.0, 4.0], None).unwrap();
            db.checkpoint().unwrap();
        }
        std::fs::write(wal_of(&path), &bytes).unwrap();
        let db = Database::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(db.count("c").unwrap(), 1, "{name}");
        db.insert("c", "b", vec![1.0, 2.0, 3.0, 5.0], None).unwrap();
        drop(db);
        let db = Database::open(&path).unwrap();
        assert_eq!(
            db.count("c").unwrap(),
            2,
            "{name}: writes after the reset survive"
        );
    }
}

/// Item 1: a 10+ MB log of large batch records with one bit flipped in an early record. The old
/// search for a later valid record gave up after a budget and then cut the log as a torn tail,
/// losing every acknowledged batch after the flip.
#[test]
fn a_flipped_bit_early_in_a_large_log_is_corruption_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.needle");
    let dim = 384;
    {
        let db = Database::open(&path).unwrap();
        let cheap = CollectionConfig {
            m: 4,
            ef_construction: 8,
            ..Default::default()
        };
        db.create_collection_with_config("c", dim, cheap).unwrap();
        for b in 0..8 {
            let batch = (b * 1000..(b + 1) * 1000).map(|i| record(i, dim)).collect();
            db.insert_batch("c", batch).unwrap();
        }
    }
    let wal = std::fs::read(wal_of(&path)).unwrap();
    assert!(wal.len() > 10 << 20, "log of {} bytes", wal.len());
    let mut damaged = wal.clone();
    let third_record = {
        let mut pos = 32;
        for _ in 0..2 {
            pos += 8 + u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
        }
        pos
    };
    let at = third_record + 8 + 777_777;
    damaged[at] ^= 0x10;
    std::fs::write(wal_of(&path), &damaged).unwrap();
    let before = std::fs::read(&path).unwrap();
    match Database::open(&path) {
        Err(Error::Corrupted { file, offset, .. }) => {
            assert!(file.ends_with("big.needle-wal"));
            assert_eq!(offset as usize, third_record);
        }
        Err(e) => panic!("expected Corrupted, got {e}"),
        Ok(db) => panic!(
            "opened with {} records: the damaged record and those after it were cut",
            db.count("c").unwrap()
        ),
    }
    assert_eq!(
        std::fs::read(wal_of(&path)).unwrap(),
        damaged,
        "log unchanged"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "checkpoint unchanged"
    );
}
