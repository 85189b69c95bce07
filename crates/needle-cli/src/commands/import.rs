//! `needle import FILE COLLECTION INPUT`: vectors from fvecs, npy or JSON Lines, in batches.
//!
//! The input is read twice: once to check every record (nothing is written if one is bad), once
//! to insert. Each batch is one `insert_batch` (one log write, one fsync); a checkpoint at the
//! end makes the next open load the graph instead of replaying the log.

use std::time::Instant;

use needle_core::{Database, Record};
use serde_json::json;

use super::{NewFileGuard, file_sizes};
use crate::cli::ImportArgs;
use crate::error::{CliError, Result};
use crate::input::{self, Input};
use crate::{output, progress};

pub fn run(args: &ImportArgs, json: bool) -> Result<()> {
    let started = Instant::now();
    let input = Input::new(&args.input, args.format, args.ids.as_deref())?;

    // What the records must match: the existing collection, or the one this import creates.
    let existing_db = if args.file.is_file() {
        Some(Database::open(&args.file)?)
    } else {
        None
    };
    let existing = match &existing_db {
        Some(db) if db.list_collections().contains(&args.collection) => {
            Some(db.collection_info(&args.collection)?)
        }
        _ => None,
    };
    if let Some(info) = &existing
        && let Some(conflict) = args.params.conflict_with(&info.config)
    {
        return Err(CliError::Usage(format!(
            "collection '{}' exists with another configuration: {conflict}",
            info.name
        )));
    }
    let config = existing
        .as_ref()
        .map_or_else(|| args.params.to_config(), |i| i.config.clone());

    let summary = input::scan(
        &input,
        config.distance,
        existing.as_ref().map(|i| i.dimensions),
    )?;
    if existing.is_none() {
        Database::check_collection(&args.collection, summary.dim, &config)?;
    }

    let guard = NewFileGuard::new(&args.file);
    let db = match existing_db {
        Some(db) => db,
        None => Database::open(&args.file)?,
    };
    let created = existing.is_none();
    if created {
        db.create_collection_with_config(&args.collection, summary.dim, config)?;
    }

    let bar = progress::records(summary.rows, "importing");
    let batch_size = args.batch_size as usize;
    let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
    let mut done = 0u64;
    let flush = |batch: &mut Vec<Record>, done: &mut u64| -> Result<()> {
        let n = batch.len() as u64;
        db.insert_batch(&args.collection, std::mem::take(batch))
            .map_err(|source| CliError::ImportStopped {
                done: *done,
                total: summary.rows,
                source,
            })?;
        *done += n;
        bar.inc(n);
        Ok(())
    };
    for item in input.records()? {
        batch.push(item?.1);
        if batch.len() >= batch_size {
            flush(&mut batch, &mut done)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut done)?;
    }
    bar.finish_and_clear();
    let inserted = started.elapsed();
    db.checkpoint()?;
    let count = db.count(&args.collection)?;
    drop(db);
    let new_file = guard.is_new();
    guard.keep();
    let elapsed = started.elapsed();
    let (size, _) = file_sizes(&args.file);
    let rate = done as f64 / inserted.as_secs_f64().max(1e-9);

    if json {
        return output::print_json(&json!({
            "file": args.file,
            "collection": args.collection,
            "imported": done,
            "dimensions": summary.dim,
            "count": count,
            "created_file": new_file,
            "created_collection": created,
            "seconds": elapsed.as_secs_f64(),
            "records_per_second": rate,
            "file_bytes": size,
        }));
    }
    output::print(&format!(
        "imported {done} records ({} dims) from {} into '{}'{} in {} ({rate:.0} records/s); \
         the collection has {count} records; {} is {}\n",
        summary.dim,
        args.input.display(),
        args.collection,
        if created { " (new collection)" } else { "" },
        output::duration(elapsed),
        args.file.display(),
        output::bytes(size),
    ))
}
