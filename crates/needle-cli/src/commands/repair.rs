//! `needle repair FILE`: the explicit repair that `needle check` only reports, through
//! needle-core's [`Database::repair`]. It takes the database's lock (a file open in another
//! process is refused, unchanged), checks, and:
//! - nothing wrong: says so and writes nothing;
//! - a torn log tail: copies the torn bytes to `FILE-wal.cut-<n>` (fsynced) and cuts them;
//! - a corrupted log record: copies everything from that record's offset to the end of the log
//!   to the `.cut-<n>` file and cuts the log there. The valid records in the cut part were
//!   acknowledged writes: they are lost from the database, and the message says how many;
//! - a damaged checkpoint: refuses (restore the file from a backup or a replica).

use needle_core::{Database, LogCheck};
use serde_json::json;

use crate::cli::RepairArgs;
use crate::error::{CliError, Result};
use crate::output;

pub fn run(args: &RepairArgs, json: bool) -> Result<()> {
    let path = &args.file;
    if !path.is_file() {
        return Err(CliError::NoSuchDatabase(path.clone()));
    }
    let report = match Database::repair(path) {
        Ok(r) => r,
        Err(needle_core::Error::Locked { .. }) => {
            return Err(CliError::Damaged(format!(
                "{} is open in another process; stop it before repairing (nothing was changed)",
                path.display()
            )));
        }
        Err(needle_core::Error::Corrupted { file, offset, .. }) => {
            return Err(CliError::Damaged(format!(
                "{}: the checkpoint is corrupted at offset {offset}; repair can only cut a \
                 damaged log, not rebuild a checkpoint: restore the file from a backup or a \
                 replica (nothing was changed)",
                file.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(cut) = report.cut else {
        if json {
            return output::print_json(&json!({"ok": true, "repaired": false}));
        }
        return output::print(&format!(
            "ok: {}: nothing to repair; nothing was changed\n",
            path.display()
        ));
    };
    let log = report.check.log_file.display();
    let (damage, what) = match &report.check.log {
        LogCheck::Corrupted { reason, .. } => (
            "corrupted",
            format!(
                "dropped the log from offset {} on ({} bytes: a corrupted record — {reason} — and \
                 the {} valid records after it, acknowledged writes now lost from the database)",
                cut.offset, cut.bytes, cut.records_dropped
            ),
        ),
        _ => (
            "torn_tail",
            format!(
                "cut a torn tail of {} bytes at offset {} (a write that was never acknowledged)",
                cut.bytes, cut.offset
            ),
        ),
    };
    if json {
        return output::print_json(&json!({
            "ok": true,
            "repaired": true,
            "damage": damage,
            "file": report.check.log_file,
            "offset": cut.offset,
            "bytes_cut": cut.bytes,
            "records_dropped": cut.records_dropped,
            "cut_saved_to": cut.saved_to,
            "wal_records_kept": report.check.log_records,
        }));
    }
    output::print(&format!(
        "repaired {log}: {what}; the cut bytes are kept in {}; {} log records kept\n",
        cut.saved_to.display(),
        report.check.log_records
    ))
}
