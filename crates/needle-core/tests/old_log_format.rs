//! Logs of the first format still open and recover exactly as before: `tests/data/format1/` is
//! a database and its log as the first format's `needle import` left them when it was killed
//! (a checkpoint of generation 1 with no collection; a log whose records create collection `c`
//! and insert `r0`..`r99`, then 700 bytes of a torn batch). The log keeps its format until the
//! next checkpoint starts it over in the current one.

use std::path::{Path, PathBuf};

use needle_core::{Database, LogCheck};

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1");
    let dir = tempfile::tempdir().unwrap();
    for name in ["db.needle", "db.needle-wal"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    let path = dir.path().join("db.needle");
    (dir, path)
}

fn log_version(path: &Path) -> u32 {
    let wal = std::fs::read(format!("{}-wal", path.display())).unwrap();
    u32::from_le_bytes(wal[8..12].try_into().unwrap())
}

fn assert_records(db: &Database, n: usize) {
    assert_eq!(db.count("c").unwrap(), n);
    for i in [0, 1, 49, 50, 99] {
        let r = db
            .get("c", &format!("r{i}"))
            .unwrap()
            .expect("an acknowledged record");
        assert_eq!(r.metadata.unwrap()["n"], i);
    }
}

#[test]
fn a_first_format_log_checks_opens_and_recovers_as_before() {
    let (_dir, path) = fixture();
    assert_eq!(log_version(&path), 1);
    let report = Database::check(&path).unwrap();
    assert_eq!(
        report.log,
        LogCheck::TornTail {
            offset: 3153,
            bytes: 700
        }
    );
    let db = Database::open(&path).unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 3);
    assert_eq!(db.open_report().wal_bytes_truncated, 700);
    assert_records(&db, 100);
    // Appended to in its own format: the log is still format 1 and reads back.
    db.insert("c", "new", vec![1.0, 2.0, 3.0, 4.0], None)
        .unwrap();
    drop(db);
    assert_eq!(log_version(&path), 1);
    assert_eq!(Database::check(&path).unwrap().log, LogCheck::Clean);
    let db = Database::open(&path).unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 4);
    assert_records(&db, 101);
    // A checkpoint starts the log over in the current format.
    db.checkpoint().unwrap();
    db.insert("c", "newer", vec![4.0, 3.0, 2.0, 1.0], None)
        .unwrap();
    drop(db);
    assert_eq!(log_version(&path), 2);
    let db = Database::open(&path).unwrap();
    assert_records(&db, 102);
    assert!(db.get("c", "newer").unwrap().is_some());
}

/// A flipped bit in a first-format record with records after it is corruption, as before.
#[test]
fn a_first_format_log_damaged_in_the_middle_is_corrupted() {
    let (_dir, path) = fixture();
    let wal_path = format!("{}-wal", path.display());
    let mut wal = std::fs::read(&wal_path).unwrap();
    wal[49 + 100] ^= 0x04; // inside the first batch; a whole batch follows
    std::fs::write(&wal_path, &wal).unwrap();
    match Database::open(&path) {
        Err(needle_core::Error::Corrupted { offset, .. }) => assert_eq!(offset, 49),
        other => panic!("expected Corrupted at 49, got {other:?}"),
    }
    assert_eq!(std::fs::read(&wal_path).unwrap(), wal, "nothing cut");
}
