//! `needle check FILE`: reports what opening the database would find, and **never writes**.
//!
//! The check opens a private copy of the checkpoint and its log in a scratch directory (under
//! `$TMPDIR`), so that needle-core's recovery (which cuts a torn log tail) acts on the copy and the
//! file being checked keeps every byte. Opening verifies the CRC of every checkpoint section and
//! every log record; then every record is read back. The outcomes:
//!
//! - nothing wrong: `ok: …`, exit 0;
//! - a torn log tail (an end of log that holds no complete record: a crash mid-write, never
//!   acknowledged): `an open would cut a torn tail of N bytes at offset X`, exit 1;
//! - corruption (a bad record with valid records after it, a damaged checkpoint): the file and
//!   the byte offset, exit 1.
//!
//! `needle repair` (`super::repair`) is the explicit fix. The copy costs the file's size in
//! scratch space and time; it is read at one moment, so a file that another process is writing
//! may show a tail that process is still writing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use needle_core::{Database, NeedleError, OpenReport};
use serde_json::json;

use super::{file_sizes, sidecars};
use crate::cli::CheckArgs;
use crate::error::{CliError, Result};
use crate::output;

/// What a check found.
#[derive(Debug)]
pub enum Finding {
    /// The database opens with nothing cut; `checksum` is its state checksum.
    Clean {
        report: OpenReport,
        collections: Vec<(String, usize)>,
        checksum: u64,
    },
    /// The log ends in a torn record: an open would cut `bytes` bytes from `offset` on.
    TornTail {
        report: OpenReport,
        offset: u64,
        bytes: u64,
        collections: Vec<(String, usize)>,
    },
    /// `file` (the original's path) is corrupted at `offset`.
    Corrupted {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// Opens a scratch copy of `path` and its log, and says what an open of the original would do.
/// The original is only read.
pub fn inspect(path: &Path) -> Result<Finding> {
    if !path.is_file() {
        return Err(CliError::NoSuchDatabase(path.to_path_buf()));
    }
    let scratch = tempfile::Builder::new()
        .prefix("needle-check-")
        .tempdir()
        .map_err(|e| CliError::io("creating a scratch directory for the check", e))?;
    let name = path.file_name().unwrap_or_default();
    let copy = scratch.path().join(name);
    std::fs::copy(path, &copy)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    let wal = &sidecars(path)[0];
    let wal_len = match std::fs::copy(wal, &sidecars(&copy)[0]) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(CliError::io(format!("reading {}", wal.display()), e)),
    };
    let db = match Database::open(&copy) {
        Ok(db) => db,
        Err(NeedleError::Corrupted {
            file,
            offset,
            reason,
        }) => {
            // Name the original, not the scratch copy.
            let file = match file.strip_prefix(scratch.path()) {
                Ok(rel) => path.with_file_name(rel),
                Err(_) => file,
            };
            return Ok(Finding::Corrupted {
                file,
                offset,
                reason,
            });
        }
        Err(e) => return Err(rename_error(e, scratch.path(), path)),
    };
    let report = db.open_report();
    let collections = read_back(&db)?;
    let checksum = db.state_checksum();
    drop(db);
    Ok(if report.wal_bytes_truncated > 0 {
        Finding::TornTail {
            report,
            offset: wal_len - report.wal_bytes_truncated,
            bytes: report.wal_bytes_truncated,
            collections,
        }
    } else {
        Finding::Clean {
            report,
            collections,
            checksum,
        }
    })
}

/// An error about the scratch copy, re-said about the original file.
fn rename_error(e: NeedleError, scratch: &Path, original: &Path) -> CliError {
    let text = e.to_string().replace(
        &scratch
            .join(original.file_name().unwrap_or_default())
            .display()
            .to_string(),
        &original.display().to_string(),
    );
    CliError::Usage(text)
}

/// Reads every record of every collection back; the records per collection.
fn read_back(db: &Database) -> Result<Vec<(String, usize)>> {
    let mut collections = Vec::new();
    for name in db.list_collections() {
        let info = db.collection_info(&name)?;
        let ids = db.ids(&name)?;
        for id in &ids {
            let record = db.get(&name, id)?.ok_or_else(|| CliError::RecordNotFound {
                collection: name.clone(),
                id: id.clone(),
            })?;
            if record.vector.len() != info.dimensions
                || record.vector.iter().any(|x| !x.is_finite())
            {
                return Err(CliError::Damaged(format!(
                    "collection '{name}': record '{id}' has a malformed vector"
                )));
            }
        }
        if ids.len() != info.count {
            return Err(CliError::Damaged(format!(
                "collection '{name}': {} ids enumerated but the count says {}",
                ids.len(),
                info.count
            )));
        }
        collections.push((name, ids.len()));
    }
    Ok(collections)
}

pub fn run(args: &CheckArgs, json: bool) -> Result<()> {
    let (size, wal) = file_sizes(&args.file);
    let t = Instant::now();
    let finding = inspect(&args.file)?;
    let took = t.elapsed();
    let wal_path = &sidecars(&args.file)[0];
    match finding {
        Finding::Corrupted {
            file,
            offset,
            reason,
        } => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "damage": "corrupted",
                    "file": file,
                    "offset": offset,
                    "reason": reason,
                }))?;
            }
            Err(NeedleError::Corrupted {
                file,
                offset,
                reason,
            }
            .into())
        }
        Finding::TornTail {
            report,
            offset,
            bytes,
            collections,
        } => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "damage": "torn_tail",
                    "file": wal_path,
                    "offset": offset,
                    "torn_bytes": bytes,
                    "wal_records_replayed": report.wal_records_replayed,
                    "collections": collections_json(&collections),
                }))?;
            }
            Err(CliError::Damaged(format!(
                "{}: an open would cut a torn tail of {bytes} bytes at offset {offset} (a write \
                 that was never acknowledged); {} log records before it are intact; nothing was \
                 changed (run `needle repair` to cut it and keep a copy)",
                wal_path.display(),
                report.wal_records_replayed
            )))
        }
        Finding::Clean {
            report,
            collections,
            checksum,
        } => {
            let total: usize = collections.iter().map(|(_, n)| n).sum();
            if json {
                return output::print_json(&json!({
                    "ok": true,
                    "file": args.file,
                    "file_bytes": size,
                    "wal_bytes": wal,
                    "collections": collections_json(&collections),
                    "records": total,
                    "wal_records_replayed": report.wal_records_replayed,
                    "state_checksum": format!("{checksum:016x}"),
                    "seconds": took.as_secs_f64(),
                }));
            }
            let mut text = format!(
                "ok: {}: every checksum verified ({} checkpoint, {} log); {} collection{}, \
                 {total} records read back in {}\n",
                args.file.display(),
                output::bytes(size),
                output::bytes(wal),
                collections.len(),
                if collections.len() == 1 { "" } else { "s" },
                output::duration(took),
            );
            if report.wal_records_replayed > 0 {
                text.push_str(&format!(
                    "log: {} records after the checkpoint, all intact\n",
                    report.wal_records_replayed
                ));
            }
            text.push_str(&format!("state checksum {checksum:016x}\n"));
            output::print(&text)
        }
    }
}

fn collections_json(collections: &[(String, usize)]) -> serde_json::Value {
    collections
        .iter()
        .map(|(name, n)| json!({"name": name, "records": n}))
        .collect()
}
