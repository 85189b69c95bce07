//! Timed search passes: every query once, one at a time on this thread or spread over the
//! current rayon pool; the best of several passes.

use std::time::Instant;

use needle_core::{Database, SearchOptions, SearchResult};

use crate::collection::result_rows;
use crate::error::{BenchError, Result};
use crate::vecs::Vecs;

/// How the queries of a pass are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One query at a time on the calling thread.
    One,
    /// Queries spread over the current rayon pool by `Database::search_many` (run inside
    /// `pool.install` to choose it).
    Pool,
}

/// The outcome of the passes at one `ef`.
#[derive(Debug, Clone)]
pub struct SearchRun {
    /// The shortest pass, in seconds.
    pub best_s: f64,
    /// Queries per second of the shortest pass.
    pub qps: f64,
    /// CPU seconds the process's threads ran during the shortest pass, per query (see
    /// [`crate::cpu_seconds`]): equal for one thread and for a pool when queries run in
    /// parallel without contending, whatever else loads the machine.
    pub cpu_s_per_query: f64,
    /// Per query, the row numbers returned (of the last pass), nearest first.
    pub ids: Vec<Vec<i32>>,
}

/// Options for a benchmark search: `ef` as given, no metadata, no vectors.
pub fn search_options(ef: usize) -> SearchOptions {
    SearchOptions {
        ef_search: Some(ef),
        include_metadata: false,
        include_vectors: false,
        ..SearchOptions::default()
    }
}

/// Searches every query `repeats` times (at least once) for its `k` nearest at `ef` and keeps
/// the shortest pass. The results of a pass are kept until the next pass replaces them, so
/// freeing them is timed (as the caller of a real search pays for it) but turning ids back into
/// row numbers is not.
pub fn timed_search(
    db: &Database,
    collection: &str,
    queries: &Vecs<f32>,
    k: usize,
    ef: usize,
    repeats: usize,
    threads: Threads,
) -> Result<SearchRun> {
    if queries.is_empty() {
        return Err(BenchError::Invalid("no queries to search".into()));
    }
    let opts = search_options(ef);
    let mut results: Vec<Vec<SearchResult>> = vec![Vec::new(); queries.len()];
    let rows: Vec<&[f32]> = match threads {
        Threads::One => Vec::new(),
        Threads::Pool => queries.rows().collect(),
    };
    let mut best = f64::INFINITY;
    let mut best_cpu = 0.0;
    for _ in 0..repeats.max(1) {
        let cpu_start = crate::cpu_seconds()?;
        let start = Instant::now();
        match threads {
            Threads::One => {
                for (slot, q) in results.iter_mut().zip(queries.rows()) {
                    *slot = db.search_with(collection, q, k, &opts)?;
                }
            }
            Threads::Pool => {
                // `Database::search_many`: one query per rayon task, answers in query order.
                results = db.search_many(collection, &rows, k, &opts)?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = crate::cpu_seconds()? - cpu_start;
        if elapsed < best {
            best = elapsed;
            best_cpu = cpu;
        }
    }
    let ids = results
        .iter()
        .map(|hits| result_rows(hits))
        .collect::<Result<Vec<_>>>()?;
    Ok(SearchRun {
        best_s: best,
        qps: queries.len() as f64 / best.max(1e-9),
        cpu_s_per_query: best_cpu / queries.len() as f64,
        ids,
    })
}
