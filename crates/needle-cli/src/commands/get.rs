//! `needle get FILE COLLECTION ID`: one record.

use super::open_existing;
use crate::cli::GetArgs;
use crate::error::{CliError, Result};
use crate::output::{self, RecordJson};

pub fn run(args: &GetArgs, json: bool) -> Result<()> {
    let db = open_existing(&args.file)?;
    let record = db
        .get(&args.collection, &args.id)?
        .ok_or_else(|| CliError::RecordNotFound {
            collection: args.collection.clone(),
            id: args.id.clone(),
        })?;
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
