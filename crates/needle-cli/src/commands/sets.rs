//! The set operations on one `.needle` file: `needle count`, `needle scroll` and
//! `needle index create|drop` (`needle delete --filter` and `needle export --filter` live with
//! their commands). Filters are parsed before the file is opened (or any request is sent), so a
//! bad one changes nothing. `count` and `scroll` also run on a cluster with `--http`.

use needle_core::{Filter, IndexKind};
use serde_json::json;

use super::{open_existing, open_for_reading, parse_json_flag};
use crate::cli::{CountArgs, IndexCommand, ScrollArgs};
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
    let (remote, file, values) = remote::reading_target(
        &args.remote,
        args.read_only,
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )?;
    let collection = &values[0];
    let n = match (remote, file) {
        (Some(remote), _) => {
            let mut body = json!({});
            if let Some(text) = &args.filter {
                body["filter"] = parse_json_flag("--filter", text)?;
            }
            let path = format!("/v1/collections/{}/count", remote::segment(collection));
            let answer = remote::success(remote.read("POST", &path, Some(&body))?)?;
            answer["count"].as_u64().ok_or_else(|| {
                CliError::Http(format!("the node's count answer has no count: {answer}"))
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

/// A record as it came from a node's API: `vector` is read back as `f32` (exact: the node wrote
/// `f32` values), so remote and local output are the same bytes.
pub struct OwnedRecord {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Option<serde_json::Value>,
}

/// One page of `POST /v1/collections/{c}/scroll` with vectors (linearizable): the records and
/// the next cursor.
pub fn remote_scroll_page(
    remote: &Remote,
    collection: &str,
    filter: Option<&serde_json::Value>,
    cursor: Option<&str>,
    limit: u64,
) -> Result<(Vec<OwnedRecord>, Option<String>)> {
    let mut body = json!({"limit": limit, "include_vectors": true});
    if let Some(f) = filter {
        body["filter"] = f.clone();
    }
    if let Some(c) = cursor {
        body["cursor"] = json!(c);
    }
    let path = format!("/v1/collections/{}/scroll", remote::segment(collection));
    let page = remote::success(remote.read("POST", &path, Some(&body))?)?;
    let bad = |what: &str| CliError::Http(format!("the node's scroll page has {what}: {page}"));
    let records = page["records"]
        .as_array()
        .ok_or_else(|| bad("no records"))?
        .iter()
        .map(|r| {
            let id = r["id"]
                .as_str()
                .ok_or_else(|| bad("a record without an id"))?;
            let vector = r["vector"]
                .as_array()
                .ok_or_else(|| bad("a record without its vector"))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad("a vector that is not numbers"))?;
            let metadata = Some(r["metadata"].clone()).filter(|m| !m.is_null());
            Ok(OwnedRecord {
                id: id.to_string(),
                vector,
                metadata,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next = page["next_cursor"].as_str().map(str::to_string);
    Ok((records, next))
}

pub fn scroll(args: &ScrollArgs, json: bool) -> Result<()> {
    let filter = filter_flag(args.filter.as_ref())?;
    let (remote, file, values) = remote::reading_target(
        &args.remote,
        args.read_only,
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )?;
    let collection = &values[0];
    let (records, next_cursor) = match (remote, file) {
        (Some(remote), _) => {
            if args.limit > 10_000 {
                return Err(CliError::Usage(format!(
                    "--limit {} is more than a node's page limit (10000) with --http",
                    args.limit
                )));
            }
            let filter = match &args.filter {
                Some(t) => Some(parse_json_flag("--filter", t)?),
                None => None,
            };
            remote_scroll_page(
                &remote,
                collection,
                filter.as_ref(),
                args.cursor.as_deref(),
                args.limit,
            )?
        }
        (None, Some(file)) => {
            let db = open_for_reading(&file, args.read_only)?;
            let page = db.scroll(
                collection,
                filter.as_ref(),
                args.cursor.as_deref(),
                args.limit as usize,
            )?;
            let records = page
                .records
                .into_iter()
                .map(|r| OwnedRecord {
                    id: r.id,
                    vector: r.vector,
                    metadata: r.metadata,
                })
                .collect();
            (records, page.next_cursor)
        }
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    if json {
        let records: Vec<RecordJson> = records
            .iter()
            .map(|r| RecordJson {
                id: &r.id,
                vector: &r.vector,
                metadata: &r.metadata,
            })
            .collect();
        return output::print_json(&json!({"records": records, "next_cursor": next_cursor}));
    }
    let mut text = String::new();
    for r in &records {
        let meta = r
            .metadata
            .as_ref()
            .map_or("-".to_string(), |m| m.to_string());
        text.push_str(&format!("{}\t{meta}\n", r.id));
    }
    match &next_cursor {
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
