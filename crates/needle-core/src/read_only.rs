//! [`Database::open_read_only`]: a view of a database file that another process (or another
//! `Database` here) may have open for writing, without taking its lock or changing a byte.
//!
//! What it sees: the checkpoint, plus the log records after it up to the first torn or
//! partly written one (the valid prefix). The bytes are read into memory once: the view is the
//! state at that moment and does not follow later writes; open it again for a newer one.
//!
//! A writer may checkpoint while the files are read (it renames a new checkpoint over the
//! file, then empties the log for the new generation). The checkpoint's header is read again
//! after the log; if it changed, the read starts over (a bounded number of times), since the
//! log read may already belong to the newer checkpoint, or have been emptied by its reset. A log of an older generation is one a new
//! checkpoint already contains, and is ignored, as an open ignores it.

use std::path::Path;
use std::sync::Arc;

use crate::database::{Database, OpenReport, load_checkpoint_bytes, read_if_exists};
use crate::disk::{Disk, OpenMode, OsDisk};
use crate::error::{Error, Result};
use crate::storage::checkpoint::HEADER_LEN;
use crate::storage::wal::{self, LogState};
use crate::storage::wal_path;

/// How many times the read starts over when a checkpoint replaces the file during it.
const ATTEMPTS: u32 = 20;

impl Database {
    /// Opens the database at `path` for reading only: takes no lock (the file may be open for
    /// writing elsewhere, e.g. by a running `needle serve`), creates, cuts and rewrites nothing,
    /// replays the log in memory only and never checkpoints. Every write is refused with
    /// [`Error::ReadOnly`].
    ///
    /// It sees the last checkpoint plus the valid prefix of its log, as of the moment the files
    /// were read; later writes are not seen. A torn tail (a record still being written) is left
    /// out and counted in [`OpenReport::wal_bytes_truncated`] (nothing is cut on disk). A log
    /// damaged in the middle is [`Error::Corrupted`], as for [`Database::open`]. A
    /// missing file is an `Io` error of kind `NotFound`: nothing is created.
    ///
    /// A database opened with [`crate::WalMode::Off`] (as needle-raft opens its nodes') has no
    /// log: the view is its last checkpoint.
    ///
    /// ```
    /// use needle_core::{Database, DatabaseOptions, Error};
    /// use needle_core::disk::MemDisk;
    /// let disk = MemDisk::shared();
    /// let writer = Database::open_on(disk.clone(), "/r.needle", DatabaseOptions::default())?;
    /// writer.create_collection("docs", 2)?;
    /// writer.insert("docs", "a", vec![1.0, 0.0], None)?;
    /// // The writer still holds the file open; a read-only view sees its acknowledged writes.
    /// let view = Database::open_read_only_on(disk, "/r.needle")?;
    /// assert_eq!(view.count("docs")?, 1);
    /// assert!(matches!(view.create_collection("x", 2), Err(Error::ReadOnly { .. })));
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Database> {
        Self::open_read_only_on(OsDisk::shared(), path)
    }

    /// As [`Database::open_read_only`], on any [`Disk`].
    pub fn open_read_only_on(disk: Arc<dyn Disk>, path: impl AsRef<Path>) -> Result<Database> {
        let path = path.as_ref();
        for _ in 0..ATTEMPTS {
            if let Some(db) = read_once(&*disk, path)? {
                return Ok(db);
            }
        }
        Err(Error::io(
            format!("reading {} read-only", path.display()),
            std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                format!(
                    "a new checkpoint replaced the file during each of {ATTEMPTS} reads; try again"
                ),
            ),
        ))
    }
}

/// One attempt: `None` when a checkpoint replaced the file while it was read.
fn read_once(disk: &dyn Disk, path: &Path) -> Result<Option<Database>> {
    let bytes = read_if_exists(disk, path)?.ok_or_else(|| {
        Error::io(
            format!("opening {} read-only", path.display()),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
        )
    })?;
    let head: Vec<u8> = bytes.iter().take(HEADER_LEN).copied().collect();
    let (header, collections) = load_checkpoint_bytes(&bytes, path)?;
    drop(bytes);
    let wpath = wal_path(path);
    let log = match read_if_exists(disk, &wpath) {
        Ok(log) => log.unwrap_or_default(),
        // The log shrank (a reset) between its length and its read: a checkpoint is under way.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if checkpoint_head(disk, path)? != head {
        return Ok(None);
    }
    // The checkpoint read is still the file's: the log read belongs to it (a log of a newer
    // generation would mean a rename before the log was read, and a new header).
    let state = wal::recover(&log, &wpath, header.generation)?;
    let db = Database::detached(header.tag, collections, Some(path))?;
    let mut report = OpenReport {
        checkpoint_tag: header.tag,
        ..OpenReport::default()
    };
    if let LogState::Current(rec) = state {
        if let Some(d) = &rec.damage {
            return Err(Error::corrupted(
                &wpath,
                d.offset,
                format!(
                    "{}, with {} valid records after it (the first at offset {}): see `needle check`",
                    d.reason, d.records_after, d.next_valid
                ),
            ));
        }
        for (i, (offset, op)) in rec.ops.into_iter().enumerate() {
            db.plan(&op)
                .and_then(|plan| db.apply_replayed(plan))
                .map_err(|e| {
                    Error::corrupted(
                        &wpath,
                        offset,
                        format!("log record {i} does not apply: {e}"),
                    )
                })?;
            report.wal_records_replayed += 1;
        }
        report.wal_bytes_truncated = rec.file_len - rec.valid_len;
    }
    db.with_open_report(report).map(Some)
}

/// The first bytes of the checkpoint file as it is now.
fn checkpoint_head(disk: &dyn Disk, path: &Path) -> Result<Vec<u8>> {
    let file = disk
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut head = vec![0u8; HEADER_LEN.min(usize::try_from(len).unwrap_or(HEADER_LEN))];
    file.read_exact_at(0, &mut head)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(head)
}
