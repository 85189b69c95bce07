//! `needle-ann`: build a Needle collection from a data set and measure it.
//!
//! Two ways to call it:
//!
//! - `needle-ann --data DIR [--m 16] [--efc 200] [--ef 10,20,40,80,160] [--k 10] [--threads N]
//!   [--save FILE] [--json]`: recall, queries per second on one thread and on all cores, build
//!   time on one thread and with `insert_batch` on all cores, memory, file size, open time.
//! - with exactly nine positional arguments, `BASE QUERY GT M EFC EF_LIST K REPEATS STOP_RECALL`:
//!   an external engine for `../shared/bench/peers.py` (see its docstring): one thread, a JSON
//!   list of rows as the last line of stdout, everything else on stderr.
//! - `needle-ann sq8 BASE QUERY GT M EFC EF_LIST K REPEATS STOP_RECALL`: the same engine with
//!   `quantization: sq8` (peers.py: `--engine "needle-sq8=target/release/needle-ann sq8"`).
//!   In both, `NEEDLE_ANN_MEMPROBE=1` also prints where the resident memory is (`mem_probe`).
//! - `needle-ann filtered BASE QUERY META CASES M EFC K`: an external engine for
//!   `../shared/bench/filtered.py` (see `needle_benches::filtered`).
//! - `needle-ann concurrent [--n 20000 --dim 128 --batch 5000 --batches 4]`: search latency
//!   idle and during batch inserts, and insert throughput (see `needle_benches::concurrent`).
//!
//! Every call first prints on stderr the f32 and int8 kernel sets in use (`NEEDLE_SIMD` forces
//! one: `scalar`, `avx2`, `avx512`, `neon`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use needle_benches::collection::{CHUNK, COLLECTION, config, insert_rows};
use needle_benches::dataset::metric_for_base;
use needle_benches::vecs::write_ivecs_rows;
use needle_benches::{
    BenchError, Dataset, Result, Threads, Vecs, recall_at_k, rss_bytes, rss_split_bytes,
    timed_search,
};
use needle_core::{CollectionConfig, Database, DatabaseOptions, Quantization, WalMode};
use rayon::{ThreadPool, ThreadPoolBuilder};
use serde::Serialize;

const PROTOCOL_HELP: &str = "\
PEERS.PY ENGINE MODE:
  needle-ann BASE QUERY GT M EFC EF_LIST K REPEATS STOP_RECALL
  Exactly nine positional arguments: the external-engine protocol of ../shared/bench/peers.py.
  Builds on one thread, searches one query at a time on one thread, prints a JSON list of rows
  as the last line of stdout, and writes the ids found to $PEERS_RESULTS_DIR/ef<EF>.ivecs when
  that is set. Metric: $PEERS_METRIC, else meta.json beside BASE.";

/// Measure Needle on a data set: recall@k, queries per second, build time, memory, file size.
#[derive(Debug, Parser)]
#[command(name = "needle-ann", version, after_help = PROTOCOL_HELP)]
struct Cli {
    /// Data set folder with base.fvecs, query.fvecs, gt.ivecs and meta.json.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// HNSW M: links per node on the upper layers (2*M on layer 0).
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    efc: usize,
    /// ef_search values to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,160")]
    ef: Vec<usize>,
    /// Neighbours asked per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Timed passes over the queries per ef; the best counts.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Threads for the parallel build and the all-cores queries [default: all logical CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Keep the saved .needle file here instead of in a temporary folder (must not exist).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Recall only, once per level-draw seed (`CollectionConfig::seed`), comma-separated: builds
    /// the collection on one thread for each seed and prints recall@k at every `--ef`, nothing
    /// timed. How much the graph's random levels move recall (beside `benches/hnswlib_seeds.py`).
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    seeds: Vec<u64>,
    /// Rows per `insert_batch` call in `--seeds` mode (1: one record per call, hnswlib's order
    /// with no chunked planning).
    #[arg(long, default_value_t = CHUNK)]
    chunk: usize,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (f32_set, int8_set) = needle_core::__private::kernel_names();
    eprintln!("[needle] kernels: f32 {f32_set}, int8 {int8_set} (NEEDLE_SIMD forces a set)");
    let outcome = if needle_benches::concurrent::is_concurrent_call(&args) {
        needle_benches::concurrent::run(&args[2..])
    } else if needle_benches::filtered::is_filtered_call(&args) {
        needle_benches::filtered::run(&args[2..])
    } else if is_protocol_call(&args) {
        ProtocolArgs::parse(&args[1..]).and_then(|p| run_protocol(&p, Quantization::None))
    } else if args.len() == 11 && args[1] == "sq8" && is_protocol_call(&args[1..]) {
        ProtocolArgs::parse(&args[2..]).and_then(|p| run_protocol(&p, Quantization::Sq8))
    } else {
        let cli = Cli::parse();
        if cli.seeds.is_empty() {
            run_friendly(&cli)
        } else {
            run_seeds(&cli)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("needle-ann: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Nine arguments, none of them a flag: the peers.py protocol.
fn is_protocol_call(args: &[OsString]) -> bool {
    args.len() == 10
        && args[1..]
            .iter()
            .all(|a| !a.to_string_lossy().starts_with("--"))
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[needle] {}", msg.as_ref());
}

fn pool(threads: usize) -> Result<ThreadPool> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("needle-ann-{i}"))
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot start {threads} threads: {e}")))
}

/// The first `k` ground-truth ids per query.
fn truth_top_k(ds: &Dataset, k: usize) -> Result<Vecs<i32>> {
    if k == 0 || k > ds.gt.dim() {
        return Err(BenchError::Invalid(format!(
            "k = {k}, but the ground truth has {} ids per query",
            ds.gt.dim()
        )));
    }
    let mut gt = ds.gt.clone();
    gt.truncate_columns(k)?;
    Ok(gt)
}

/// A fresh in-memory collection of every base row, built on the threads of `pool`.
/// Returns the database, the build's wall seconds, and the RSS growth from just before the
/// collection was created to just after the build.
fn build_in_memory(
    ds: &Dataset,
    m: usize,
    efc: usize,
    chunk: usize,
    pool: &ThreadPool,
    quantization: Quantization,
) -> Result<(Database, f64, u64)> {
    let db = Database::in_memory();
    let rss_before = rss_bytes()?;
    let start = Instant::now();
    pool.install(|| -> Result<()> {
        let config = CollectionConfig {
            quantization,
            ..config(ds.metric, m, efc)
        };
        db.create_collection_with_config(COLLECTION, ds.base.dim(), config)?;
        insert_rows(&db, COLLECTION, &ds.base, chunk)
    })?;
    let build_s = start.elapsed().as_secs_f64();
    let mem = rss_bytes()?.saturating_sub(rss_before);
    Ok((db, build_s, mem))
}

// ------------------------------------------------------------------------------ --seeds mode

/// `--seeds`: for each seed, a one-thread build with that level-draw seed and recall@k at each
/// ef (one untimed pass). Prints `seed ef recall` lines on stdout.
fn run_seeds(cli: &Cli) -> Result<()> {
    if cli.ef.is_empty() || cli.ef.contains(&0) {
        return Err(BenchError::Invalid("--ef needs positive integers".into()));
    }
    let ds = Dataset::load(&cli.data)?;
    let gt = truth_top_k(&ds, cli.k)?;
    let one = pool(1)?;
    println!("seed ef recall@{}", cli.k);
    for &seed in &cli.seeds {
        let db = Database::in_memory();
        one.install(|| -> Result<()> {
            let config = CollectionConfig {
                seed,
                ..config(ds.metric, cli.m, cli.efc)
            };
            db.create_collection_with_config(COLLECTION, ds.base.dim(), config)?;
            insert_rows(&db, COLLECTION, &ds.base, cli.chunk.max(1))
        })?;
        for &ef in &cli.ef {
            let run = one.install(|| {
                timed_search(&db, COLLECTION, &ds.queries, cli.k, ef, 1, Threads::One)
            })?;
            let recall = recall_at_k(&run.ids, &gt, cli.k)?;
            println!("{seed} {ef} {recall:.4}");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ peers.py mode

#[derive(Debug)]
struct ProtocolArgs {
    base: PathBuf,
    query: PathBuf,
    gt: PathBuf,
    m: usize,
    efc: usize,
    ef_list: Vec<usize>,
    k: usize,
    repeats: usize,
    stop_recall: f64,
}

impl ProtocolArgs {
    fn parse(args: &[OsString]) -> Result<ProtocolArgs> {
        let text = |i: usize| args[i].to_string_lossy().into_owned();
        let num = |i: usize, name: &str| -> Result<usize> {
            text(i)
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    BenchError::Invalid(format!(
                        "argument {} ({name}): {:?} is not a positive integer",
                        i + 1,
                        text(i)
                    ))
                })
        };
        let ef_list = text(5)
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<usize>().ok().filter(|&v| v > 0))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "argument 6 (EF_LIST): {:?} is not a comma-separated list of positive integers",
                    text(5)
                ))
            })?;
        let stop_recall = text(8).trim().parse::<f64>().map_err(|_| {
            BenchError::Invalid(format!(
                "argument 9 (STOP_RECALL): {:?} is not a number",
                text(8)
            ))
        })?;
        Ok(ProtocolArgs {
            base: PathBuf::from(&args[0]),
            query: PathBuf::from(&args[1]),
            gt: PathBuf::from(&args[2]),
            m: num(3, "M")?,
            efc: num(4, "EFC")?,
            ef_list,
            k: num(6, "K")?,
            repeats: num(7, "REPEATS")?,
            stop_recall,
        })
    }
}

/// One row of the JSON list peers.py reads.
#[derive(Debug, Serialize)]
struct ProtocolRow {
    ef: usize,
    recall: f64,
    qps: f64,
    build_s: f64,
    mem_bytes: u64,
    info: String,
}

fn run_protocol(p: &ProtocolArgs, quantization: Quantization) -> Result<()> {
    let metric = metric_for_base(&p.base)?;
    let mut ds = Dataset::from_files(&p.base, &p.query, &p.gt, metric)?;
    let gt = truth_top_k(&ds, p.k)?;
    let results_dir = std::env::var_os("PEERS_RESULTS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let one = pool(1)?;

    // Built into a file-backed database (no log), then checkpointed, so that both modes are
    // measured as a file user runs them: under sq8 the checkpoint maps the f32 vectors from the
    // file and drops the copy in memory. The build's time excludes the checkpoint's.
    let tmp = tempfile::tempdir().map_err(|source| BenchError::Io {
        what: "creating a temporary folder".into(),
        source,
    })?;
    let file = tmp.path().join("peers.needle");
    let db = Database::open_with(&file, DatabaseOptions { wal: WalMode::Off })?;
    let rss_before = rss_bytes()?;
    let start = Instant::now();
    one.install(|| -> Result<()> {
        let config = CollectionConfig {
            quantization,
            ..config(ds.metric, p.m, p.efc)
        };
        db.create_collection_with_config(COLLECTION, ds.base.dim(), config)?;
        insert_rows(&db, COLLECTION, &ds.base, CHUNK)
    })?;
    let build_s = start.elapsed().as_secs_f64();
    let built_mem = rss_bytes()?.saturating_sub(rss_before);
    // The base rows are in the database now: free this process's copy, so that the process
    // RSS reported below is the database's (plus the queries and the ground truth).
    // `mem_bytes` stays the index's growth over `rss_before`: what freeing the rows gave back
    // is added again.
    let (n, dim) = (ds.base.len(), ds.base.dim());
    let before_free = rss_bytes()?;
    ds.base = Vecs::from_flat(dim, Vec::new())?;
    let freed = before_free.saturating_sub(rss_bytes()?);
    let start = Instant::now();
    db.checkpoint()?;
    let checkpoint_s = start.elapsed().as_secs_f64();
    let mem_bytes = (rss_bytes()? + freed).saturating_sub(rss_before);
    mem_probe("after the checkpoint");
    let (anon, file_pages) = rss_split_bytes()?;
    log(format!(
        "built n={} d={} metric={} M={} efc={} in {build_s:.2} s on 1 thread, RSS +{:.1} MB; \
         base rows freed, checkpoint {checkpoint_s:.2} s, then RSS +{:.1} MB over the start \
         (process: anon {:.1} MB, file {:.1} MB; {} vectors mapped)",
        n,
        dim,
        metric.name(),
        p.m,
        p.efc,
        mb(built_mem),
        mb(mem_bytes),
        mb(anon),
        mb(file_pages),
        db.mapped_vectors(COLLECTION)?
    ));
    let info = format!(
        "needle {}, distance {:?}, quantization {}, insert_batch of {CHUNK} on 1 thread",
        env!("CARGO_PKG_VERSION"),
        metric.distance(),
        quantization.name()
    );

    let mut rows = Vec::new();
    for &ef in &p.ef_list {
        let run = one.install(|| {
            timed_search(
                &db,
                COLLECTION,
                &ds.queries,
                p.k,
                ef,
                p.repeats,
                Threads::One,
            )
        })?;
        let recall = recall_at_k(&run.ids, &gt, p.k)?;
        if let Some(dir) = &results_dir {
            write_ivecs_rows(dir.join(format!("ef{ef}.ivecs")), &run.ids)?;
        }
        log(format!(
            "ef={ef:<4} recall@{}={recall:.4} qps={:.0}",
            p.k, run.qps
        ));
        rows.push(ProtocolRow {
            ef,
            recall,
            qps: run.qps,
            build_s,
            mem_bytes,
            info: info.clone(),
        });
        if recall >= p.stop_recall {
            break;
        }
    }
    mem_probe("after the searches");
    let (anon, file_pages) = rss_split_bytes()?;
    log(format!(
        "after the searches: RSS {:.1} MB (anon {:.1} MB, file {:.1} MB), peak {:.1} MB",
        mb(rss_bytes()?),
        mb(anon),
        mb(file_pages),
        mb(needle_benches::peak_rss_bytes()?)
    ));
    let line = serde_json::to_string(&rows)
        .map_err(|e| BenchError::Invalid(format!("cannot encode the rows: {e}")))?;
    println!("{line}");
    Ok(())
}

// ------------------------------------------------------------------------------ friendly mode

#[derive(Debug, Serialize)]
struct Report {
    data: String,
    name: String,
    metric: &'static str,
    n: usize,
    dim: usize,
    queries: usize,
    m: usize,
    ef_construction: usize,
    k: usize,
    threads: usize,
    build_1_thread_s: f64,
    build_all_cores_s: f64,
    mem_bytes: u64,
    mem_bytes_per_vector: f64,
    raw_vector_bytes: usize,
    checkpoint_s: f64,
    file: String,
    file_bytes: u64,
    open_s: f64,
    reopened_count: usize,
    reopened_ef: usize,
    reopened_recall: f64,
    rows: Vec<FriendlyRow>,
}

#[derive(Debug, Serialize)]
struct FriendlyRow {
    ef: usize,
    recall: f64,
    qps_1_thread: f64,
    qps_all_cores: f64,
    /// CPU microseconds per query (all the process's threads) on one thread and on all cores.
    cpu_us_1_thread: f64,
    cpu_us_all_cores: f64,
}

fn run_friendly(cli: &Cli) -> Result<()> {
    if cli.ef.is_empty() || cli.ef.contains(&0) {
        return Err(BenchError::Invalid("--ef needs positive integers".into()));
    }
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let ds = Dataset::load(&cli.data)?;
    let gt = truth_top_k(&ds, cli.k)?;
    let one = pool(1)?;
    let all = pool(threads)?;
    log(format!(
        "{}: {} x {} base, {} queries, metric {}",
        ds.name,
        ds.base.len(),
        ds.base.dim(),
        ds.queries.len(),
        ds.metric.name()
    ));

    // One thread: build, memory, the ef sweep.
    let (db, build_1, mem) = build_in_memory(&ds, cli.m, cli.efc, CHUNK, &one, Quantization::None)?;
    log(format!(
        "built on 1 thread in {build_1:.2} s, RSS +{:.1} MB",
        mb(mem)
    ));
    let mut rows = Vec::new();
    for &ef in &cli.ef {
        let serial = one.install(|| {
            timed_search(
                &db,
                COLLECTION,
                &ds.queries,
                cli.k,
                ef,
                cli.repeats,
                Threads::One,
            )
        })?;
        let parallel = all.install(|| {
            timed_search(
                &db,
                COLLECTION,
                &ds.queries,
                cli.k,
                ef,
                cli.repeats,
                Threads::Pool,
            )
        })?;
        let recall = recall_at_k(&serial.ids, &gt, cli.k)?;
        log(format!(
            "ef={ef:<4} recall@{}={recall:.4} qps 1 thread={:.0} all cores={:.0}",
            cli.k, serial.qps, parallel.qps
        ));
        rows.push(FriendlyRow {
            ef,
            recall,
            qps_1_thread: serial.qps,
            qps_all_cores: parallel.qps,
            cpu_us_1_thread: serial.cpu_s_per_query * 1e6,
            cpu_us_all_cores: parallel.cpu_s_per_query * 1e6,
        });
    }
    drop(db);

    // All cores: one insert_batch into a file-backed database, then checkpoint and reopen.
    let tmp = tempfile::tempdir().map_err(|source| BenchError::Io {
        what: "creating a temporary folder".into(),
        source,
    })?;
    let file = match &cli.save {
        Some(path) if path.exists() => {
            return Err(BenchError::Invalid(format!(
                "--save {}: the file exists; remove it or choose another path",
                path.display()
            )));
        }
        Some(path) => path.clone(),
        None => tmp.path().join("bench.needle"),
    };
    let db = Database::open_with(&file, DatabaseOptions { wal: WalMode::Off })?;
    db.create_collection_with_config(COLLECTION, ds.base.dim(), config(ds.metric, cli.m, cli.efc))?;
    let start = Instant::now();
    all.install(|| insert_rows(&db, COLLECTION, &ds.base, usize::MAX))?;
    let build_all = start.elapsed().as_secs_f64();
    log(format!(
        "built with one insert_batch on {threads} threads in {build_all:.2} s"
    ));
    let start = Instant::now();
    db.checkpoint()?;
    let checkpoint_s = start.elapsed().as_secs_f64();
    drop(db);
    let file_bytes = std::fs::metadata(&file)
        .map_err(|source| BenchError::Io {
            what: format!("reading the size of {}", file.display()),
            source,
        })?
        .len();

    let start = Instant::now();
    let db = Database::open(&file)?;
    let open_s = start.elapsed().as_secs_f64();
    let reopened_count = db.count(COLLECTION)?;
    let reopened_ef = *cli.ef.last().expect("--ef was checked to be non-empty");
    let check = one.install(|| {
        timed_search(
            &db,
            COLLECTION,
            &ds.queries,
            cli.k,
            reopened_ef,
            1,
            Threads::One,
        )
    })?;
    let reopened_recall = recall_at_k(&check.ids, &gt, cli.k)?;
    drop(db);
    log(format!(
        "checkpoint {checkpoint_s:.2} s, {:.1} MB; open {open_s:.3} s; {reopened_count} records",
        mb(file_bytes)
    ));

    let report = Report {
        data: cli.data.display().to_string(),
        name: ds.name.clone(),
        metric: ds.metric.name(),
        n: ds.base.len(),
        dim: ds.base.dim(),
        queries: ds.queries.len(),
        m: cli.m,
        ef_construction: cli.efc,
        k: cli.k,
        threads,
        build_1_thread_s: build_1,
        build_all_cores_s: build_all,
        mem_bytes: mem,
        mem_bytes_per_vector: mem as f64 / ds.base.len().max(1) as f64,
        raw_vector_bytes: ds.base.dim() * 4,
        checkpoint_s,
        file: if cli.save.is_some() {
            file.display().to_string()
        } else {
            "(temporary, deleted)".into()
        },
        file_bytes,
        open_s,
        reopened_count,
        reopened_ef,
        reopened_recall,
        rows,
    };
    if cli.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::Invalid(format!("cannot encode the report: {e}")))?;
        println!("{text}");
    } else {
        print_report(&report, &cli.data);
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_report(r: &Report, data: &Path) {
    println!(
        "needle-ann: {} ({}), {} x {} base, {} queries, metric {}",
        r.name,
        data.display(),
        r.n,
        r.dim,
        r.queries,
        r.metric
    );
    println!(
        "HNSW M={} ef_construction={}, k={}, {} threads for the all-cores figures\n",
        r.m, r.ef_construction, r.k, r.threads
    );
    println!(
        "{:>6}  {:>9}  {:>12}  {:>14}  {:>18}  {:>19}",
        "ef",
        format!("recall@{}", r.k),
        "QPS 1 thread",
        "QPS all cores",
        "CPU µs/q 1 thread",
        "CPU µs/q all cores"
    );
    for row in &r.rows {
        println!(
            "{:>6}  {:>9.4}  {:>12.0}  {:>14.0}  {:>18.1}  {:>19.1}",
            row.ef,
            row.recall,
            row.qps_1_thread,
            row.qps_all_cores,
            row.cpu_us_1_thread,
            row.cpu_us_all_cores
        );
    }
    println!();
    let per_s = |secs: f64| r.n as f64 / secs.max(1e-9);
    println!(
        "build, 1 thread (insert_batch of {CHUNK}):   {:>8.2} s  ({:.0} vectors/s)",
        r.build_1_thread_s,
        per_s(r.build_1_thread_s)
    );
    println!(
        "build, {} threads (one insert_batch):       {:>8.2} s  ({:.0} vectors/s)",
        r.threads,
        r.build_all_cores_s,
        per_s(r.build_all_cores_s)
    );
    println!(
        "memory (RSS growth over the 1-thread build): {:>8.1} MB  ({:.0} bytes/vector; raw vector {} bytes)",
        mb(r.mem_bytes),
        r.mem_bytes_per_vector,
        r.raw_vector_bytes
    );
    println!(
        "checkpoint:                                  {:>8.2} s  -> {:.1} MB file {}",
        r.checkpoint_s,
        mb(r.file_bytes),
        r.file
    );
    println!(
        "Database::open of that file:                 {:>8.3} s  ({} records; recall@{} {:.4} at ef={})",
        r.open_s, r.reopened_count, r.k, r.reopened_recall, r.reopened_ef
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use needle_benches::Metric;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn nine_positional_arguments_select_the_protocol() {
        let nine = ["b", "q", "g", "16", "200", "10,20", "10", "3", "0.999"];
        let mut argv = vec!["needle-ann"];
        argv.extend(nine);
        assert!(is_protocol_call(&os(&argv)));
        assert!(!is_protocol_call(&os(&["needle-ann", "--data", "x"])));
        argv[1] = "--data";
        assert!(!is_protocol_call(&os(&argv)));

        let p = ProtocolArgs::parse(&os(&nine)).unwrap();
        assert_eq!((p.m, p.efc, p.k, p.repeats), (16, 200, 10, 3));
        assert_eq!(p.ef_list, vec![10, 20]);
        assert_eq!(p.stop_recall, 0.999);
        let mut bad = nine;
        bad[5] = "10,x";
        assert!(ProtocolArgs::parse(&os(&bad)).is_err());
        bad = nine;
        bad[3] = "0";
        assert!(ProtocolArgs::parse(&os(&bad)).is_err());
    }

    #[test]
    fn metric_names_map_to_needle_distances() {
        assert_eq!(
            Metric::parse("cosine").unwrap().distance(),
            needle_core::Distance::Cosine
        );
        assert_eq!(
            Metric::parse("L2").unwrap().distance(),
            needle_core::Distance::Euclidean
        );
        assert!(Metric::parse("hamming").is_none());
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: prints each malloc arena's system and in-use bytes to stderr.
    fn malloc_stats();
}

/// With `NEEDLE_ANN_MEMPROBE` set (peers.py mode): the resident KB of each mapping holding more
/// than 512 KB (`/proc/self/smaps`: the allocator's heaps, its large blocks, the `Flat` maps),
/// every file-backed mapping with pages resident (the binary's and the libraries' segments, the
/// database file's maps: the process's `RssFile`), then glibc's `malloc_stats`, to tell memory
/// in use from memory the allocator holds free.
fn mem_probe(label: &str) {
    if std::env::var_os("NEEDLE_ANN_MEMPROBE").is_none() {
        return;
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut name = String::new();
    let mut size_kb = 0u64;
    let mut rss_kb = 0u64;
    eprintln!(
        "[probe] {label}: mappings with > 512 KB resident (name, size KB, resident KB, of it on huge pages KB):"
    );
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let addr = |h: &str| u64::from_str_radix(h, 16).unwrap_or(0);
            size_kb = addr(hi).saturating_sub(addr(lo)) / 1024;
            name = line
                .split_whitespace()
                .nth(5)
                .unwrap_or("[anon]")
                .to_string();
        } else if first == "Rss:" {
            rss_kb = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        } else if first == "AnonHugePages:" && rss_kb > 512 {
            let huge_kb: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            eprintln!("[probe]   {name:<40} {size_kb:>10} {rss_kb:>10} {huge_kb:>10}");
        }
    }
    // The file pages (RssFile), mapping by mapping: the binary's and the libraries' segments,
    // the database file's maps.
    eprintln!(
        "[probe] {label}: file-backed mappings with pages resident (name, size KB, resident KB):"
    );
    let mut file_total_kb = 0u64;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((_, _)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let addr = |h: &str| u64::from_str_radix(h, 16).unwrap_or(0);
            let (lo, hi) = first.split_once('-').unwrap_or(("0", "0"));
            size_kb = addr(hi).saturating_sub(addr(lo)) / 1024;
            let perms = line.split_whitespace().nth(1).unwrap_or("");
            name = line.split_whitespace().nth(5).unwrap_or("").to_string();
            if !name.starts_with('/') {
                name.clear();
            } else {
                name = format!("{name} {perms}");
            }
        } else if first == "Rss:" && !name.is_empty() {
            rss_kb = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            if rss_kb > 0 {
                file_total_kb += rss_kb;
                eprintln!("[probe]   {name:<60} {size_kb:>10} {rss_kb:>10}");
            }
        }
    }
    eprintln!("[probe]   file-backed total {file_total_kb} KB");
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_stats takes no arguments and only reads glibc's own bookkeeping.
    unsafe {
        malloc_stats()
    };
}
