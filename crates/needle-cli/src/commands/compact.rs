//! `needle compact FILE [COLLECTION]`: rebuilds collections without their deleted records, then
//! writes a checkpoint so the file itself shrinks.

use std::time::Instant;

use serde_json::json;

use super::{file_sizes, open_existing};
use crate::cli::CompactArgs;
use crate::error::Result;
use crate::output;

pub fn run(args: &CompactArgs, json: bool) -> Result<()> {
    let db = open_existing(&args.file)?;
    let names = match &args.collection {
        Some(name) => {
            db.collection_info(name)?;
            vec![name.clone()]
        }
        None => db.list_collections(),
    };
    let (before, before_wal) = file_sizes(&args.file);
    let t = Instant::now();
    let mut reclaimed = Vec::new();
    for name in &names {
        let deleted = db.collection_info(name)?.deleted;
        db.compact(name)?;
        reclaimed.push((name.clone(), deleted));
    }
    db.checkpoint()?;
    drop(db);
    let took = t.elapsed();
    let (after, after_wal) = file_sizes(&args.file);
    if json {
        let per: Vec<_> = reclaimed
            .iter()
            .map(|(n, d)| json!({"collection": n, "removed": d}))
            .collect();
        return output::print_json(&json!({
            "collections": per,
            "bytes_before": before + before_wal,
            "bytes_after": after + after_wal,
            "seconds": took.as_secs_f64(),
        }));
    }
    let mut text = String::new();
    for (n, d) in &reclaimed {
        text.push_str(&format!(
            "compacted '{n}': removed {d} deleted or replaced records\n"
        ));
    }
    text.push_str(&format!(
        "{}: {} → {} in {}\n",
        args.file.display(),
        output::bytes(before + before_wal),
        output::bytes(after + after_wal),
        output::duration(took)
    ));
    output::print(&text)
}
