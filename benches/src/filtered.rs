//! `needle-ann filtered BASE QUERY META CASES M EFC K`: the external-engine protocol of
//! `../shared/bench/filtered.py` (its docstring is the authority). Builds one collection on one
//! thread with a payload index on every path the cases use (kind inferred from the metadata,
//! created before the inserts), then searches each case one query at a time, keeps the best of
//! `$FILTERED_REPEATS` passes, writes the ids to `$PEERS_RESULTS_DIR/<case>.ivecs` and prints
//! a JSON list of rows as the last line of stdout.
//!
//! `NEEDLE_FILTERED_NO_INDEX=1` builds without payload indexes (to compare with today's path).
//! `NEEDLE_FILTERED_SQ8=1` builds the collection with `quantization: sq8`.
//! `NEEDLE_FILTERED_VALUE_GRAPH_MIN=N` sets the fewest records a value needs for a graph of its
//! own (default 8,192; a huge N builds none, to compare with the plans without them).
//! `NEEDLE_FILTERED_UNION=0` never searches an `$or` (or a split `$in`) as a union of its
//! branches, `=1` always where one applies (default: the cost model chooses).
//! `NEEDLE_FILTERED_NO_DISJOINT=1` builds a bitmap for exact passes over several posting lists
//! even when no record is in two of them (the pass before filters8).
//! `NEEDLE_FILTERED_ORDERED=0` never runs a range as an exact pass over its index's
//! value-ordered int8 codes, `=1` wherever one applies (default: the cost model chooses).
//! `NEEDLE_FILTERED_CPU_TIME=1` computes QPS from the search thread's CPU time, not wall time.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use needle_core::{Database, Filter, IndexKind, Record, SearchOptions, SearchResult};
use serde::Serialize;
use serde_json::Value;

use crate::collection::{COLLECTION, config, result_rows, row_id};
use crate::dataset::{Metric, metric_for_base};
use crate::error::{BenchError, Result};
use crate::vecs::{read_fvecs, write_ivecs_rows};

/// Whether `args` (with the program name first) is a call of this mode.
pub fn is_filtered_call(args: &[OsString]) -> bool {
    args.len() == 9 && args[1] == "filtered"
}

/// One row of the JSON list filtered.py reads.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<String>,
}

#[derive(Debug)]
struct Case {
    name: String,
    filter: Option<Filter>,
    ef: usize,
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[needle] {}", msg.as_ref());
}

fn invalid(msg: impl Into<String>) -> BenchError {
    BenchError::Invalid(msg.into())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| BenchError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })
}

/// Every field path a filter names (keys outside `$and`/`$or`/`$nor`/`$not` that are not
/// operators).
fn paths(filter: &Value, out: &mut BTreeSet<String>) {
    let Value::Object(map) = filter else { return };
    for (key, value) in map {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                for item in value.as_array().into_iter().flatten() {
                    paths(item, out);
                }
            }
            "$not" => paths(value, out),
            k if k.starts_with('$') => {}
            k => {
                out.insert(k.to_string());
            }
        }
    }
}

/// The kind of index for the values at `path`: from the first non-null value (arrays by their
/// elements); integers that meet a float become float.
fn infer_kind(metas: &[Value], path: &str) -> Option<IndexKind> {
    let mut kind = None;
    for m in metas {
        let mut v = Some(m);
        for seg in path.split('.') {
            v = v.and_then(|x| x.get(seg));
        }
        let items: Vec<&Value> = match v {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(x) => vec![x],
            None => continue,
        };
        for x in items {
            let k = match x {
                Value::String(_) => IndexKind::Keyword,
                Value::Bool(_) => IndexKind::Bool,
                Value::Number(n) if n.is_i64() || n.is_u64() => IndexKind::Integer,
                Value::Number(_) => IndexKind::Float,
                _ => continue,
            };
            kind = match (kind, k) {
                (None, k) => Some(k),
                (Some(IndexKind::Integer), IndexKind::Float) => Some(IndexKind::Float),
                (Some(IndexKind::Float), IndexKind::Integer) => Some(IndexKind::Float),
                (Some(old), _) => Some(old),
            };
        }
    }
    kind
}

/// Runs the protocol. `args` are the seven positional arguments after `filtered`.
pub fn run(args: &[OsString]) -> Result<()> {
    let text = |i: usize| args[i].to_string_lossy().into_owned();
    let num = |i: usize, name: &str| -> Result<usize> {
        text(i)
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "argument {} ({name}): {:?} is not a positive integer",
                    i + 1,
                    text(i)
                ))
            })
    };
    let (base_path, query_path) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let (meta_path, cases_path) = (PathBuf::from(&args[2]), PathBuf::from(&args[3]));
    let (m, efc, k) = (num(4, "M")?, num(5, "EFC")?, num(6, "K")?);
    let repeats = std::env::var("FILTERED_REPEATS")
        .ok()
        .and_then(|r| r.trim().parse::<usize>().ok())
        .unwrap_or(3)
        .max(1);
    let metric = match std::env::var("FILTERED_METRIC")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        Some(name) => Metric::parse(&name)
            .ok_or_else(|| invalid(format!("FILTERED_METRIC {name:?} is not cosine, l2 or ip")))?,
        None => metric_for_base(&base_path)?,
    };
    let results_dir = std::env::var_os("PEERS_RESULTS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let use_indexes = std::env::var_os("NEEDLE_FILTERED_NO_INDEX").is_none();
    if let Some(n) = std::env::var("NEEDLE_FILTERED_VALUE_GRAPH_MIN")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        needle_core::__private::set_value_graph_min_records(n);
    }
    if std::env::var_os("NEEDLE_FILTERED_NO_DISJOINT").is_some() {
        needle_core::__private::set_disjoint_lists(false);
    }
    match std::env::var("NEEDLE_FILTERED_UNION").as_deref() {
        Ok("0") => needle_core::__private::set_union_plans(Some(false)),
        Ok("1") => needle_core::__private::set_union_plans(Some(true)),
        _ => {}
    }
    match std::env::var("NEEDLE_FILTERED_ORDERED").as_deref() {
        Ok("0") => needle_core::__private::set_ordered_passes(Some(false)),
        Ok("1") => needle_core::__private::set_ordered_passes(Some(true)),
        _ => {}
    }

    let base = read_fvecs(&base_path)?;
    let queries = read_fvecs(&query_path)?;
    let metas: Vec<Value> = read_text(&meta_path)?
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| invalid(format!("{} line {}: {e}", meta_path.display(), i + 1)))
        })
        .collect::<Result<_>>()?;
    if metas.len() != base.len() {
        return Err(invalid(format!(
            "{} metadata lines for {} base rows",
            metas.len(),
            base.len()
        )));
    }
    let raw_cases: Vec<Value> = serde_json::from_str(&read_text(&cases_path)?)
        .map_err(|e| invalid(format!("{}: {e}", cases_path.display())))?;

    let mut used = BTreeSet::new();
    for c in &raw_cases {
        if let Some(f) = c.get("filter") {
            paths(f, &mut used);
        }
    }
    let indexes: BTreeMap<String, IndexKind> = if use_indexes {
        used.iter()
            .filter_map(|p| infer_kind(&metas, p).map(|k| (p.clone(), k)))
            .collect()
    } else {
        BTreeMap::new()
    };

    // A cache of the built database (a snapshot file) to measure search changes without a
    // rebuild: `NEEDLE_FILTERED_CACHE=FILE` opens FILE when it exists, else writes it after the
    // build. Only for the developer's loop: a reused file must come from the same data.
    let cache = std::env::var_os("NEEDLE_FILTERED_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if let Some(file) = cache.as_ref().filter(|f| f.exists()) {
        let start = Instant::now();
        // Open a copy: the run ends by dropping the indexes, which an open file would log.
        let copy = file.with_extension("open");
        for suffix in ["", "-wal", "-lock"] {
            let mut name = copy.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
        std::fs::copy(file, &copy).map_err(|e| BenchError::Io {
            what: format!("copying {}", file.display()),
            source: e,
        })?;
        let opening = Instant::now();
        let db = Database::open(&copy)?;
        let open_s = opening.elapsed().as_secs_f64();
        // A build cached with fewer cases lacks the indexes of the paths only these use.
        let have: BTreeSet<String> = db
            .collection_info(COLLECTION)?
            .indexes
            .into_iter()
            .map(|i| i.path)
            .collect();
        let creating = Instant::now();
        for (path, kind) in indexes.iter().filter(|(p, _)| !have.contains(*p)) {
            db.create_index(COLLECTION, path, *kind)?;
        }
        log(format!(
            "created the missing indexes in {:.2} s",
            creating.elapsed().as_secs_f64()
        ));
        log(format!(
            "opened the cached build {} in {:.2} s (Database::open {open_s:.3} s)",
            file.display(),
            start.elapsed().as_secs_f64()
        ));
        return search_cases(
            &db,
            &raw_cases,
            &queries,
            k,
            repeats,
            results_dir.as_deref(),
            0.0,
            &indexes,
        );
    }
    let db = Database::in_memory();
    let start = Instant::now();
    let mut cfg = config(metric, m, efc);
    if std::env::var_os("NEEDLE_FILTERED_SQ8").is_some() {
        cfg.quantization = needle_core::Quantization::Sq8;
    }
    db.create_collection_with_config(COLLECTION, base.dim(), cfg)?;
    for (path, kind) in &indexes {
        db.create_index(COLLECTION, path, *kind)?;
    }
    let mut row = 0;
    while row < base.len() {
        let end = (row + 1000).min(base.len());
        let records = (row..end)
            .map(|i| Record::new(row_id(i), base.row(i).to_vec(), Some(metas[i].clone())))
            .collect();
        db.insert_batch(COLLECTION, records)?;
        row = end;
    }
    let build_s = start.elapsed().as_secs_f64();
    let info = db.collection_info(COLLECTION)?;
    log(format!(
        "built n={} d={} metric={} M={m} efc={efc} in {build_s:.2} s; indexes: {}",
        base.len(),
        base.dim(),
        metric.name(),
        info.indexes
            .iter()
            .map(|i| format!("{}:{}", i.path, i.kind))
            .collect::<Vec<_>>()
            .join(",")
    ));

    if let Some(file) = &cache {
        let mut out = std::fs::File::create(file).map_err(|e| BenchError::Io {
            what: format!("creating {}", file.display()),
            source: e,
        })?;
        db.write_snapshot(&mut out, 0)?;
    }
    search_cases(
        &db,
        &raw_cases,
        &queries,
        k,
        repeats,
        results_dir.as_deref(),
        build_s,
        &indexes,
    )
}

/// Searches every case, writes the ids and prints the rows (the protocol's second half).
#[allow(clippy::too_many_arguments)]
fn search_cases(
    db: &Database,
    raw_cases: &[Value],
    queries: &crate::vecs::Vecs<f32>,
    k: usize,
    repeats: usize,
    results_dir: Option<&Path>,
    build_s: f64,
    indexes: &BTreeMap<String, IndexKind>,
) -> Result<()> {
    let info = db.collection_info(COLLECTION)?;
    // The indexes' own memory plus the int8 codes their exact passes read.
    let index_mem: usize =
        info.indexes.iter().map(|i| i.memory_bytes).sum::<usize>() + info.index_codes_bytes;
    // `NEEDLE_FILTERED_CPU_TIME=1`: QPS from the search thread's CPU time instead of wall time
    // (on a loaded machine wall time swings with the scheduler; CPU time much less).
    let cpu_time = std::env::var_os("NEEDLE_FILTERED_CPU_TIME").is_some();
    // `NEEDLE_FILTERED_NO_CODES=1`: exact passes on the f32 vectors instead of the int8 codes
    // (to compare the two with one binary).
    if std::env::var_os("NEEDLE_FILTERED_NO_CODES").is_some() {
        needle_core::__private::set_index_codes(false);
    }
    let mut rows = Vec::new();
    for c in raw_cases {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let case = match parse_case(c, &name) {
            Ok(case) => case,
            Err(e) => {
                rows.push(Row {
                    name,
                    qps: None,
                    build_s: None,
                    error: Some(e.to_string()),
                    info: None,
                });
                continue;
            }
        };
        let mut opts = SearchOptions {
            ef_search: Some(case.ef),
            include_metadata: false,
            ..SearchOptions::default()
        };
        opts.filter = case.filter.clone();
        let mut results: Vec<Vec<SearchResult>> = vec![Vec::new(); queries.len()];
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let (t, cpu) = (Instant::now(), thread_cpu_s());
            // Under `cpu_time`, whole rounds of the queries until the thread has spent
            // `CPU_PASS_S` (its CPU time advances by scheduler ticks of a few ms).
            let mut rounds = 0usize;
            let spent = loop {
                for (slot, q) in results.iter_mut().zip(queries.rows()) {
                    *slot = db.search_with(COLLECTION, q, k, &opts)?;
                }
                rounds += 1;
                let wall = t.elapsed().as_secs_f64();
                match (cpu_time, cpu, thread_cpu_s()) {
                    (true, Some(a), Some(b)) if b - a < CPU_PASS_S && wall < 10.0 => {}
                    (true, Some(a), Some(b)) => break b - a,
                    _ => break wall,
                }
            };
            best = best.min(spent / rounds as f64);
        }
        let ids = results
            .iter()
            .map(|h| result_rows(h))
            .collect::<Result<Vec<_>>>()?;
        if let Some(dir) = results_dir {
            write_ivecs_rows(dir.join(format!("{}.ivecs", case.name)), &ids)?;
        }
        let qps = queries.len() as f64 / best.max(1e-9);
        log(format!("{:<14} ef={:<4} qps={qps:.0}", case.name, case.ef));
        rows.push(Row {
            name: case.name,
            qps: Some(qps),
            build_s: Some(build_s),
            error: None,
            info: None,
        });
    }

    // The indexes' share of the file: a snapshot (the checkpoint format) with and without them.
    let with = snapshot_bytes(db)?;
    for path in indexes.keys() {
        db.drop_index(COLLECTION, path)?;
    }
    let without = snapshot_bytes(db)?;
    let summary = format!(
        "needle {}, {} payload indexes ({}), index memory {:.1} MB (int8 codes {:.1} MB, {} value graphs {:.1} MB), index bytes in the file {:.1} MB (file {:.1} MB)",
        env!("CARGO_PKG_VERSION"),
        indexes.len(),
        indexes
            .iter()
            .map(|(p, k)| format!("{p}:{k}"))
            .collect::<Vec<_>>()
            .join(","),
        index_mem as f64 / 1e6,
        info.index_codes_bytes as f64 / 1e6,
        info.indexes.iter().map(|i| i.value_graphs).sum::<usize>(),
        info.indexes
            .iter()
            .map(|i| i.value_graph_bytes)
            .sum::<usize>() as f64
            / 1e6,
        (with - without) as f64 / 1e6,
        with as f64 / 1e6,
    );
    log(&summary);
    if let Some(first) = rows.first_mut() {
        first.info = Some(summary);
    }
    let line = serde_json::to_string(&rows)
        .map_err(|e| invalid(format!("cannot encode the rows: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| BenchError::Io {
        what: "writing stdout".into(),
        source: e,
    })?;
    Ok(())
}

fn parse_case(c: &Value, name: &str) -> Result<Case> {
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._%+=-".contains(ch))
    {
        return Err(invalid(format!(
            "case name {name:?} is not [A-Za-z0-9._%+=-]+"
        )));
    }
    let filter = match c.get("filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(Filter::parse(f)?),
    };
    let ef = c.get("ef").and_then(Value::as_u64).unwrap_or(64).max(1) as usize;
    Ok(Case {
        name: name.to_string(),
        filter,
        ef,
    })
}

/// The least CPU time of one timed pass under `NEEDLE_FILTERED_CPU_TIME`.
const CPU_PASS_S: f64 = 0.25;

/// The calling thread's time on a CPU so far, in seconds (Linux `schedstat`; `None` elsewhere).
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn snapshot_bytes(db: &Database) -> Result<u64> {
    Ok(db.write_snapshot(&mut std::io::sink(), 0)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_and_kinds_come_from_the_cases_and_the_data() {
        let mut out = BTreeSet::new();
        paths(
            &json!({"$or": [{"lang": "ja"}, {"tenant": {"$lt": 20}}], "$not": {"a.b": 1}}),
            &mut out,
        );
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["a.b", "lang", "tenant"]
        );
        let metas = [
            json!({"t": 1, "p": 2, "s": ["x"], "b": true}),
            json!({"t": 2, "p": 2.5}),
        ];
        assert_eq!(infer_kind(&metas, "t"), Some(IndexKind::Integer));
        assert_eq!(infer_kind(&metas, "p"), Some(IndexKind::Float));
        assert_eq!(infer_kind(&metas, "s"), Some(IndexKind::Keyword));
        assert_eq!(infer_kind(&metas, "b"), Some(IndexKind::Bool));
        assert_eq!(infer_kind(&metas, "zz"), None);
    }
}
