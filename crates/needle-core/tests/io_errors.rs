//! Failed disk calls on the simulated disk: a typed error, then the database goes on correctly
//! or refuses writes until reopened; never a panic; no acknowledged write lost.

use std::path::Path;

use needle_core::disk::{FaultKind, SimDisk, SimOp};
use needle_core::{Database, DatabaseOptions, NeedleError, WalMode};

const PATH: &str = "/db/e.needle";

fn open(sim: &SimDisk, wal: WalMode) -> Result<Database, NeedleError> {
    Database::open_on(sim.shared(), PATH, DatabaseOptions { wal })
}

fn fresh(seed: u64) -> (SimDisk, Database) {
    let sim = SimDisk::new(seed);
    needle_core::disk::Disk::create_dir_all(&sim, Path::new("/db")).unwrap();
    let db = open(&sim, WalMode::Synced).unwrap();
    db.create_collection("c", 2).unwrap();
    (sim, db)
}

fn v(i: usize) -> Vec<f32> {
    vec![1.0 + i as f32, 2.0]
}

/// Item 2: the checkpoint's rename happened, then the directory fsync failed. Later writes must
/// not be logged under the old generation (which the next open would ignore): they are refused
/// until the database is reopened, and after a crash every acknowledged write is there.
#[test]
fn a_failed_directory_fsync_after_the_rename_stops_writes_and_loses_nothing() {
    for seed in 0..40 {
        let (sim, db) = fresh(seed);
        db.insert("c", "before", v(0), None).unwrap();
        sim.fail_next(SimOp::SyncDir, FaultKind::Eio);
        let err = db.checkpoint().unwrap_err();
        assert!(matches!(err, NeedleError::Io { .. }), "{err}");
        let mut acked = vec!["before"];
        match db.insert("c", "after", v(1), None) {
            Ok(()) => acked.push("after"),
            Err(NeedleError::Io { .. }) => {}
            Err(e) => panic!("seed {seed}: unexpected {e}"),
        }
        drop(db);
        sim.crash();
        let db = open(&sim, WalMode::Synced).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for id in acked {
            assert!(db.get("c", id).unwrap().is_some(), "seed {seed}: {id} lost");
        }
    }
}

/// The same for `restore_snapshot`: a failure after its rename.
#[test]
fn a_failed_directory_fsync_in_restore_stops_writes_and_loses_nothing() {
    for seed in 0..40 {
        let (sim, db) = fresh(seed);
        db.insert("c", "a", v(0), None).unwrap();
        let mut snap = Vec::new();
        db.write_snapshot(&mut snap, 7).unwrap();
        db.insert("c", "b", v(1), None).unwrap();
        sim.fail_next(SimOp::SyncDir, FaultKind::Eio);
        assert!(db.restore_snapshot(&mut snap.as_slice()).is_err());
        let after = db.insert("c", "c", v(2), None);
        assert!(
            after.is_err(),
            "seed {seed}: a write after the failed restore was accepted"
        );
        drop(db);
        sim.crash();
        let db = open(&sim, WalMode::Synced).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // Either the snapshot (a) or the state before it (a, b): never a mix, never c.
        assert!(db.get("c", "a").unwrap().is_some());
        assert!(db.get("c", "c").unwrap().is_none());
    }
}

/// fsyncgate: after a failed fsync of the log the database refuses every write until reopened
/// (a retried fsync could "succeed" with the pages already dropped).
#[test]
fn after_a_failed_log_fsync_writes_are_refused_until_reopened() {
    let (sim, db) = fresh(3);
    db.insert("c", "a", v(0), None).unwrap();
    sim.fail_next(SimOp::Sync, FaultKind::Eio);
    assert!(matches!(
        db.insert("c", "b", v(1), None),
        Err(NeedleError::Io { .. })
    ));
    assert!(db.insert("c", "c", v(2), None).is_err());
    assert!(db.checkpoint().is_err());
    assert!(
        db.get("c", "b").unwrap().is_none(),
        "a failed write is not applied"
    );
    drop(db);
    sim.crash();
    let db = open(&sim, WalMode::Synced).unwrap();
    assert!(db.get("c", "a").unwrap().is_some());
    assert!(db.get("c", "c").unwrap().is_none());
    db.insert("c", "d", v(3), None).unwrap();
}

/// Item 8: an unsynced log after a power loss may hold a hole (a dropped write) followed by
/// records that landed. It opens, with a prefix of the writes: never a record whose
/// predecessor is missing.
#[test]
fn an_unsynced_log_opens_after_any_power_loss_with_a_prefix_of_the_writes() {
    let mut holes = 0;
    for seed in 0..300 {
        let sim = SimDisk::new(seed);
        needle_core::disk::Disk::create_dir_all(&sim, Path::new("/db")).unwrap();
        let db = open(&sim, WalMode::Unsynced).unwrap();
        db.create_collection("c", 2).unwrap();
        db.checkpoint().unwrap(); // the collection is durable
        for i in 0..8 {
            db.insert("c", &format!("r{i}"), v(i), None).unwrap();
        }
        drop(db);
        sim.crash();
        let db = open(&sim, WalMode::Unsynced)
            .unwrap_or_else(|e| panic!("seed {seed}: an unsynced log must open: {e}"));
        let present: Vec<bool> = (0..8)
            .map(|i| db.get("c", &format!("r{i}")).unwrap().is_some())
            .collect();
        let n = present.iter().take_while(|&&p| p).count();
        assert!(
            present[n..].iter().all(|&p| !p),
            "seed {seed}: not a prefix: {present:?}"
        );
        holes += u64::from(db.open_report().wal_records_dropped_after_hole > 0);
    }
    eprintln!("{holes} of 300 power losses left a hole with records after it");
    assert!(
        holes > 0,
        "the simulated crashes never made a hole: the test tests nothing"
    );
}
