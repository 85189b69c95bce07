//! `needle check FILE`: reports what opening the database would find, and **never writes**
//! (needle-core's [`Database::check`]: it reads the checkpoint and the log, replays the log in
//! memory, and opens nothing for writing, takes no lock, creates no file). The outcomes:
//!
//! - nothing wrong: `ok: …`, exit 0 (a stale or empty log, which an open simply replaces, is
//!   nothing wrong);
//! - a torn log tail (an end of log that holds no complete record: a crash mid-write, never
//!   acknowledged): `an open would cut a torn tail of N bytes at offset X`, exit 1;
//! - corruption (a damaged record with valid records after it, a damaged checkpoint): the file
//!   and the byte offset, exit 1.
//!
//! `needle repair` (`super::repair`) is the explicit fix.

use std::time::Instant;

use needle_core::{Database, LogCheck};
use serde_json::json;

use super::file_sizes;
use crate::cli::CheckArgs;
use crate::error::{CliError, Result};
use crate::output;

pub fn run(args: &CheckArgs, json: bool) -> Result<()> {
    if !args.file.is_file() {
        return Err(CliError::NoSuchDatabase(args.file.clone()));
    }
    let (size, wal) = file_sizes(&args.file);
    let t = Instant::now();
    let report = match Database::check(&args.file) {
        Ok(r) => r,
        Err(needle_core::Error::Corrupted {
            file,
            offset,
            reason,
        }) => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "damage": "corrupted",
                    "file": file,
                    "offset": offset,
                    "reason": reason,
                }))?;
            }
            return Err(needle_core::Error::Corrupted {
                file,
                offset,
                reason,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let took = t.elapsed();
    let log = report.log_file.display();
    let collections: serde_json::Value = report
        .collections
        .iter()
        .map(|(name, n)| json!({"name": name, "records": n}))
        .collect();
    match &report.log {
        LogCheck::TornTail { offset, bytes } => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "damage": "torn_tail",
                    "file": report.log_file,
                    "offset": offset,
                    "torn_bytes": bytes,
                    "wal_records_replayed": report.log_records,
                    "collections": collections,
                }))?;
            }
            Err(CliError::Damaged(format!(
                "{log}: an open would cut a torn tail of {bytes} bytes at offset {offset} (a write \
                 that was never acknowledged); {} log records before it are intact; nothing was \
                 changed (run `needle repair` to cut it and keep a copy)",
                report.log_records
            )))
        }
        LogCheck::Corrupted {
            offset,
            bytes,
            records_after,
            reason,
        } => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "damage": "corrupted",
                    "file": report.log_file,
                    "offset": offset,
                    "reason": reason,
                    "bytes_after": bytes,
                    "records_after": records_after,
                    "wal_records_replayed": report.log_records,
                }))?;
            }
            Err(CliError::Damaged(format!(
                "corrupted file {log}: at offset {offset}: {reason}; {records_after} valid records \
                 ({bytes} bytes from that offset) follow it, so an open refuses the file; nothing \
                 was changed (`needle repair` would cut them off, keeping a copy)"
            )))
        }
        _ => {
            let total: usize = report.collections.iter().map(|(_, n)| n).sum();
            let stale = report.log == LogCheck::Stale;
            if json {
                return output::print_json(&json!({
                    "ok": true,
                    "file": args.file,
                    "file_bytes": size,
                    "wal_bytes": wal,
                    "collections": collections,
                    "records": total,
                    "wal_records_replayed": report.log_records,
                    "stale_log": stale,
                    "seconds": took.as_secs_f64(),
                }));
            }
            let n = report.collections.len();
            let mut text = format!(
                "ok: {}: every checksum verified ({} checkpoint, {} log); {n} collection{}, \
                 {total} records in {}\n",
                args.file.display(),
                output::bytes(size),
                output::bytes(wal),
                if n == 1 { "" } else { "s" },
                output::duration(took),
            );
            if report.log_records > 0 {
                text.push_str(&format!(
                    "log: {} records after the checkpoint, all intact\n",
                    report.log_records
                ));
            }
            if stale {
                text.push_str(
                    "log: left from an older checkpoint (a crash before its reset); an open \
                     ignores it\n",
                );
            }
            output::print(&text)
        }
    }
}
