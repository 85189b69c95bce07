//! `needle delete FILE COLLECTION ID...`: ids that are not there are reported, not an error
//! (deleting is idempotent), so a retried script does not fail. `needle delete FILE COLLECTION
//! --filter JSON` deletes every record matching the filter as one logged write.

use serde_json::json;

use super::open_existing;
use crate::cli::DeleteArgs;
use crate::error::Result;
use crate::output;

pub fn run(args: &DeleteArgs, json: bool) -> Result<()> {
    if let Some(filter) = super::sets::filter_flag(args.filter.as_ref())? {
        let db = open_existing(&args.file)?;
        let n = db.delete_by_filter(&args.collection, &filter)?;
        if json {
            return output::print_json(&json!({"deleted_count": n}));
        }
        return output::print(&format!(
            "deleted {n} records matching the filter from '{}'\n",
            args.collection
        ));
    }
    let db = open_existing(&args.file)?;
    // Check the collection before deleting anything, so a typo changes nothing.
    db.collection_info(&args.collection)?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    for id in &args.ids {
        if db.delete(&args.collection, id)? {
            deleted.push(id.clone());
        } else {
            missing.push(id.clone());
        }
    }
    if json {
        return output::print_json(&json!({"deleted": deleted, "not_found": missing}));
    }
    let mut text = format!(
        "deleted {} of {} from '{}'",
        deleted.len(),
        args.ids.len(),
        args.collection
    );
    if !missing.is_empty() {
        text.push_str(&format!("; not found: {}", missing.join(", ")));
    }
    text.push('\n');
    output::print(&text)
}
