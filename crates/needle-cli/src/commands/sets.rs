//! The set operations on one `.needle` file: `needle count`, `needle scroll` and
//! `needle index create|drop` (`needle delete --filter` and `needle export --filter` live with
//! their commands). Filters are parsed before the file is opened (or any request is sent), so a
//! bad one changes nothing. `count` and `scroll` also run on a cluster with `--http`.

use needle_core::{Filter, IndexKind};
use serde_json::{Value, json};

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
            let remote = crate::remote::Remote::from_args(&a.remote)?;
            let (file, v) = crate::cli::positionals(
                remote.is_some(),
                &a.file,
                &[
                    Some(a.collection.as_str()),
                    Some(a.path.as_str()),
                    a.kind.as_deref(),
                ],
                &["COLLECTION", "PATH", "KIND"],
            )
            .map_err(CliError::CommandLine)?;
            let (collection, path) = (&v[0], &v[1]);
            let kind: IndexKind = v[2].parse()?;
            // The new index as `needle info --json` shows it, if reported.
            let idx: Option<Value> = match (remote, file) {
                (Some(remote), _) => {
                    let url = format!(
                        "/v1/collections/{}/indexes",
                        crate::remote::segment(collection)
                    );
                    let mut body = json!({"path": path, "kind": kind.name()});
                    if a.no_value_graphs {
                        body["value_graphs"] = json!(false);
                    }
                    let answer =
                        crate::remote::success(remote.write("POST", &url, Some(&body))?)?;
                    Some(answer["index"].clone()).filter(Value::is_object)
                }
                (None, Some(file)) => {
                    let db = open_existing(&file)?;
                    let options = needle_core::IndexOptions::new().value_graphs(!a.no_value_graphs);
                    db.create_index_with(collection, path, kind, options)?;
                    db.checkpoint()?;
                    let info = db.collection_info(collection)?;
                    info.indexes
                        .iter()
                        .find(|i| &i.path == path)
                        .map(super::index_json)
                }
                (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
            };
            let field = |k: &str| idx.as_ref().map_or(Value::Null, |i| i[k].clone());
            if json {
                return output::print_json(&json!({
                    "created": path, "kind": kind.name(),
                    "values": field("values"), "indexed": field("indexed"),
                    "irregular": field("irregular"), "memory_bytes": field("memory_bytes"),
                    "value_graphs": field("value_graphs"),
                    "value_graph_bytes": field("value_graph_bytes"),
                    "builds_value_graphs": field("builds_value_graphs"),
                }));
            }
            let n = |k: &str| field(k).as_u64();
            let detail = match (n("indexed"), n("values"), n("irregular"), n("memory_bytes")) {
                (Some(indexed), Some(values), Some(irregular), Some(bytes)) => {
                    let graphs = match (field("builds_value_graphs").as_bool(), n("value_graphs")) {
                        (Some(false), _) => ", no value graphs (--no-value-graphs)".to_string(),
                        (_, Some(g)) => format!(
                            ", {g} value graphs ({:.1} KB)",
                            n("value_graph_bytes").unwrap_or(0) as f64 / 1e3
                        ),
                        _ => String::new(),
                    };
                    format!(
                        ": {indexed} records, {values} distinct values, {irregular} of another type, {:.1} KB{graphs}",
                        bytes as f64 / 1e3
                    )
                }
                _ => String::new(),
            };
            let article = if kind.name().starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            output::print(&format!(
                "created {article} {kind} index on '{path}' in '{collection}'{detail}\n"
            ))
        }
        IndexCommand::Drop(a) => {
            let remote = crate::remote::Remote::from_args(&a.remote)?;
            let (file, v) = crate::cli::positionals(
                remote.is_some(),
                &a.file,
                &[Some(a.collection.as_str()), a.path.as_deref()],
                &["COLLECTION", "PATH"],
            )
            .map_err(CliError::CommandLine)?;
            let (collection, path) = (&v[0], &v[1]);
            match (remote, file) {
                (Some(remote), _) => {
                    let url = format!(
                        "/v1/collections/{}/indexes/{}",
                        crate::remote::segment(collection),
                        crate::remote::segment(path)
                    );
                    crate::remote::success(remote.write("DELETE", &url, None)?)?;
                }
                (None, Some(file)) => {
                    let db = open_existing(&file)?;
                    db.drop_index(collection, path)?;
                    db.checkpoint()?;
                }
                (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
            }
            if json {
                return output::print_json(&json!({"dropped": path}));
            }
            output::print(&format!(
                "dropped the index on '{path}' in '{collection}'\n"
            ))
        }
    }
}
