//! `needle check FILE`: opens the database, which verifies the CRC of every checkpoint section
//! and every log record, then reads every record back. Damage is reported with the file and the
//! byte offset needle-core found it at.
//!
//! Opening recovers the way any open does: a torn final log record (a crash mid-write, never
//! acknowledged) is cut off, and `check` says how many bytes that was.

use std::time::Instant;

use needle_core::{Database, NeedleError};
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
    let db = match Database::open(&args.file) {
        Ok(db) => db,
        Err(NeedleError::Corrupted {
            file,
            offset,
            reason,
        }) => {
            if json {
                output::print_json(&json!({
                    "ok": false,
                    "file": file,
                    "offset": offset,
                    "reason": reason,
                }))?;
            }
            return Err(NeedleError::Corrupted {
                file,
                offset,
                reason,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let report = db.open_report();
    let mut collections = Vec::new();
    let mut total = 0usize;
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
                return Err(CliError::Usage(format!(
                    "collection '{name}': record '{id}' has a malformed vector"
                )));
            }
        }
        if ids.len() != info.count {
            return Err(CliError::Usage(format!(
                "collection '{name}': {} ids enumerated but the count says {}",
                ids.len(),
                info.count
            )));
        }
        total += ids.len();
        collections.push(json!({"name": name, "records": ids.len()}));
    }
    let checksum = db.state_checksum();
    drop(db);
    let took = t.elapsed();
    if json {
        return output::print_json(&json!({
            "ok": true,
            "file": args.file,
            "file_bytes": size,
            "wal_bytes": wal,
            "collections": collections,
            "records": total,
            "wal_records_replayed": report.wal_records_replayed,
            "wal_bytes_truncated": report.wal_bytes_truncated,
            "state_checksum": format!("{checksum:016x}"),
            "seconds": took.as_secs_f64(),
        }));
    }
    let mut text = format!(
        "ok: {}: every checksum verified ({} checkpoint, {} log); {} collection{}, {total} records \
         read back in {}\n",
        args.file.display(),
        output::bytes(size),
        output::bytes(wal),
        collections.len(),
        if collections.len() == 1 { "" } else { "s" },
        output::duration(took),
    );
    if report.wal_records_replayed > 0 || report.wal_bytes_truncated > 0 {
        text.push_str(&format!(
            "log: {} records replayed; {} bytes of torn tail (an unacknowledged write) cut\n",
            report.wal_records_replayed, report.wal_bytes_truncated
        ));
    }
    text.push_str(&format!("state checksum {checksum:016x}\n"));
    output::print(&text)
}
