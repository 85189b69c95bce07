//! The one error type of this crate (apart from [`VecsError`], which stays in `vecs.rs` so that
//! file can be moved alone).

use std::path::PathBuf;

use crate::vecs::VecsError;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A vector or ground-truth file is missing or malformed.
    #[error(transparent)]
    Vecs(#[from] VecsError),
    /// A data set's `meta.json` (or `$PEERS_METRIC`) is missing, unreadable or says something
    /// this tool cannot use.
    #[error("{path}: {reason}")]
    Meta {
        /// The file, or `$PEERS_METRIC`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Needle refused an operation.
    #[error("needle: {0}")]
    Needle(#[from] needle_core::Error),
    /// Another I/O error (a temporary file, `/proc`).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Inputs that do not fit together (a query of the wrong dimension, ids that are not row
    /// numbers, as many ground-truth rows as queries, ...).
    #[error("{0}")]
    Invalid(String),
}

/// `Result` with [`BenchError`].
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
