//! `needle create FILE COLLECTION --dim N`: a new collection, in a new or existing file.

use needle_core::Database;
use serde_json::json;

use super::{NewFileGuard, config_json, distance_name};
use crate::cli::CreateArgs;
use crate::error::Result;
use crate::output;

pub fn run(args: &CreateArgs, json: bool) -> Result<()> {
    let config = args.params.to_config();
    // needle-core checks the name, dimension and configuration by its own
    // rules before the file is touched.
    Database::check_collection(&args.collection, args.dim, &config)?;
    let guard = NewFileGuard::new(&args.file);
    let db = Database::open(&args.file)?;
    db.create_collection_with_config(&args.collection, args.dim, config)?;
    db.checkpoint()?;
    let info = db.collection_info(&args.collection)?;
    drop(db);
    let new_file = guard.is_new();
    guard.keep();
    if json {
        return output::print_json(&json!({
            "file": args.file,
            "created_file": new_file,
            "collection": config_json(&info),
        }));
    }
    output::print(&format!(
        "created collection '{}' in {}{}: {} dims, {}, m={}, ef_construction={}, ef_search={}{}\n",
        info.name,
        args.file.display(),
        if new_file { " (new file)" } else { "" },
        info.dimensions,
        distance_name(info.config.distance),
        info.config.m,
        info.config.ef_construction,
        info.config.ef_search,
        match info.config.quantization {
            needle_core::Quantization::None => String::new(),
            q => format!(", quantization={}", q.name()),
        },
    ))
}
