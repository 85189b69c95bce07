//! NumPy `.npy` (format versions 1, 2 and 3): a 2-D little-endian float32 array in C order, the
//! shape `np.save` writes for `arr.astype(np.float32)`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{CliError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The rows of a 2-D float32 `.npy` array, streamed, each with its 0-based row number.
#[derive(Debug)]
pub struct NpyRows {
    path: PathBuf,
    reader: BufReader<File>,
    rows: u64,
    dim: usize,
    row: u64,
}

/// What the header says.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    rows: u64,
    dim: usize,
    data_offset: u64,
}

impl NpyRows {
    pub fn open(path: &Path) -> Result<NpyRows> {
        let file =
            File::open(path).map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| CliError::io(format!("reading the size of {}", path.display()), e))?
            .len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let header = read_header(&mut reader)
            .map_err(|(at, reason)| CliError::bad_input(path, at, reason))?;
        let expected = (header.rows)
            .checked_mul(header.dim as u64 * 4)
            .and_then(|n| n.checked_add(header.data_offset));
        if expected != Some(len) {
            return Err(CliError::bad_input(
                path,
                format!("byte offset {}", header.data_offset),
                format!(
                    "the header's shape ({}, {}) needs {} bytes of float32 data, the file has {}",
                    header.rows,
                    header.dim,
                    header.rows.saturating_mul(header.dim as u64 * 4),
                    len.saturating_sub(header.data_offset)
                ),
            ));
        }
        Ok(NpyRows {
            path: path.to_path_buf(),
            reader,
            rows: header.rows,
            dim: header.dim,
            row: 0,
        })
    }
}

impl Iterator for NpyRows {
    type Item = Result<(u64, Vec<f32>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row >= self.rows {
            return None;
        }
        let row = self.row;
        self.row += 1;
        let mut bytes = vec![0u8; self.dim * 4];
        if let Err(e) = self.reader.read_exact(&mut bytes) {
            self.row = self.rows;
            return Some(Err(CliError::io(
                format!("reading row {row} of {}", self.path.display()),
                e,
            )));
        }
        let v = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(Ok((row, v)))
    }
}

type HeaderError = (String, String);

fn read_header(r: &mut impl Read) -> std::result::Result<Header, HeaderError> {
    let at0 = || "byte offset 0".to_string();
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| (at0(), "too short to be a .npy file".to_string()))?;
    if &pre[..6] != MAGIC {
        return Err((at0(), "not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (major, minor) = (pre[6], pre[7]);
    let (len, prefix) = match major {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| (at0(), "the header length is cut off".to_string()))?;
            (u64::from(u16::from_le_bytes(b)), 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| (at0(), "the header length is cut off".to_string()))?;
            (u64::from(u32::from_le_bytes(b)), 12)
        }
        _ => {
            return Err((
                "byte offset 6".into(),
                format!("unsupported .npy format version {major}.{minor}"),
            ));
        }
    };
    if len > 1 << 20 {
        return Err((
            format!("byte offset {}", prefix - 4),
            format!("header length {len} is implausible"),
        ));
    }
    let mut text = vec![0u8; len as usize];
    r.read_exact(&mut text).map_err(|_| {
        (
            format!("byte offset {prefix}"),
            "the header is cut off".into(),
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    let at = format!("header at byte offset {prefix}");
    let (rows, dim) = parse_dict(&text).map_err(|reason| (at, reason))?;
    Ok(Header {
        rows,
        dim,
        data_offset: prefix + len,
    })
}

/// Reads `descr`, `fortran_order` and `shape` from the header's Python dict literal.
fn parse_dict(text: &str) -> std::result::Result<(u64, usize), String> {
    let value = |key: &str| -> std::result::Result<&str, String> {
        let k = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("the header has no '{key}'"))?;
        let rest = &text[k + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("'{key}' has no value"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = value("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("'descr' is not a string")?;
    match descr {
        "<f4" => {}
        ">f4" => return Err("big-endian float32: save with arr.astype('<f4')".into()),
        other => {
            return Err(format!(
                "dtype '{other}' is not float32: save with arr.astype(numpy.float32)"
            ));
        }
    }
    if value("fortran_order")?.starts_with("True") {
        return Err("Fortran order: save with numpy.ascontiguousarray(arr)".into());
    }
    let shape = value("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("'shape' is not a tuple")?;
    let dims: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| format!("shape entry '{s}'")))
        .collect::<std::result::Result<_, _>>()?;
    match dims[..] {
        [rows, dim] if dim > 0 && dim <= 1 << 16 => Ok((rows, dim as usize)),
        [_, dim] => Err(format!("{dim} columns is not a usable dimension")),
        _ => Err(format!(
            "the array is {}-D ({shape}); a 2-D array (rows, dimension) is needed",
            dims.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_numpy_writes() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4000, 384), }";
        assert_eq!(parse_dict(dict), Ok((4000, 384)));
    }

    #[test]
    fn refuses_other_dtypes_and_shapes() {
        let f8 = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";
        assert!(parse_dict(f8).unwrap_err().contains("float32"));
        let one_d = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
        assert!(parse_dict(one_d).unwrap_err().contains("2-D"));
        let fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }";
        assert!(parse_dict(fortran).unwrap_err().contains("Fortran"));
    }
}
