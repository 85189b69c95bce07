//! # needle-benches
//!
//! Measures Needle: the `needle-ann` binary (recall, speed, memory and file size on a data set;
//! also an engine for `../shared/bench/peers.py`), the criterion benches in `benches/`, and
//! these helpers, which needle-cli and tests may reuse:
//!
//! - [`vecs`]: TEXMEX `.fvecs` / `.ivecs` files (self-contained: the file can be moved alone);
//! - [`dataset`]: a data set folder (`base.fvecs`, `query.fvecs`, `gt.ivecs`, `meta.json`);
//! - [`truth`]: recall@k, and exact ground truth by brute force for small sets;
//! - [`collection`]: a Needle collection whose ids are row numbers;
//! - [`timing`]: timed search passes;
//! - [`concurrent`]: `needle-ann concurrent`, searches while batches are inserted;
//! - [`filtered`]: `needle-ann filtered`, the engine protocol of `../shared/bench/filtered.py`;
//! - [`rss`]: the process's resident memory and CPU time;
//! - [`synthetic`]: generated vectors when no data set is at hand.
//!
//! ```
//! use needle_benches::{Vecs, read_fvecs, write_fvecs};
//! let dir = tempfile::tempdir()?;
//! let v = Vecs::from_rows(&[[1.0f32, 2.0], [3.0, 4.0]])?;
//! write_fvecs(dir.path().join("v.fvecs"), &v)?;
//! assert_eq!(read_fvecs(dir.path().join("v.fvecs"))?, v);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod collection;
pub mod concurrent;
pub mod dataset;
pub mod error;
pub mod filtered;
pub mod rss;
pub mod synthetic;
pub mod timing;
pub mod truth;
pub mod vecs;

pub use dataset::{Dataset, Metric};
pub use error::{BenchError, Result};
pub use rss::{cpu_seconds, peak_rss_bytes, rss_bytes, rss_split_bytes};
pub use synthetic::synthetic_vectors;
pub use timing::{SearchRun, Threads, timed_search};
pub use truth::{exact_knn, recall_at_k};
pub use vecs::{Vecs, VecsError, read_fvecs, read_ivecs, write_fvecs, write_ivecs};

/// The folder of the committed test subsets (`testdata/` at the workspace root).
pub fn testdata_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}
