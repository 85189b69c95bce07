//! JSON Lines: one object per line, `{"id": "…", "vector": [numbers], "metadata": {…}}`.
//! `id` may also be an integer; `metadata` may be absent or null; blank lines are skipped; any
//! other field is an error (it is more likely a typo than something to ignore).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use needle_core::Record;
use serde::Deserialize;
use serde_json::Value;

use super::{Located, Location};
use crate::error::{CliError, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Id,
    vector: Vec<f32>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(i64),
}

/// The records of a JSON Lines file, streamed, each with its 1-based line number.
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: u64,
}

impl JsonLines {
    pub fn open(path: &Path) -> Result<JsonLines> {
        let file =
            File::open(path).map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            line: 0,
        })
    }
}

impl Iterator for JsonLines {
    type Item = Result<Located>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = self.lines.next()?;
            self.line += 1;
            let at = Location::Line(self.line);
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    return Some(Err(CliError::bad_input(
                        &self.path,
                        at.to_string(),
                        format!("unreadable: {e}"),
                    )));
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(
                parse_line(&text)
                    .map(|r| (at, r))
                    .map_err(|reason| CliError::bad_input(&self.path, at.to_string(), reason)),
            );
        }
    }
}

fn parse_line(text: &str) -> std::result::Result<Record, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| {
        // serde_json counts lines within this one line; keep only the column.
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => format!("{}, column {}", &msg[..i], e.column()),
            None => msg,
        }
    })?;
    let id = match line.id {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    };
    let metadata = line.metadata.filter(|m| !m.is_null());
    Ok(Record::new(id, line.vector, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_vectors_and_metadata() {
        let r = parse_line(r#"{"id": 7, "vector": [1, 2.5], "metadata": {"a": 1}}"#).unwrap();
        assert_eq!(r.id, "7");
        assert_eq!(r.vector, vec![1.0, 2.5]);
        assert_eq!(r.metadata, Some(serde_json::json!({"a": 1})));
        let r = parse_line(r#"{"id": "x", "vector": [1], "metadata": null}"#).unwrap();
        assert_eq!(r.metadata, None);
    }

    #[test]
    fn errors_name_the_problem_and_column() {
        let err = parse_line(r#"{"id": "x", "vectr": [1]}"#).unwrap_err();
        assert!(err.contains("unknown field `vectr`"), "{err}");
        assert!(err.contains("column"), "{err}");
        let err = parse_line(r#"{"id": "x"}"#).unwrap_err();
        assert!(err.contains("missing field `vector`"), "{err}");
    }
}
