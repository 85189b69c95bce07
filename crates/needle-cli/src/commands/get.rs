//! `needle get FILE COLLECTION ID`: one record. With `--http ADDR` (no FILE): the record from a
//! cluster (`GET /v1/collections/{c}/records/{id}`, linearizable).

use needle_core::Record;

use super::open_for_reading;
use crate::cli::GetArgs;
use crate::error::{CliError, Result};
use crate::output::{self, RecordJson};
use crate::remote;

pub fn run(args: &GetArgs, json: bool) -> Result<()> {
    let (remote, file, values) = remote::reading_target(
        &args.remote,
        args.read_only,
        &args.file,
        &[Some(args.collection.as_str()), args.id.as_deref()],
        &["COLLECTION", "ID"],
    )?;
    let (collection, id) = (&values[0], &values[1]);
    let not_found = || CliError::RecordNotFound {
        collection: collection.clone(),
        id: id.clone(),
    };
    let record = match (remote, file) {
        (Some(remote), _) => {
            let path = format!(
                "/v1/collections/{}/records/{}",
                remote::segment(collection),
                remote::segment(id)
            );
            let r = remote.read("GET", &path, None)?;
            if r.error_code() == Some("record_not_found") {
                return Err(not_found());
            }
            let body = remote::success(r)?;
            let r: RemoteRecord = serde_json::from_value(body)
                .map_err(|e| CliError::Http(format!("the node's record: {e}")))?;
            Record::new(r.id, r.vector, r.metadata)
        }
        (None, Some(file)) => open_for_reading(&file, args.read_only)?
            .get(collection, id)?
            .ok_or_else(not_found)?,
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    if json {
        return output::print_json(&RecordJson {
            id: &record.id,
            vector: &record.vector,
            metadata: &record.metadata,
        });
    }
    output::print(&format!(
        "id        {}\nmetadata  {}\nvector    {}\n",
        record.id,
        output::metadata(record.metadata.as_ref()),
        output::vector_preview(&record.vector),
    ))
}

/// A record as the HTTP API answers it.
#[derive(serde::Deserialize)]
struct RemoteRecord {
    id: String,
    vector: Vec<f32>,
    metadata: Option<serde_json::Value>,
}
