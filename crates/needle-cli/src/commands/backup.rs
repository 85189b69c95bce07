//! `needle backup --http ADDR FILE`: a running cluster's database as a new `.needle` file, from
//! `GET /v1/snapshot` (a consistent snapshot taken after a linearizable read barrier). The bytes
//! are checked before anything is written: they must decode as a database whose state checksum
//! equals the one the node sent. The file is then written whole, fsynced, and only then given
//! its name (a failed backup leaves no file).

use std::io::Write;

use needle_core::Database;
use serde_json::json;

use crate::cli::BackupArgs;
use crate::error::{CliError, Result};
use crate::output;

pub fn run(args: &BackupArgs, json: bool) -> Result<()> {
    if args.file.exists() {
        return Err(CliError::Usage(format!(
            "{} exists; give a new file (backup never overwrites)",
            args.file.display()
        )));
    }
    let client = crate::cluster::client_for(
        args.http,
        args.token_file.as_deref(),
        args.tls_ca.as_deref(),
    )?
    .with_timeout(std::time::Duration::from_secs(600));
    let r = client
        .get_raw("/v1/snapshot")
        .map_err(|e| CliError::Http(format!("GET http://{}/v1/snapshot: {e}", args.http)))?;
    if r.status != 200 {
        let text = String::from_utf8_lossy(&r.body);
        return Err(CliError::Http(format!(
            "GET http://{}/v1/snapshot answered {}: {}",
            args.http,
            r.status,
            text.trim()
        )));
    }
    let header = |name: &str| {
        r.header(name)
            .map(str::to_string)
            .ok_or_else(|| CliError::Http(format!("the snapshot came without its {name} header")))
    };
    let (term, index, checksum) = (
        header("needle-raft-term")?,
        header("needle-raft-index")?,
        header("needle-state-checksum")?,
    );
    // Decode it whole and compare checksums before writing anything.
    let check = Database::in_memory();
    check.restore_snapshot(&mut r.body.as_slice())?;
    let got = format!("{:016x}", check.state_checksum());
    if got != checksum {
        return Err(CliError::Http(format!(
            "the snapshot's state checksum is {got}, the node said {checksum}: not written"
        )));
    }
    let collections = check.list_collections();
    drop(check);
    let dir = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| CliError::io(format!("creating a temporary file in {}", dir.display()), e))?;
    tmp.write_all(&r.body)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| CliError::io(format!("writing {}", args.file.display()), e))?;
    tmp.persist_noclobber(&args.file)
        .map_err(|e| CliError::io(format!("naming {}", args.file.display()), e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    if json {
        return output::print_json(&json!({
            "ok": true,
            "file": args.file,
            "bytes": r.body.len(),
            "raft_term": term.parse::<u64>().ok(),
            "raft_index": index.parse::<u64>().ok(),
            "state_checksum": checksum,
            "collections": collections,
        }));
    }
    output::print(&format!(
        "backed up {} ({}, {} collection{}) as of Raft index {index} (term {term}); state checksum {checksum}\n",
        args.file.display(),
        output::bytes(r.body.len() as u64),
        collections.len(),
        if collections.len() == 1 { "" } else { "s" },
    ))
}
