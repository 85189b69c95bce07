//! `needle insert FILE COLLECTION ID --vector JSON [--metadata JSON]`: inserts one record (a
//! record with the same id is replaced). With `--http ADDR` (no FILE): on a cluster, through
//! the leader, retried with one Idempotency-Key until it has an outcome.

use serde_json::{Value, json};

use super::{open_existing, parse_json_flag};
use crate::cli::{InsertArgs, positionals};
use crate::error::{CliError, Result};
use crate::output;
use crate::remote::{self, Remote};

pub fn run(args: &InsertArgs, json: bool) -> Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    let (file, values) = positionals(
        remote.is_some(),
        &args.file,
        &[Some(args.collection.as_str()), args.id.as_deref()],
        &["COLLECTION", "ID"],
    )
    .map_err(CliError::CommandLine)?;
    let (collection, id) = (&values[0], &values[1]);
    let vector: Vec<f32> = serde_json::from_str(&args.vector)
        .map_err(|e| CliError::Usage(format!("--vector: not a JSON array of numbers: {e}")))?;
    let metadata: Option<Value> = args
        .metadata
        .as_deref()
        .map(|m| parse_json_flag("--metadata", m))
        .transpose()?;
    match (remote, file) {
        (Some(remote), _) => {
            let path = format!("/v1/collections/{}/records", remote::segment(collection));
            let mut body = json!({"id": id, "vector": vector});
            if let Some(m) = metadata {
                body["metadata"] = m;
            }
            remote::success(remote.write("POST", &path, Some(&body))?)?;
        }
        (None, Some(file)) => {
            let db = open_existing(&file)?;
            db.insert(collection, id, vector, metadata)?;
        }
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    }
    if json {
        return output::print_json(&json!({"inserted": id, "collection": collection}));
    }
    output::print(&format!("inserted '{id}' into '{collection}'\n"))
}
