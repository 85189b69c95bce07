//! `needle delete FILE COLLECTION ID...`: ids that are not there are reported, not an error
//! (deleting is idempotent), so a retried script does not fail. `needle delete FILE COLLECTION
//! --filter JSON` deletes every record matching the filter as one logged write. With `--http
//! ADDR` (no FILE): the ids are deleted on a cluster, one keyed write each, through the leader;
//! `--filter` there is one keyed `delete-by-filter` write.

use std::path::PathBuf;

use serde_json::json;

use super::open_existing;
use crate::cli::DeleteArgs;
use crate::error::{CliError, Result};
use crate::output;
use crate::remote::{self, Remote};

pub fn run(args: &DeleteArgs, json: bool) -> Result<()> {
    let remote = Remote::from_args(&args.remote)?;
    // With --http there is no FILE: what clap took for it is the collection, and so on.
    let (file, collection, ids): (Option<PathBuf>, String, Vec<String>) = match &remote {
        Some(_) => {
            let mut rest = args.collection.iter().chain(&args.ids).cloned();
            let first = rest.next();
            (
                None,
                args.file.to_string_lossy().into_owned(),
                first.into_iter().chain(rest).collect(),
            )
        }
        None => (
            Some(args.file.clone()),
            args.collection
                .clone()
                .ok_or_else(|| CliError::CommandLine("missing <COLLECTION>".into()))?,
            args.ids.clone(),
        ),
    };
    match (args.filter.is_some(), ids.is_empty()) {
        (true, false) => {
            return Err(CliError::CommandLine(
                "<IDS> cannot be used with --filter".into(),
            ));
        }
        (false, true) => {
            return Err(CliError::CommandLine(
                "missing <IDS>: give the ids to delete, or --filter".into(),
            ));
        }
        _ => {}
    }
    let file = match (remote, file) {
        (Some(remote), _) => return run_remote(&remote, &collection, &ids, args, json),
        (None, Some(file)) => file,
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    if let Some(filter) = super::sets::filter_flag(args.filter.as_ref())? {
        let db = open_existing(&file)?;
        let n = db.delete_by_filter(&collection, &filter)?;
        return print_deleted_by_filter(&collection, n as u64, json);
    }
    let db = open_existing(&file)?;
    // Check the collection before deleting anything, so a typo changes nothing.
    db.collection_info(&collection)?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    for id in &ids {
        if db.delete(&collection, id)? {
            deleted.push(id.clone());
        } else {
            missing.push(id.clone());
        }
    }
    print_deleted(&collection, ids.len(), deleted, missing, json)
}

/// `--http`: checks the collection, then `DELETE /v1/collections/{c}/records/{id}` per id (each
/// its own keyed write; `existed` says whether it was there).
fn run_remote(
    remote: &Remote,
    collection: &str,
    ids: &[String],
    args: &DeleteArgs,
    json: bool,
) -> Result<()> {
    let c = remote::segment(collection);
    if let Some(text) = &args.filter {
        // Checked here first: a bad filter sends nothing.
        super::sets::filter_flag(Some(text))?;
        let body = json!({"filter": super::parse_json_flag("--filter", text)?});
        let path = format!("/v1/collections/{c}/delete-by-filter");
        let answer = remote::success(remote.write("POST", &path, Some(&body))?)?;
        let n = answer["deleted_count"].as_u64().ok_or_else(|| {
            CliError::Http(format!("the node's answer has no deleted_count: {answer}"))
        })?;
        return print_deleted_by_filter(collection, n, json);
    }
    remote::success(remote.read("GET", &format!("/v1/collections/{c}"), None)?)?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        let path = format!("/v1/collections/{c}/records/{}", remote::segment(id));
        let answer = remote::success(remote.write("DELETE", &path, None)?)?;
        if answer["existed"] == json!(false) {
            missing.push(id.clone());
        } else {
            deleted.push(id.clone());
        }
    }
    print_deleted(collection, ids.len(), deleted, missing, json)
}

fn print_deleted_by_filter(collection: &str, n: u64, json: bool) -> Result<()> {
    if json {
        return output::print_json(&json!({"deleted_count": n}));
    }
    output::print(&format!(
        "deleted {n} records matching the filter from '{collection}'\n"
    ))
}

fn print_deleted(
    collection: &str,
    asked: usize,
    deleted: Vec<String>,
    missing: Vec<String>,
    json: bool,
) -> Result<()> {
    if json {
        return output::print_json(&json!({"deleted": deleted, "not_found": missing}));
    }
    let mut text = format!("deleted {} of {asked} from '{collection}'", deleted.len(),);
    if !missing.is_empty() {
        text.push_str(&format!("; not found: {}", missing.join(", ")));
    }
    text.push('\n');
    output::print(&text)
}
