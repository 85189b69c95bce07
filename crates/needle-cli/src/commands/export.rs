//! `needle export FILE COLLECTION [--output F]`: every record as JSON Lines, the shape `import`
//! reads back. Vectors are as stored: under cosine, normalised to unit length. `--filter JSON`
//! exports only the matching records (in id order, page by page).

use std::fs::File;
use std::io::{BufWriter, Write};

use super::open_for_reading;
use crate::cli::{ExportArgs, ExportFormat};
use crate::error::{CliError, Result};
use crate::output::RecordJson;

pub fn run(args: &ExportArgs, _json: bool) -> Result<()> {
    let ExportFormat::Jsonl = args.format;
    let filter = super::sets::filter_flag(args.filter.as_ref())?;
    let db = open_for_reading(&args.file, args.read_only)?;
    let ids = match &filter {
        None => db.ids(&args.collection)?,
        Some(f) => {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = db.scroll(&args.collection, Some(f), cursor.as_deref(), 10_000)?;
                ids.extend(page.records.into_iter().map(|r| r.id));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            ids
        }
    };
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
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let io = |e| CliError::io(format!("writing to {name}"), e);
    for id in &ids {
        // A record deleted since `ids` was taken is simply skipped.
        let Some(r) = db.get(&args.collection, id)? else {
            continue;
        };
        let line = RecordJson {
            id: &r.id,
            vector: &r.vector,
            metadata: &r.metadata,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)?;
    if args.output.is_some() {
        eprintln!(
            "exported {} records from '{}' to {name}",
            ids.len(),
            args.collection
        );
    }
    Ok(())
}
