//! # needle-core
//!
//! An embedded vector database in one `.needle` file: collections of vectors with JSON metadata,
//! HNSW search with MongoDB-style filters, a write-ahead log and atomic checkpoints.
//!
//! ```
//! use needle_core::{Database, SearchOptions, Filter};
//! use serde_json::json;
//!
//! let db = Database::in_memory();
//! db.create_collection("docs", 3)?;
//! db.insert("docs", "a", vec![1.0, 0.0, 0.0], Some(json!({"lang": "en"})))?;
//! db.insert("docs", "b", vec![0.0, 1.0, 0.0], Some(json!({"lang": "fr"})))?;
//! let hits = db.search("docs", &[0.9, 0.1, 0.0], 1)?;
//! assert_eq!(hits[0].id, "a");
//!
//! let fr = SearchOptions::new().with_filter(Filter::parse(&json!({"lang": "fr"}))?);
//! let hits = db.search_with("docs", &[0.9, 0.1, 0.0], 1, &fr)?;
//! assert_eq!(hits[0].id, "b");
//!
//! // Many queries at once, spread over rayon's pool; answers in query order.
//! let queries = [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]];
//! let answers = db.search_many("docs", &queries, 1, &SearchOptions::new())?;
//! assert_eq!((answers[0][0].id.as_str(), answers[1][0].id.as_str()), ("a", "b"));
//! # Ok::<(), needle_core::Error>(())
//! ```
//!
//! ## Distance kernels
//!
//! Distances use the best SIMD kernels the CPU runs (AVX-512 or AVX2+FMA on x86_64, NEON on
//! aarch64; int8 kernels with AVX-512 VNNI where present for the quantized mode), chosen once per
//! process. The environment variable `NEEDLE_SIMD=scalar|avx2|avx512|neon` forces a set, read at
//! the first distance computation; a set the CPU cannot run, or an unknown name, prints a
//! warning on stderr and uses the best set instead. Results may differ in the last bits of a
//! float between sets; files and replicas do not depend on the set.

mod check;
mod codes;
mod collection;
mod config;
mod database;
pub mod disk;
mod distance;
mod error;
mod filter;
mod heap;
mod hnsw;
mod id_index;
mod ids;
mod metadata;
mod ordered_codes;
mod payload;
mod read_only;
mod sq8;
mod storage;
mod tombstones;
mod validate;
mod value_graphs;
mod vectors;

pub use check::{CheckReport, Cut, LogCheck, RepairReport};
pub use config::{
    CollectionConfig, DatabaseOptions, Distance, Quantization, SearchOptions, WalMode,
};
pub use database::{CollectionInfo, Database, OpenReport, Record, ScrollPage, SearchResult};
pub use error::{Error, Result};
pub use filter::Filter;
pub use payload::{IndexInfo, IndexKind, IndexOptions};

#[doc(hidden)]
pub mod __private {
    //! Internals exposed only for needle's own benches and tests. Not a stable API.
    pub use crate::distance::int8::{
        Int8Kernels, available as int8_kernels_available, dot_i8_scalar, int8_kernels, l2_i8_scalar,
    };
    pub use crate::distance::{
        Simd, dot_scalar, f32_kernels_available, kernel_for, kernel_names, l2_squared_scalar,
        runnable_simd,
    };

    /// Turns the four-at-once distance kernels of searches off (or on again), process-wide:
    /// only for `needle-ab`, which measures them against one at a time. Results are the same.
    pub fn set_batched_distances(on: bool) {
        crate::hnsw::BATCHED.store(on, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets which of the walk's speed levers are on, process-wide, as a bit mask (1: prefetch
    /// every line of a link block, 2: prefetch a node's links when it enters the beam, 4: one
    /// distance at a time below the four-at-once kernels' floor, 8: with 2, only for a node
    /// entering near the next to expand, 16: prefetch vectors in the greedy descent; default
    /// 31, all): only for
    /// `needle-ab lever`, which measures them against each other. Results are the same.
    pub fn set_walk_levers(mask: u32) {
        crate::hnsw::WALK_LEVERS.store(mask, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets how long a batch insert links records in one hold of the collection's write lock
    /// (at least one record a hold), process-wide: `Some(Duration::ZERO)` one record a hold,
    /// `Some(Duration::MAX)` whole chunks, `None` the default (100 µs). For tests that apply
    /// the same writes in different steps and compare the states. The graph is the same.
    pub fn set_link_budget(budget: Option<std::time::Duration>) {
        let micros = budget.map_or(u64::MAX, |b| {
            u64::try_from(b.as_micros()).map_or(u64::MAX - 1, |m| m.min(u64::MAX - 1))
        });
        crate::collection::LINK_BUDGET_MICROS.store(micros, std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns filtered searches' use of the int8 codes of f32 collections with payload indexes
    /// off (the exact passes then read the f32 vectors) or on again, process-wide: for tests
    /// and benches that compare the two. The codes are kept either way.
    pub fn set_index_codes(on: bool) {
        crate::codes::set_enabled(on)
    }

    /// Whether collection `name`'s int8 codes for filtered searches are present exactly when
    /// wanted (no quantization, a payload index) and equal to codes computed afresh from its
    /// vectors; `None`: none, and none wanted.
    pub fn index_codes_are_fresh(db: &crate::Database, name: &str) -> crate::Result<Option<bool>> {
        db.index_codes_are_fresh(name)
    }

    /// Sets when filtered searches search an `$or` (or an `$in` of values with graphs of their
    /// own) as the union of its branches, process-wide: `None` by the cost model (the default),
    /// `Some(true)` wherever one applies, `Some(false)` never. For tests and benches.
    pub fn set_union_plans(mode: Option<bool>) {
        crate::collection::set_union_plans(match mode {
            None => crate::collection::UnionPlans::Model,
            Some(true) => crate::collection::UnionPlans::Always,
            Some(false) => crate::collection::UnionPlans::Never,
        })
    }

    /// Sets when filtered searches run a range on an integer or float index as an exact pass
    /// over its value-ordered int8 codes, process-wide: `None` by the cost model (the
    /// default), `Some(true)` wherever one applies (small collections too), `Some(false)`
    /// never. For tests and benches.
    pub fn set_ordered_passes(mode: Option<bool>) {
        crate::collection::set_ordered_passes(match mode {
            None => crate::collection::OrderedPasses::Model,
            Some(true) => crate::collection::OrderedPasses::Always,
            Some(false) => crate::collection::OrderedPasses::Never,
        })
    }

    /// Turns the exact pass's in-place reading of disjoint posting lists (an `$in` or a range
    /// on an index with one value a record) off, or on again, process-wide: the matches then
    /// come from a bitmap built from the lists. For benches that compare the two.
    pub fn set_disjoint_lists(on: bool) {
        crate::collection::set_disjoint_lists(on)
    }

    /// Sets the fewest live records a keyword, integer or bool value needs for a graph of its
    /// own (default 8,192), process-wide: for tests and benches alone in their binary.
    pub fn set_value_graph_min_records(n: usize) {
        crate::value_graphs::set_min_records(n)
    }

    /// Makes the next `n` anonymous maps (the arrays of vectors and layer-0 links) fail as if
    /// the system had refused the memory. Process-wide: for tests alone in their binary.
    pub fn refuse_anonymous_maps(n: u64) {
        crate::hnsw::refuse_anonymous_maps(n)
    }

    /// Lets the next `allowed` anonymous maps through, then makes `n` fail (as
    /// [`refuse_anonymous_maps`]). Process-wide: for tests alone in their binary.
    pub fn refuse_anonymous_maps_after(allowed: u64, n: u64) {
        crate::hnsw::refuse_anonymous_maps_after(allowed, n)
    }

    /// Under sq8, stop re-ranking `tenths / 10` standard deviations of the quantization error
    /// past the k-th exact distance (0: never stop early; `u32::MAX`: the default), process-wide:
    /// only for `needle-ab sq8`.
    pub fn set_rerank_sigma_tenths(tenths: u32) {
        crate::collection::RERANK_SIGMA_TENTHS.store(tenths, std::sync::atomic::Ordering::Relaxed)
    }

    /// Under sq8, re-rank `ceil(tenths · k / 10)` candidates instead of the default
    /// (`0`: the default), process-wide: only for `needle-ab sq8`, which measures the re-rank.
    pub fn set_rerank_tenths(tenths: usize) {
        crate::collection::RERANK_TENTHS.store(tenths, std::sync::atomic::Ordering::Relaxed)
    }
}
