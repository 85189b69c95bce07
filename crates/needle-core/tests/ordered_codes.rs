//! Ranges on integer and float indexes searched as exact passes over the value-ordered int8
//! codes (`crate::ordered_codes`, docs/benchmarks-history.md "Issue 11 (filters9)"), under writes: the
//! column built at `create_index`, then inserts, deletes, metadata changes and new vectors
//! marking slots stale (their entries skipped, the slots tested one by one) until the delta
//! outgrows its bound and the column is built again; and after compaction and reopen. With
//! the ordered passes forced on (`__private::set_ordered_passes(Some(true))`), off, and left
//! to the cost model, random ranges return matching live records only, each once, `k`
//! whenever `k` match, exactly brute force's answer when `k` is at least the matches, with
//! exact distances, nearest first, and high recall otherwise.
//!
//! The ordered-pass mode is process-wide: this binary is alone in setting it. Replay a run
//! with `NEEDLE_SEED=<seed>`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Rng, seed};
use needle_core::{Database, Filter, IndexKind, Record, SearchOptions};
use serde_json::{Value, json};

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.f32() - 0.5).collect()
}

fn meta(rng: &mut Rng) -> Value {
    // Some records lack `p` (missing: never in a range).
    if rng.below(20) == 0 {
        return json!({"y": rng.below(100) as i64, "t": "x"});
    }
    let t = ["a", "b"][rng.below(2) as usize];
    json!({
        "y": rng.below(100) as i64,
        "p": (rng.below(10_000) as f64) / 100.0,
        "t": t,
    })
}

/// A random range on `y` (integer) or `p` (float), from a few matches to most records.
fn range(rng: &mut Rng) -> Value {
    let op = ["$lt", "$lte", "$gt", "$gte"][rng.below(4) as usize];
    match rng.below(5) {
        0 => json!({"y": {op: rng.below(101) as i64}}),
        1 | 4 => {
            let lo = rng.below(98) as i64;
            json!({"y": {"$gte": lo, "$lt": lo + 1 + rng.below(3) as i64}})
        }
        2 => {
            let lo = rng.below(9_900) as f64 / 100.0;
            json!({"p": {"$gte": lo, "$lte": lo + 0.5}})
        }
        _ => json!({"p": {op: rng.below(10_100) as f64 / 100.0}}),
    }
}

struct Model {
    base: BTreeMap<usize, (Vec<f32>, Value)>,
    next: usize,
}

#[test]
fn ranges_on_ordered_codes_match_brute_force_under_writes() {
    let seed = seed("ranges_on_ordered_codes_match_brute_force_under_writes");
    let mut rng = Rng(seed);
    let (n, dim) = (5_000, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.needle");
    let mut db = Database::open(&path).unwrap();
    db.create_collection("c", dim).unwrap();
    let mut model = Model {
        base: BTreeMap::new(),
        next: 0,
    };
    let mut records = Vec::new();
    for _ in 0..n {
        let (v, m) = (vector(&mut rng, dim), meta(&mut rng));
        records.push(Record::new(
            format!("r{}", model.next),
            v.clone(),
            Some(m.clone()),
        ));
        model.base.insert(model.next, (v, m));
        model.next += 1;
    }
    db.insert_batch("c", records).unwrap();
    // Declared after the load: the columns are built from the records there.
    db.create_index("c", "y", IndexKind::Integer).unwrap();
    db.create_index("c", "p", IndexKind::Float).unwrap();
    db.create_index("c", "t", IndexKind::Keyword).unwrap();

    let (mut hit, mut total, mut searched) = (0usize, 0usize, 0usize);
    // Phases of writes between the searches: a few (a short delta), then more than the
    // delta's bound (512: the column is built again during them), then compaction, reopen.
    for (phase, writes) in [0usize, 40, 300, 450, 700, 0, 0].into_iter().enumerate() {
        for _ in 0..writes {
            let ids: Vec<usize> = model.base.keys().copied().collect();
            let pick = ids[rng.below(ids.len() as u64) as usize];
            match rng.below(4) {
                0 => {
                    let (v, m) = (vector(&mut rng, dim), meta(&mut rng));
                    let id = model.next;
                    model.next += 1;
                    db.insert("c", &format!("r{id}"), v.clone(), Some(m.clone()))
                        .unwrap();
                    model.base.insert(id, (v, m));
                }
                1 => {
                    db.delete("c", &format!("r{pick}")).unwrap();
                    model.base.remove(&pick);
                }
                2 => {
                    let m = meta(&mut rng);
                    db.update("c", &format!("r{pick}"), None, Some(m.clone()))
                        .unwrap();
                    model.base.get_mut(&pick).unwrap().1 = m;
                }
                _ => {
                    let v = vector(&mut rng, dim);
                    db.update("c", &format!("r{pick}"), Some(v.clone()), None)
                        .unwrap();
                    model.base.get_mut(&pick).unwrap().0 = v;
                }
            }
        }
        if phase == 5 {
            db.compact("c").unwrap();
        }
        if phase == 6 {
            db.checkpoint().unwrap();
            drop(db);
            db = Database::open(&path).unwrap();
        }
        let rows: Vec<usize> = model.base.keys().copied().collect();
        let base: Vec<Vec<f32>> = rows.iter().map(|i| model.base[i].0.clone()).collect();
        for case in 0..20 {
            let fj = range(&mut rng);
            let f = Filter::parse(&fj).unwrap();
            let matches = |r: usize| f.matches(Some(&model.base[&rows[r]].1));
            let matching = (0..rows.len()).filter(|&r| matches(r)).count();
            for mode in [Some(true), None, Some(false)] {
                needle_core::__private::set_ordered_passes(mode);
                let q = vector(&mut rng, dim);
                // k 200: every match of most narrow ranges (a `y` of 1-3 values, a `p` of 0.5),
                // so that a match left out (a slot of the delta) is seen.
                let k = [10, 60, 200, 200][rng.below(4) as usize];
                let opts = SearchOptions::new().with_filter(f.clone());
                let got = db.search_with("c", &q, k, &opts).unwrap();
                let truth = common::brute_force(&base, &q, k, matches);
                let what =
                    format!("seed {seed} phase {phase} case {case} {fj} mode {mode:?} k {k}");
                assert_eq!(got.len(), k.min(matching), "{what}: k results");
                let ids: BTreeSet<&str> = got.iter().map(|h| h.id.as_str()).collect();
                assert_eq!(ids.len(), got.len(), "{what}: a record returned twice");
                for h in &got {
                    let i: usize = h.id[1..].parse().unwrap();
                    let (_, m) = model
                        .base
                        .get(&i)
                        .unwrap_or_else(|| panic!("{what}: {} was deleted", h.id));
                    assert!(f.matches(Some(m)), "{what}: {} does not match", h.id);
                }
                common::assert_exact_nearest_first(&what, &q, &got, |h| {
                    &model.base[&h.id[1..].parse().unwrap()].0
                });
                let want: BTreeSet<String> =
                    truth.iter().map(|&r| format!("r{}", rows[r])).collect();
                if k >= matching {
                    let ids: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
                    assert_eq!(ids, want, "{what}: every match");
                }
                hit += want.iter().filter(|w| ids.contains(w.as_str())).count();
                total += want.len();
                searched += 1;
            }
        }
    }
    needle_core::__private::set_ordered_passes(None);
    let recall = hit as f64 / total.max(1) as f64;
    assert!(
        recall >= 0.97,
        "seed {seed}: recall {recall} over {searched} searches"
    );
    // The columns are counted in the indexes' memory: an integer index holds more than its
    // keys and posting lists (8 + 4 bytes a record) by the codes' 64 bytes a record.
    let info = db.collection_info("c").unwrap();
    let y = info.indexes.iter().find(|i| i.path == "y").unwrap();
    assert!(
        y.memory_bytes >= 64 * y.indexed,
        "{} bytes for {} records",
        y.memory_bytes,
        y.indexed
    );
}
