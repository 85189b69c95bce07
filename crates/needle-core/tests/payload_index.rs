//! Payload indexes and the set operations: the same answers with and without indexes (and as
//! brute force), indexes that survive reopening, checkpoints, snapshots and compaction, and
//! `count` / `delete_by_filter` / `scroll` against a model, including scrolling while writing.
//!
//! Random tests print their seed; replay one with `NEEDLE_SEED=<seed>`. `NEEDLE_SLOW=1` runs
//! many more rounds.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Rng, seed};
use needle_core::{
    CollectionConfig, Database, Error, Filter, IndexKind, Quantization, SearchOptions,
};
use serde_json::{Value, json};

fn rounds(quick: usize, slow: usize) -> usize {
    if std::env::var_os("NEEDLE_SLOW").is_some() {
        slow
    } else {
        quick
    }
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

thread_local! {
    /// Whether [`value`] mixes in values of other types. Without them an index has no irregular
    /// slots, and the planner takes its posting lists as the exact matches without testing them
    /// (the path a stale posting would corrupt).
    static MIXED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// A value for a path: mostly of the path's usual type, sometimes of another (mixed types).
fn value(rng: &mut Rng, path: &str) -> Value {
    if MIXED.with(|m| m.get()) && rng.below(12) == 0 {
        return pick(
            rng,
            &[
                json!(null),
                json!("x"),
                json!(3),
                json!(2.5),
                json!(true),
                json!([1, "a"]),
                json!({"z": 1}),
                json!([]),
            ],
        )
        .clone();
    }
    match path {
        "t" => json!(pick(rng, &["a", "b", "c", "d", "e"])),
        "n" => json!(rng.below(10) as i64 - 3),
        "f" => json!((rng.below(40) as f64) / 4.0 - 2.0),
        "b" => json!(rng.below(2) == 0),
        "tags" => {
            let k = rng.below(4);
            let mut tags: Vec<&str> = (0..k).map(|_| *pick(rng, &["a", "b", "c", "d"])).collect();
            tags.sort();
            json!(tags)
        }
        _ => json!(rng.below(5)),
    }
}

fn metadata(rng: &mut Rng) -> Option<Value> {
    if rng.below(15) == 0 {
        return None;
    }
    let mut m = serde_json::Map::new();
    for path in ["t", "n", "f", "b", "tags"] {
        if rng.below(6) != 0 {
            m.insert(path.to_string(), value(rng, path));
        }
    }
    if rng.below(3) == 0 {
        m.insert("o".into(), json!({"x": value(rng, "n")}));
    }
    Some(Value::Object(m))
}

const PATHS: [&str; 6] = ["t", "n", "f", "b", "tags", "o.x"];

fn operand(rng: &mut Rng, path: &str) -> Value {
    match path {
        "tags" => value(rng, "t"),
        "o.x" => value(rng, "n"),
        p => value(rng, p),
    }
}

fn field_condition(rng: &mut Rng, path: &str) -> Value {
    let v = operand(rng, path);
    match rng.below(11) {
        0 => v,
        1 => json!({"$eq": v}),
        2 => json!({"$ne": v}),
        3 => json!({"$in": [v, operand(rng, path)]}),
        4 => json!({"$nin": [v, operand(rng, path)]}),
        5 => json!({"$exists": rng.below(2) == 0}),
        6 => {
            let op = *pick(rng, &["$gt", "$gte", "$lt", "$lte"]);
            let bound = if rng.below(5) == 0 {
                json!(pick(rng, &["b", "c", "aa"]))
            } else {
                json!((rng.below(20) as f64) / 2.0 - 3.0)
            };
            json!({ op: bound })
        }
        7 => json!({"$gte": rng.below(6) as i64 - 2, "$lt": rng.below(6) as i64 + 1}),
        8 => json!({"$not": {"$in": [v]}}),
        9 => json!(null),
        _ => json!(["a", "b"]),
    }
}

fn filter_json(rng: &mut Rng, depth: usize) -> Value {
    match if depth >= 2 { 0 } else { rng.below(5) } {
        0 | 1 => {
            let path = *pick(rng, &PATHS);
            json!({ path: field_condition(rng, path) })
        }
        2 => json!({"$and": [filter_json(rng, depth + 1), filter_json(rng, depth + 1)]}),
        3 => json!({"$or": [filter_json(rng, depth + 1), filter_json(rng, depth + 1)]}),
        _ => json!({"$not": filter_json(rng, depth + 1)}),
    }
}

fn unit_vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.f32() - 0.5).collect()
}

fn index_all(db: &Database) {
    for (path, kind) in [
        ("t", IndexKind::Keyword),
        ("n", IndexKind::Integer),
        ("f", IndexKind::Float),
        ("b", IndexKind::Bool),
        ("tags", IndexKind::Keyword),
        ("o.x", IndexKind::Integer),
    ] {
        db.create_index("c", path, kind)
            .expect("a new index on a valid path");
    }
}

fn ids(hits: &[needle_core::SearchResult]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

/// Random records and writes applied alike to an indexed and an unindexed database; every random
/// filter then counts, searches and deletes the same in both, and as brute force over a model.
#[test]
fn indexes_never_change_answers() {
    let seed = seed("indexes_never_change_answers");
    let mut rng = Rng(seed);
    for round in 0..rounds(8, 60) {
        // Every other round without mixed types (no irregular slots: exact gathers).
        MIXED.with(|m| m.set(round % 2 == 0));
        let dim = 4;
        let plain = Database::in_memory();
        let indexed = Database::in_memory();
        let mut model: BTreeMap<String, (Vec<f32>, Option<Value>)> = BTreeMap::new();
        for db in [&plain, &indexed] {
            db.create_collection("c", dim).unwrap();
        }
        // Half the indexes before the records, half after: both paths fill them.
        let early = rng.below(2) == 0;
        if early {
            index_all(&indexed);
        }
        for i in 0..300 {
            let id = format!("r{}", rng.below(250));
            let v = unit_vector(&mut rng, dim);
            let m = metadata(&mut rng);
            match rng.below(10) {
                0 if model.contains_key(&id) => {
                    plain.delete("c", &id).unwrap();
                    indexed.delete("c", &id).unwrap();
                    model.remove(&id);
                }
                1 if model.contains_key(&id) => {
                    // A metadata-only update keeps the slot: the index must follow in place.
                    let m = m.unwrap_or(json!({}));
                    plain.update("c", &id, None, Some(m.clone())).unwrap();
                    indexed.update("c", &id, None, Some(m.clone())).unwrap();
                    model.get_mut(&id).unwrap().1 = Some(m);
                }
                _ => {
                    plain.insert("c", &id, v.clone(), m.clone()).unwrap();
                    indexed.insert("c", &id, v.clone(), m.clone()).unwrap();
                    model.insert(id, (v, m));
                }
            }
            if i == 150 && rng.below(2) == 0 {
                indexed.compact("c").unwrap();
            }
        }
        if !early {
            index_all(&indexed);
        }
        for _ in 0..60 {
            let fj = filter_json(&mut rng, 0);
            let f = Filter::parse(&fj).unwrap_or_else(|e| panic!("seed {seed}: {fj}: {e}"));
            let want: BTreeSet<&String> = model
                .iter()
                .filter(|(_, (_, m))| f.matches(m.as_ref()))
                .map(|(id, _)| id)
                .collect();
            let ctx = format!("seed {seed} round {round} filter {fj}");
            assert_eq!(
                plain.count_matching("c", Some(&f)).unwrap(),
                want.len(),
                "{ctx}"
            );
            assert_eq!(
                indexed.count_matching("c", Some(&f)).unwrap(),
                want.len(),
                "{ctx}"
            );
            let q = unit_vector(&mut rng, dim);
            let opts = SearchOptions::new().with_filter(f.clone());
            let all = indexed.search_with("c", &q, 400, &opts).unwrap();
            let got: BTreeSet<&String> = all.iter().map(|h| &h.id).collect();
            assert_eq!(got, want, "{ctx}");
            let a = plain.search_with("c", &q, 5, &opts).unwrap();
            let b = indexed.search_with("c", &q, 5, &opts).unwrap();
            assert_eq!(ids(&a), ids(&b), "{ctx}");
            // Scrolling the matches visits exactly them, in id order.
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = indexed.scroll("c", Some(&f), cursor.as_deref(), 7).unwrap();
                seen.extend(page.records.into_iter().map(|r| r.id));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(
                seen,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{ctx}"
            );
        }
        // delete_by_filter deletes exactly the matches, in both.
        let fj = filter_json(&mut rng, 0);
        let f = Filter::parse(&fj).unwrap();
        let doomed = model
            .values()
            .filter(|(_, m)| f.matches(m.as_ref()))
            .count();
        assert_eq!(
            plain.delete_by_filter("c", &f).unwrap(),
            doomed,
            "seed {seed} {fj}"
        );
        assert_eq!(
            indexed.delete_by_filter("c", &f).unwrap(),
            doomed,
            "seed {seed} {fj}"
        );
        model.retain(|_, (_, m)| !f.matches(m.as_ref()));
        let left: Vec<String> = model.keys().cloned().collect();
        let mut got = indexed.ids("c").unwrap();
        got.sort();
        assert_eq!(got, left, "seed {seed}");
        assert_eq!(plain.count("c").unwrap(), model.len());
    }
}

/// Large enough for the planner's graph walk: results still match the filter, come back k
/// whenever k match, and reach high recall against brute force.
#[test]
fn planned_search_keeps_recall_at_every_selectivity() {
    planned_search_keeps_recall(
        "planned_search_keeps_recall_at_every_selectivity",
        Quantization::None,
    );
}

/// The same in an sq8 collection (6,000 slots: its codes are trained): the planner's paths
/// (exact gathers, bitmap walks, two-hop walks) work there too, after deletes as well.
#[test]
fn planned_search_keeps_recall_in_sq8_collections() {
    planned_search_keeps_recall(
        "planned_search_keeps_recall_in_sq8_collections",
        Quantization::Sq8,
    );
}

fn planned_search_keeps_recall(name: &str, quantization: Quantization) {
    let seed = seed(name);
    let mut rng = Rng(seed);
    let (n, dim) = (6000, 8);
    let db = Database::in_memory();
    let config = CollectionConfig {
        quantization,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("c", dim, config).unwrap();
    assert_eq!(
        db.collection_info("c").unwrap().config.quantization,
        quantization
    );
    db.create_index("c", "tenant", IndexKind::Integer).unwrap();
    db.create_index("c", "price", IndexKind::Float).unwrap();
    db.create_index("c", "lang", IndexKind::Keyword).unwrap();
    let mut base = Vec::new();
    let mut metas = Vec::new();
    let records: Vec<_> = (0..n)
        .map(|i| {
            let v = unit_vector(&mut rng, dim);
            let m = json!({
                "tenant": i % 600,
                "price": (rng.below(10_000) as f64) / 100.0,
                "lang": pick(&mut rng, &["en", "en", "en", "de", "fr"]),
            });
            base.push(v.clone());
            metas.push(m.clone());
            needle_core::Record::new(format!("{i}"), v, Some(m))
        })
        .collect();
    db.insert_batch("c", records).unwrap();
    // Tombstones: every 50th record deleted (the filters must skip them).
    let mut gone = vec![false; n];
    for i in (0..n).step_by(50) {
        assert!(db.delete("c", &i.to_string()).unwrap());
        gone[i] = true;
    }
    let cases = [
        json!({"tenant": 7}),
        json!({"tenant": {"$in": [1, 2, 3, 4, 5, 6]}}),
        json!({"price": {"$lt": 10}}),
        json!({"price": {"$gte": 50}}),
        json!({"$and": [{"lang": "de"}, {"price": {"$gte": 30}}]}),
        json!({"$or": [{"lang": "fr"}, {"tenant": {"$lt": 20}}]}),
        json!({"lang": {"$ne": "en"}}),
        json!({"$not": {"price": {"$lt": 95}}}),
    ];
    for fj in cases {
        let f = Filter::parse(&fj).unwrap();
        let opts = SearchOptions::new()
            .with_filter(f.clone())
            .with_ef_search(64);
        let (mut hit, mut total) = (0usize, 0usize);
        for _ in 0..20 {
            let q = unit_vector(&mut rng, dim);
            let truth =
                common::brute_force(&base, &q, 10, |i| !gone[i] && f.matches(Some(&metas[i])));
            let got = db.search_with("c", &q, 10, &opts).unwrap();
            assert_eq!(
                got.len(),
                truth.len(),
                "seed {seed} {fj}: k results whenever k match"
            );
            for h in &got {
                assert!(
                    f.matches(h.metadata.as_ref()),
                    "seed {seed} {fj}: {} does not match",
                    h.id
                );
            }
            let got: BTreeSet<usize> = got.iter().map(|h| h.id.parse().unwrap()).collect();
            hit += truth.iter().filter(|i| got.contains(i)).count();
            total += truth.len();
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.9, "seed {seed} {fj}: recall {recall}");
    }
}

fn state(db: &Database) -> (Vec<needle_core::IndexInfo>, Vec<String>, usize) {
    let f = Filter::parse(&json!({"$or": [{"t": "a"}, {"n": {"$gt": 2}}]})).unwrap();
    let opts = SearchOptions::new().with_filter(f.clone());
    (
        db.collection_info("c").unwrap().indexes,
        ids(&db
            .search_with("c", &[0.5, 0.5, 0.1, 0.0], 10, &opts)
            .unwrap()),
        db.count_matching("c", Some(&f)).unwrap(),
    )
}

/// Indexes are logged like other writes and stored in checkpoints and snapshots: reopening
/// (with and without a checkpoint), restoring a snapshot and compacting keep them, exactly.
#[test]
fn indexes_survive_reopen_checkpoint_snapshot_and_compaction() {
    let seed = seed("indexes_survive_reopen_checkpoint_snapshot_and_compaction");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.needle");
    let write = |db: &Database, rng: &mut Rng, n: usize| {
        for _ in 0..n {
            let id = format!("r{}", rng.below(150));
            db.insert("c", &id, unit_vector(rng, 4), metadata(rng))
                .unwrap();
            if rng.below(5) == 0 {
                db.delete("c", &format!("r{}", rng.below(150))).unwrap();
            }
        }
    };
    let (before, checksum) = {
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 4).unwrap();
        db.create_index("c", "t", IndexKind::Keyword).unwrap();
        write(&db, &mut rng, 100);
        db.checkpoint().unwrap();
        db.create_index("c", "n", IndexKind::Integer).unwrap();
        db.create_index("c", "f", IndexKind::Float).unwrap();
        write(&db, &mut rng, 100);
        db.drop_index("c", "f").unwrap();
        (state(&db), db.state_checksum())
    };
    // Reopen: the checkpoint holds one index, the log adds and drops the others.
    let db = Database::open(&path).unwrap();
    assert!(db.open_report().wal_records_replayed > 0);
    assert_eq!(state(&db), before, "seed {seed}: after replaying the log");
    assert_eq!(db.state_checksum(), checksum, "seed {seed}");
    db.checkpoint().unwrap();
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(db.open_report().wal_records_replayed, 0);
    assert_eq!(state(&db), before, "seed {seed}: after a checkpoint");
    assert_eq!(db.state_checksum(), checksum, "seed {seed}");

    let mut snapshot = Vec::new();
    db.write_snapshot(&mut snapshot, 5).unwrap();
    let other = Database::in_memory();
    other.restore_snapshot(&mut snapshot.as_slice()).unwrap();
    assert_eq!(state(&other), before, "seed {seed}: after a snapshot");
    assert_eq!(other.state_checksum(), checksum);

    db.compact("c").unwrap();
    let (infos, hits, count) = state(&db);
    assert_eq!(
        infos.iter().map(|i| (&i.path, i.kind)).collect::<Vec<_>>(),
        before
            .0
            .iter()
            .map(|i| (&i.path, i.kind))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (hits, count),
        (before.1.clone(), before.2),
        "seed {seed}: after compaction"
    );
    drop(db);
    let db = Database::open(&path).unwrap();
    assert_eq!(
        state(&db).2,
        before.2,
        "seed {seed}: compaction replayed from the log"
    );
}

/// `count`, `delete_by_filter`, `delete_many`, `get_many` and `scroll` against a model, with
/// writes between the pages of a scroll: every record present throughout is seen exactly once,
/// in id order.
#[test]
fn set_operations_match_a_model_while_writing() {
    let seed = seed("set_operations_match_a_model_while_writing");
    let mut rng = Rng(seed);
    for _ in 0..rounds(4, 40) {
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        if rng.below(2) == 0 {
            index_all(&db);
        }
        let mut model: BTreeMap<String, Option<Value>> = BTreeMap::new();
        let insert = |db: &Database, model: &mut BTreeMap<String, Option<Value>>, rng: &mut Rng| {
            let id = format!("r{:03}", rng.below(400));
            let m = metadata(rng);
            db.insert("c", &id, unit_vector(rng, 4), m.clone()).unwrap();
            model.insert(id.clone(), m);
            id
        };
        for _ in 0..200 {
            insert(&db, &mut model, &mut rng);
        }
        // Records written during the scroll (replaced or deleted) may or may not be seen.
        // A quarter of the rounds scroll without a filter (the id-ordered range walk).
        let unfiltered = rng.below(4) == 0;
        let fj = if unfiltered {
            json!({})
        } else {
            filter_json(&mut rng, 0)
        };
        let f = Filter::parse(&fj).unwrap();
        let start: BTreeSet<String> = model
            .iter()
            .filter(|(_, m)| f.matches(m.as_ref()))
            .map(|(id, _)| id.clone())
            .collect();
        let mut removed = BTreeSet::new();
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = db
                .scroll(
                    "c",
                    (!unfiltered).then_some(&f),
                    cursor.as_deref(),
                    1 + rng.below(9) as usize,
                )
                .unwrap();
            for r in &page.records {
                assert!(f.matches(r.metadata.as_ref()), "seed {seed}");
                assert_eq!(model.get(&r.id), Some(&r.metadata), "seed {seed}");
            }
            seen.extend(page.records.into_iter().map(|r| r.id));
            let Some(next) = page.next_cursor else { break };
            cursor = Some(next);
            // Write between pages: inserts, deletes, deletes by id list.
            for _ in 0..rng.below(6) {
                match rng.below(3) {
                    0 => {
                        removed.insert(insert(&db, &mut model, &mut rng));
                    }
                    1 => {
                        let id = format!("r{:03}", rng.below(400));
                        db.delete("c", &id).unwrap();
                        model.remove(&id);
                        removed.insert(id);
                    }
                    _ => {
                        let ids: Vec<String> =
                            (0..3).map(|_| format!("r{:03}", rng.below(400))).collect();
                        let present = ids
                            .iter()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .filter(|id| model.contains_key(*id))
                            .count();
                        assert_eq!(db.delete_many("c", &ids).unwrap(), present, "seed {seed}");
                        for id in ids {
                            model.remove(&id);
                            removed.insert(id);
                        }
                    }
                }
            }
        }
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: ids ascending and once"
        );
        let seen: BTreeSet<String> = seen.into_iter().collect();
        for id in start.iter().filter(|id| !removed.contains(*id)) {
            assert!(
                seen.contains(id),
                "seed {seed}: {id} was there, unchanged, throughout but not seen"
            );
        }
        let want = model.values().filter(|m| f.matches(m.as_ref())).count();
        assert_eq!(
            db.count_matching("c", Some(&f)).unwrap(),
            want,
            "seed {seed}"
        );
        assert_eq!(db.count_matching("c", None).unwrap(), model.len());
        let asked: Vec<String> = (0..20).map(|_| format!("r{:03}", rng.below(400))).collect();
        let got = db.get_many("c", &asked).unwrap();
        for (id, rec) in asked.iter().zip(got) {
            assert_eq!(
                rec.map(|r| r.metadata),
                model.get(id).cloned(),
                "seed {seed}: {id}"
            );
        }
    }
}

#[test]
fn bad_index_requests_are_typed_errors_that_change_nothing() {
    let db = Database::in_memory();
    db.create_collection("c", 2).unwrap();
    db.insert("c", "a", vec![1.0, 0.0], Some(json!({"k": "x", "n": 1})))
        .unwrap();
    db.create_index("c", "k", IndexKind::Keyword).unwrap();
    let before = db.state_checksum();
    assert!(matches!(
        "text".parse::<IndexKind>(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        db.create_index("c", "k", IndexKind::Integer),
        Err(Error::IndexExists { path, .. }) if path == "k"
    ));
    assert!(matches!(
        db.drop_index("c", "n"),
        Err(Error::IndexNotFound { .. })
    ));
    for bad in ["", "a..b", ".a", "$and", "a."] {
        assert!(
            matches!(
                db.create_index("c", bad, IndexKind::Keyword),
                Err(Error::InvalidArgument { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        db.create_index("nope", "k", IndexKind::Keyword),
        Err(Error::CollectionNotFound { .. })
    ));
    assert!(matches!(
        db.scroll("c", None, None, 0),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(
        db.state_checksum(),
        before,
        "failed requests changed nothing"
    );
}

/// An index on a path whose values have mixed types: values of other types are irregular, counted
/// in `collection_info`, and still match filters exactly (from their JSON).
#[test]
fn mixed_types_on_an_indexed_path_still_match_exactly() {
    let db = Database::in_memory();
    db.create_collection("c", 2).unwrap();
    let values = [
        json!(5),
        json!("5"),
        json!(5.0),
        json!([5, 6]),
        json!([5, "x"]),
        json!(null),
        json!(u64::MAX),
        json!(5.5),
    ];
    for (i, v) in values.iter().enumerate() {
        db.insert(
            "c",
            &format!("{i}"),
            vec![1.0, i as f32],
            Some(json!({"n": v})),
        )
        .unwrap();
    }
    db.create_index("c", "n", IndexKind::Integer).unwrap();
    let info = &db.collection_info("c").unwrap().indexes[0];
    assert_eq!((info.indexed, info.irregular), (3, 5), "{info:?}");
    for (fj, want) in [
        (json!({"n": 5}), 4),
        (json!({"n": "5"}), 1),
        (json!({"n": null}), 1),
        (json!({"n": {"$gt": 5}}), 3),
        (json!({"n": {"$exists": true}}), 8),
        (json!({"n": [5, "x"]}), 1),
        (json!({"n": {"$ne": 5}}), 4),
    ] {
        let f = Filter::parse(&fj).unwrap();
        assert_eq!(db.count_matching("c", Some(&f)).unwrap(), want, "{fj}");
    }
}

#[test]
fn score_threshold_drops_far_results() {
    let db = Database::in_memory();
    db.create_collection("c", 2).unwrap();
    db.insert("c", "near", vec![1.0, 0.0], None).unwrap();
    db.insert("c", "far", vec![0.0, 1.0], None).unwrap();
    let opts = SearchOptions::new().with_score_threshold(0.5);
    let hits = db.search_with("c", &[1.0, 0.1], 2, &opts).unwrap();
    assert_eq!(ids(&hits), ["near"]);
}

/// Filters mixing indexed and unindexed paths, on a collection large enough for the planner
/// (bitmaps, exact passes, walks): counts equal the JSON model's, every result matches, and a
/// search returns `min(k, matches)` results, the exact ones when `k` covers every match.
/// Nothing about the indexes changes what is found, only how.
#[test]
fn filters_mixing_indexed_and_unindexed_paths_plan_exactly() {
    let seed = seed("filters_mixing_indexed_and_unindexed_paths_plan_exactly");
    let mut rng = Rng(seed);
    let dim = 4;
    let db = Database::in_memory();
    db.create_collection("c", dim).unwrap();
    // Some paths indexed, the others (f, b, o.x) evaluated from the JSON.
    for (path, kind) in [
        ("t", IndexKind::Keyword),
        ("n", IndexKind::Integer),
        ("tags", IndexKind::Keyword),
    ] {
        db.create_index("c", path, kind).unwrap();
    }
    let mut model: Vec<(String, Option<Value>)> = Vec::new();
    let records: Vec<_> = (0..5000)
        .map(|i| {
            let m = metadata(&mut rng);
            model.push((format!("r{i:04}"), m.clone()));
            needle_core::Record::new(format!("r{i:04}"), unit_vector(&mut rng, dim), m)
        })
        .collect();
    db.insert_batch("c", records).unwrap();
    for _ in 0..rounds(40, 400) {
        let fj = filter_json(&mut rng, 0);
        let f = Filter::parse(&fj).unwrap();
        let ctx = format!("seed {seed} filter {fj}");
        let want: BTreeSet<&String> = model
            .iter()
            .filter(|(_, m)| f.matches(m.as_ref()))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            db.count_matching("c", Some(&f)).unwrap(),
            want.len(),
            "{ctx}"
        );
        let q = unit_vector(&mut rng, dim);
        let opts = SearchOptions::new().with_filter(f.clone());
        let got = db.search_with("c", &q, 10, &opts).unwrap();
        assert_eq!(got.len(), want.len().min(10), "{ctx}");
        assert!(got.iter().all(|h| want.contains(&h.id)), "{ctx}");
        if want.len() <= 10 {
            let got: BTreeSet<&String> = got.iter().map(|h| &h.id).collect();
            assert_eq!(got, want, "{ctx}");
        }
    }
}

/// A filter the planner must estimate by sampling (a negation on an indexed path) that matches
/// only the sampled slots: the sample says 8 %, so at 384 dims it walks two hops through 20
/// matches scattered among 6,000 records, which cannot reach them all. Asked for 100, the
/// search must still return every one of the 20 (the exact scan after a short walk).
#[test]
fn a_short_filtered_walk_falls_back_to_every_match() {
    let seed = seed("a_short_filtered_walk_falls_back_to_every_match");
    let mut rng = Rng(seed);
    let (n, dim) = (6000, 384);
    let db = Database::in_memory();
    let config = CollectionConfig {
        m: 8,
        ef_construction: 32,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("c", dim, config).unwrap();
    db.create_index("c", "rare", IndexKind::Integer).unwrap();
    // The planner samples every (n / 256)-th slot; 20 of them match.
    let step = n / 256;
    let rare: BTreeSet<usize> = (0..20).map(|i| i * 13 * step).collect();
    let records: Vec<_> = (0..n)
        .map(|i| {
            let m = json!({"rare": u8::from(rare.contains(&i))});
            needle_core::Record::new(format!("{i}"), unit_vector(&mut rng, dim), Some(m))
        })
        .collect();
    db.insert_batch("c", records).unwrap();
    let f = Filter::parse(&json!({"rare": {"$ne": 0}})).unwrap();
    assert_eq!(db.count_matching("c", Some(&f)).unwrap(), rare.len());
    let opts = SearchOptions::new().with_filter(f);
    for _ in 0..5 {
        let q = unit_vector(&mut rng, dim);
        let got: BTreeSet<usize> = db
            .search_with("c", &q, 100, &opts)
            .unwrap()
            .iter()
            .map(|h| h.id.parse().unwrap())
            .collect();
        assert_eq!(got, rare, "seed {seed}: every match, however the walk went");
    }
}
