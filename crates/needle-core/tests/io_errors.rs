//! Failed disk calls on the simulated disk: a typed error, then the database goes on correctly
//! or refuses writes until reopened; never a panic; no acknowledged write lost.

use std::path::Path;

use needle_core::disk::{FaultKind, SimDisk, SimOp};
use needle_core::{Database, DatabaseOptions, Error, WalMode};

const PATH: &str = "/db/e.needle";

fn open(sim: &SimDisk, wal: WalMode) -> Result<Database, Error> {
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
        assert!(matches!(err, Error::Io { .. }), "{err}");
        let mut acked = vec!["before"];
        match db.insert("c", "after", v(1), None) {
            Ok(()) => acked.push("after"),
            Err(Error::Io { .. }) => {}
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
        Err(Error::Io { .. })
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

/// The state a sweep starts from: a checkpoint, then log records on top of it.
fn base(seed: u64) -> (SimDisk, Database) {
    let (sim, db) = fresh(seed);
    for i in 0..6 {
        db.insert("c", &format!("base{i}"), v(i), None).unwrap();
    }
    db.checkpoint().unwrap();
    db.insert("c", "logged", v(9), None).unwrap();
    db.delete("c", "base0").unwrap();
    (sim, db)
}

fn ids(db: &Database) -> Vec<String> {
    let mut ids = db.ids("c").unwrap_or_default();
    ids.sort();
    ids
}

type Op = fn(&Database) -> Result<(), Error>;

/// A snapshot of another state of collection `c`.
fn other_snapshot() -> &'static Vec<u8> {
    static SNAP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SNAP.get_or_init(|| {
        let db = Database::in_memory();
        db.create_collection("c", 2).unwrap();
        db.insert("c", "snap1", v(50), None).unwrap();
        db.insert("c", "snap2", v(51), None).unwrap();
        let mut bytes = Vec::new();
        db.write_snapshot(&mut bytes, 3).unwrap();
        bytes
    })
}

/// I/O errors at every call site: for each operation, the k-th disk call it makes fails (EIO or
/// ENOSPC), for every k. The operation returns a typed error or succeeds, never panics; the
/// database then goes on correctly or refuses writes; after a crash and a reopen every
/// acknowledged write is there and the failed operation is whole or absent.
#[test]
fn an_io_error_at_any_call_of_any_operation_loses_nothing() {
    let ops: Vec<(&str, Op)> = vec![
        ("insert", |db| db.insert("c", "new", v(20), None)),
        ("insert_batch", |db| {
            let records = (0..50)
                .map(|i| needle_core::Record::new(format!("b{i}"), v(30 + i), None))
                .collect();
            db.insert_batch("c", records)
        }),
        ("update", |db| db.update("c", "base1", Some(v(40)), None)),
        ("delete", |db| db.delete("c", "base2").map(|_| ())),
        ("create_collection", |db| db.create_collection("d", 3)),
        ("drop_collection", |db| db.drop_collection("c")),
        ("compact", |db| db.compact("c")),
        ("checkpoint", |db| db.checkpoint()),
        ("restore_snapshot", |db| {
            db.restore_snapshot(&mut other_snapshot().as_slice())
                .map(|_| ())
        }),
    ];
    let mut sites = 0;
    for (name, op) in &ops {
        // How many calls the operation makes, and the state with and without it.
        let (sim, db) = base(1);
        let before = ids(&db);
        let c0 = sim.calls();
        op(&db).unwrap();
        let calls = sim.calls() - c0;
        let after = if db.list_collections().contains(&"c".to_string()) {
            ids(&db)
        } else {
            Vec::new()
        };
        drop(db);
        for k in 0..calls {
            sites += 1;
            let (sim, db) = base(1);
            let kind = if k % 2 == 0 {
                FaultKind::Eio
            } else {
                FaultKind::NoSpace
            };
            sim.fail_at(sim.calls() + k, kind);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&db)))
                .unwrap_or_else(|_| panic!("{name}: panic with call {k} of {calls} failing"));
            let op_acked = match result {
                Ok(()) => true,
                Err(Error::Io { .. }) => false,
                Err(e) => panic!("{name}, call {k}: not an I/O error: {e}"),
            };
            // Goes on, or refuses writes.
            let next_acked = match db.create_collection("e", 2) {
                Ok(()) => true,
                Err(Error::Io { .. }) => false,
                Err(e) => panic!("{name}, call {k}: write after the error: {e}"),
            };
            drop(db);
            sim.crash();
            let db = open(&sim, WalMode::Synced)
                .unwrap_or_else(|e| panic!("{name}, call {k}: reopen failed: {e}"));
            let found = if db.list_collections().contains(&"c".to_string()) {
                ids(&db)
            } else {
                Vec::new()
            };
            if op_acked {
                assert_eq!(
                    found, after,
                    "{name}, call {k}: an acknowledged op was lost"
                );
            } else {
                assert!(
                    found == before || found == after,
                    "{name}, call {k}: the failed op is half there: {found:?}"
                );
            }
            if next_acked {
                assert!(
                    db.list_collections().contains(&"e".to_string()),
                    "{name}, call {k}: the write acknowledged after the error was lost"
                );
            }
        }
    }
    eprintln!("{sites} failing call sites over {} operations", ops.len());
    assert!(sites >= 30);
}

/// Opening with a failing call: a typed error, then the next open finds everything.
#[test]
fn an_io_error_at_any_call_of_open_is_an_error_and_the_next_open_works() {
    let (sim, db) = base(2);
    let expected = ids(&db);
    drop(db);
    let c0 = sim.calls();
    drop(open(&sim, WalMode::Synced).unwrap());
    let calls = sim.calls() - c0;
    for k in 0..calls {
        sim.fail_at(sim.calls() + k, FaultKind::Eio);
        match std::panic::catch_unwind(|| open(&sim, WalMode::Synced).map(|_| ())) {
            Err(_) => panic!("open panicked with call {k} failing"),
            Ok(Ok(())) | Ok(Err(Error::Io { .. })) => {}
            Ok(Err(e)) => panic!("open, call {k}: not an I/O error: {e}"),
        }
        sim.clear_faults();
        let db = open(&sim, WalMode::Synced).unwrap();
        assert_eq!(ids(&db), expected, "open, call {k}");
    }
}

/// A power cut at every call of a checkpoint (temporary file, rename, directory fsync, log
/// reset), each followed by many different crash outcomes: the reopened database holds exactly
/// the acknowledged state. The log before the checkpoint creates the collection, so replaying it
/// again on top of the new checkpoint (old records under a new header) would fail to open.
#[test]
fn a_power_cut_anywhere_in_a_checkpoint_keeps_exactly_the_acknowledged_state() {
    let calls = {
        let (sim, db) = fresh(0);
        db.insert("c", "a", v(0), None).unwrap();
        let c0 = sim.calls();
        db.checkpoint().unwrap();
        sim.calls() - c0
    };
    for k in 0..calls {
        for seed in 0..24 {
            let sim = SimDisk::new(seed);
            needle_core::disk::Disk::create_dir_all(&sim, Path::new("/db")).unwrap();
            // Fresh database: its first checkpoint is empty; the collection lives in the log.
            let db = open(&sim, WalMode::Synced).unwrap();
            db.create_collection("c", 2).unwrap();
            db.insert("c", "a", v(0), None).unwrap();
            sim.power_off_after(sim.calls() + k);
            let _ = db.checkpoint();
            drop(db);
            sim.crash();
            let db = open(&sim, WalMode::Synced)
                .unwrap_or_else(|e| panic!("cut at call {k} of the checkpoint, seed {seed}: {e}"));
            assert_eq!(ids(&db), vec!["a".to_string()], "call {k}, seed {seed}");
        }
    }
}

/// Item 9: a checkpoint that fails before its rename keeps the old tag (it used to store the
/// new tag first, so a caller saw a tag no checkpoint on disk carried).
#[test]
fn a_failed_checkpoint_keeps_the_old_tag() {
    let (sim, db) = fresh(4);
    db.checkpoint_with_tag(3).unwrap();
    db.insert("c", "a", v(0), None).unwrap();
    sim.fail_next(SimOp::Write, FaultKind::NoSpace);
    assert!(db.checkpoint_with_tag(9).is_err());
    assert_eq!(db.checkpoint_tag(), 3);
    // Nothing changed on disk either, and the database goes on.
    db.insert("c", "b", v(1), None).unwrap();
    drop(db);
    let db = open(&sim, WalMode::Synced).unwrap();
    assert_eq!(db.open_report().checkpoint_tag, 3);
    assert_eq!(ids(&db), vec!["a".to_string(), "b".to_string()]);
}
