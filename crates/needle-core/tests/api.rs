//! The public API end to end: CRUD, upserts, reopen, and a typed error with no change of state
//! for every kind of bad input.

use needle_core::{CollectionConfig, Database, Distance, Error, Filter, Record, SearchOptions};
use serde_json::json;

fn db_with_docs() -> Database {
    let db = Database::in_memory();
    db.create_collection("docs", 3).unwrap();
    db.insert("docs", "a", vec![1.0, 0.0, 0.0], Some(json!({"n": 1})))
        .unwrap();
    db.insert("docs", "b", vec![0.0, 1.0, 0.0], Some(json!({"n": 2})))
        .unwrap();
    db.insert("docs", "c", vec![0.0, 0.0, 1.0], None).unwrap();
    db
}

#[test]
fn insert_get_search_update_delete() {
    let db = db_with_docs();
    assert_eq!(db.count("docs").unwrap(), 3);
    let hits = db.search("docs", &[0.9, 0.1, 0.0], 2).unwrap();
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[0].metadata, Some(json!({"n": 1})));
    assert_eq!(hits[1].id, "b");

    db.update("docs", "a", Some(vec![0.0, 0.0, 2.0]), None)
        .unwrap();
    let rec = db.get("docs", "a").unwrap().unwrap();
    assert_eq!(
        rec.vector,
        vec![0.0, 0.0, 1.0],
        "cosine stores unit vectors"
    );
    assert_eq!(
        rec.metadata,
        Some(json!({"n": 1})),
        "update without metadata keeps it"
    );
    db.update("docs", "a", None, Some(json!({"n": 9}))).unwrap();
    db.update("docs", "a", None, None).unwrap();
    assert_eq!(
        db.get("docs", "a").unwrap().unwrap().metadata,
        Some(json!({"n": 9}))
    );
    assert_eq!(db.count("docs").unwrap(), 3);

    assert!(db.delete("docs", "b").unwrap());
    assert!(!db.delete("docs", "b").unwrap());
    assert_eq!(
        db.ids("docs").unwrap(),
        vec!["c".to_string(), "a".to_string()]
    );
    assert_eq!(db.count("docs").unwrap(), 2);
    let hits = db.search("docs", &[0.0, 1.0, 0.0], 3).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter().all(|h| h.id != "b"),
        "deleted records are never returned"
    );

    let info = db.collection_info("docs").unwrap();
    assert_eq!((info.count, info.deleted), (2, 2));
    db.compact("docs").unwrap();
    let info = db.collection_info("docs").unwrap();
    assert_eq!((info.count, info.deleted), (2, 0));
    let mut top: Vec<String> = db
        .search("docs", &[0.0, 0.0, 1.0], 2)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    top.sort();
    assert_eq!(top, vec!["a".to_string(), "c".to_string()]);
}

#[test]
fn upsert_replaces() {
    let db = db_with_docs();
    db.insert("docs", "a", vec![0.0, 1.0, 0.0], Some(json!({"n": 5})))
        .unwrap();
    assert_eq!(db.count("docs").unwrap(), 3);
    let hits = db.search("docs", &[0.0, 1.0, 0.0], 3).unwrap();
    assert_eq!(hits.iter().filter(|h| h.id == "a").count(), 1);
}

#[test]
fn k_larger_than_ef_returns_k() {
    let db = Database::in_memory();
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        ef_search: 4,
        ..Default::default()
    };
    db.create_collection_with_config("p", 2, config).unwrap();
    let records = (0..200)
        .map(|i| Record::new(i.to_string(), vec![i as f32, (i % 7) as f32], None))
        .collect();
    db.insert_batch("p", records).unwrap();
    let hits = db.search("p", &[49.0, 0.0], 30).unwrap();
    assert_eq!(hits.len(), 30);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    assert_eq!(hits[0].id, "49");
    assert!(hits[0].distance.abs() < 1e-6);
}

#[test]
fn distances_per_metric() {
    for (distance, expected) in [
        (Distance::Cosine, 1.0 - 0.6f32),
        (Distance::Euclidean, ((3.0f32 - 1.0).powi(2) + 16.0).sqrt()),
        (Distance::DotProduct, -3.0),
    ] {
        let db = Database::in_memory();
        let config = CollectionConfig {
            distance,
            ..Default::default()
        };
        db.create_collection_with_config("c", 2, config).unwrap();
        db.insert("c", "x", vec![3.0, 4.0], None).unwrap();
        let d = db.search("c", &[1.0, 0.0], 1).unwrap()[0].distance;
        assert!(
            (d - expected).abs() < 1e-5,
            "{distance:?}: {d} vs {expected}"
        );
    }
}

#[test]
fn filtered_search_and_vectors() {
    let db = db_with_docs();
    let opts = SearchOptions::new()
        .with_filter(Filter::parse(&json!({"n": {"$gte": 2}})).unwrap())
        .with_vectors(true);
    let hits = db.search_with("docs", &[1.0, 0.0, 0.0], 3, &opts).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, "b");
    assert_eq!(hits[0].vector, Some(vec![0.0, 1.0, 0.0]));
}

/// Every kind of bad input gets its typed error, and the database is unchanged after it.
#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let db = db_with_docs();
    let before = db.state_checksum();
    let long_id = "x".repeat(1025);
    let cases: Vec<(&str, Error)> = vec![
        (
            "dimension",
            db.insert("docs", "z", vec![1.0, 2.0], None).unwrap_err(),
        ),
        (
            "nan",
            db.insert("docs", "z", vec![1.0, f32::NAN, 0.0], None)
                .unwrap_err(),
        ),
        (
            "inf",
            db.insert("docs", "z", vec![f32::INFINITY, 0.0, 0.0], None)
                .unwrap_err(),
        ),
        (
            "zero cosine",
            db.insert("docs", "z", vec![0.0, 0.0, 0.0], None)
                .unwrap_err(),
        ),
        (
            "empty id",
            db.insert("docs", "", vec![1.0, 0.0, 0.0], None)
                .unwrap_err(),
        ),
        (
            "long id",
            db.insert("docs", &long_id, vec![1.0, 0.0, 0.0], None)
                .unwrap_err(),
        ),
        (
            "unknown coll",
            db.insert("nope", "z", vec![1.0, 0.0, 0.0], None)
                .unwrap_err(),
        ),
        (
            "duplicate coll",
            db.create_collection("docs", 3).unwrap_err(),
        ),
        ("bad name", db.create_collection("no/slash", 3).unwrap_err()),
        ("empty name", db.create_collection("", 3).unwrap_err()),
        ("zero dims", db.create_collection("zero", 0).unwrap_err()),
        ("k = 0", db.search("docs", &[1.0, 0.0, 0.0], 0).unwrap_err()),
        ("query dims", db.search("docs", &[1.0], 1).unwrap_err()),
        (
            "metadata array",
            db.insert("docs", "z", vec![1.0, 0.0, 0.0], Some(json!([1])))
                .unwrap_err(),
        ),
        (
            "metadata string",
            db.update("docs", "a", None, Some(json!("s"))).unwrap_err(),
        ),
        (
            "update missing",
            db.update("docs", "zz", None, Some(json!({}))).unwrap_err(),
        ),
        ("drop missing", db.drop_collection("nope").unwrap_err()),
        (
            "bad batch",
            db.insert_batch(
                "docs",
                vec![
                    Record::new("ok", vec![1.0, 1.0, 0.0], None),
                    Record::new("bad", vec![1.0], None),
                ],
            )
            .unwrap_err(),
        ),
    ];
    for (what, err) in &cases {
        let ok = match *what {
            "dimension" | "query dims" | "bad batch" => {
                matches!(err, Error::DimensionMismatch { expected: 3, .. })
            }
            "nan" | "inf" | "zero cosine" => matches!(err, Error::InvalidVector { .. }),
            "empty id" | "long id" => matches!(err, Error::InvalidId { .. }),
            "unknown coll" | "drop missing" => {
                matches!(err, Error::CollectionNotFound { .. })
            }
            "duplicate coll" => matches!(err, Error::CollectionExists { .. }),
            "bad name" | "empty name" => matches!(err, Error::InvalidCollectionName { .. }),
            "zero dims" | "k = 0" => matches!(err, Error::InvalidArgument { .. }),
            "metadata array" | "metadata string" => {
                matches!(err, Error::InvalidMetadata { .. })
            }
            "update missing" => matches!(err, Error::RecordNotFound { .. }),
            _ => false,
        };
        assert!(ok, "{what}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let filter_err = Filter::parse(&json!({"n": {"$gtx": 1}})).unwrap_err();
    assert!(
        matches!(filter_err, Error::InvalidFilter { .. }),
        "{filter_err:?}"
    );
    assert_eq!(
        db.state_checksum(),
        before,
        "a failed write changed the database"
    );
    assert!(
        db.get("docs", "ok").unwrap().is_none(),
        "a failed batch is all or nothing"
    );
}

#[test]
fn reopen_keeps_everything_and_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.needle");
    {
        let db = Database::open(&path).unwrap();
        db.create_collection("docs", 3).unwrap();
        db.insert(
            "docs",
            "a",
            vec![1.0, 0.0, 0.0],
            Some(json!({"k": "v", "f": 4.707094697110225e-10})),
        )
        .unwrap();
        let second = Database::open(&path).unwrap_err();
        assert!(matches!(second, Error::Locked { .. }), "{second:?}");
        assert!(second.to_string().contains("already open"));
        db.checkpoint_with_tag(42).unwrap();
        db.insert("docs", "b", vec![0.0, 1.0, 0.0], None).unwrap();
    }
    let db = Database::open(&path).unwrap();
    assert_eq!(db.open_report().checkpoint_tag, 42);
    assert_eq!(db.open_report().wal_records_replayed, 1);
    assert_eq!(db.count("docs").unwrap(), 2);
    assert_eq!(
        db.get("docs", "a").unwrap().unwrap().metadata,
        Some(json!({"k": "v", "f": 4.707094697110225e-10})),
        "metadata (floats too) survives a checkpoint bit for bit"
    );
}

#[test]
fn snapshot_round_trip_and_checksum() {
    let db = db_with_docs();
    let mut bytes = Vec::new();
    let n = db.write_snapshot(&mut bytes, 7).unwrap();
    assert_eq!(n as usize, bytes.len());
    let other = Database::in_memory();
    assert_eq!(other.restore_snapshot(&mut bytes.as_slice()).unwrap(), 7);
    assert_eq!(other.state_checksum(), db.state_checksum());
    assert_eq!(other.list_collections(), vec!["docs".to_string()]);
    // A damaged snapshot is refused and changes nothing.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let fresh = Database::in_memory();
    assert!(fresh.restore_snapshot(&mut bad.as_slice()).is_err());
    assert!(fresh.list_collections().is_empty());
}

#[test]
fn database_is_send_sync_and_searches_run_during_writes() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Database>();
    let db = Database::in_memory();
    db.create_collection("c", 8).unwrap();
    db.insert("c", "seed", vec![1.0; 8], None).unwrap();
    std::thread::scope(|s| {
        let writer = db.clone();
        s.spawn(move || {
            for i in 0..500 {
                let v: Vec<f32> = (0..8)
                    .map(|j| ((i * 31 + j * 7) % 17) as f32 + 1.0)
                    .collect();
                writer.insert("c", &format!("r{i}"), v, None).unwrap();
            }
        });
        for _ in 0..200 {
            assert!(!db.search("c", &[1.0; 8], 5).unwrap().is_empty());
        }
    });
    assert_eq!(db.count("c").unwrap(), 501);
}

/// Huge `k` and `ef_search` are bounded by the collection's size before anything is allocated:
/// `k = 10^12` returns every record, filtered or not.
#[test]
fn huge_k_and_ef_return_at_most_count_results() {
    let db = Database::in_memory();
    db.create_collection("c", 3).unwrap();
    for i in 0..50 {
        db.insert(
            "c",
            &format!("r{i}"),
            vec![i as f32 + 1.0, 1.0, 0.5],
            Some(serde_json::json!({"even": i % 2 == 0})),
        )
        .unwrap();
    }
    let huge = 1usize << 40;
    assert_eq!(db.search("c", &[1.0, 1.0, 1.0], huge).unwrap().len(), 50);
    assert_eq!(
        db.search("c", &[1.0, 1.0, 1.0], usize::MAX).unwrap().len(),
        50
    );
    let filter = needle_core::Filter::parse(&serde_json::json!({"even": true})).unwrap();
    let opts = SearchOptions::new()
        .with_filter(filter)
        .with_ef_search(huge);
    assert_eq!(
        db.search_with("c", &[1.0, 1.0, 1.0], huge, &opts)
            .unwrap()
            .len(),
        25
    );
    let opts = SearchOptions::new().with_ef_search(usize::MAX);
    assert_eq!(
        db.search_with("c", &[1.0, 1.0, 1.0], 3, &opts)
            .unwrap()
            .len(),
        3
    );
    db.delete("c", "r0").unwrap();
    assert_eq!(db.search("c", &[1.0, 1.0, 1.0], huge).unwrap().len(), 49);
    db.create_collection("empty", 3).unwrap();
    assert!(
        db.search("empty", &[1.0, 1.0, 1.0], huge)
            .unwrap()
            .is_empty()
    );
}

/// A database's `Debug` names its collections and sizes; it never dumps records.
#[test]
fn debug_does_not_dump_records() {
    let db = Database::in_memory();
    db.create_collection("c", 3).unwrap();
    for i in 0..200 {
        db.insert("c", &format!("record-{i}"), vec![1.0, i as f32, 2.0], None)
            .unwrap();
    }
    let text = format!("{db:?}");
    assert!(!text.contains("record-1"), "{text}");
    assert!(text.len() < 300, "{} bytes of Debug", text.len());
}

/// A checkpoint replaces the file by a rename: the new file keeps the old one's permissions.
#[cfg(unix)]
#[test]
fn a_checkpoint_keeps_the_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.needle");
    let db = Database::open(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    db.create_collection("c", 3).unwrap();
    db.checkpoint().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}
