//! `Database::state_checksum` tells replicas apart whenever their contents differ, not only when
//! their sizes do: a vector, a link, a metadata value or sq8 ranges trained at another slot
//! count change it. (It was a running CRC-32C of the snapshot bytes; each section of the format
//! ends with its own CRC-32C, and a CRC over bytes followed by their CRC is the same whatever
//! the bytes, so it saw the section lengths alone.)

use needle_core::{CollectionConfig, Database, Distance, Quantization, Record};
use serde_json::json;

fn records(n: usize, salt: f32) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let v = vec![(i * 7 % 101) as f32 + salt, (i % 13) as f32, i as f32, 1.0];
            Record::new(format!("r{i}"), v, Some(json!({ "g": i % 3 })))
        })
        .collect()
}

fn db(quantization: Quantization) -> Database {
    let db = Database::in_memory();
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        m: 4,
        ef_construction: 16,
        quantization,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("c", 4, config).unwrap();
    db
}

#[test]
fn contents_of_the_same_size_that_differ_have_different_checksums() {
    let base = db(Quantization::None);
    base.insert_batch("c", records(300, 0.0)).unwrap();
    let same = db(Quantization::None);
    same.insert_batch("c", records(300, 0.0)).unwrap();
    assert_eq!(base.state_checksum(), same.state_checksum());

    // One float of one vector.
    let vector = db(Quantization::None);
    let mut other = records(300, 0.0);
    other[299].vector[3] = 2.0;
    vector.insert_batch("c", other).unwrap();
    // One metadata value (same length).
    let metadata = db(Quantization::None);
    let mut other = records(300, 0.0);
    other[5].metadata = Some(json!({ "g": 9 }));
    metadata.insert_batch("c", other).unwrap();
    // Every vector shifted: other vectors and another graph.
    let shifted = db(Quantization::None);
    shifted.insert_batch("c", records(300, 0.5)).unwrap();
    for (what, db) in [
        ("a vector", &vector),
        ("a metadata value", &metadata),
        ("every vector", &shifted),
    ] {
        assert_ne!(
            db.state_checksum(),
            base.state_checksum(),
            "{what} differs, the checksum does not"
        );
    }
}

/// sq8 ranges are trained when a batch's chunk ends past 1,000 slots: at 1,000 when the first
/// batch ends there, at 1,037 when one batch goes on to 1,037. The two states differ in their
/// trained ranges (and `write_snapshot` bytes), so must their checksums.
#[test]
fn sq8_ranges_trained_at_another_slot_count_change_the_checksum() {
    let states: Vec<(u64, Vec<u8>)> = [1000, 1037]
        .into_iter()
        .map(|split| {
            let db = db(Quantization::Sq8);
            let all = records(1037, 0.0);
            db.insert_batch("c", all[..split].to_vec()).unwrap();
            db.insert_batch("c", all[split..].to_vec()).unwrap();
            let mut bytes = Vec::new();
            db.write_snapshot(&mut bytes, 0).unwrap();
            (db.state_checksum(), bytes)
        })
        .collect();
    assert_ne!(states[0].1, states[1].1, "the states differ");
    assert_ne!(states[0].0, states[1].0, "and so do their checksums");
}
