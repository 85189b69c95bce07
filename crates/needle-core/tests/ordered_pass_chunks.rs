//! The ordered pass (filt11: the distances of a range's entries over the value-ordered int8
//! codes by a run kernel, 64 entries a call) at its chunk boundaries (break11): ranges of
//! exactly 1, 63, 64, 65, 127, 128, 129 and 200 matches, at the start, middle and end of the
//! column, before and after writes that make the entries around a boundary stale (deleted,
//! metadata rewritten, vector replaced) and add delta matches, with the pass forced on and
//! off. With `k` above the matches the answer is every match (brute force's ids), each once,
//! at its exact distance. Each record's `y` is distinct, so the column's order is `y`'s and
//! the boundary entries are known. The ordered-pass mode is process-wide: this binary is
//! alone in setting it. Replays with `NEEDLE_SEED`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Rng, seed};
use needle_core::{Database, Filter, IndexKind, Record, SearchOptions};
use serde_json::json;

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.f32() - 0.5).collect()
}

/// id → (vector, y).
type Model = BTreeMap<String, (Vec<f32>, i64)>;

fn check(db: &Database, model: &Model, lo: i64, c: i64, rng: &mut Rng, what: &str) {
    let dim = 8;
    let fj = json!({"y": {"$gte": lo, "$lt": lo + c}});
    let f = Filter::parse(&fj).unwrap();
    let want: BTreeSet<&str> = model
        .iter()
        .filter(|(_, (_, y))| (lo..lo + c).contains(y))
        .map(|(k, _)| k.as_str())
        .collect();
    for mode in [Some(true), Some(false)] {
        needle_core::__private::set_ordered_passes(mode);
        let q = vector(rng, dim);
        let k = want.len() + 7;
        let got = db
            .search_with("c", &q, k, &SearchOptions::new().with_filter(f.clone()))
            .unwrap();
        let ids: BTreeSet<&str> = got.iter().map(|h| h.id.as_str()).collect();
        let what = format!("{what}: {fj} mode {mode:?}");
        assert_eq!(ids.len(), got.len(), "{what}: a record twice");
        assert_eq!(ids, want, "{what}: every match");
        common::assert_exact_nearest_first(&what, &q, &got, |h| &model[&h.id].0);
    }
    needle_core::__private::set_ordered_passes(None);
}

#[test]
fn ranges_of_63_64_65_matches_with_stale_entries_at_the_chunk_boundary() {
    let seed = seed("ranges_of_63_64_65_matches_with_stale_entries_at_the_chunk_boundary");
    let mut rng = Rng(seed);
    let (n, dim) = (1_000i64, 8);
    let db = Database::in_memory();
    db.create_collection("c", dim).unwrap();
    let mut model = Model::new();
    let mut records = Vec::new();
    for y in 0..n {
        let v = vector(&mut rng, dim);
        let id = format!("r{y}");
        records.push(Record::new(id.clone(), v.clone(), Some(json!({ "y": y }))));
        model.insert(id, (v, y));
    }
    db.insert_batch("c", records).unwrap();
    db.create_index("c", "y", IndexKind::Integer).unwrap();
    let mut next = n;
    for c in [1i64, 63, 64, 65, 127, 128, 129, 200] {
        for lo in [0, n / 2 - c / 2 + rng.below(50) as i64, n - c] {
            check(&db, &model, lo, c, &mut rng, &format!("seed {seed} fresh"));
        }
    }
    // Stale entries around each boundary of a range starting at `lo`: the 63rd-65th and
    // 128th-129th entries deleted, re-valued (same y: stale, still a match; y moved out),
    // given a new vector; new records in the range join the delta. From `lo` 1 the stale
    // slots (= y) are also at the boundaries of the stale bitmap's 64-slot words (63, 64,
    // 128); from 300 they are not.
    for lo in [1i64, 300] {
        for (i, at) in [62i64, 63, 64, 65, 127, 128].into_iter().enumerate() {
            let y = lo + at;
            let id = model
                .iter()
                .find(|(_, (_, v))| *v == y)
                .map(|(k, _)| k.clone());
            let Some(id) = id else { continue };
            match i % 4 {
                0 => {
                    assert!(db.delete("c", &id).unwrap());
                    model.remove(&id);
                }
                1 => {
                    db.update("c", &id, None, Some(json!({ "y": y }))).unwrap();
                }
                2 => {
                    db.update("c", &id, None, Some(json!({ "y": n + 5 })))
                        .unwrap();
                    model.get_mut(&id).unwrap().1 = n + 5;
                }
                _ => {
                    let v = vector(&mut rng, dim);
                    db.update("c", &id, Some(v.clone()), None).unwrap();
                    model.get_mut(&id).unwrap().0 = v;
                }
            }
            for c in [63i64, 64, 65, 66, 128, 129, 130] {
                check(
                    &db,
                    &model,
                    lo,
                    c,
                    &mut rng,
                    &format!("seed {seed} stale {at}"),
                );
            }
        }
        for y in [lo, lo + 63, lo + 64, lo + 128] {
            let v = vector(&mut rng, dim);
            let id = format!("r{next}");
            next += 1;
            db.insert("c", &id, v.clone(), Some(json!({ "y": y })))
                .unwrap();
            model.insert(id, (v, y));
            for c in [1i64, 63, 64, 65, 129] {
                check(
                    &db,
                    &model,
                    lo,
                    c,
                    &mut rng,
                    &format!("seed {seed} delta {y}"),
                );
            }
        }
    }
}
