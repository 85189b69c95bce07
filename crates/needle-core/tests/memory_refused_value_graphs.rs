//! When the system refuses memory for a value graph's arrays (see `memory_refused.rs` for the
//! collection's own), a write gets a typed error before anything is logged.
//!
//! Alone in its binary: the hook that refuses maps is process-wide (its tests take `HOOK`).

use needle_core::__private::{refuse_anonymous_maps, refuse_anonymous_maps_after};
use needle_core::{Database, Error, Record};

/// Held by each test: the refusal hook and the value-graph threshold are process-wide.
static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The value graphs grow by anonymous maps too: a write that a value's graph needs a bigger
/// map for reserves it before the write is logged, so a refused map is a typed error that
/// changes nothing (the same checksum, the record still in its old value), and the write
/// works once memory is given. Records move into `a` by metadata alone (the collection's own
/// arrays do not grow), with every map refused, until `a`'s graph needs one.
#[test]
fn a_refused_map_for_a_value_graph_is_a_typed_error_and_nothing_is_logged() {
    use needle_core::{Filter, IndexKind};
    use serde_json::json;
    let _hook = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    needle_core::__private::set_value_graph_min_records(100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.needle");
    let in_a = |db: &Database| {
        let f = Filter::parse(&json!({"t": "a"})).unwrap();
        db.count_matching("c", Some(&f)).unwrap()
    };
    let checksum = {
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 4).unwrap();
        db.create_index("c", "t", IndexKind::Keyword).unwrap();
        let records: Vec<Record> = (0..800)
            .map(|i| {
                let t = ["a", "b", "c", "d"][i % 4];
                let v = vec![i as f32, (i % 7) as f32, 1.0, 2.0];
                Record::new(format!("r{i}"), v, Some(json!({ "t": t })))
            })
            .collect();
        db.insert_batch("c", records).unwrap();
        let graphs = |db: &Database| db.collection_info("c").unwrap().indexes[0].value_graphs;
        assert_eq!(graphs(&db), 4);
        let mut refused = None;
        for i in (0..800).filter(|i| i % 4 != 0) {
            let before = db.state_checksum();
            refuse_anonymous_maps(u64::MAX);
            let update = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                db.update("c", &format!("r{i}"), None, Some(json!({"t": "a"})))
            }));
            refuse_anonymous_maps(0);
            if let Err(err) = update.expect("no panic when memory is refused") {
                assert!(matches!(err, Error::Io { .. }), "{err}");
                assert_eq!(db.state_checksum(), before, "nothing changed");
                refused = Some(i);
                break;
            }
        }
        let i = refused.expect("a's graph needed a bigger map");
        let moved = in_a(&db);
        db.update("c", &format!("r{i}"), None, Some(json!({"t": "a"})))
            .unwrap();
        assert_eq!(in_a(&db), moved + 1, "the database goes on");
        db.state_checksum()
    };
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.state_checksum(),
        checksum,
        "the refused write was never logged"
    );
    drop(db);

    // A value that waits for its graph (held by more than half the records) gets it at the
    // write after which it holds half: that write reserves the whole graph first. Records
    // leave `a` (300 of 500) for `c` by metadata, every map refused: the updates work until
    // the one that would bring `a` to 250, which is refused and changes nothing.
    let path = dir.path().join("w.needle");
    let db = Database::open(&path).unwrap();
    db.create_collection("c", 4).unwrap();
    db.create_index("c", "t", IndexKind::Keyword).unwrap();
    let records: Vec<Record> = (0..500)
        .map(|i| {
            let t = if i < 300 { "a" } else { "b" };
            let v = vec![i as f32, (i % 7) as f32, 1.0, 2.0];
            Record::new(format!("r{i}"), v, Some(json!({ "t": t })))
        })
        .collect();
    db.insert_batch("c", records).unwrap();
    let graphs = |db: &Database| db.collection_info("c").unwrap().indexes[0].value_graphs;
    assert_eq!(graphs(&db), 1, "b's graph; a waits");
    let mut refused = None;
    for i in 0..60 {
        let before = db.state_checksum();
        refuse_anonymous_maps(u64::MAX);
        let update = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.update("c", &format!("r{i}"), None, Some(json!({"t": "c"})))
        }));
        refuse_anonymous_maps(0);
        if let Err(err) = update.expect("no panic when memory is refused") {
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert_eq!(db.state_checksum(), before, "nothing changed");
            refused = Some(i);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(49),
        "refused at the write that makes a's graph"
    );
    assert_eq!(in_a(&db), 251);
    assert_eq!(graphs(&db), 1);
    db.update("c", "r49", None, Some(json!({"t": "c"})))
        .unwrap();
    assert_eq!(graphs(&db), 2, "a's graph, once memory is given");
    let checksum = db.state_checksum();
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.state_checksum(),
        checksum,
        "the refused write was never logged"
    );
    drop(db);

    // A keyword first seen in a batch that brings it past the threshold: its graph is made in
    // that batch, with room reserved for it first (the collection's arrays, grown in batches
    // of 100, have room for the 150 records: only the new graph needs a map).
    let db = Database::in_memory();
    db.create_collection("c", 4).unwrap();
    db.create_index("c", "t", IndexKind::Keyword).unwrap();
    let rec = |i: usize, t: &str| {
        let v = vec![i as f32, (i % 7) as f32, 1.0, 2.0];
        Record::new(format!("r{i}"), v, Some(json!({ "t": t })))
    };
    for b in 0..6 {
        let batch = (b * 100..b * 100 + 100).map(|i| rec(i, ["x", "y"][i % 2]));
        db.insert_batch("c", batch.collect()).unwrap();
    }
    assert_eq!(graphs(&db), 2);
    let fresh: Vec<Record> = (600..750).map(|i| rec(i, "new")).collect();
    let before = db.state_checksum();
    refuse_anonymous_maps(u64::MAX);
    let insert = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.insert_batch("c", fresh.clone())
    }));
    refuse_anonymous_maps(0);
    let err = insert
        .expect("no panic when memory is refused")
        .expect_err("the batch needs a map for its new value's graph");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(db.state_checksum(), before, "nothing changed");
    db.insert_batch("c", fresh).unwrap();
    assert_eq!(
        graphs(&db),
        3,
        "the new value's graph, once memory is given"
    );

    // Compaction builds a fresh collection's value graphs too: a map refused at any point of
    // it (each tried in turn) is a typed error that changes nothing.
    let db = Database::in_memory();
    db.create_collection("c", 4).unwrap();
    db.create_index("c", "t", IndexKind::Keyword).unwrap();
    for b in 0..8 {
        let batch = (b * 100..b * 100 + 100).map(|i| rec(i, ["a", "b", "c", "d"][i % 4]));
        db.insert_batch("c", batch.collect()).unwrap();
    }
    for i in (0..800).step_by(9) {
        db.delete("c", &format!("r{i}")).unwrap();
    }
    assert_eq!(graphs(&db), 4);
    let before = db.state_checksum();
    let mut allowed = 0;
    loop {
        refuse_anonymous_maps_after(allowed, u64::MAX);
        let compact = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.compact("c")));
        refuse_anonymous_maps(0);
        match compact.unwrap_or_else(|_| panic!("a panic with map {allowed} refused")) {
            Ok(()) => break,
            Err(err) => {
                assert!(matches!(err, Error::Io { .. }), "{err}");
                assert_eq!(db.state_checksum(), before, "nothing changed");
            }
        }
        allowed += 1;
        assert!(allowed < 200, "compaction keeps asking for maps");
    }
    assert!(
        allowed >= 4,
        "the value graphs' maps were refused too ({allowed} maps)"
    );
    assert_eq!(graphs(&db), 4, "compaction built the graphs again");
}

/// `create_index` builds the graphs of the new index's eligible values: their room is reserved
/// before the declaration is logged, so a map refused at any point of it (each tried in turn)
/// is a typed error that changes nothing — no index, the same checksum, nothing in the log —
/// and the declaration works once memory is given. (A replicated `create_index` applies
/// through the same call: a replica refused the memory stops with the I/O error, as for an
/// insert, and recovers from its log; it never records the command as rejected.)
#[test]
fn a_refused_map_while_creating_an_index_is_a_typed_error_and_nothing_is_logged() {
    use needle_core::IndexKind;
    use serde_json::json;
    let _hook = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    needle_core::__private::set_value_graph_min_records(100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.needle");
    let db = Database::open(&path).unwrap();
    db.create_collection("c", 4).unwrap();
    let records: Vec<Record> = (0..800)
        .map(|i| {
            let t = ["a", "b", "c", "d"][i % 4];
            let v = vec![i as f32, (i % 7) as f32, 1.0, 2.0];
            Record::new(format!("r{i}"), v, Some(json!({ "t": t, "n": i })))
        })
        .collect();
    db.insert_batch("c", records).unwrap();
    // A float index first (no value graphs): the int8 codes exist before `t`'s declaration.
    db.create_index("c", "n", IndexKind::Float).unwrap();
    let before = db.state_checksum();
    let mut allowed = 0;
    loop {
        refuse_anonymous_maps_after(allowed, u64::MAX);
        let create = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.create_index("c", "t", IndexKind::Keyword)
        }));
        refuse_anonymous_maps(0);
        match create.unwrap_or_else(|_| panic!("a panic with map {allowed} refused")) {
            Ok(()) => break,
            Err(err) => {
                assert!(matches!(err, Error::Io { .. }), "{err}");
                assert_eq!(db.state_checksum(), before, "nothing changed");
                assert_eq!(db.collection_info("c").unwrap().indexes.len(), 1);
            }
        }
        allowed += 1;
        assert!(allowed < 200, "create_index keeps asking for maps");
    }
    assert!(
        allowed >= 4,
        "the value graphs' maps were refused ({allowed} maps)"
    );
    let info = db.collection_info("c").unwrap();
    let t = info.indexes.iter().find(|i| i.path == "t").unwrap();
    assert_eq!(t.value_graphs, 4, "every value got its graph");
    let checksum = db.state_checksum();
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(
        db.state_checksum(),
        checksum,
        "only the declaration that worked was logged"
    );
}
