//! Union plans (`docs/benchmarks-history.md`, "filters8"): an `$or`, or an `$in` of values with graphs
//! of their own, searched branch by branch (a value graph's walk, an exact pass, a walk of the
//! main graph), each branch's best merged, a record in several branches kept once. With the
//! plans forced on (`__private::set_union_plans(Some(true))`), off, and left to the cost model,
//! random `$or`s and `$in`s over random metadata (overlapping branches, `$and` branches, ranges
//! on integer and float indexes, branches on unindexed paths, branches that match nothing; and
//! `$in`s over an array field, whose posting lists share records)
//! return matching records only, each once, `k` whenever `k` match, exactly the brute-force
//! answer when `k` is at least the matches, and high recall otherwise; the distances are the
//! exact ones.
//!
//! The union mode and the value-graph threshold are process-wide: this binary is alone in
//! setting them. Replay a run with `NEEDLE_SEED=<seed>`.

mod common;

use std::collections::BTreeSet;

use common::{Rng, seed};
use needle_core::{Database, Filter, IndexKind, Record, SearchOptions, SearchResult};
use serde_json::{Value, json};

fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.f32() - 0.5).collect()
}

fn meta(rng: &mut Rng) -> Value {
    let tags: Vec<&str> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .filter(|_| rng.below(3) == 0)
        .collect();
    let t = ["a", "b", "c", "d"][rng.below(4) as usize];
    // Two of 60 values (~200 records each: no graphs), so an `$in` of several is passed exactly
    // over posting lists that share records.
    let (k1, k2) = (rng.below(60), rng.below(60));
    json!({
        "k": [format!("k{k1}"), format!("k{k2}")],
        "t": t,
        "y": rng.below(10) as i64,
        "p": rng.f32() as f64,
        "u": rng.below(50) as i64,
        "tags": tags,
    })
}

/// A random leaf condition: on an indexed path (`t`, `y`, `tags`, `p`) or not (`u`).
fn leaf(rng: &mut Rng) -> Value {
    match rng.below(9) {
        8 => {
            let ks: Vec<String> = (0..6).map(|_| format!("k{}", rng.below(60))).collect();
            json!({"k": {"$in": ks}})
        }
        // Matches nothing: the other branches must give all `k`.
        7 => json!({"y": {"$lt": 0}}),
        0 => {
            let t = ["a", "b", "c", "d", "zz"][rng.below(5) as usize];
            json!({ "t": t })
        }
        1 => {
            let tag = ["a", "b", "c", "d", "e"][rng.below(5) as usize];
            json!({ "tags": tag })
        }
        2 => json!({"y": {"$lt": rng.below(4) as i64}}),
        3 => json!({"p": {"$lt": rng.f32() as f64 * 0.2}}),
        4 => json!({"u": rng.below(60) as i64}),
        5 => json!({"y": {"$in": [rng.below(12) as i64, rng.below(12) as i64]}}),
        _ => {
            let t = ["a", "b", "c", "d"][rng.below(4) as usize];
            json!({"$and": [{"t": t}, {"y": {"$gte": rng.below(10) as i64}}]})
        }
    }
}

/// A random filter a union plan applies to: an `$or` of two to four leaves, or an `$in` of
/// several values of `t`, `tags` or `y` (which have value graphs).
fn union_filter(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => {
            let n = 1 + rng.below(4) as usize;
            let tags: Vec<&str> = (0..n)
                .map(|_| ["a", "b", "c", "d", "e", "zz"][rng.below(6) as usize])
                .collect();
            json!({"tags": {"$in": tags}})
        }
        1 => {
            let n = 2 + rng.below(3) as usize;
            let ys: Vec<i64> = (0..n).map(|_| rng.below(12) as i64).collect();
            json!({"y": {"$in": ys}})
        }
        2 => {
            let ks: Vec<String> = (0..6).map(|_| format!("k{}", rng.below(60))).collect();
            json!({"k": {"$in": ks}})
        }
        _ => {
            let n = 2 + rng.below(3) as usize;
            let parts: Vec<Value> = (0..n).map(|_| leaf(rng)).collect();
            json!({"$or": parts})
        }
    }
}

#[test]
fn union_plans_match_brute_force() {
    // Values held by 300 records or more (and at most half) get graphs: every `t`, `tags` and
    // `y` value here.
    needle_core::__private::set_value_graph_min_records(300);
    let seed = seed("union_plans_match_brute_force");
    let mut rng = Rng(seed);
    let (n, dim) = (6_000, 8);
    let db = Database::in_memory();
    db.create_collection("c", dim).unwrap();
    for (path, kind) in [
        ("t", IndexKind::Keyword),
        ("tags", IndexKind::Keyword),
        ("y", IndexKind::Integer),
        ("p", IndexKind::Float),
        ("k", IndexKind::Keyword),
    ] {
        db.create_index("c", path, kind).unwrap();
    }
    let base: Vec<Vec<f32>> = (0..n).map(|_| vector(&mut rng, dim)).collect();
    let metas: Vec<Value> = (0..n).map(|_| meta(&mut rng)).collect();
    let records: Vec<Record> = (0..n)
        .map(|i| Record::new(format!("r{i}"), base[i].clone(), Some(metas[i].clone())))
        .collect();
    db.insert_batch("c", records).unwrap();
    // Some records leave (tombstones in the graphs) and some change values.
    for i in (0..n).step_by(37) {
        db.delete("c", &format!("r{i}")).unwrap();
    }
    let mut metas = metas;
    for i in (5..n).step_by(41).filter(|i| i % 37 != 0) {
        metas[i] = meta(&mut rng);
        db.update("c", &format!("r{i}"), None, Some(metas[i].clone()))
            .unwrap();
    }
    let live = |i: usize| i % 37 != 0;
    let row = |h: &SearchResult| -> usize { h.id[1..].parse().unwrap() };
    let graphs: usize = db
        .collection_info("c")
        .unwrap()
        .indexes
        .iter()
        .map(|i| i.value_graphs)
        .sum();
    assert!(graphs >= 15, "seed {seed}: {graphs} value graphs");

    let cases: usize = std::env::var("NEEDLE_UNION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let (mut hit, mut total) = (0usize, 0usize);
    for case in 0..cases {
        let fj = union_filter(&mut rng);
        let f = Filter::parse(&fj).unwrap();
        let matching: Vec<usize> = (0..n)
            .filter(|&i| live(i) && f.matches(Some(&metas[i])))
            .collect();
        // Every other case runs the ranges (whole filters and branches) as exact passes over
        // the value-ordered codes wherever one applies, the others by the cost model.
        needle_core::__private::set_ordered_passes((case % 2 == 0).then_some(true));
        for mode in [Some(true), None, Some(false)] {
            needle_core::__private::set_union_plans(mode);
            for _ in 0..4 {
                let q = vector(&mut rng, dim);
                let k = [10, 10, 60][rng.below(3) as usize];
                let ef = [16, 32, 64][rng.below(3) as usize];
                let opts = SearchOptions::new()
                    .with_filter(f.clone())
                    .with_ef_search(ef);
                let got = db.search_with("c", &q, k, &opts).unwrap();
                let truth =
                    common::brute_force(&base, &q, k, |i| live(i) && f.matches(Some(&metas[i])));
                let what = format!("seed {seed} case {case} {fj} mode {mode:?} k {k} ef {ef}");
                assert_eq!(got.len(), k.min(matching.len()), "{what}: k results");
                let ids: BTreeSet<&str> = got.iter().map(|h| h.id.as_str()).collect();
                assert_eq!(ids.len(), got.len(), "{what}: a record returned twice");
                for h in &got {
                    let i = row(h);
                    assert!(
                        live(i) && f.matches(Some(&metas[i])),
                        "{what}: {} does not match",
                        h.id
                    );
                }
                common::assert_exact_nearest_first(&what, &q, &got, |h| &base[row(h)]);
                if k >= matching.len() {
                    let want: BTreeSet<String> = truth.iter().map(|&i| format!("r{i}")).collect();
                    let ids: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
                    assert_eq!(ids, want, "{what}: every match");
                }
                hit += truth
                    .iter()
                    .filter(|&&i| ids.contains(format!("r{i}").as_str()))
                    .count();
                total += truth.len();
            }
        }
    }
    needle_core::__private::set_union_plans(None);
    needle_core::__private::set_ordered_passes(None);
    let recall = hit as f64 / total.max(1) as f64;
    assert!(recall >= 0.95, "seed {seed}: recall {recall}");
}
