//! Bad bytes on disk never make Needle panic: truncating the checkpoint or the log at many
//! offsets, and flipping bytes in every structure, gives a clean error naming the file and the
//! offset, or a clean recovery with nothing acknowledged lost.

mod common;

use std::path::{Path, PathBuf};

use needle_core::disk::{Disk, SimDisk};
use needle_core::{
    CollectionConfig, Database, DatabaseOptions, Distance, Error, Filter, IndexKind, WalMode,
};

/// The files of a built database.
struct Built {
    main: Vec<u8>,
    wal: Vec<u8>,
}
use serde_json::json;

/// A database with two collections in its checkpoint, and five more writes in its log (on a
/// simulated disk without faults: these tests open it thousands of times).
fn build() -> (Built, u64, u64) {
    let sim = SimDisk::new(0);
    sim.create_dir_all(Path::new("/src")).unwrap();
    let path = PathBuf::from("/src/src.needle");
    let db = Database::open_on(sim.shared(), &path, DatabaseOptions::default()).unwrap();
    db.create_collection("alpha", 4).unwrap();
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        m: 4,
        ..Default::default()
    };
    db.create_collection_with_config("beta", 3, config).unwrap();
    for i in 0..40 {
        let v = vec![i as f32 + 1.0, (i % 5) as f32, 1.0, (i % 3) as f32];
        db.insert(
            "alpha",
            &format!("a{i}"),
            v,
            Some(json!({"i": i, "tag": "x"})),
        )
        .unwrap();
        db.insert("beta", &format!("b{i}"), vec![i as f32, 1.0, 2.0], None)
            .unwrap();
    }
    db.delete("alpha", "a3").unwrap();
    // Payload indexes (the checkpoint's index section): one value per record, an array of
    // several (`MANY` slots), a value of another type (an irregular slot), and a float index.
    db.update(
        "alpha",
        "a5",
        None,
        Some(json!({"i": 5, "tag": ["x", "y"]})),
    )
    .unwrap();
    db.update("alpha", "a6", None, Some(json!({"i": "six", "tag": 6})))
        .unwrap();
    db.create_index("alpha", "i", IndexKind::Integer).unwrap();
    db.create_index("alpha", "tag", IndexKind::Keyword).unwrap();
    db.create_index("beta", "late", IndexKind::Bool).unwrap();
    db.create_index("alpha", "i", IndexKind::Float).unwrap_err();
    db.checkpoint_with_tag(9).unwrap();
    let checkpointed = db.state_checksum();
    for i in 40..45 {
        db.insert(
            "beta",
            &format!("b{i}"),
            vec![i as f32, 0.0, 1.0],
            Some(json!({"late": true})),
        )
        .unwrap();
    }
    let full = db.state_checksum();
    drop(db);
    let files = sim.files();
    let built = Built {
        main: files[&path].clone(),
        wal: files[&wal_of(&path)].clone(),
    };
    (built, checkpointed, full)
}

fn wal_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", p.display()))
}

/// Copies the database files into a fresh folder with `edit` applied to one of them, opens it
/// (catching any panic) and returns the result.
fn open_edited(
    src: &Built,
    edit_wal: bool,
    edit: impl Fn(&mut Vec<u8>),
) -> std::thread::Result<Result<u64, Error>> {
    let sim = SimDisk::new(1);
    sim.create_dir_all(Path::new("/t")).unwrap();
    let dst = PathBuf::from("/t/t.needle");
    let mut main = src.main.clone();
    let mut wal = src.wal.clone();
    if edit_wal {
        edit(&mut wal)
    } else {
        edit(&mut main)
    }
    sim.put_file(&dst, &main);
    sim.put_file(&wal_of(&dst), &wal);
    std::panic::catch_unwind(move || {
        // Synced: with an unsynced log a bad record followed by good ones is a hole a power
        // loss may leave, not corruption (see `WalMode::Unsynced`).
        let db = Database::open_on(
            sim.shared(),
            &dst,
            DatabaseOptions {
                wal: WalMode::Synced,
            },
        )?;
        // Exercise what was loaded: a graph that passed the checks must also be searchable,
        // and the indexes must answer filters (through the planner) as the JSON does.
        for name in db.list_collections() {
            let dim = db.collection_info(&name)?.dimensions;
            db.search(&name, &vec![1.0; dim], 5)?;
        }
        if db.list_collections().contains(&"alpha".to_string()) {
            let f = Filter::parse(&json!({"$or": [{"tag": "y"}, {"i": {"$lt": 9}}]}))?;
            let n = db.count_matching("alpha", Some(&f))?;
            let all = db.search_with(
                "alpha",
                &[1.0; 4],
                100,
                &needle_core::SearchOptions::new().with_filter(f),
            )?;
            assert_eq!(all.len(), n, "search and count agree on the indexed filter");
        }
        Ok(db.state_checksum())
    })
}

#[test]
fn truncated_checkpoint_is_a_clean_error() {
    let (src, _, _) = build();
    let len = src.main.len();
    let mut errors = 0;
    for cut in (0..len).step_by(3).chain([len - 1]) {
        match open_edited(&src, false, |b| b.truncate(cut)) {
            Err(_) => panic!("panic opening a checkpoint cut at {cut}"),
            Ok(Ok(_)) => panic!("a checkpoint cut at {cut} of {len} opened without error"),
            Ok(Err(Error::Corrupted { file, offset, .. })) => {
                assert!(file.ends_with("t.needle"));
                assert!(offset as usize <= cut, "offset {offset} past the cut {cut}");
                errors += 1;
            }
            Ok(Err(e)) => panic!("cut at {cut}: unexpected error {e}"),
        }
    }
    assert!(errors > 100);
}

#[test]
fn flipped_checkpoint_bytes_are_detected() {
    let (src, _, full) = build();
    let len = src.main.len();
    let (mut detected, mut harmless) = (0, 0);
    for at in 0..len {
        match open_edited(&src, false, |b| b[at] ^= 0x5a) {
            Err(_) => panic!("panic opening a checkpoint with byte {at} flipped"),
            Ok(Err(Error::Corrupted { .. } | Error::UnsupportedVersion { .. })) => detected += 1,
            Ok(Err(e)) => panic!("byte {at}: unexpected error {e}"),
            // Only padding and reserved bytes may change without notice, and then nothing else did.
            Ok(Ok(sum)) => {
                assert_eq!(
                    sum, full,
                    "byte {at} flipped: opened with different contents"
                );
                harmless += 1;
            }
        }
    }
    eprintln!(
        "checkpoint of {len} bytes: {detected} flips detected, {harmless} harmless (padding)"
    );
    assert!(harmless < len / 10);
}

#[test]
fn truncated_log_recovers_a_prefix() {
    let (src, checkpointed, full) = build();
    let len = src.wal.len();
    for cut in 0..=len {
        match open_edited(&src, true, |b| b.truncate(cut)) {
            Err(_) => panic!("panic opening with the log cut at {cut}"),
            Ok(Ok(sum)) => {
                if cut == len {
                    assert_eq!(sum, full);
                } else if cut <= 32 {
                    assert_eq!(
                        sum, checkpointed,
                        "cut inside the log header: the checkpoint alone"
                    );
                }
            }
            Ok(Err(e)) => panic!("a log cut at {cut} is a torn tail, not an error: {e}"),
        }
    }
}

#[test]
fn flipped_log_bytes_are_detected_or_torn() {
    let (src, _, full) = build();
    let wal = src.wal.clone();
    let len = wal.len();
    // Where the last record starts: a flip there is a torn tail; before it, corruption.
    let mut pos = 32;
    let mut last = pos;
    while pos < len {
        last = pos;
        pos += 8 + u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
    }
    for at in 0..len {
        match open_edited(&src, true, |b| b[at] ^= 0x5a) {
            Err(_) => panic!("panic opening with log byte {at} flipped"),
            Ok(Err(Error::Corrupted { offset, file, .. })) => {
                assert!(file.ends_with("t.needle-wal"));
                assert!(
                    at < last,
                    "byte {at} is in the last record: a torn tail, not corruption"
                );
                assert!(
                    offset as usize <= at,
                    "offset {offset} after the flipped byte {at}"
                );
            }
            Ok(Err(e)) => panic!("log byte {at}: unexpected error {e}"),
            Ok(Ok(sum)) => {
                assert!(
                    at >= last,
                    "byte {at} flipped in an earlier record went unnoticed"
                );
                assert_ne!(sum, full, "the damaged last record must not be applied");
            }
        }
    }
}
