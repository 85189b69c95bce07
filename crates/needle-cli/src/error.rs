//! The one error type of the `needle` binary. Every variant prints as one line that says what was
//! wrong and where (the file, the line or byte offset, the flag); `main` prints it on stderr and
//! exits non-zero.

use std::path::{Path, PathBuf};

/// Result alias used throughout the binary.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Everything a `needle` command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An error from the database itself (its message already names the collection, id or file).
    #[error(transparent)]
    Core(#[from] needle_core::Error),
    /// An error from the replication layer (a node's Raft log, its configuration).
    #[error(transparent)]
    Raft(#[from] needle_raft::NeedleError),
    /// An error from the TCP transport (binding the Raft address, its configuration).
    #[error(transparent)]
    Transport(#[from] needle_transport_tcp::TcpError),
    /// A node's HTTP API answered with an error, or could not be reached.
    #[error("{0}")]
    Http(String),
    /// A malformed command line that clap could not see (positionals that shift with
    /// `--http`): exit code 2, like clap's own.
    #[error("{0} (try --help)")]
    CommandLine(String),
    /// A flag or argument that parsed but makes no sense (e.g. `--ids` with JSON Lines).
    #[error("{0}")]
    Usage(String),
    /// An input file that is not what its format says; `at` is a line or a byte offset.
    #[error("{}: {at}: {reason}", file.display())]
    BadInput {
        file: PathBuf,
        at: String,
        reason: String,
    },
    /// `needle check` or `needle repair` found damage (the message says what and where).
    #[error("{0}")]
    Damaged(String),
    /// A `.needle` file that a command needs but that does not exist.
    #[error("{} does not exist (use `needle create` or `needle import` to make one)", .0.display())]
    NoSuchDatabase(PathBuf),
    /// A file another process holds open, for a command that could read it with `--read-only`.
    #[error("{} is open in another process (a running `needle serve`?); add --read-only to read it without its lock", .0.display())]
    Locked(PathBuf),
    /// `needle serve --from` on a data directory that already holds a node: restoring would
    /// replace a node's state under its Raft log. Nothing was changed.
    #[error("--from {}: {} already holds a node ({} exists); a restore founds a new cluster in an empty data directory (nothing was changed)", from.display(), data.display(), found.display())]
    DataDirInUse {
        from: PathBuf,
        data: PathBuf,
        found: PathBuf,
    },
    /// A record the command was asked about is not there.
    #[error("no record with id '{id}' in collection '{collection}'")]
    RecordNotFound { collection: String, id: String },
    /// An import that failed part-way, after its input was checked (e.g. a full disk): the
    /// batches before the failure are kept.
    #[error("import stopped after {done} of {total} records (those are kept): {source}")]
    ImportStopped {
        done: u64,
        total: u64,
        #[source]
        source: needle_core::Error,
    },
    /// An import over `--http` that failed part-way, after its input was checked: the batches
    /// before the failure are on the cluster.
    #[error("import stopped after {done} of {total} records (those are on the cluster): {reason}")]
    RemoteImportStopped {
        done: u64,
        total: u64,
        reason: String,
    },
    /// An operating-system I/O error, with what the command was doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    /// A malformed input file, at a line or offset.
    pub fn bad_input(file: &Path, at: impl Into<String>, reason: impl Into<String>) -> Self {
        CliError::BadInput {
            file: file.to_path_buf(),
            at: at.into(),
            reason: reason.into(),
        }
    }

    /// True when the error is a closed pipe on stdout (`needle export … | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
