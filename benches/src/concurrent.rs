//! `needle-ann concurrent`: searches while batches are inserted (issue 12, "searches keep
//! running while writes go on").
//!
//! Through the public API on a file-backed database (synced log): a collection of `--n`
//! generated `--dim`-dimensional vectors, then
//!
//! 1. **idle**: one thread searches (k 10, the collection's ef) `--idle-queries` times;
//! 2. **loaded**: one thread inserts `--batches` batches of `--batch` new vectors with
//!    `insert_batch` while another searches back to back until the inserts are done;
//! 3. **inserts alone**: the same batches into a fresh copy of the same collection with nobody
//!    searching (the insert throughput a write-only workload gets).
//!
//! Reports search latency p50 / p99 / max for idle and loaded, and the insert throughput of 2
//! and 3. Latencies are wall time per call, so they include time spent waiting for the
//! collection's lock — which is what the benchmark is about.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use needle_core::{CollectionConfig, Database, Distance, Record};
use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::synthetic::synthetic_vectors;
use crate::timing::search_options;
use crate::vecs::Vecs;

/// Whether `args` (program name first) ask for this mode.
pub fn is_concurrent_call(args: &[OsString]) -> bool {
    args.len() >= 2 && args[1] == "concurrent"
}

/// Searches during batch inserts: idle vs loaded latency, insert throughput.
#[derive(Debug, Parser)]
#[command(name = "needle-ann concurrent")]
struct Args {
    /// Records in the collection before the inserts start.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Dimensions.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Records per `insert_batch` call.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Batches inserted while searching.
    #[arg(long, default_value_t = 4)]
    batches: usize,
    /// Queries of the idle phase.
    #[arg(long, default_value_t = 20_000)]
    idle_queries: usize,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    efc: usize,
    /// ef_search.
    #[arg(long, default_value_t = 64)]
    ef: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Latency percentiles of one phase, in microseconds.
#[derive(Debug, Serialize)]
struct Latency {
    queries: usize,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        Latency {
            queries: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: at(1.0),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    n: usize,
    dim: usize,
    batch: usize,
    batches: usize,
    ef: usize,
    idle: Latency,
    loaded: Latency,
    /// Records per second inserted while the other thread searched.
    insert_rps_loaded: f64,
    /// Records per second inserted with nobody searching.
    insert_rps_alone: f64,
    cpus: usize,
}

/// Runs the mode; `args` are what follows `concurrent`.
pub fn run(args: &[OsString]) -> Result<()> {
    let mut argv = vec![OsString::from("needle-ann concurrent")];
    argv.extend_from_slice(args);
    let a = Args::try_parse_from(argv).map_err(|e| BenchError::Invalid(e.to_string()))?;
    if a.n == 0 || a.dim == 0 || a.batch == 0 {
        return Err(BenchError::Invalid(
            "--n, --dim and --batch must be positive".into(),
        ));
    }
    let total = a.n + a.batch * a.batches;
    let data = synthetic_vectors(total, a.dim, 12);
    let queries = synthetic_vectors(1_000, a.dim, 34);
    let config = CollectionConfig {
        distance: Distance::Euclidean,
        m: a.m,
        ef_construction: a.efc,
        ef_search: a.ef,
        ..CollectionConfig::default()
    };
    let dir = tempfile::tempdir().map_err(|e| BenchError::Invalid(format!("temp dir: {e}")))?;

    eprintln!("[concurrent] building {} x {} ...", a.n, a.dim);
    let db = Database::open(dir.path().join("loaded.needle"))?;
    db.create_collection_with_config("c", a.dim, config.clone())?;
    insert_range(&db, &data, 0, a.n, a.batch)?;
    let alone_db = Database::open(dir.path().join("alone.needle"))?;
    alone_db.create_collection_with_config("c", a.dim, config)?;
    insert_range(&alone_db, &data, 0, a.n, a.batch)?;

    eprintln!("[concurrent] idle: {} queries", a.idle_queries);
    let mut idle = Vec::with_capacity(a.idle_queries);
    for i in 0..a.idle_queries {
        idle.push(timed_query(&db, &queries, i, a.ef)?);
    }

    eprintln!(
        "[concurrent] loaded: {} batches of {} while searching",
        a.batches, a.batch
    );
    let done = AtomicBool::new(false);
    let (loaded, insert_s) = std::thread::scope(|s| -> Result<(Vec<Duration>, f64)> {
        let searcher = s.spawn(|| -> Result<Vec<Duration>> {
            let mut lat = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::Acquire) {
                lat.push(timed_query(&db, &queries, i, a.ef)?);
                i += 1;
            }
            Ok(lat)
        });
        let start = Instant::now();
        let inserted = insert_range(&db, &data, a.n, total, a.batch);
        let insert_s = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Release);
        let lat = searcher
            .join()
            .map_err(|_| BenchError::Invalid("the search thread panicked".into()))??;
        inserted?;
        Ok((lat, insert_s))
    })?;

    eprintln!("[concurrent] the same inserts with nobody searching");
    let start = Instant::now();
    insert_range(&alone_db, &data, a.n, total, a.batch)?;
    let alone_s = start.elapsed().as_secs_f64();

    let inserted = (total - a.n) as f64;
    let report = Report {
        n: a.n,
        dim: a.dim,
        batch: a.batch,
        batches: a.batches,
        ef: a.ef,
        idle: Latency::of(idle),
        loaded: Latency::of(loaded),
        insert_rps_loaded: inserted / insert_s,
        insert_rps_alone: inserted / alone_s,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| BenchError::Invalid(e.to_string()))?
        );
    } else {
        print_report(&report);
    }
    Ok(())
}

fn insert_range(
    db: &Database,
    data: &Vecs<f32>,
    from: usize,
    to: usize,
    batch: usize,
) -> Result<()> {
    let mut start = from;
    while start < to {
        let end = (start + batch).min(to);
        let records = (start..end)
            .map(|i| Record::new(i.to_string(), data.row(i).to_vec(), None))
            .collect();
        db.insert_batch("c", records)?;
        start = end;
    }
    Ok(())
}

fn timed_query(db: &Database, queries: &Vecs<f32>, i: usize, ef: usize) -> Result<Duration> {
    let q = queries.row(i % queries.len());
    let opts = search_options(ef);
    let start = Instant::now();
    let hits = db.search_with("c", q, 10, &opts)?;
    let took = start.elapsed();
    std::hint::black_box(hits);
    Ok(took)
}

fn print_report(r: &Report) {
    println!(
        "collection {} x {}, batches of {} ({} of them), ef {}, k 10, {} CPUs",
        r.n, r.dim, r.batch, r.batches, r.ef, r.cpus
    );
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>10} {:>11}",
        "phase", "queries", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    for (name, l) in [("idle", &r.idle), ("loaded", &r.loaded)] {
        println!(
            "{:<8} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>11.1}",
            name, l.queries, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    println!(
        "loaded/idle p99 {:.2}x; inserts: {:.0} records/s while searching, {:.0} records/s alone",
        r.loaded.p99_us / r.idle.p99_us.max(f64::MIN_POSITIVE),
        r.insert_rps_loaded,
        r.insert_rps_alone
    );
}
