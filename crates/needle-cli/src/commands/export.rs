//! `needle export FILE COLLECTION [--output F]`: every record as JSON Lines, the shape `import`
//! reads back. Vectors are as stored: under cosine, normalised to unit length. `--filter JSON`
//! exports only the matching records (in id order, page by page). With `--http ADDR` (no FILE),
//! the same lines from a cluster, page by page.

use std::fs::File;
use std::io::{BufWriter, Write};

use super::open_for_reading;
use super::sets::remote_scroll_page;
use crate::cli::{ExportArgs, ExportFormat};
use crate::error::{CliError, Result};
use crate::output::RecordJson;
use crate::remote::{self, Remote};

/// Where the lines go: a new file (never overwritten) or stdout.
fn open_sink(args: &ExportArgs) -> Result<(BufWriter<Box<dyn Write>>, String)> {
    let (sink, name): (Box<dyn Write>, String) = match &args.output {
        Some(path) => {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| CliError::io(format!("creating {}", path.display()), e))?;
            (Box::new(file), path.display().to_string())
        }
        None => (Box::new(std::io::stdout().lock()), "stdout".into()),
    };
    Ok((BufWriter::with_capacity(1 << 20, sink), name))
}

fn write_line(out: &mut impl Write, name: &str, r: &RecordJson) -> Result<()> {
    let io = |e| CliError::io(format!("writing to {name}"), e);
    serde_json::to_writer(&mut *out, r).map_err(|e| io(e.into()))?;
    out.write_all(b"\n").map_err(io)
}

pub fn run(args: &ExportArgs, _json: bool) -> Result<()> {
    let ExportFormat::Jsonl = args.format;
    let filter = super::sets::filter_flag(args.filter.as_ref())?;
    let (remote, file, values) = remote::reading_target(
        &args.remote,
        args.read_only,
        &args.file,
        &[args.collection.as_deref()],
        &["COLLECTION"],
    )?;
    let collection = &values[0];
    let exported = match (remote, file) {
        (Some(remote), _) => export_remote(&remote, collection, args)?,
        (None, Some(file)) => export_file(&file, collection, filter.as_ref(), args)?,
        (None, None) => return Err(CliError::CommandLine("missing FILE".into())),
    };
    if let Some((n, name)) = exported.filter(|_| args.output.is_some()) {
        eprintln!("exported {n} records from '{collection}' to {name}");
    }
    Ok(())
}

/// `--http`: the collection page by page (`POST …/scroll`, 1000 records a page, each page a
/// linearizable read), in id order. Not one point in time: a record written during the export
/// may or may not be in it (`needle backup` is the consistent copy).
fn export_remote(
    remote: &Remote,
    collection: &str,
    args: &ExportArgs,
) -> Result<Option<(usize, String)>> {
    let filter = match &args.filter {
        Some(t) => Some(super::parse_json_flag("--filter", t)?),
        None => None,
    };
    // The first page before the output file is created: a missing collection creates nothing.
    let mut page = remote_scroll_page(remote, collection, filter.as_ref(), None, 1000)?;
    let (mut out, name) = open_sink(args)?;
    let mut n = 0;
    loop {
        let (records, next) = page;
        for r in &records {
            let line = RecordJson {
                id: &r.id,
                vector: &r.vector,
                metadata: &r.metadata,
            };
            write_line(&mut out, &name, &line)?;
            n += 1;
        }
        match next {
            Some(c) => {
                page = remote_scroll_page(remote, collection, filter.as_ref(), Some(&c), 1000)?
            }
            None => break,
        }
    }
    out.flush()
        .map_err(|e| CliError::io(format!("writing to {name}"), e))?;
    Ok(Some((n, name)))
}

fn export_file(
    file: &std::path::Path,
    collection: &str,
    filter: Option<&needle_core::Filter>,
    args: &ExportArgs,
) -> Result<Option<(usize, String)>> {
    let db = open_for_reading(file, args.read_only)?;
    let ids = match filter {
        None => db.ids(collection)?,
        Some(f) => {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = db.scroll(collection, Some(f), cursor.as_deref(), 10_000)?;
                ids.extend(page.records.into_iter().map(|r| r.id));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            ids
        }
    };
    let (mut out, name) = open_sink(args)?;
    for id in &ids {
        // A record deleted since `ids` was taken is simply skipped.
        let Some(r) = db.get(collection, id)? else {
            continue;
        };
        let line = RecordJson {
            id: &r.id,
            vector: &r.vector,
            metadata: &r.metadata,
        };
        write_line(&mut out, &name, &line)?;
    }
    out.flush()
        .map_err(|e| CliError::io(format!("writing to {name}"), e))?;
    Ok(Some((ids.len(), name)))
}
