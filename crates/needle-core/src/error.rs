//! The one error type of needle-core, [`Error`]. Every variant names what was wrong and where.
//!
//! It is called `Error` (not `NeedleError`) so that it never collides with needle-raft's
//! `NeedleError` when both crates are glob-imported; there is deliberately no `NeedleError` alias.

use std::path::PathBuf;

/// Result alias used throughout needle-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in needle-core. Callers branch on the variant; the message says
/// what was wrong and where (collection, id, filter path, file and offset).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with what Needle was doing at the time.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk (or in a snapshot stream) are not what Needle wrote.
    #[error("corrupted file {}: at offset {offset}: {reason}", file.display())]
    Corrupted {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The file was written by a format version this build does not read.
    #[error("file {} has format version {found}, this build reads version {supported}", file.display())]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    /// Another `Database` (in this process or another) holds the file's lock.
    #[error("database file {} is already open (locked by another Database, in this process or another)", path.display())]
    Locked { path: PathBuf },
    /// A write to a database opened with [`crate::Database::open_read_only`].
    #[error("database file {} is open read-only: writes and checkpoints are refused", path.display())]
    ReadOnly { path: PathBuf },
    /// A vector's length differs from the collection's dimensions.
    #[error("dimension mismatch in collection '{collection}': expected {expected}, got {got}")]
    DimensionMismatch {
        collection: String,
        expected: usize,
        got: usize,
    },
    /// A vector with NaN or infinite components, or a zero vector under cosine.
    #[error("invalid vector for '{collection}': {reason}")]
    InvalidVector { collection: String, reason: String },
    /// An id that is empty or longer than 1 KiB.
    #[error("invalid id in collection '{collection}': {reason}")]
    InvalidId { collection: String, reason: String },
    /// Metadata that is not a JSON object.
    #[error("invalid metadata for id '{id}' in collection '{collection}': {reason}")]
    InvalidMetadata {
        collection: String,
        id: String,
        reason: String,
    },
    /// A filter that does not parse; `path` points at the offending part (e.g. `$and[1].price.$gt`).
    #[error("invalid filter at '{path}': {reason}")]
    InvalidFilter { path: String, reason: String },
    /// No collection of that name.
    #[error("collection '{name}' does not exist")]
    CollectionNotFound { name: String },
    /// A collection of that name already exists.
    #[error("collection '{name}' already exists")]
    CollectionExists { name: String },
    /// A collection name that is empty, too long, or has characters other than `[A-Za-z0-9_.-]`.
    #[error("invalid collection name '{name}': {reason}")]
    InvalidCollectionName { name: String, reason: String },
    /// No record with that id (for `update`).
    #[error("no record with id '{id}' in collection '{collection}'")]
    RecordNotFound { collection: String, id: String },
    /// A payload index on that path already exists.
    #[error("collection '{collection}' already has a {kind} index on '{path}'")]
    IndexExists {
        collection: String,
        path: String,
        kind: String,
    },
    /// No payload index on that path.
    #[error("collection '{collection}' has no index on '{path}'")]
    IndexNotFound { collection: String, path: String },
    /// An argument out of its range (k = 0, ef_search = 0, dimensions = 0, ...).
    #[error("invalid argument {what}: {reason}")]
    InvalidArgument { what: String, reason: String },
    /// A `CollectionConfig` or `DatabaseOptions` that cannot work.
    #[error("invalid configuration: {reason}")]
    InvalidConfig { reason: String },
    /// An invariant of needle-core itself did not hold: a bug in Needle, not in the caller's
    /// input. Nothing was changed; please report it with `reason`.
    #[error("internal error (a bug in needle-core): {reason}")]
    Internal { reason: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The error of query `index` of a batch ([`crate::Database::search_many`]): an invalid
    /// vector's reason names its position; other errors are the same for every query.
    pub(crate) fn for_query(self, index: usize) -> Self {
        match self {
            Error::InvalidVector { collection, reason } => Error::InvalidVector {
                collection,
                reason: format!("query {index} of the batch: {reason}"),
            },
            other => other,
        }
    }

    pub(crate) fn corrupted(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
