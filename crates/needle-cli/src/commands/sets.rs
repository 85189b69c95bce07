//! The set operations on one `.needle` file: `needle count`, `needle scroll` and
//! `needle index create|drop` (`needle delete --filter` and `needle export --filter` live with
//! their commands). Filters are parsed before the file is opened, so a bad one changes nothing.

use needle_core::{Filter, IndexKind};
use serde_json::json;

use super::{open_existing, parse_json_flag};
use crate::cli::{CountArgs, IndexCommand, ScrollArgs};
use crate::error::Result;
use crate::output::{self, RecordJson};

/// Parses a `--filter` flag.
pub fn filter_flag(text: Option<&String>) -> Result<Option<Filter>> {
    text.map(|t| Ok(Filter::parse(&parse_json_flag("--filter", t)?)?))
        .transpose()
}

pub fn count(args: &CountArgs, json: bool) -> Result<()> {
    let filter = filter_flag(args.filter.as_ref())?;
    let db = open_existing(&args.file)?;
    let n = db.count_matching(&args.collection, filter.as_ref())?;
    if json {
        return output::print_json(&json!({"count": n}));
    }
    output::print(&format!("{n}\n"))
}

pub fn scroll(args: &ScrollArgs, json: bool) -> Result<()> {
    let filter = filter_flag(args.filter.as_ref())?;
    let db = open_existing(&args.file)?;
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
