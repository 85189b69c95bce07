//! `needle search FILE COLLECTION (--vector JSON | --id ID) [-k] [--ef] [--filter JSON]`.
//! `k` and `ef` are clamped to the collection's size: asking for more than every record returns
//! every record.

use std::path::Path;
use std::time::{Duration, Instant};

use needle_core::{Filter, SearchOptions};

use super::{open_for_reading, parse_json_flag};
use crate::cli::SearchArgs;
use crate::error::{CliError, Result};
use crate::output::{self, HitJson, Table};
use crate::remote::{self, Remote};

pub fn run(args: &SearchArgs, json: bool) -> Result<()> {
    let (remote, file, values) = remote::reading_target(
        &args.remote,
        args.read_only,
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )?;
    let collection = &values[0];
    match (remote, file) {
        (Some(remote), _) => run_remote(args, &remote, collection, json),
        (None, Some(file)) => run_local(args, &file, collection, json),
        (None, None) => Err(CliError::CommandLine("missing FILE".into())),
    }
}

/// `--http`: `POST /v1/collections/{c}/search`, printed as the local search prints.
fn run_remote(args: &SearchArgs, remote: &Remote, collection: &str, json: bool) -> Result<()> {
    let mut body = serde_json::Map::new();
    if let Some(text) = &args.vector {
        let v: Vec<f32> = serde_json::from_str(text)
            .map_err(|e| CliError::Usage(format!("--vector: not a JSON array of numbers: {e}")))?;
        body.insert("vector".into(), serde_json::json!(v));
    }
    if let Some(id) = &args.id {
        body.insert("id".into(), id.clone().into());
    }
    if let Some(text) = &args.filter {
        // Parsed here too, so a bad filter is the same usage error as on a file.
        let filter = parse_json_flag("--filter", text)?;
        Filter::parse(&filter)?;
        body.insert("filter".into(), filter);
    }
    // The node caps k and ef at 10,000; above a collection's size they change nothing.
    body.insert("k".into(), args.k.min(MAX_K).into());
    if let Some(ef) = args.ef {
        body.insert("ef".into(), ef.min(MAX_K).into());
    }
    let path = format!("/v1/collections/{}/search", remote::segment(collection));
    let answer = remote::success(remote.read("POST", &path, Some(&body.into()))?)?;
    let hits: Vec<Hit> = serde_json::from_value(answer["results"].clone())
        .map_err(|e| CliError::Http(format!("the node's search answer: {e}")))?;
    let took = Duration::from_secs_f64(answer["took_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1e3);
    print_hits(&hits, took, json)
}

/// A hit as the HTTP API answers it.
#[derive(serde::Deserialize)]
struct Hit {
    id: String,
    distance: f32,
    metadata: Option<serde_json::Value>,
}

/// The HTTP API's cap on `k` and `ef`.
const MAX_K: usize = 10_000;

fn run_local(args: &SearchArgs, file: &Path, collection: &str, json: bool) -> Result<()> {
    let mut opts = SearchOptions::new();
    if let Some(t) = args.score_threshold {
        if t.is_nan() {
            return Err(needle_core::Error::InvalidArgument {
                what: "--score-threshold".into(),
                reason: "is not a number".into(),
            }
            .into());
        }
        opts = opts.with_score_threshold(t);
    }
    if let Some(text) = &args.filter {
        opts = opts.with_filter(Filter::parse(&parse_json_flag("--filter", text)?)?);
    }
    let given: Option<Vec<f32>> =
        match &args.vector {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                CliError::Usage(format!("--vector: not a JSON array of numbers: {e}"))
            })?),
            None => None,
        };
    let db = open_for_reading(file, args.read_only)?;
    let query = match (given, &args.id) {
        (Some(v), _) => v,
        (None, Some(id)) => {
            db.get(collection, id)?
                .ok_or_else(|| CliError::RecordNotFound {
                    collection: collection.to_string(),
                    id: id.clone(),
                })?
                .vector
        }
        (None, None) => return Err(CliError::Usage("give --vector or --id".into())),
    };
    // A k or ef above the collection's size asks for nothing more than the whole collection:
    // clamp both to it, so that a huge value (`-k 1099511627776`) never sizes an allocation.
    let info = db.collection_info(collection)?;
    let slots = (info.count + info.deleted).max(1);
    let k = args.k.min(info.count.max(1));
    if let Some(ef) = args.ef {
        opts = opts.with_ef_search(ef.min(slots.max(k)));
    }
    let t = Instant::now();
    let hits = db.search_with(collection, &query, k, &opts)?;
    let took = t.elapsed();
    let hits: Vec<Hit> = hits
        .into_iter()
        .map(|h| Hit {
            id: h.id,
            distance: h.distance,
            metadata: h.metadata,
        })
        .collect();
    print_hits(&hits, took, json)
}

fn print_hits(hits: &[Hit], took: Duration, json: bool) -> Result<()> {
    if json {
        let results: Vec<_> = hits
            .iter()
            .map(|h| HitJson {
                id: &h.id,
                distance: h.distance,
                metadata: &h.metadata,
            })
            .collect();
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            results: Vec<HitJson<'a>>,
            took_ms: f64,
        }
        return output::print_json(&Answer {
            results,
            took_ms: took.as_secs_f64() * 1e3,
        });
    }
    let mut table = Table::new(&["rank", "id", "distance", "metadata"]);
    for (i, h) in hits.iter().enumerate() {
        table.row(vec![
            (i + 1).to_string(),
            h.id.clone(),
            format!("{:.4}", h.distance),
            output::metadata(h.metadata.as_ref()),
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "{} results in {}\n",
        hits.len(),
        output::duration(took)
    ));
    output::print(&text)
}
