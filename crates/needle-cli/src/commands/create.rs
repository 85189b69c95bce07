//! `needle create FILE COLLECTION --dim N`: a new collection, in a new or existing file. With
//! `--http ADDR` (no FILE): on a cluster, through the leader, retried with one Idempotency-Key.

use needle_core::Database;
use serde_json::json;

use super::{NewFileGuard, config_json, distance_name};
use crate::cli::CreateArgs;
use crate::error::{CliError, Result};
use crate::output;
use crate::remote::{self, Remote};

/// Creates `collection` on the cluster (`POST /v1/collections`, one keyed write through the
/// leader); the answer's body. Shared with `import --http`, which creates a missing collection.
pub fn create_remote(
    remote: &Remote,
    collection: &str,
    dim: usize,
    config: &needle_core::CollectionConfig,
) -> Result<serde_json::Value> {
    let body = json!({
        "name": collection,
        "dimensions": dim,
        "distance": distance_name(config.distance),
        "m": config.m,
        "ef_construction": config.ef_construction,
        "ef_search": config.ef_search,
        "quantization": config.quantization.name(),
    });
    remote::success(remote.write("POST", "/v1/collections", Some(&body))?)
}

pub fn run(args: &CreateArgs, json: bool) -> Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    let (file, values) = crate::cli::positionals(
        remote.is_some(),
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )
    .map_err(CliError::CommandLine)?;
    let collection = &values[0];
    let config = args.params.to_config();
    // needle-core checks the name, dimension and configuration by its own
    // rules before the file (or the cluster) is touched.
    Database::check_collection(collection, args.dim, &config)?;
    let file = match (remote, file) {
        (Some(remote), _) => {
            let answer = create_remote(&remote, collection, args.dim, &config)?;
            let info = &answer["collection"];
            if json {
                return output::print_json(&json!({"collection": info}));
            }
            return output::print(&format!(
                "created collection '{}' on the cluster: {} dims, {}, m={}, ef_construction={}, ef_search={}{}\n",
                collection,
                info["dimensions"],
                info["distance"].as_str().unwrap_or("?"),
                info["m"],
                info["ef_construction"],
                info["ef_search"],
                match info["quantization"].as_str() {
                    None | Some("none") => String::new(),
                    Some(q) => format!(", quantization={q}"),
                },
            ));
        }
        (None, Some(file)) => file,
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    let args_file = &file;
    let guard = NewFileGuard::new(args_file);
    let db = Database::open(args_file)?;
    db.create_collection_with_config(collection, args.dim, config)?;
    db.checkpoint()?;
    let info = db.collection_info(collection)?;
    drop(db);
    let new_file = guard.is_new();
    guard.keep();
    if json {
        return output::print_json(&json!({
            "file": args_file,
            "created_file": new_file,
            "collection": config_json(&info),
        }));
    }
    output::print(&format!(
        "created collection '{}' in {}{}: {} dims, {}, m={}, ef_construction={}, ef_search={}{}\n",
        info.name,
        args_file.display(),
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
