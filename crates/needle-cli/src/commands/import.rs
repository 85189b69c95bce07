//! `needle import FILE COLLECTION INPUT`: vectors from fvecs, npy or JSON Lines, in batches.
//!
//! The input is read twice: once to check every record (nothing is written if one is bad), once
//! to insert. Each batch is one `insert_batch` (one log write, one fsync); a checkpoint at the
//! end makes the next open load the graph instead of replaying the log.
//!
//! With `--http ADDR` (no FILE): the same check against the cluster's collection (or the one
//! the import creates, as `needle create --http` would), then each batch is one
//! `POST …/records/batch` — one Raft entry — with its own Idempotency-Key, following the leader
//! and retried with that key until it has an outcome.

use std::path::{Path, PathBuf};
use std::time::Instant;

use needle_core::{CollectionConfig, Database, Distance, Quantization, Record};
use serde_json::{Value, json};

use super::{NewFileGuard, file_sizes};
use crate::cli::{ImportArgs, positionals};
use crate::error::{CliError, Result};
use crate::input::{self, Input};
use crate::remote::{self, Remote};
use crate::{output, progress};

pub fn run(args: &ImportArgs, json: bool) -> Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    let input_arg = args
        .input
        .as_deref()
        .map(|p| p.to_string_lossy().into_owned());
    let (file, values) = positionals(
        remote.is_some(),
        &args.file,
        &[Some(args.collection.as_str()), input_arg.as_deref()],
        &["COLLECTION", "INPUT"],
    )
    .map_err(CliError::CommandLine)?;
    let (collection, input_path) = (values[0].clone(), PathBuf::from(&values[1]));
    match (remote, file) {
        (Some(remote), _) => run_remote(args, &remote, &collection, &input_path, json),
        (None, Some(file)) => run_file(args, &file, &collection, &input_path, json),
        (None, None) => Err(CliError::CommandLine("missing FILE".into())),
    }
}

/// The collection's configuration as the cluster reports it (`GET /v1/collections/{c}`).
fn config_of(info: &Value) -> Result<(usize, CollectionConfig)> {
    let bad = || {
        CliError::Http(format!(
            "the cluster described the collection oddly: {info}"
        ))
    };
    let distance = match info["distance"].as_str() {
        Some("cosine") => Distance::Cosine,
        Some("euclidean") => Distance::Euclidean,
        Some("dot") => Distance::DotProduct,
        _ => return Err(bad()),
    };
    let number = |k: &str| info[k].as_u64().map(|v| v as usize).ok_or_else(bad);
    let quantization = match info["quantization"].as_str() {
        None => Quantization::None,
        Some(q) => Quantization::from_name(q).ok_or_else(bad)?,
    };
    let config = CollectionConfig {
        distance,
        m: number("m")?,
        ef_construction: number("ef_construction")?,
        ef_search: number("ef_search")?,
        quantization,
        ..Default::default()
    };
    Ok((number("dimensions")?, config))
}

fn run_remote(
    args: &ImportArgs,
    remote: &Remote,
    collection: &str,
    input_path: &Path,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let input = Input::new(input_path, args.format, args.ids.as_deref())?;
    let info_path = format!("/v1/collections/{}", remote::segment(collection));
    let answer = remote.read("GET", &info_path, None)?;
    let existing = if answer.is_success() {
        Some(config_of(&answer.body)?)
    } else if answer.status == 404 {
        None
    } else {
        return Err(CliError::Http(remote::message(&answer)));
    };
    if let Some(conflict) = existing
        .as_ref()
        .and_then(|(_, config)| args.params.conflict_with(config))
    {
        return Err(CliError::Usage(format!(
            "collection '{collection}' exists with another configuration: {conflict}"
        )));
    }
    let config = existing
        .as_ref()
        .map_or_else(|| args.params.to_config(), |(_, c)| c.clone());
    let summary = input::scan(&input, config.distance, existing.as_ref().map(|(d, _)| *d))?;
    let created = existing.is_none();
    if created {
        Database::check_collection(collection, summary.dim, &config)?;
        super::create::create_remote(remote, collection, summary.dim, &config)?;
    }

    let bar = progress::records(summary.rows, "importing");
    let batch_path = format!(
        "/v1/collections/{}/records/batch",
        remote::segment(collection)
    );
    let batch_size = args.batch_size as usize;
    let mut batch: Vec<Value> = Vec::with_capacity(batch_size);
    let mut done = 0u64;
    let flush = |batch: &mut Vec<Value>, done: &mut u64| -> Result<()> {
        let n = batch.len() as u64;
        let body = json!({ "records": std::mem::take(batch) });
        remote
            .write("POST", &batch_path, Some(&body))
            .and_then(|r| remote::success(r).map(drop))
            .map_err(|e| CliError::RemoteImportStopped {
                done: *done,
                total: summary.rows,
                reason: e.to_string(),
            })?;
        *done += n;
        bar.inc(n);
        Ok(())
    };
    for item in input.records()? {
        let record = item?.1;
        let mut r = json!({"id": record.id, "vector": record.vector});
        if let Some(m) = record.metadata {
            r["metadata"] = m;
        }
        batch.push(r);
        if batch.len() >= batch_size {
            flush(&mut batch, &mut done)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut done)?;
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let info = remote::success(remote.read("GET", &info_path, None)?)?;
    let count = info["count"].as_u64().unwrap_or(0);
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    if json {
        return output::print_json(&json!({
            "collection": collection,
            "imported": done,
            "dimensions": summary.dim,
            "count": count,
            "created_collection": created,
            "seconds": elapsed.as_secs_f64(),
            "records_per_second": rate,
        }));
    }
    output::print(&format!(
        "imported {done} records ({} dims) from {} into '{collection}'{} on the cluster in {} \
         ({rate:.0} records/s); the collection has {count} records\n",
        summary.dim,
        input_path.display(),
        if created { " (new collection)" } else { "" },
        output::duration(elapsed),
    ))
}

fn run_file(
    args: &ImportArgs,
    file: &Path,
    collection: &str,
    input_path: &Path,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let input = Input::new(input_path, args.format, args.ids.as_deref())?;

    // What the records must match: the existing collection, or the one this import creates.
    let existing_db = if file.is_file() {
        Some(Database::open(file)?)
    } else {
        None
    };
    let existing = match &existing_db {
        Some(db) if db.list_collections().iter().any(|c| c == collection) => {
            Some(db.collection_info(collection)?)
        }
        _ => None,
    };
    if let Some(info) = &existing {
        if let Some(conflict) = args.params.conflict_with(&info.config) {
            return Err(CliError::Usage(format!(
                "collection '{}' exists with another configuration: {conflict}",
                info.name
            )));
        }
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
        Database::check_collection(collection, summary.dim, &config)?;
    }

    let guard = NewFileGuard::new(file);
    let db = match existing_db {
        Some(db) => db,
        None => Database::open(file)?,
    };
    let created = existing.is_none();
    if created {
        db.create_collection_with_config(collection, summary.dim, config)?;
    }

    let bar = progress::records(summary.rows, "importing");
    let batch_size = args.batch_size as usize;
    let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
    let mut done = 0u64;
    let flush = |batch: &mut Vec<Record>, done: &mut u64| -> Result<()> {
        let n = batch.len() as u64;
        db.insert_batch(collection, std::mem::take(batch))
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
    let count = db.count(collection)?;
    drop(db);
    let new_file = guard.is_new();
    guard.keep();
    let elapsed = started.elapsed();
    let (size, _) = file_sizes(file);
    let rate = done as f64 / inserted.as_secs_f64().max(1e-9);

    if json {
        return output::print_json(&json!({
            "file": file,
            "collection": collection,
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
        input_path.display(),
        collection,
        if created { " (new collection)" } else { "" },
        output::duration(elapsed),
        file.display(),
        output::bytes(size),
    ))
}
