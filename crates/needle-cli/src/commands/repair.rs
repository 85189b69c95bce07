//! `needle repair FILE`: the explicit repair that `needle check` only reports.
//!
//! It first runs the same read-only inspection as `check` (`super::check::inspect`), then:
//! - nothing wrong: says so and writes nothing;
//! - a torn log tail: copies the torn bytes to `FILE-wal.cut-<unix seconds>` (fsynced), then opens
//!   the database, which cuts them;
//! - a corrupted log record: copies everything from that record's offset to the end of the log
//!   to the `.cut-…` file (fsynced), truncates the log at that offset (fsynced), then opens the
//!   database. The records in the cut part were acknowledged writes: they are lost from the
//!   database, and the message says how many bytes went and where they are kept;
//! - a damaged checkpoint: refuses (the checkpoint is the base of everything; restore it from a
//!   backup or a replica).
//!
//! The database's lock is held while the log is truncated, so a process that has the file open
//! is never cut under.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use needle_core::Database;
use serde_json::json;

use super::check::{Finding, inspect};
use super::sidecars;
use crate::cli::RepairArgs;
use crate::error::{CliError, Result};
use crate::output;

pub fn run(args: &RepairArgs, json: bool) -> Result<()> {
    let path = &args.file;
    let wal = sidecars(path)[0].clone();
    match inspect(path)? {
        Finding::Clean { .. } => {
            if json {
                return output::print_json(&json!({"ok": true, "repaired": false}));
            }
            output::print(&format!(
                "ok: {}: nothing to repair; nothing was changed\n",
                path.display()
            ))
        }
        Finding::Corrupted { file, offset, .. } if file != wal => Err(CliError::Damaged(format!(
            "{}: the checkpoint is corrupted at offset {offset}; repair can only cut a damaged \
             log, not rebuild a checkpoint: restore the file from a backup or a replica \
             (nothing was changed)",
            file.display()
        ))),
        Finding::Corrupted { offset, reason, .. } => {
            let cut = {
                let _lock = lock(path)?;
                let cut = save_tail(&wal, offset)?;
                let f = File::options()
                    .write(true)
                    .open(&wal)
                    .map_err(|e| CliError::io(format!("opening {}", wal.display()), e))?;
                f.set_len(offset)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| CliError::io(format!("truncating {}", wal.display()), e))?;
                cut
            };
            let db = Database::open(path)?;
            let replayed = db.open_report().wal_records_replayed;
            drop(db);
            report(
                json,
                &wal,
                "corrupted",
                offset,
                &cut,
                replayed,
                &format!(
                    "dropped the log from offset {offset} on ({} bytes: a corrupted record — \
                     {reason} — and everything after it; acknowledged writes in there are lost \
                     from the database)",
                    cut.1
                ),
            )
        }
        Finding::TornTail { offset, bytes, .. } => {
            let cut = {
                let _lock = lock(path)?;
                save_tail(&wal, offset)?
            };
            let db = Database::open(path)?;
            let r = db.open_report();
            drop(db);
            if r.wal_bytes_truncated != bytes {
                return Err(CliError::Damaged(format!(
                    "{}: expected to cut {bytes} torn bytes but the open cut {} (the file changed \
                     during the repair?); the bytes from offset {offset} are kept in {}",
                    wal.display(),
                    r.wal_bytes_truncated,
                    cut.0.display()
                )));
            }
            report(
                json,
                &wal,
                "torn_tail",
                offset,
                &cut,
                r.wal_records_replayed,
                &format!(
                    "cut a torn tail of {bytes} bytes at offset {offset} (a write that was never \
                     acknowledged)"
                ),
            )
        }
    }
}

fn report(
    json: bool,
    wal: &Path,
    damage: &str,
    offset: u64,
    cut: &(PathBuf, u64),
    replayed: u64,
    what: &str,
) -> Result<()> {
    if json {
        return output::print_json(&json!({
            "ok": true,
            "repaired": true,
            "damage": damage,
            "file": wal,
            "offset": offset,
            "bytes_cut": cut.1,
            "cut_saved_to": cut.0,
            "wal_records_kept": replayed,
        }));
    }
    output::print(&format!(
        "repaired {}: {what}; the cut bytes are kept in {}; {replayed} log records kept\n",
        wal.display(),
        cut.0.display()
    ))
}

/// Takes the database's lock (the same `-lock` file and advisory lock needle-core uses).
fn lock(path: &Path) -> Result<File> {
    let lp = &sidecars(path)[1];
    let f = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lp)
        .map_err(|e| CliError::io(format!("opening {}", lp.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Damaged(format!(
            "{} is open in another process; stop it before repairing (nothing was changed)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(CliError::io(format!("locking {}", lp.display()), e))
        }
    }
}

/// Copies `wal[offset..]` to a new `…-wal.cut-<seconds>` file beside it, fsynced; returns its
/// path and length.
fn save_tail(wal: &Path, offset: u64) -> Result<(PathBuf, u64)> {
    let mut src =
        File::open(wal).map_err(|e| CliError::io(format!("opening {}", wal.display()), e))?;
    src.seek(SeekFrom::Start(offset))
        .map_err(|e| CliError::io(format!("reading {}", wal.display()), e))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = wal.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".cut-{secs}"));
    let dest = wal.with_file_name(name);
    let mut out = File::options()
        .write(true)
        .create_new(true)
        .open(&dest)
        .map_err(|e| CliError::io(format!("creating {}", dest.display()), e))?;
    let copied = std::io::copy(&mut src, &mut out)
        .and_then(|n| out.sync_all().map(|()| n))
        .map_err(|e| CliError::io(format!("copying the cut bytes to {}", dest.display()), e))?;
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    if let Ok(d) = File::open(dir.unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok((dest, copied))
}
