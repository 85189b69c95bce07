//! `Database::open_read_only`: a file another `Database` holds open (and locked) is readable,
//! sees every acknowledged write, refuses writes, and no byte of any file changes — not even
//! for a torn log tail an ordinary open would cut. A reader racing a writer that checkpoints
//! all the time always sees a prefix of the writes that includes everything acknowledged
//! before it started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use needle_core::{Database, Error};

/// Every file in `dir`, name → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn v(i: usize) -> Vec<f32> {
    vec![1.0 + i as f32, 0.5, (i % 7) as f32]
}

#[test]
fn a_file_held_open_by_a_writer_is_readable_and_nothing_on_disk_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.needle");
    let writer = Database::open(&path).unwrap();
    writer.create_collection("docs", 3).unwrap();
    for i in 0..20 {
        writer.insert("docs", &format!("r{i}"), v(i), None).unwrap();
    }
    writer.checkpoint().unwrap();
    for i in 20..30 {
        writer.insert("docs", &format!("r{i}"), v(i), None).unwrap();
    }
    writer.delete("docs", "r3").unwrap();
    // The writer holds the lock: an ordinary open is refused.
    assert!(matches!(Database::open(&path), Err(Error::Locked { .. })));

    let before = files(dir.path());
    let view = Database::open_read_only(&path).unwrap();
    assert_eq!(view.state_checksum(), writer.state_checksum());
    assert_eq!(view.count("docs").unwrap(), 29);
    assert_eq!(view.path(), Some(path.as_path()));
    let report = view.open_report();
    assert_eq!(report.wal_records_replayed, 11);
    assert_eq!(report.wal_bytes_truncated, 0);
    // Searches and reads work; every write is refused and changes nothing.
    assert_eq!(view.search("docs", &v(5), 1).unwrap()[0].id, "r5");
    assert!(view.get("docs", "r3").unwrap().is_none());
    for refused in [
        view.insert("docs", "x", v(0), None).map(|_| ()),
        view.delete("docs", "r1").map(|_| ()),
        view.create_collection("other", 3),
        view.compact("docs"),
        view.checkpoint(),
    ] {
        assert!(
            matches!(refused, Err(Error::ReadOnly { .. })),
            "{refused:?}"
        );
    }
    drop(view);
    assert_eq!(files(dir.path()), before, "a read-only open changed a file");

    // The writer goes on; a new view sees the new write, the old lock still holds.
    writer.insert("docs", "late", v(99), None).unwrap();
    let view = Database::open_read_only(&path).unwrap();
    assert!(view.get("docs", "late").unwrap().is_some());
}

#[test]
fn a_torn_tail_is_left_out_and_left_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.needle");
    let db = Database::open(&path).unwrap();
    db.create_collection("docs", 3).unwrap();
    db.insert("docs", "a", v(1), None).unwrap();
    let expected = db.state_checksum();
    drop(db);
    let wal = dir.path().join("t.needle-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0x42; 13]);
    std::fs::write(&wal, &bytes).unwrap();

    let before = files(dir.path());
    let view = Database::open_read_only(&path).unwrap();
    assert_eq!(view.state_checksum(), expected);
    assert_eq!(view.open_report().wal_bytes_truncated, 13);
    drop(view);
    assert_eq!(files(dir.path()), before, "the torn tail was cut");
}

#[test]
fn a_missing_file_is_not_found_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.needle");
    match Database::open_read_only(&path) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(files(dir.path()).is_empty());
}

/// A writer inserts r0, r1, … and checkpoints every few writes; readers open read-only again
/// and again. Each view holds exactly r0..rN for some N at least the number acknowledged
/// before the open began (so never an older checkpoint without its log).
#[test]
fn a_reader_racing_checkpoints_sees_a_prefix_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.needle");
    let writer = Database::open(&path).unwrap();
    writer.create_collection("docs", 3).unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let total = 300;
    let w = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..total {
                writer.insert("docs", &format!("r{i}"), v(i), None).unwrap();
                acked.store(i + 1, Ordering::SeqCst);
                if i % 3 == 2 {
                    writer.checkpoint().unwrap();
                }
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut views = 0;
    while !stop.load(Ordering::SeqCst) || views == 0 {
        let floor = acked.load(Ordering::SeqCst);
        let view = Database::open_read_only(&path).unwrap();
        let n = view.count("docs").unwrap();
        assert!(
            n >= floor,
            "view has {n} records, {floor} were acknowledged"
        );
        let mut ids = view.ids("docs").unwrap();
        ids.sort_by_key(|id| id[1..].parse::<usize>().unwrap());
        let prefix: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, prefix);
        views += 1;
    }
    w.join().unwrap();
    eprintln!("{views} read-only views taken during {total} writes");
}
