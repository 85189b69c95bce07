//! The local commands, one module each, all working on one `.needle` file through needle-core's
//! `Database`. Each command parses and checks its arguments before it opens the file for
//! writing, so a bad argument changes nothing.

pub mod backup;
pub mod check;
pub mod compact;
pub mod create;
pub mod delete;
pub mod export;
pub mod get;
pub mod import;
pub mod info;
pub mod insert;
pub mod repair;
pub mod search;
pub mod sets;

use std::path::{Path, PathBuf};

use needle_core::Database;
use serde_json::{Value, json};

use crate::error::{CliError, Result};

/// Opens a database that must already exist (only `create`, `import` and `demo` make new files).
pub fn open_existing(path: &Path) -> Result<Database> {
    if !path.is_file() {
        return Err(CliError::NoSuchDatabase(path.to_path_buf()));
    }
    Ok(Database::open(path)?)
}

/// Opens a database that must already exist for a command that only reads it: with
/// `read_only`, without its lock and without changing a byte (needle-core's
/// `Database::open_read_only`); without, an ordinary open whose `Locked` error points at
/// `--read-only`.
pub fn open_for_reading(path: &Path, read_only: bool) -> Result<Database> {
    if !path.is_file() {
        return Err(CliError::NoSuchDatabase(path.to_path_buf()));
    }
    if read_only {
        return Ok(Database::open_read_only(path)?);
    }
    Database::open(path).map_err(|e| match e {
        needle_core::Error::Locked { path } => CliError::Locked(path),
        e => e.into(),
    })
}

/// The files needle-core keeps beside `data.needle`.
pub fn sidecars(path: &Path) -> [PathBuf; 3] {
    ["-wal", "-lock", "-tmp"].map(|s| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(s);
        path.with_file_name(name)
    })
}

/// The size of the checkpoint and of its write-ahead log.
pub fn file_sizes(path: &Path) -> (u64, u64) {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (size(path), size(&sidecars(path)[0]))
}

/// Removes a database file that this command created, if the command fails before it finishes:
/// a failed `create` or `import` into a new file leaves nothing behind.
#[derive(Debug)]
pub struct NewFileGuard {
    path: Option<PathBuf>,
}

impl NewFileGuard {
    /// Arms the guard when `path` does not exist yet.
    pub fn new(path: &Path) -> NewFileGuard {
        NewFileGuard {
            path: (!path.exists()).then(|| path.to_path_buf()),
        }
    }

    /// Whether the file is new.
    pub fn is_new(&self) -> bool {
        self.path.is_some()
    }

    /// The command succeeded: keep the file.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for NewFileGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
            for p in sidecars(path) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// A collection's configuration as JSON.
pub fn config_json(info: &needle_core::CollectionInfo) -> Value {
    json!({
        "name": info.name,
        "dimensions": info.dimensions,
        "distance": distance_name(info.config.distance),
        "m": info.config.m,
        "ef_construction": info.config.ef_construction,
        "ef_search": info.config.ef_search,
        "quantization": info.config.quantization.name(),
        "count": info.count,
        "deleted": info.deleted,
        "indexes": info.indexes.iter().map(index_json).collect::<Vec<_>>(),
        "index_codes_bytes": info.index_codes_bytes,
    })
}

/// One payload index as `needle info --json` and the HTTP API show it.
pub fn index_json(i: &needle_core::IndexInfo) -> Value {
    json!({
        "path": i.path,
        "kind": i.kind.name(),
        "values": i.values,
        "indexed": i.indexed,
        "irregular": i.irregular,
        "memory_bytes": i.memory_bytes,
        "value_graphs": i.value_graphs,
        "value_graph_bytes": i.value_graph_bytes,
        "builds_value_graphs": i.builds_value_graphs,
    })
}

/// The name the command line uses for a distance.
pub fn distance_name(d: needle_core::Distance) -> &'static str {
    match d {
        needle_core::Distance::Cosine => "cosine",
        needle_core::Distance::Euclidean => "euclidean",
        needle_core::Distance::DotProduct => "dot",
    }
}

/// Parses a JSON flag value, naming the flag in the error.
pub fn parse_json_flag(flag: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| CliError::Usage(format!("{flag}: not valid JSON: {e}")))
}
