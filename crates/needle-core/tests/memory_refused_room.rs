//! A batch that grows a collection's arrays copies them before it takes the write lock
//! (`Collection::prepared_room`: vectors, layer-0 links), swaps the copies in, then reserves the
//! rest (sq8 codes, int8 codes, value graphs). Whichever of those maps the system refuses, the
//! write fails with a typed error and the state is exactly as before (same checksum, same
//! answers), and the same batch applied afterwards gives what a replica that was never refused
//! has — for f32 and sq8 collections, with and without a payload index, in memory and with the
//! vectors mapped from a checkpoint.
//!
//! Alone in its binary: the hook that refuses maps is process-wide.

use needle_core::__private::{refuse_anonymous_maps, refuse_anonymous_maps_after};
use needle_core::{CollectionConfig, Database, Distance, Error, IndexKind, Quantization, Record};
use serde_json::json;

const DIM: usize = 8;

fn batch(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            let v = (0..DIM)
                .map(|j| ((i * (j + 7)) % 113) as f32 + j as f32 * 0.5)
                .collect();
            Record::new(format!("r{i}"), v, Some(json!({ "g": i % 4 })))
        })
        .collect()
}

/// A collection of 950 records (a batch of 100 then grows the vectors past 1,024 records and
/// the layer-0 links, 17 words a record at m 8, past 960), in memory or reopened from a
/// checkpoint (its vectors mapped from the file).
fn filled(quantization: Quantization, indexed: bool, file: Option<&std::path::Path>) -> Database {
    let db = match file {
        Some(path) => Database::open(path).unwrap(),
        None => Database::in_memory(),
    };
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        m: 8,
        ef_construction: 24,
        quantization,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("c", DIM, config).unwrap();
    if indexed {
        db.create_index("c", "g", IndexKind::Integer).unwrap();
    }
    db.insert_batch("c", batch(0, 950)).unwrap();
    db.delete("c", "r3").unwrap();
    match file {
        Some(path) => {
            db.checkpoint().unwrap();
            drop(db);
            Database::open(path).unwrap()
        }
        None => db,
    }
}

fn answers(db: &Database) -> Vec<Vec<(String, u32)>> {
    batch(2_000, 5)
        .into_iter()
        .map(|r| {
            db.search("c", &r.vector, 10)
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.distance.to_bits()))
                .collect()
        })
        .collect()
}

#[test]
fn a_refused_map_while_growing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut refusals = 0;
    let mut files = 0;
    let mut fresh = || {
        files += 1;
        dir.path().join(format!("{files}.needle"))
    };
    for quantization in [Quantization::None, Quantization::Sq8] {
        for indexed in [false, true] {
            for mapped in [false, true] {
                let file = |p: &std::path::Path| if mapped { Some(p.to_path_buf()) } else { None };
                let a = fresh();
                let replica = filled(quantization, indexed, file(&a).as_deref());
                replica.insert_batch("c", batch(950, 100)).unwrap();
                let want = (replica.state_checksum(), answers(&replica));
                // Refuse the first map, then the second, ..., until the batch needs no more.
                for allowed in 0.. {
                    let b = fresh();
                    let db = filled(quantization, indexed, file(&b).as_deref());
                    let before = (db.state_checksum(), answers(&db));
                    refuse_anonymous_maps_after(allowed, 1);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        db.insert_batch("c", batch(950, 100))
                    }))
                    .expect("no panic when memory is refused");
                    refuse_anonymous_maps(0);
                    let case = format!(
                        "{quantization:?}, indexed {indexed}, mapped {mapped}, map {allowed} refused"
                    );
                    match result {
                        Err(ref e) => {
                            assert!(matches!(e, Error::Io { .. }), "{case}: {e}");
                            refusals += 1;
                            assert_eq!(
                                (db.state_checksum(), answers(&db)),
                                before,
                                "{case}: the refused write changed the state"
                            );
                            assert_eq!(db.count("c").unwrap(), 949, "{case}");
                            db.insert_batch("c", batch(950, 100)).unwrap();
                        }
                        Ok(()) => {
                            assert_eq!(db.count("c").unwrap(), 1049, "{case}");
                        }
                    }
                    assert_eq!(
                        (db.state_checksum(), answers(&db)),
                        want,
                        "{case}: not what a replica never refused has"
                    );
                    if mapped {
                        // And the log replays to it.
                        drop(db);
                        let db = Database::open(&b).unwrap();
                        assert_eq!(db.state_checksum(), want.0, "{case}: after a replay");
                    }
                    if result.is_ok() {
                        break;
                    }
                    assert!(allowed < 20, "{case}: still refused after 20 maps");
                }
            }
        }
    }
    eprintln!("{refusals} refused writes checked");
    assert!(refusals >= 8, "{refusals} refused writes checked");
}
