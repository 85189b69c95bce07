//! A property test against a `HashMap` model: random inserts (single and batch), updates,
//! deletes, compactions, checkpoints and reopenings of a file-backed database; after every step
//! the database and the model agree on every id, the count, and what an exhaustive search finds.

mod common;

use std::collections::HashMap;

use needle_core::{CollectionConfig, Database, Distance, Record};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Step {
    Insert(u8, [i8; 4], Option<u8>),
    Batch(Vec<(u8, [i8; 4])>),
    UpdateVector(u8, [i8; 4]),
    UpdateMetadata(u8, u8),
    Delete(u8),
    Compact,
    Checkpoint,
    Reopen,
}

fn vector(v: [i8; 4]) -> Vec<f32> {
    // Never all zero, so every distance is valid.
    v.iter()
        .enumerate()
        .map(|(i, x)| *x as f32 + if i == 0 { 0.5 } else { 0.0 })
        .collect()
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0u8..24;
    let v = || prop::array::uniform4(-4i8..4);
    prop_oneof![
        6 => (id.clone(), v(), prop::option::of(0u8..5)).prop_map(|(i, v, m)| Step::Insert(i, v, m)),
        2 => prop::collection::vec((id.clone(), v()), 0..6).prop_map(Step::Batch),
        2 => (id.clone(), v()).prop_map(|(i, v)| Step::UpdateVector(i, v)),
        2 => (id.clone(), 0u8..5).prop_map(|(i, m)| Step::UpdateMetadata(i, m)),
        3 => id.prop_map(Step::Delete),
        1 => Just(Step::Compact),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

type Model = HashMap<String, (Vec<f32>, Option<Value>)>;

fn check(db: &Database, model: &Model) {
    assert_eq!(db.count("c").unwrap(), model.len());
    for i in 0..24u8 {
        let id = format!("id{i}");
        let got = db.get("c", &id).unwrap().map(|r| (r.vector, r.metadata));
        assert_eq!(got.as_ref(), model.get(&id), "id {id}");
    }
    if !model.is_empty() {
        let hits = db.search("c", &[1.0, 0.0, 0.0, 0.0], 100).unwrap();
        let mut found: Vec<String> = hits.into_iter().map(|h| h.id).collect();
        found.sort();
        let mut expected: Vec<String> = model.keys().cloned().collect();
        expected.sort();
        assert_eq!(
            found, expected,
            "an exhaustive search returns exactly the live records"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn database_matches_a_hashmap_model(steps in prop::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.needle");
        let mut db = Database::open(&path).unwrap();
        let config = CollectionConfig { distance: Distance::Euclidean, m: 4, ..Default::default() };
        db.create_collection_with_config("c", 4, config).unwrap();
        let mut model: Model = HashMap::new();
        for step in steps {
            match step {
                Step::Insert(i, v, m) => {
                    let meta = m.map(|m| json!({"m": m}));
                    db.insert("c", &format!("id{i}"), vector(v), meta.clone()).unwrap();
                    model.insert(format!("id{i}"), (vector(v), meta));
                }
                Step::Batch(items) => {
                    let records = items.iter().map(|(i, v)| Record::new(format!("id{i}"), vector(*v), None)).collect();
                    db.insert_batch("c", records).unwrap();
                    for (i, v) in items {
                        model.insert(format!("id{i}"), (vector(v), None));
                    }
                }
                Step::UpdateVector(i, v) => {
                    let id = format!("id{i}");
                    let r = db.update("c", &id, Some(vector(v)), None);
                    match model.get_mut(&id) {
                        Some(entry) => { r.unwrap(); entry.0 = vector(v); }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Step::UpdateMetadata(i, m) => {
                    let id = format!("id{i}");
                    let r = db.update("c", &id, None, Some(json!({"m": m})));
                    match model.get_mut(&id) {
                        Some(entry) => { r.unwrap(); entry.1 = Some(json!({"m": m})); }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Step::Delete(i) => {
                    let id = format!("id{i}");
                    prop_assert_eq!(db.delete("c", &id).unwrap(), model.remove(&id).is_some());
                }
                Step::Compact => db.compact("c").unwrap(),
                Step::Checkpoint => db.checkpoint().unwrap(),
                Step::Reopen => {
                    let before = db.state_checksum();
                    drop(db);
                    db = Database::open(&path).unwrap();
                    prop_assert_eq!(db.state_checksum(), before, "reopening changed the contents");
                }
            }
            check(&db, &model);
        }
    }
}

/// The same operations in the same order give byte-identical files.
#[test]
fn same_operations_give_identical_files() {
    let seed = common::seed("same_operations_give_identical_files");
    let run = |dir: &std::path::Path| {
        let mut rng = common::Rng(seed);
        let path = dir.join("d.needle");
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 16).unwrap();
        for i in 0..600 {
            let v: Vec<f32> = (0..16).map(|_| rng.f32() - 0.5).collect();
            db.insert(
                "c",
                &format!("r{}", rng.below(400)),
                v,
                Some(json!({"i": i})),
            )
            .unwrap();
            if i % 7 == 0 {
                db.delete("c", &format!("r{}", rng.below(400))).unwrap();
            }
        }
        db.checkpoint().unwrap();
        drop(db);
        std::fs::read(&path).unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(
        run(a.path()) == run(b.path()),
        "two runs of the same operations wrote different bytes"
    );
}
