//! Reading vectors from files: TEXMEX `.fvecs`, NumPy `.npy` and JSON Lines, as a stream of
//! records, each with its location in the file (row or line) for error messages.
//!
//! An import reads its input twice: [`scan`] checks every record (format, dimension, finite values,
//! ids, metadata) before the database is touched, so a bad file changes nothing; then
//! [`Input::records`] streams the same records into batches. Knows nothing of the database
//! beyond the rules a record must meet.

mod fvecs;
mod jsonl;
mod npy;

use std::fmt;
use std::path::{Path, PathBuf};

use needle_core::{Distance, Record};

use crate::cli::InputFormat;
use crate::error::{CliError, Result};

pub use fvecs::read_fvecs;

/// The longest id needle-core accepts, in bytes.
const MAX_ID_BYTES: usize = 1024;

/// Where a record sits in its file: a 0-based row (fvecs, npy) or a 1-based line (JSON Lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Row(u64),
    Line(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Row(r) => write!(f, "row {r}"),
            Location::Line(l) => write!(f, "line {l}"),
        }
    }
}

/// An input file with its format and, for fvecs and npy, an optional ids file.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub format: InputFormat,
    ids: Option<Vec<String>>,
}

/// What [`scan`] found: every record is valid and they all have `dim` dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub dim: usize,
}

/// One record and where it came from.
pub type Located = (Location, Record);

impl Input {
    /// Resolves the format (the flag, else the extension) and reads the ids file, if any.
    pub fn new(path: &Path, format: Option<InputFormat>, ids: Option<&Path>) -> Result<Input> {
        let format = match format {
            Some(f) => f,
            None => format_from_extension(path)?,
        };
        if !path.is_file() {
            return Err(CliError::Usage(format!(
                "input {} does not exist or is not a file",
                path.display()
            )));
        }
        let ids = match ids {
            None => None,
            Some(_) if format == InputFormat::Jsonl => {
                return Err(CliError::Usage(
                    "--ids applies to fvecs and npy; JSON Lines records carry their own \"id\""
                        .into(),
                ));
            }
            Some(p) => Some(read_ids(p)?),
        };
        Ok(Input {
            path: path.to_path_buf(),
            format,
            ids,
        })
    }

    /// A fresh pass over the records, in file order.
    pub fn records(&self) -> Result<Box<dyn Iterator<Item = Result<Located>> + '_>> {
        let rows: Box<dyn Iterator<Item = Result<(u64, Vec<f32>)>>> = match self.format {
            InputFormat::Jsonl => return Ok(Box::new(jsonl::JsonLines::open(&self.path)?)),
            InputFormat::Fvecs => Box::new(fvecs::FvecsRows::open(&self.path)?),
            InputFormat::Npy => Box::new(npy::NpyRows::open(&self.path)?),
        };
        Ok(Box::new(rows.map(move |row| {
            let (row, vector) = row?;
            let id = match &self.ids {
                None => row.to_string(),
                Some(ids) => ids.get(row as usize).cloned().ok_or_else(|| {
                    CliError::Usage(format!(
                        "the ids file has {} lines, fewer than the rows of {} (row {row} has no id)",
                        ids.len(),
                        self.path.display()
                    ))
                })?,
            };
            Ok((Location::Row(row), Record::new(id, vector, None)))
        })))
    }
}

/// Reads the whole input once and checks every record against the rules of a collection with
/// `distance` (and `expected_dim`, when the collection exists). Returns the count and dimension.
pub fn scan(input: &Input, distance: Distance, expected_dim: Option<usize>) -> Result<Summary> {
    let mut dim = expected_dim;
    let mut rows = 0u64;
    for item in input.records()? {
        let (at, record) = item?;
        let bad = |reason: String| CliError::bad_input(&input.path, at.to_string(), reason);
        match dim {
            None => dim = Some(record.vector.len()),
            Some(d) if d != record.vector.len() => {
                let expected = match expected_dim {
                    Some(_) => format!("the collection has {d}"),
                    None => format!("the first record has {d}"),
                };
                return Err(bad(format!(
                    "vector has dimension {}, {expected}",
                    record.vector.len()
                )));
            }
            Some(_) => {}
        }
        check_record(&record, distance).map_err(bad)?;
        rows += 1;
    }
    if let Some(ids) = input.ids.as_ref().filter(|ids| ids.len() as u64 != rows) {
        return Err(CliError::Usage(format!(
            "the ids file has {} lines but {} has {rows} rows",
            ids.len(),
            input.path.display()
        )));
    }
    match dim {
        Some(dim) if rows > 0 => Ok(Summary { rows, dim }),
        _ => Err(CliError::bad_input(
            &input.path,
            "end",
            "no records in the file",
        )),
    }
}

/// The per-record rules needle-core enforces, checked up front so that an import either fails
/// before writing anything or writes everything.
fn check_record(record: &Record, distance: Distance) -> std::result::Result<(), String> {
    if record.id.is_empty() {
        return Err("id is empty".into());
    }
    if record.id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id is {} bytes, the limit is {MAX_ID_BYTES}",
            record.id.len()
        ));
    }
    if record.vector.is_empty() {
        return Err("vector is empty".into());
    }
    if let Some(i) = record.vector.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "vector component {i} is {} (not a finite float32)",
            record.vector[i]
        ));
    }
    if distance == Distance::Cosine && record.vector.iter().all(|&x| x == 0.0) {
        return Err("vector is all zeros, which has no direction under cosine".into());
    }
    match &record.metadata {
        None | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err("metadata must be a JSON object".into()),
    }
}

fn format_from_extension(path: &Path) -> Result<InputFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("fvecs") => Ok(InputFormat::Fvecs),
        Some("npy") => Ok(InputFormat::Npy),
        Some("jsonl" | "ndjson" | "json") => Ok(InputFormat::Jsonl),
        _ => Err(CliError::Usage(format!(
            "cannot tell the format of {} from its extension; pass --format fvecs|npy|jsonl",
            path.display()
        ))),
    }
}

/// One id per line; a final newline is optional.
fn read_ids(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading ids file {}", path.display()), e))?;
    Ok(text.lines().map(str::to_string).collect())
}
