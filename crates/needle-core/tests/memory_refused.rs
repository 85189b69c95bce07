//! When the system refuses memory for a collection's arrays (a failed anonymous map), a write
//! gets a typed error before anything is logged, the database goes on, and a file whose replay
//! needs memory it cannot get fails to open with an error, never a panic.
//!
//! Alone in its binary: the hook that refuses maps is process-wide.

use needle_core::{__private::refuse_anonymous_maps, Database, Error, Record};

fn batch(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record::new(format!("r{i}"), vec![i as f32 + 1.0, 1.0, 2.0, 3.0], None))
        .collect()
}

#[test]
fn a_refused_map_is_a_typed_error_and_nothing_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.needle");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 4).unwrap();
        db.insert_batch("c", batch(0, 10)).unwrap();
        // Enough to need bigger arrays than the first 4096-item map.
        refuse_anonymous_maps(1);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.insert_batch("c", batch(10, 5000))
        }))
        .expect("no panic when memory is refused")
        .expect_err("the write fails");
        refuse_anonymous_maps(0);
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(db.count("c").unwrap(), 10, "nothing applied");
        // The database goes on.
        db.insert_batch("c", batch(20_000, 3)).unwrap();
        assert_eq!(db.count("c").unwrap(), 13);
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.count("c").unwrap(),
        13,
        "the refused batch was never logged"
    );
    drop(db);

    // Replaying needs memory too: refused, the open fails cleanly, and works once it is given.
    let db = Database::open(&path).unwrap();
    db.insert_batch("c", batch(30_000, 5000)).unwrap();
    drop(db);
    refuse_anonymous_maps(u64::MAX);
    let opened = std::panic::catch_unwind(|| Database::open(&path).map(|_| ()))
        .expect("no panic at open when memory is refused");
    refuse_anonymous_maps(0);
    assert!(matches!(opened, Err(Error::Io { .. })), "{opened:?}");
    assert_eq!(Database::open(&path).unwrap().count("c").unwrap(), 5013);
}
