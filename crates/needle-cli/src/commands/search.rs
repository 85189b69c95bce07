//! `needle search FILE COLLECTION (--vector JSON | --id ID) [-k] [--ef] [--filter JSON]`.
//! `k` and `ef` are clamped to the collection's size: asking for more than every record returns
//! every record.

use std::time::Instant;

use needle_core::{Filter, SearchOptions};

use super::{open_existing, parse_json_flag};
use crate::cli::SearchArgs;
use crate::error::{CliError, Result};
use crate::output::{self, HitJson, Table};

pub fn run(args: &SearchArgs, json: bool) -> Result<()> {
    let mut opts = SearchOptions::new();
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
    let db = open_existing(&args.file)?;
    let query = match (given, &args.id) {
        (Some(v), _) => v,
        (None, Some(id)) => {
            db.get(&args.collection, id)?
                .ok_or_else(|| CliError::RecordNotFound {
                    collection: args.collection.clone(),
                    id: id.clone(),
                })?
                .vector
        }
        (None, None) => return Err(CliError::Usage("give --vector or --id".into())),
    };
    // A k or ef above the collection's size asks for nothing more than the whole collection:
    // clamp both to it, so that a huge value (`-k 1099511627776`) never sizes an allocation.
    let info = db.collection_info(&args.collection)?;
    let slots = (info.count + info.deleted).max(1);
    let k = args.k.min(info.count.max(1));
    if let Some(ef) = args.ef {
        opts = opts.with_ef_search(ef.min(slots.max(k)));
    }
    let t = Instant::now();
    let hits = db.search_with(&args.collection, &query, k, &opts)?;
    let took = t.elapsed();

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
