//! The id index (ids11: a hash table of slots, a sorted order with a merged tail, dead slots
//! skipped and purged lazily) and the metadata store (a position per slot, a free list) seen
//! through the public API, against a `BTreeMap` model (break11): upserts of live ids,
//! deletes and re-inserts of one id many times, metadata set/replace/clear cycles, compaction
//! between scroll pages, scroll cursors at deleted, never-inserted, empty, multi-byte and
//! prefix ids, filtered scrolls (no payload index), a reopen (the index rebuilt from a log
//! with many deletes), snapshot and restore (same `state_checksum`), and readers scrolling
//! while a writer churns. Replays with `NEEDLE_SEED`.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use needle_core::{Database, Filter};
use serde_json::{Value, json};

fn next(state: &mut u64) -> u64 {
    // SplitMix64.
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ids that are prefixes of each other, multi-byte, and sort between each other.
fn universe(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = [
        "a",
        "ab",
        "abc",
        "abd",
        "b",
        "ü",
        "üb",
        "日本",
        "日本語",
        "\u{10FFFF}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..n {
        ids.push(match i % 4 {
            0 => format!("{i}"),
            1 => format!("doc-{i:04}"),
            2 => format!("ü{}", i * 7),
            _ => format!("a{i}"),
        });
    }
    ids
}

/// Cursors: every id, and strings that are not ids (empty, between ids, past all of them).
fn cursors(ids: &[String]) -> Vec<String> {
    let mut c: Vec<String> = ids.to_vec();
    for s in [
        "",
        "\u{0}",
        "aa",
        "abb",
        "abcd",
        "c",
        "doc-",
        "ü0",
        "日",
        "\u{10FFFF}\u{10FFFF}",
    ] {
        c.push(s.to_string());
    }
    c
}

fn vector(rng: &mut u64) -> Vec<f32> {
    (0..4)
        .map(|_| (next(rng) % 1000) as f32 / 100.0 + 0.5)
        .collect()
}

type Model = BTreeMap<String, Option<Value>>;

/// Scrolls the whole collection after `cursor` in pages of random size, with or without
/// `filter`, and compares ids and metadata with the model.
fn check_scroll(
    db: &Database,
    model: &Model,
    cursor: Option<&str>,
    filter: Option<(&Filter, u64)>,
    rng: &mut u64,
    what: &str,
) {
    let all: Vec<(String, Option<Value>)> = match cursor {
        None => model.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(c) => model
            .range::<str, _>((Excluded(c), Unbounded))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let want: Vec<(String, Option<Value>)> = all
        .into_iter()
        .filter(|(_, m)| match filter {
            None => true,
            Some((_, t)) => m.as_ref().and_then(|m| m.get("t")) == Some(&json!(t)),
        })
        .collect();
    let mut got = Vec::new();
    let mut at = cursor.map(str::to_string);
    loop {
        let limit = 1 + (next(rng) % 17) as usize;
        let page = db
            .scroll("c", filter.map(|f| f.0), at.as_deref(), limit)
            .unwrap();
        assert!(page.records.len() <= limit);
        got.extend(page.records.into_iter().map(|r| (r.id, r.metadata)));
        match page.next_cursor {
            Some(c) => at = Some(c),
            None => break,
        }
    }
    assert_eq!(
        got,
        want,
        "{what}: scroll after {cursor:?} filter {:?}",
        filter.map(|f| f.1)
    );
}

/// Random writes against the model, checking scrolls from every kind of cursor as it goes.
fn churn(db: &Database, model: &mut Model, ids: &[String], steps: usize, rng: &mut u64) {
    let cursors = cursors(ids);
    let filters: Vec<Filter> = (0..3)
        .map(|t| Filter::parse(&json!({ "t": t })).unwrap())
        .collect();
    for step in 0..steps {
        // Skewed towards a few ids: the same id deleted and re-inserted many times.
        let pick = if next(rng) % 2 == 0 { 12 } else { ids.len() };
        let id = &ids[(next(rng) as usize) % pick];
        match next(rng) % 100 {
            0..=39 => {
                let meta = match next(rng) % 3 {
                    0 => None,
                    t => Some(json!({ "t": t, "s": step })),
                };
                db.insert("c", id, vector(rng), meta.clone()).unwrap();
                model.insert(id.clone(), meta);
            }
            40..=64 => {
                let was = db.delete("c", id).unwrap();
                assert_eq!(was, model.remove(id).is_some(), "delete {id}");
            }
            65..=79 => {
                let t = next(rng) % 3;
                let meta = json!({ "t": t, "u": step });
                let r = db.update("c", id, None, Some(meta.clone()));
                match model.get_mut(id) {
                    Some(m) => {
                        r.unwrap();
                        *m = Some(meta);
                    }
                    None => assert!(r.is_err(), "update of absent {id}"),
                }
            }
            80..=81 => db.compact("c").unwrap(),
            82..=89 => {
                // A scroll with a compaction (slots renumbered) between its pages.
                let c = &cursors[(next(rng) as usize) % cursors.len()];
                let first = db.scroll("c", None, Some(c), 3).unwrap();
                db.compact("c").unwrap();
                let mut got: Vec<String> = first.records.into_iter().map(|r| r.id).collect();
                let mut at = first.next_cursor;
                while let Some(a) = at {
                    let p = db.scroll("c", None, Some(&a), 5).unwrap();
                    got.extend(p.records.into_iter().map(|r| r.id));
                    at = p.next_cursor;
                }
                let want: Vec<String> = model
                    .range::<str, _>((Excluded(c.as_str()), Unbounded))
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(got, want, "scroll across a compaction after {c:?}");
            }
            _ => {
                let c = &cursors[(next(rng) as usize) % cursors.len()];
                let f = (next(rng) % 4) as usize;
                let filter = filters.get(f).map(|x| (x, f as u64));
                check_scroll(db, model, Some(c), filter, rng, "step");
                for probe in ids.iter().take(12) {
                    let got = db.get("c", probe).unwrap();
                    assert_eq!(
                        got.map(|r| r.metadata),
                        model.get(probe).cloned(),
                        "get {probe}"
                    );
                }
            }
        }
    }
    check_scroll(db, model, None, None, rng, "end of churn");
}

#[test]
fn scrolls_and_gets_agree_with_a_model_through_reopen_and_restore() {
    let seed =
        needle_testkit::seed("scrolls_and_gets_agree_with_a_model_through_reopen_and_restore");
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.needle");
    let ids = universe(300);
    let mut model = Model::new();
    {
        let db = Database::open(&path).unwrap();
        db.create_collection("c", 4).unwrap();
        churn(&db, &mut model, &ids, 3000, &mut rng);
    }
    // Reopened: the index rebuilt from the file (many deletes and re-inserts in its log).
    let db = Database::open(&path).unwrap();
    check_scroll(&db, &model, None, None, &mut rng, "reopened");
    churn(&db, &mut model, &ids, 1500, &mut rng);
    let checksum = db.state_checksum();
    let mut snap = Vec::new();
    db.write_snapshot(&mut snap, 7).unwrap();
    let restored = Database::in_memory();
    assert_eq!(restored.restore_snapshot(&mut &snap[..]).unwrap(), 7);
    assert_eq!(restored.state_checksum(), checksum, "seed {seed}");
    check_scroll(&restored, &model, None, None, &mut rng, "restored");
    drop(db);
    let reopened = Database::open(&path).unwrap();
    assert_eq!(reopened.state_checksum(), checksum, "seed {seed}");
    // The same writes on both go on giving the same state.
    let mut rng2 = rng;
    let mut model2 = model.clone();
    churn(&reopened, &mut model, &ids, 500, &mut rng);
    churn(&restored, &mut model2, &ids, 500, &mut rng2);
    assert_eq!(
        reopened.state_checksum(),
        restored.state_checksum(),
        "seed {seed}"
    );
}

/// Readers scroll the whole collection and get ids while a writer upserts, deletes and
/// re-inserts other ids and compacts: every page is in strictly increasing id order across
/// pages (nothing seen twice), and every id the writer never touches is seen, once.
#[test]
fn readers_scrolling_during_churn_see_each_stable_id_once() {
    let seed = needle_testkit::seed("readers_scrolling_during_churn_see_each_stable_id_once");
    let db = Database::in_memory();
    db.create_collection("c", 4).unwrap();
    let stable: Vec<String> = (0..200).map(|i| format!("s{i:03}")).collect();
    let churned: Vec<String> = universe(100);
    let mut rng = seed;
    for id in &stable {
        db.insert("c", id, vector(&mut rng), Some(json!({"t": 1})))
            .unwrap();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for r in 0..2u64 {
            let (db, stable, done) = (&db, &stable, &done);
            s.spawn(move || {
                let mut rng = seed ^ (r + 1);
                let mut rounds = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || rounds < 3 {
                    rounds += 1;
                    let mut seen: Vec<String> = Vec::new();
                    let mut at: Option<String> = None;
                    loop {
                        let limit = 1 + (next(&mut rng) % 23) as usize;
                        let p = db.scroll("c", None, at.as_deref(), limit).unwrap();
                        seen.extend(p.records.into_iter().map(|r| r.id));
                        match p.next_cursor {
                            Some(c) => at = Some(c),
                            None => break,
                        }
                    }
                    assert!(
                        seen.windows(2).all(|w| w[0] < w[1]),
                        "scroll not strictly increasing (seed {seed})"
                    );
                    let got: Vec<&String> = seen.iter().filter(|i| i.starts_with('s')).collect();
                    assert_eq!(got.len(), stable.len(), "stable ids (seed {seed})");
                    for id in stable.iter().step_by(17) {
                        assert!(db.get("c", id).unwrap().is_some(), "get {id} (seed {seed})");
                    }
                }
            });
        }
        let mut wrng = seed ^ 0xabcdef;
        for step in 0..3000 {
            let id = &churned[(next(&mut wrng) as usize) % churned.len()];
            match next(&mut wrng) % 10 {
                0..=4 => db.insert("c", id, vector(&mut wrng), None).unwrap(),
                5..=8 => {
                    db.delete("c", id).unwrap();
                }
                _ if step % 50 == 0 => db.compact("c").unwrap(),
                _ => db
                    .insert_batch(
                        "c",
                        churned
                            .iter()
                            .take(20)
                            .map(|i| needle_core::Record::new(i.clone(), vector(&mut wrng), None))
                            .collect(),
                    )
                    .unwrap(),
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
