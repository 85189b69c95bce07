//! TEXMEX `.fvecs`: per row a little-endian int32 dimension, then that many float32.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

/// Dimensions above this are taken as a sign that the file is not fvecs at all.
const MAX_DIM: i32 = 1 << 16;

/// The rows of an fvecs file, streamed, each with its 0-based row number.
#[derive(Debug)]
pub struct FvecsRows {
    path: PathBuf,
    reader: BufReader<File>,
    row: u64,
    offset: u64,
    done: bool,
}

impl FvecsRows {
    pub fn open(path: &Path) -> Result<FvecsRows> {
        let file =
            File::open(path).map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        Ok(FvecsRows {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            row: 0,
            offset: 0,
            done: false,
        })
    }

    fn bad(&self, reason: String) -> CliError {
        CliError::bad_input(
            &self.path,
            format!("row {} (byte offset {})", self.row, self.offset),
            reason,
        )
    }

    fn next_row(&mut self) -> Result<Option<Vec<f32>>> {
        let mut head = [0u8; 4];
        let got = read_full(&mut self.reader, &mut head)
            .map_err(|e| CliError::io(format!("reading {}", self.path.display()), e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < 4 {
            return Err(self.bad(format!(
                "the file ends inside the row's 4-byte dimension ({got} bytes left)"
            )));
        }
        let dim = i32::from_le_bytes(head);
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(self.bad(format!(
                "dimension {dim} is not in 1..={MAX_DIM}: not an fvecs file?"
            )));
        }
        let mut bytes = vec![0u8; dim as usize * 4];
        let got = read_full(&mut self.reader, &mut bytes)
            .map_err(|e| CliError::io(format!("reading {}", self.path.display()), e))?;
        if got < bytes.len() {
            return Err(self.bad(format!(
                "the file ends inside the row: its dimension {dim} needs {} bytes, {got} are left",
                bytes.len()
            )));
        }
        let vector = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.offset += 4 + bytes.len() as u64;
        self.row += 1;
        Ok(Some(vector))
    }
}

impl Iterator for FvecsRows {
    type Item = Result<(u64, Vec<f32>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let row = self.row;
        match self.next_row() {
            Ok(Some(v)) => Some(Ok((row, v))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads as many bytes as fit in `buf`, stopping early only at the end of the file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads a whole fvecs file; every row must have the same dimension.
pub fn read_fvecs(path: &Path) -> Result<Vec<Vec<f32>>> {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for item in FvecsRows::open(path)? {
        let (row, v) = item?;
        if let Some(first) = rows.first().filter(|f| f.len() != v.len()) {
            return Err(CliError::bad_input(
                path,
                format!("row {row}"),
                format!("dimension {} differs from row 0's {}", v.len(), first.len()),
            ));
        }
        rows.push(v);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(rows: &[&[f32]], extra: &[u8]) -> tempfile::NamedTempFile {
        let mut bytes = Vec::new();
        for r in rows {
            bytes.extend((r.len() as i32).to_le_bytes());
            for x in *r {
                bytes.extend(x.to_le_bytes());
            }
        }
        bytes.extend(extra);
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), bytes).expect("write temp file");
        f
    }

    #[test]
    fn reads_rows_in_order() {
        let f = write(&[&[1.0, 2.0], &[3.0, 4.0]], &[]);
        let rows = read_fvecs(f.path()).unwrap();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }

    #[test]
    fn a_truncated_row_names_its_row_and_offset() {
        let f = write(&[&[1.0, 2.0]], &[2, 0, 0, 0, 1, 2]);
        let err = read_fvecs(f.path()).unwrap_err().to_string();
        assert!(err.contains("row 1 (byte offset 12)"), "{err}");
        assert!(err.contains("ends inside the row"), "{err}");
    }

    #[test]
    fn a_mismatched_dimension_is_an_error() {
        let f = write(&[&[1.0, 2.0], &[3.0]], &[]);
        let err = read_fvecs(f.path()).unwrap_err().to_string();
        assert!(err.contains("row 1"), "{err}");
    }
}
