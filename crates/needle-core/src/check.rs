//! [`Database::check`] and [`Database::repair`]: what an open would find, without changing a
//! byte; and the one explicit repair — cutting a torn tail or a damaged suffix off the log,
//! keeping a copy of what was cut.
//!
//! `check` reads the checkpoint and the log, replays the log in memory onto the checkpoint and
//! reports how the log ends. It opens nothing for writing, takes no lock and creates no file.
//! `repair` takes the database's lock, checks, and if the log ends in a torn tail or in damage,
//! copies the bytes from there to the end into `FILE.needle-wal.cut-<n>` (durably), then cuts
//! the log there. A damaged checkpoint is not repairable here: both return its `Corrupted`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::database::{Database, load_checkpoint_bytes, read_if_exists};
use crate::disk::{Disk, OpenMode, OsDisk, parent_dir};
use crate::error::{Error, Result};
use crate::storage::wal::{self, LogState};
use crate::storage::{lock, wal_path};

/// How the write-ahead log ends, as [`Database::check`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogCheck {
    /// No log, or one cut off or zeroed inside its header (a crash while it was created or
    /// reset): nothing to replay. An open starts a new log.
    Empty,
    /// A log of an older checkpoint (its reset never happened): ignored by an open, which
    /// starts a new log.
    Stale,
    /// Every record is whole and applies.
    Clean,
    /// The last `bytes` from `offset` hold no valid record: a write cut short by a crash, never
    /// acknowledged. An open cuts them; so does [`Database::repair`].
    TornTail { offset: u64, bytes: u64 },
    /// The record at `offset` is damaged (or does not apply) and `records_after` valid records
    /// follow it — or it is the last record, whole and one bit off (rot, not a tear; then
    /// `records_after` is 0): acknowledged writes are at stake. An open refuses with
    /// [`Error::Corrupted`]; [`Database::repair`] would cut the `bytes` from `offset` on,
    /// dropping those records (keeping a copy of the bytes).
    Corrupted {
        offset: u64,
        bytes: u64,
        records_after: u64,
        reason: String,
    },
}

/// What [`Database::check`] found: what an open would do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The checkpoint file.
    pub file: PathBuf,
    /// Its log.
    pub log_file: PathBuf,
    /// The checkpoint's tag (see [`Database::checkpoint_tag`]).
    pub checkpoint_tag: u64,
    /// Log records that replay onto the checkpoint (before any torn tail or damage).
    pub log_records: u64,
    /// How the log ends.
    pub log: LogCheck,
    /// Each collection and its live records once those records are replayed.
    pub collections: Vec<(String, usize)>,
}

impl CheckReport {
    /// True when an open would change nothing and refuse nothing (no torn tail, no damage).
    pub fn is_clean(&self) -> bool {
        matches!(
            self.log,
            LogCheck::Empty | LogCheck::Stale | LogCheck::Clean
        )
    }
}

/// What [`Database::repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// What the check before the repair found.
    pub check: CheckReport,
    /// What was cut, or `None` when nothing needed cutting.
    pub cut: Option<Cut>,
}

/// Bytes cut off the end of the log by [`Database::repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// Where the log now ends.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Valid records among them (acknowledged writes dropped; 0 for a torn tail).
    pub records_dropped: u64,
    /// The file holding a copy of the cut bytes.
    pub saved_to: PathBuf,
}

impl Database {
    /// Reports what opening the database at `path` would do — the records the log replays, a
    /// torn tail an open would cut, damage that makes an open refuse — without writing,
    /// locking or creating anything. A damaged checkpoint is `Err(Corrupted)`.
    ///
    /// ```
    /// use needle_core::{Database, DatabaseOptions, LogCheck};
    /// use needle_core::disk::MemDisk;
    /// let disk = MemDisk::shared();
    /// let db = Database::open_on(disk.clone(), "/c.needle", DatabaseOptions::default())?;
    /// db.create_collection("docs", 2)?;
    /// db.insert("docs", "a", vec![1.0, 0.0], None)?;
    /// drop(db);
    /// let report = Database::check_on(disk, "/c.needle")?;
    /// assert_eq!(report.log, LogCheck::Clean);
    /// assert_eq!(report.log_records, 2);
    /// assert_eq!(report.collections, vec![("docs".to_string(), 1)]);
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn check(path: impl AsRef<Path>) -> Result<CheckReport> {
        Self::check_on(OsDisk::shared(), path)
    }

    /// As [`Database::check`], on any [`Disk`].
    pub fn check_on(disk: Arc<dyn Disk>, path: impl AsRef<Path>) -> Result<CheckReport> {
        let path = path.as_ref();
        let bytes = read_if_exists(&*disk, path)?.ok_or_else(|| {
            Error::io(
                format!("checking {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
            )
        })?;
        let (header, collections) = load_checkpoint_bytes(&bytes, path)?;
        drop(bytes);
        let db = Database::detached(header.tag, collections, None)?;
        let wpath = wal_path(path);
        let log_bytes = read_if_exists(&*disk, &wpath)?.unwrap_or_default();
        let file_len = log_bytes.len() as u64;
        let mut log_records = 0;
        let log = match wal::recover(&log_bytes, &wpath, header.generation) {
            Err(Error::Corrupted { offset, reason, .. }) => LogCheck::Corrupted {
                offset: 0,
                bytes: file_len,
                records_after: 0,
                reason: format!("log header (offset {offset}): {reason}"),
            },
            Err(e) => return Err(e),
            Ok(LogState::Empty) => LogCheck::Empty,
            Ok(LogState::Stale) => LogCheck::Stale,
            Ok(LogState::Current(rec)) => {
                let mut unapplied = None;
                let total = rec.ops.len() as u64;
                for (offset, op) in rec.ops {
                    match db.plan(&op).and_then(|plan| db.apply_replayed(plan)) {
                        Ok(()) => log_records += 1,
                        Err(e @ Error::Io { .. }) => return Err(e),
                        Err(e) => {
                            unapplied = Some((offset, e.to_string()));
                            break;
                        }
                    }
                }
                match (unapplied, rec.damage) {
                    (Some((offset, why)), damage) => LogCheck::Corrupted {
                        offset,
                        bytes: file_len - offset,
                        records_after: total - log_records - 1
                            + damage.map_or(0, |d| d.records_after),
                        reason: format!("log record does not apply: {why}"),
                    },
                    (None, Some(d)) => LogCheck::Corrupted {
                        offset: d.offset,
                        bytes: file_len - d.offset,
                        records_after: d.records_after,
                        reason: d.reason.to_string(),
                    },
                    (None, None) if rec.valid_len < file_len => LogCheck::TornTail {
                        offset: rec.valid_len,
                        bytes: file_len - rec.valid_len,
                    },
                    (None, None) => LogCheck::Clean,
                }
            }
        };
        let collections = db
            .list_collections()
            .into_iter()
            .map(|name| {
                let count = db.count(&name).unwrap_or(0);
                (name, count)
            })
            .collect();
        Ok(CheckReport {
            file: path.to_path_buf(),
            log_file: wpath,
            checkpoint_tag: header.tag,
            log_records,
            log,
            collections,
        })
    }

    /// Cuts a torn tail or a damaged suffix off the log of the database at `path`, after
    /// copying the cut bytes to `FILE.needle-wal.cut-<n>` (the first unused `n`), and says
    /// exactly what it dropped. Does nothing when [`Database::check`] finds the log clean.
    /// Takes the database's lock: fails with [`Error::Locked`] while it is open.
    pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        Self::repair_on(OsDisk::shared(), path)
    }

    /// As [`Database::repair`], on any [`Disk`].
    pub fn repair_on(disk: Arc<dyn Disk>, path: impl AsRef<Path>) -> Result<RepairReport> {
        let path = path.as_ref();
        let _lock = lock(&*disk, path)?;
        let check = Self::check_on(disk.clone(), path)?;
        let (offset, bytes, records_dropped) = match &check.log {
            LogCheck::TornTail { offset, bytes } => (*offset, *bytes, 0),
            LogCheck::Corrupted {
                offset,
                bytes,
                records_after,
                ..
            } => (*offset, *bytes, *records_after),
            _ => return Ok(RepairReport { check, cut: None }),
        };
        let wpath = &check.log_file;
        let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
        let log = disk
            .open(wpath, OpenMode::Write)
            .map_err(|e| io("opening", wpath, e))?;
        let mut cut_bytes = vec![0u8; bytes as usize];
        log.read_exact_at(offset, &mut cut_bytes)
            .map_err(|e| io("reading", wpath, e))?;
        let mut saved_to = None;
        for n in 1..=10_000u32 {
            let p = PathBuf::from(format!("{}.cut-{n}", wpath.display()));
            if !disk.exists(&p).map_err(|e| io("looking for", &p, e))? {
                saved_to = Some(p);
                break;
            }
        }
        let saved_to = saved_to.ok_or_else(|| {
            io(
                "naming a copy of the cut bytes of",
                wpath,
                std::io::Error::other("cut-1 .. cut-10000 all exist"),
            )
        })?;
        let copy = disk
            .open(&saved_to, OpenMode::CreateTruncate)
            .map_err(|e| io("creating", &saved_to, e))?;
        copy.write_all_at(0, &cut_bytes)
            .and_then(|()| copy.sync())
            .map_err(|e| io("writing", &saved_to, e))?;
        let dir = parent_dir(&saved_to);
        disk.sync_dir(&dir)
            .map_err(|e| io("fsyncing directory", &dir, e))?;
        log.set_len(offset)
            .and_then(|()| log.sync())
            .map_err(|e| io("cutting", wpath, e))?;
        Ok(RepairReport {
            check,
            cut: Some(Cut {
                offset,
                bytes,
                records_dropped,
                saved_to,
            }),
        })
    }
}
