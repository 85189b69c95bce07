//! `Database::check` reports what an open would do and changes no byte; `Database::repair` cuts
//! a torn tail or a damaged suffix, keeps a copy, and says what it dropped.

use std::path::Path;
use std::sync::Arc;

use needle_core::disk::{Disk, MemDisk, SimDisk};
use needle_core::{Database, DatabaseOptions, Error, LogCheck, Record};

const PATH: &str = "/db/c.needle";
const WAL: &str = "/db/c.needle-wal";

fn build(disk: Arc<dyn Disk>, batches: usize) {
    disk.create_dir_all(Path::new("/db")).unwrap();
    let db = Database::open_on(disk, PATH, DatabaseOptions::default()).unwrap();
    db.create_collection("c", 4).unwrap();
    for b in 0..batches {
        let records = (0..10)
            .map(|i| Record::new(format!("{b}-{i}"), vec![1.0, b as f32, i as f32, 2.0], None))
            .collect();
        db.insert_batch("c", records).unwrap();
    }
}

fn record_offsets(disk: &SimDisk) -> Vec<usize> {
    let wal = &disk.files()[Path::new(WAL)];
    let mut pos = 32;
    let mut out = Vec::new();
    while pos < wal.len() {
        out.push(pos);
        pos += 8 + u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
    }
    out
}

#[test]
fn check_of_a_clean_database() {
    let disk = MemDisk::shared();
    build(disk.clone(), 3);
    let r = Database::check_on(disk, PATH).unwrap();
    assert_eq!(r.log, LogCheck::Clean);
    assert!(r.is_clean());
    assert_eq!(r.log_records, 4);
    assert_eq!(r.collections, vec![("c".to_string(), 30)]);
}

#[test]
fn torn_tail_is_reported_not_cut_then_repaired() {
    let sim = SimDisk::new(1);
    build(sim.shared(), 3);
    let wal = sim.files()[Path::new(WAL)].clone();
    let last = *record_offsets(&sim).last().unwrap();
    sim.put_file(Path::new(WAL), &wal[..wal.len() - 5]);
    let before = sim.files();
    let r = Database::check_on(sim.shared(), PATH).unwrap();
    let bytes = (wal.len() - 5 - last) as u64;
    assert_eq!(
        r.log,
        LogCheck::TornTail {
            offset: last as u64,
            bytes
        }
    );
    assert!(!r.is_clean());
    assert_eq!(r.log_records, 3);
    assert_eq!(
        sim.files(),
        before,
        "check changed no byte and created no file"
    );

    let repaired = Database::repair_on(sim.shared(), PATH).unwrap();
    let cut = repaired.cut.unwrap();
    assert_eq!(
        (cut.offset, cut.bytes, cut.records_dropped),
        (last as u64, bytes, 0)
    );
    let files = sim.files();
    assert_eq!(files[&cut.saved_to], wal[last..wal.len() - 5].to_vec());
    assert_eq!(files[Path::new(WAL)], wal[..last].to_vec());
    assert_eq!(
        Database::check_on(sim.shared(), PATH).unwrap().log,
        LogCheck::Clean
    );
    let db = Database::open_on(sim.shared(), PATH, DatabaseOptions::default()).unwrap();
    assert_eq!(db.count("c").unwrap(), 20);
}

#[test]
fn damage_in_the_middle_is_reported_open_refuses_repair_drops_and_says_so() {
    let sim = SimDisk::new(2);
    build(sim.shared(), 5);
    let offsets = record_offsets(&sim);
    let bad = offsets[2];
    sim.flip_bit(Path::new(WAL), (bad as u64 + 20) * 8 + 3)
        .unwrap();
    let before = sim.files();
    let r = Database::check_on(sim.shared(), PATH).unwrap();
    match &r.log {
        LogCheck::Corrupted {
            offset,
            records_after,
            ..
        } => {
            assert_eq!(*offset, bad as u64);
            assert_eq!(*records_after, 3);
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert_eq!(r.log_records, 2);
    match Database::open_on(sim.shared(), PATH, DatabaseOptions::default()) {
        Err(Error::Corrupted { offset, file, .. }) => {
            assert_eq!(offset, bad as u64);
            assert_eq!(file, Path::new(WAL));
        }
        other => panic!("expected Corrupted, got {:?}", other.map(|_| ())),
    }
    let mut after = sim.files();
    after.remove(Path::new("/db/c.needle-lock"));
    let mut before = before;
    before.remove(Path::new("/db/c.needle-lock"));
    assert_eq!(
        after, before,
        "neither check nor a refused open changed a byte"
    );

    let cut = Database::repair_on(sim.shared(), PATH)
        .unwrap()
        .cut
        .unwrap();
    assert_eq!(cut.offset, bad as u64);
    assert_eq!(cut.records_dropped, 3);
    assert!(cut.saved_to.ends_with("c.needle-wal.cut-1"));
    let db = Database::open_on(sim.shared(), PATH, DatabaseOptions::default()).unwrap();
    assert_eq!(db.count("c").unwrap(), 10);
}

#[test]
fn repair_needs_the_lock_and_check_does_not() {
    let disk = MemDisk::shared();
    build(disk.clone(), 1);
    let _db = Database::open_on(disk.clone(), PATH, DatabaseOptions::default()).unwrap();
    assert!(Database::check_on(disk.clone(), PATH).is_ok());
    assert!(matches!(
        Database::repair_on(disk, PATH),
        Err(Error::Locked { .. })
    ));
}
