//! `needle-ab DIR EF_LIST ROUNDS`: one search lever measured on and off in one process.
//!
//! Builds the data set of `DIR` (as `needle-ann --data`: M 16, efC 200, f32, one thread) in
//! memory, then for each ef runs all the queries `ROUNDS` times with the four-at-once distance
//! kernels on and `ROUNDS` times off, interleaved (on/off, off/on, …), and prints the CPU
//! microseconds per query of each pass (this thread's and the others', `cpu_seconds`), their
//! median and minimum, and checks that both ways return the same ids. CPU time, not wall time:
//! on a shared machine it is what the other processes disturb least.
//!
//! `needle-ab sq8 DIR FILE EF_LIST ROUNDS [SETTING,...]`: the sq8 search of a saved database
//! file (built into `FILE` first when missing), re-rank settings interleaved (see `run_saved`).
//! Two builds of the binary run one after the other on the same file compare a change of the
//! in-memory layout.
//!
//! `needle-ab f32 DIR FILE EF_LIST ROUNDS`: the same with an f32 collection (for instance two
//! processes on one file with different `NEEDLE_SIMD` kernel sets, the graph the same).
//!
//! `needle-ab lever DIR FILE EF_LIST ROUNDS MASK,...`: the walk's speed levers on and off in one
//! process on a file saved by the two modes above (see `run_levers`).

use std::path::Path;
use std::process::ExitCode;

use needle_benches::collection::{CHUNK, COLLECTION, config, insert_rows};
use needle_benches::{BenchError, Dataset, Result, Threads, recall_at_k, timed_search};
use needle_core::{CollectionConfig, Database, DatabaseOptions, Quantization, WalMode};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("needle-ab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sq8") => return run_saved(&args[2..], Quantization::Sq8),
        Some("f32") => return run_saved(&args[2..], Quantization::None),
        Some("lever") => return run_levers(&args[2..]),
        _ => {}
    }
    let usage = || BenchError::Invalid("usage: needle-ab DIR EF_LIST ROUNDS".into());
    let [_, dir, efs, rounds] = args.as_slice() else {
        return Err(usage());
    };
    let efs: Vec<usize> = efs
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(usage)?;
    let rounds: usize = rounds.parse().ok().filter(|&r| r > 0).ok_or_else(usage)?;
    let ds = Dataset::load(Path::new(dir))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot start a thread: {e}")))?;
    let db = Database::in_memory();
    let start = std::time::Instant::now();
    pool.install(|| -> Result<()> {
        db.create_collection_with_config(COLLECTION, ds.base.dim(), config(ds.metric, 16, 200))?;
        insert_rows(&db, COLLECTION, &ds.base, CHUNK)
    })?;
    println!(
        "{}: {} x {} built in {:.1} s; four-at-once distances off vs on, {rounds} interleaved rounds",
        ds.name,
        ds.base.len(),
        ds.base.dim(),
        start.elapsed().as_secs_f64()
    );
    for &ef in &efs {
        let Passes { cpu_us, ids } = interleaved_passes(&pool, &db, &ds, ef, rounds, 2, |on| {
            needle_core::__private::set_batched_distances(on == 1)
        })?;
        needle_core::__private::set_batched_distances(true);
        if ids[0] != ids[1] {
            return Err(BenchError::Invalid(format!(
                "ef {ef}: the two ways returned different ids"
            )));
        }
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (off, on) = (&cpu_us[0], &cpu_us[1]);
        println!(
            "ef {ef}: CPU µs/query median off {:.1} on {:.1} (off/on {:.3}), min off {:.1} on {:.1} \
             (off/on {:.3}); same ids",
            median(off),
            median(on),
            median(off) / median(on),
            min(off),
            min(on),
            min(off) / min(on)
        );
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("  off: {}\n  on:  {}", show(off), show(on));
    }
    Ok(())
}

/// `needle-ab sq8 DIR FILE EF_LIST ROUNDS [SETTING,...]`: builds `DIR` with `quantization:
/// sq8` into the database file `FILE` (M 16, efC 200, one thread, checkpointed) unless it
/// exists, opens it as a user would (the f32 vectors mapped from the checkpoint), then per ef
/// runs every query `ROUNDS` times for each re-rank setting (tenths of k re-ranked, 0 for the
/// default; `sN` after it: stop N tenths of a standard deviation of the quantization error past
/// the k-th exact distance, `s0` never; the settings interleaved) and
/// prints the CPU µs per query (median, minimum) and recall@10. Run two builds of the binary
/// one after the other on the same file to compare an in-memory layout change.
fn run_saved(args: &[String], quantization: Quantization) -> Result<()> {
    let usage = || {
        BenchError::Invalid(
            "usage: needle-ab sq8 DIR FILE EF_LIST ROUNDS [SETTING,...] (SETTING: TENTHS[sSIGMA_TENTHS])".into(),
        )
    };
    let [dir, file, efs, rounds, rest @ ..] = args else {
        return Err(usage());
    };
    let parse_list = |s: &str| -> Option<Vec<usize>> {
        s.split(',')
            .map(|s| s.trim().parse().ok().filter(|&v| v > 0))
            .collect()
    };
    let efs = parse_list(efs).ok_or_else(usage)?;
    let rounds: usize = rounds.parse().ok().filter(|&r| r > 0).ok_or_else(usage)?;
    // Each setting: re-rank tenths of k (0: the default), then optionally `s` and the early
    // stop in tenths of a standard deviation (0: off; without it the default).
    let settings: Vec<(usize, u32)> = match rest {
        [] => vec![(0, u32::MAX)],
        [t] => t
            .split(',')
            .map(|s| {
                let s = s.trim();
                let (n, sigma) = match s.split_once('s') {
                    Some((n, sigma)) => (n, sigma.parse().ok()?),
                    None => (s, u32::MAX),
                };
                n.parse().ok().map(|n| (n, sigma))
            })
            .collect::<Option<_>>()
            .ok_or_else(usage)?,
        _ => return Err(usage()),
    };
    let ds = Dataset::load(Path::new(dir))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot start a thread: {e}")))?;
    let path = Path::new(file);
    if !path.exists() {
        let start = std::time::Instant::now();
        let db = Database::open_with(path, DatabaseOptions { wal: WalMode::Off })?;
        pool.install(|| -> Result<()> {
            let config = CollectionConfig {
                quantization,
                ..config(ds.metric, 16, 200)
            };
            db.create_collection_with_config(COLLECTION, ds.base.dim(), config)?;
            insert_rows(&db, COLLECTION, &ds.base, CHUNK)
        })?;
        db.checkpoint()?;
        println!(
            "{}: built into {file} in {:.1} s",
            ds.name,
            start.elapsed().as_secs_f64()
        );
    }
    let db = Database::open_with(path, DatabaseOptions { wal: WalMode::Off })?;
    println!(
        "{}: {} x {} {quantization:?}, opened from {file}; re-rank settings (tenths of k, 0 = default; sigma tenths, {} = default) {settings:?}, \
         {rounds} interleaved rounds",
        ds.name,
        ds.base.len(),
        ds.base.dim(),
        u32::MAX
    );
    for &ef in &efs {
        let Passes { cpu_us, ids: found } =
            interleaved_passes(&pool, &db, &ds, ef, rounds, settings.len(), |i| {
                needle_core::__private::set_rerank_tenths(settings[i].0);
                needle_core::__private::set_rerank_sigma_tenths(settings[i].1);
            })?;
        needle_core::__private::set_rerank_tenths(0);
        needle_core::__private::set_rerank_sigma_tenths(u32::MAX);
        for (i, t) in settings.iter().enumerate() {
            let recall = recall_at_k(&found[i], &ds.gt, 10)?;
            let mut v = cpu_us[i].clone();
            v.sort_by(f64::total_cmp);
            println!(
                "ef {ef} rerank {t:?}: CPU µs/query median {:.2} min {:.2} recall@10 {:.4}, \
                 {} queries' ids differ from the first setting's",
                v[v.len() / 2],
                v[0],
                recall,
                found[i]
                    .iter()
                    .zip(&found[0])
                    .filter(|(a, b)| a != b)
                    .count()
            );
        }
    }
    Ok(())
}

/// `needle-ab lever DIR FILE EF_LIST ROUNDS MASK,...`: the collection saved in `FILE` (built by
/// the `f32` or `sq8` mode first), each ef's queries run `ROUNDS` times per mask of the walk's
/// speed levers (`__private::set_walk_levers`: 0 none, 31 all, the default), the masks
/// interleaved; prints CPU µs per query (median, minimum), the first mask's median over each
/// one's, recall@10, and whether the ids equal the first mask's.
fn run_levers(args: &[String]) -> Result<()> {
    let usage =
        || BenchError::Invalid("usage: needle-ab lever DIR FILE EF_LIST ROUNDS MASK,...".into());
    let [dir, file, efs, rounds, masks] = args else {
        return Err(usage());
    };
    let efs: Vec<usize> = efs
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(usage)?;
    let rounds: usize = rounds.parse().ok().filter(|&r| r > 0).ok_or_else(usage)?;
    let masks: Vec<u32> = masks
        .split(',')
        .map(|s| s.trim().parse().ok())
        .collect::<Option<_>>()
        .ok_or_else(usage)?;
    let ds = Dataset::load(Path::new(dir))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| BenchError::Invalid(format!("cannot start a thread: {e}")))?;
    let db = Database::open_with(Path::new(file), DatabaseOptions { wal: WalMode::Off })?;
    println!(
        "{}: opened from {file}; lever masks {masks:?}, {rounds} interleaved rounds",
        ds.name
    );
    for &ef in &efs {
        let Passes { cpu_us, ids: found } =
            interleaved_passes(&pool, &db, &ds, ef, rounds, masks.len(), |i| {
                needle_core::__private::set_walk_levers(masks[i])
            })?;
        // Back to the default (every lever on), as the other modes restore theirs.
        needle_core::__private::set_walk_levers(31);
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let base = median(&cpu_us[0]);
        for (i, m) in masks.iter().enumerate() {
            let min = cpu_us[i].iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "ef {ef} mask {m}: CPU µs/query median {:.2} min {:.2} first/this {:.3} recall@10 {:.4}, ids {}",
                median(&cpu_us[i]),
                min,
                base / median(&cpu_us[i]),
                recall_at_k(&found[i], &ds.gt, 10)?,
                if found[i] == found[0] {
                    "same"
                } else {
                    "DIFFER"
                }
            );
        }
    }
    Ok(())
}

/// The passes of an A/B: per setting, `rounds` passes of every query at `ef` on `pool`'s one
/// thread, the settings interleaved (`set(i)` before each pass; each round starts one setting
/// later than the last, so no setting always runs first).
struct Passes {
    /// Per setting, the CPU µs per query of each pass.
    cpu_us: Vec<Vec<f64>>,
    /// Per setting, the ids its last pass returned.
    ids: Vec<Vec<Vec<i32>>>,
}

fn interleaved_passes(
    pool: &rayon::ThreadPool,
    db: &Database,
    ds: &Dataset,
    ef: usize,
    rounds: usize,
    settings: usize,
    set: impl Fn(usize),
) -> Result<Passes> {
    let mut passes = Passes {
        cpu_us: vec![Vec::new(); settings],
        ids: vec![Vec::new(); settings],
    };
    for round in 0..rounds {
        for step in 0..settings {
            let i = (round + step) % settings;
            set(i);
            let run = pool
                .install(|| timed_search(db, COLLECTION, &ds.queries, 10, ef, 1, Threads::One))?;
            passes.cpu_us[i].push(run.cpu_s_per_query * 1e6);
            passes.ids[i] = run.ids;
        }
    }
    Ok(passes)
}
