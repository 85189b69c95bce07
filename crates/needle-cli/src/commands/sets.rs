//! The set operations on one `.needle` file: `needle count`, `needle scroll` and
//! `needle index create|drop` (`needle delete --filter` and `needle export --filter` live with
//! their commands). Filters are parsed before the file is opened, so a bad one changes nothing.

use needle_core::{Filter, IndexKind};
use serde_json::json;

use super::{open_existing, open_for_reading, parse_json_flag};
use crate::cli::{CountArgs, IndexCommand, ScrollArgs, positionals};
use crate::error::{CliError, Result};
use crate::output::{self, RecordJson};
use crate::remote::{self, Remote};

/// Parses a `--filter` flag.
pub fn filter_flag(text: Option<&String>) -> Result<Option<Filter>> {
    text.map(|t| Ok(Filter::parse(&parse_json_flag("--filter", t)?)?))
        .transpose()
}

pub fn count(args: &CountArgs, json: bool) -> Result<()> {
    let filter = filter_flag(args.filter.as_ref())?;
    let remote = Remote::from_args(&args.remote)?;
    if remote.is_some() && args.read_only {
        return Err(CliError::Usage(
            "--read-only is for a file, not with --http".into(),
        ));
    }
    let (file, values) = positionals(
        remote.is_some(),
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )
    .map_err(CliError::CommandLine)?;
    let collection = &values[0];
    let n = match (remote, file) {
        (Some(remote), _) => {
            if filter.is_some() {
                return Err(CliError::Usage(
                    "count --filter is not available with --http yet (the HTTP API has no count endpoint)".into(),
                ));
            }
            let path = format!("/v1/collections/{}", remote::segment(collection));
            let info = remote::success(remote.read("GET", &path, None)?)?;
            info["count"].as_u64().ok_or_else(|| {
                CliError::Http(format!("the node's collection has no count: {info}"))
            })? as usize
        }
        (None, Some(file)) => {
            open_for_reading(&file, args.read_only)?.count_matching(collection, filter.as_ref())?
        }
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    if json {
        return output::print_json(&json!({"count": n}));
    }
    output::print(&format!("{n}\n"))
}

pub fn scroll(args: &ScrollArgs, json: bool) -> Result<()> {
    let filter = filter_flag(args.filter.as_ref())?;
    let db = open_for_reading(&args.file, args.read_only)?;
    let page = db.scroll(
        &args.collection,
        filter.as_ref(),
        args.cursor.as_deref(),
        args.limit as usize,
    )?;
    let records: Vec<RecordJson> = page
        .records
        .iter()
        .map(|r| RecordJson {
            id: &r.id,
            vector: &r.vector,
            metadata: &r.metadata,
        })
        .collect();
    if json {
        return output::print_json(&json!({"records": records, "next_cursor": page.next_cursor}));
    }
    let mut text = String::new();
    for r in &page.records {
        let meta = r
            .metadata
            .as_ref()
            .map_or("-".to_string(), |m| m.to_string());
        text.push_str(&format!("{}\t{meta}\n", r.id));
    }
    match &page.next_cursor {
        Some(c) => text.push_str(&format!("(more: --cursor '{c}')\n")),
        None => text.push_str("(end)\n"),
    }
    output::print(&text)
}

pub fn index(cmd: &IndexCommand, json: bool) -> Result<()> {
    match cmd {
        IndexCommand::Create(a) => {
            let kind: IndexKind = a.kind.parse()?;
            let db = open_existing(&a.file)?;
            db.create_index(&a.collection, &a.path, kind)?;
            db.checkpoint()?;
            let info = db.collection_info(&a.collection)?;
            let idx = info.indexes.iter().find(|i| i.path == a.path);
            if json {
                return output::print_json(&json!({
                    "created": a.path, "kind": kind.name(),
                    "values": idx.map(|i| i.values), "indexed": idx.map(|i| i.indexed),
                    "irregular": idx.map(|i| i.irregular), "memory_bytes": idx.map(|i| i.memory_bytes),
                }));
            }
            let detail = idx.map_or(String::new(), |i| {
                format!(
                    ": {} records, {} distinct values, {} of another type, {:.1} KB",
                    i.indexed,
                    i.values,
                    i.irregular,
                    i.memory_bytes as f64 / 1e3
                )
            });
            output::print(&format!(
                "created a {kind} index on '{}' in '{}'{detail}\n",
                a.path, a.collection
            ))
        }
        IndexCommand::Drop(a) => {
            let db = open_existing(&a.file)?;
            db.drop_index(&a.collection, &a.path)?;
            db.checkpoint()?;
            if json {
                return output::print_json(&json!({"dropped": a.path}));
            }
            output::print(&format!(
                "dropped the index on '{}' in '{}'\n",
                a.path, a.collection
            ))
        }
    }
}
