//! How results reach a person (aligned tables, sizes and durations in plain units) or a script
//! (one JSON document on stdout, chosen with `--json`).

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, Result};

/// A table printed with aligned columns; numeric-looking cells are right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..cols)
            .map(|i| {
                !self.rows.is_empty()
                    && self
                        .rows
                        .iter()
                        .all(|r| r.get(i).is_some_and(|c| c.parse::<f64>().is_ok()))
            })
            .collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                let last = i + 1 == r.len();
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    line.push_str("  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Prints text to stdout.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}

/// Prints one pretty JSON document to stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::io("encoding JSON", std::io::Error::other(e)))?;
    print(&format!("{text}\n"))
}

/// A record as `get --json` and `export` write it. Serialised from `f32` directly, so vectors
/// print in their shortest round-tripping form (`0.0738119`, not `0.07381190359592438`).
#[derive(Debug, Serialize)]
pub struct RecordJson<'a> {
    pub id: &'a str,
    pub vector: &'a [f32],
    pub metadata: &'a Option<Value>,
}

/// One search hit as `search --json` writes it.
#[derive(Debug, Serialize)]
pub struct HitJson<'a> {
    pub id: &'a str,
    pub distance: f32,
    pub metadata: &'a Option<Value>,
}

/// `6160000` → `"6.2 MB"`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in the unit that reads best: `850 µs`, `12.3 ms`, `4.56 s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Metadata as compact JSON, or `-` when there is none.
pub fn metadata(m: Option<&Value>) -> String {
    m.map_or_else(|| "-".to_string(), Value::to_string)
}

/// The first few components of a vector and its length, for a person.
pub fn vector_preview(v: &[f32]) -> String {
    let shown: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
    if v.len() > 6 {
        format!("[{}, … ({} values)]", shown.join(", "), v.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["id", "distance"]);
        t.row(vec!["king".into(), "0.5".into()]);
        t.row(vec!["queen".into(), "0.25".into()]);
        assert_eq!(
            t.render(),
            "id     distance\nking        0.5\nqueen      0.25\n"
        );
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(6_160_000), "6.2 MB");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_millis(1234)), "1.23 s");
    }
}
