//! TEXMEX `.fvecs` / `.ivecs` files: read and write them as a dense row-major matrix.
//!
//! The format: per row, a little-endian `i32` count `d`, then `d` little-endian values (`f32` in
//! `.fvecs`, `i32` in `.ivecs`). Every row of a file must have the same `d`.
//!
//! Self-contained on purpose (only `std` and `thiserror`, its own [`VecsError`]): copy this file
//! into another crate (needle-cli, a test) and it works there unchanged. It knows nothing of
//! Needle, metrics or ground truth.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What went wrong reading or writing a TEXMEX file, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VecsError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes are not a well-formed TEXMEX file.
    #[error("{path}: at byte {offset}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset of the row header or value that is wrong.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A matrix handed in to build or write is not rectangular.
    #[error("invalid matrix: {reason}")]
    InvalidShape {
        /// What is wrong.
        reason: String,
    },
}

/// A value type a TEXMEX file can hold: `f32` (`.fvecs`) or `i32` (`.ivecs`).
pub trait Element: Copy + Default + std::fmt::Debug {
    /// Decodes one little-endian value.
    fn from_le(bytes: [u8; 4]) -> Self;
    /// Encodes one value as little-endian bytes.
    fn to_le(self) -> [u8; 4];
}

impl Element for f32 {
    fn from_le(bytes: [u8; 4]) -> Self {
        f32::from_le_bytes(bytes)
    }
    fn to_le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

impl Element for i32 {
    fn from_le(bytes: [u8; 4]) -> Self {
        i32::from_le_bytes(bytes)
    }
    fn to_le(self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

/// A dense row-major matrix: `len()` rows of `dim()` values each.
///
/// ```
/// use needle_benches::Vecs;
/// let m = Vecs::from_flat(2, vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
/// assert_eq!(m.len(), 2);
/// assert_eq!(m.row(1), &[3.0, 4.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vecs<T> {
    dim: usize,
    data: Vec<T>,
}

impl<T: Element> Vecs<T> {
    /// A matrix of rows of `dim` values from `data` (row after row); `data.len()` must be a
    /// multiple of `dim`, and `dim` positive.
    pub fn from_flat(dim: usize, data: Vec<T>) -> Result<Self, VecsError> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(VecsError::InvalidShape {
                reason: format!("{} values do not make rows of {dim}", data.len()),
            });
        }
        Ok(Vecs { dim, data })
    }

    /// A matrix from rows that must all have the same, positive length.
    pub fn from_rows<R: AsRef<[T]>>(rows: &[R]) -> Result<Self, VecsError> {
        let dim = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(dim * rows.len());
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != dim {
                return Err(VecsError::InvalidShape {
                    reason: format!("row {i} has {} values, row 0 has {dim}", r.len()),
                });
            }
            data.extend_from_slice(r);
        }
        Self::from_flat(dim, data)
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`. Panics if `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, T> {
        self.data.chunks_exact(self.dim)
    }

    /// All values, row after row.
    pub fn as_flat(&self) -> &[T] {
        &self.data
    }

    /// Keeps only the first `n` rows (all of them if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        self.data.truncate(n.saturating_mul(self.dim));
    }

    /// Keeps only the first `n` values of each row (`1 <= n <= dim`); e.g. the top k of a
    /// ground-truth file that holds 100 ids per query.
    pub fn truncate_columns(&mut self, n: usize) -> Result<(), VecsError> {
        if n == 0 || n > self.dim {
            return Err(VecsError::InvalidShape {
                reason: format!("cannot keep {n} of {} columns", self.dim),
            });
        }
        if n < self.dim {
            self.data = self.rows().flat_map(|r| &r[..n]).copied().collect();
            self.dim = n;
        }
        Ok(())
    }
}

/// Reads a whole `.fvecs` file.
pub fn read_fvecs(path: impl AsRef<Path>) -> Result<Vecs<f32>, VecsError> {
    read_vecs(path.as_ref(), None)
}

/// Reads a whole `.ivecs` file.
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<Vecs<i32>, VecsError> {
    read_vecs(path.as_ref(), None)
}

/// Reads at most the first `max_rows` rows of a TEXMEX file (`f32` or `i32`, by the type asked).
pub fn read_vecs_head<T: Element>(
    path: impl AsRef<Path>,
    max_rows: usize,
) -> Result<Vecs<T>, VecsError> {
    read_vecs(path.as_ref(), Some(max_rows))
}

/// Writes `m` as a `.fvecs` file, replacing any file at `path`.
pub fn write_fvecs(path: impl AsRef<Path>, m: &Vecs<f32>) -> Result<(), VecsError> {
    write_vecs(path.as_ref(), m)
}

/// Writes `m` as an `.ivecs` file, replacing any file at `path`.
pub fn write_ivecs(path: impl AsRef<Path>, m: &Vecs<i32>) -> Result<(), VecsError> {
    write_vecs(path.as_ref(), m)
}

/// Writes rows of possibly different lengths as an `.ivecs` file (each row carries its own count;
/// readers of this module need them all equal, other readers may not).
pub fn write_ivecs_rows<R: AsRef<[i32]>>(
    path: impl AsRef<Path>,
    rows: &[R],
) -> Result<(), VecsError> {
    let path = path.as_ref();
    let io_err = |source| VecsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(io_err)?);
    for r in rows {
        let r = r.as_ref();
        let count = i32::try_from(r.len()).map_err(|_| VecsError::InvalidShape {
            reason: format!("a row of {} values does not fit an i32 count", r.len()),
        })?;
        w.write_all(&count.to_le_bytes()).map_err(io_err)?;
        for v in r {
            w.write_all(&v.to_le_bytes()).map_err(io_err)?;
        }
    }
    w.flush().map_err(io_err)
}

fn write_vecs<T: Element>(path: &Path, m: &Vecs<T>) -> Result<(), VecsError> {
    let io_err = |source| VecsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dim = i32::try_from(m.dim()).map_err(|_| VecsError::InvalidShape {
        reason: format!("dimension {} does not fit an i32", m.dim()),
    })?;
    let mut w = BufWriter::new(File::create(path).map_err(io_err)?);
    for row in m.rows() {
        w.write_all(&dim.to_le_bytes()).map_err(io_err)?;
        for v in row {
            w.write_all(&v.to_le()).map_err(io_err)?;
        }
    }
    w.flush().map_err(io_err)
}

fn read_vecs<T: Element>(path: &Path, max_rows: Option<usize>) -> Result<Vecs<T>, VecsError> {
    let io_err = |source| VecsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |offset: u64, reason: String| VecsError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);

    let mut head = [0u8; 4];
    read_full(&mut r, &mut head)
        .map_err(io_err)?
        .then_some(())
        .ok_or_else(|| malformed(0, "empty file, or shorter than one row header".into()))?;
    let d = i32::from_le_bytes(head);
    if d <= 0 {
        return Err(malformed(0, format!("row dimension {d} is not positive")));
    }
    let dim = d as usize;
    let row_bytes = 4 * (dim as u64 + 1);
    if size % row_bytes != 0 {
        return Err(malformed(
            size - size % row_bytes,
            format!(
                "file size {size} is not a multiple of the row size {row_bytes} (dimension {dim}): \
                 a truncated last row"
            ),
        ));
    }
    let rows_in_file = usize::try_from(size / row_bytes).unwrap_or(usize::MAX);
    let n = max_rows.map_or(rows_in_file, |m| m.min(rows_in_file));

    let mut data = Vec::with_capacity(n * dim);
    let mut buf = vec![0u8; 4 * dim];
    for i in 0..n {
        let offset = i as u64 * row_bytes;
        if i > 0 {
            if !read_full(&mut r, &mut head).map_err(io_err)? {
                return Err(malformed(
                    offset,
                    "file ended early (did it shrink?)".into(),
                ));
            }
            let di = i32::from_le_bytes(head);
            if di != d {
                return Err(malformed(
                    offset,
                    format!("row {i} has dimension {di}, row 0 has {d}"),
                ));
            }
        }
        if !read_full(&mut r, &mut buf).map_err(io_err)? {
            return Err(malformed(
                offset + 4,
                "file ended early (did it shrink?)".into(),
            ));
        }
        data.extend(
            buf.chunks_exact(4)
                .map(|c| T::from_le([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(Vecs { dim, data })
}

/// Fills `buf` completely: `Ok(false)` if the reader ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(rows: &[&[i32]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend((r.len() as i32).to_le_bytes());
            for v in *r {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn fvecs_and_ivecs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = Vecs::from_rows(&[[1.5f32, -2.0, 3.25], [0.0, 1e-30, f32::MAX]]).unwrap();
        write_fvecs(dir.path().join("a.fvecs"), &f).unwrap();
        assert_eq!(read_fvecs(dir.path().join("a.fvecs")).unwrap(), f);

        let i = Vecs::from_rows(&[[7i32, -1], [0, i32::MAX], [3, 4]]).unwrap();
        write_ivecs(dir.path().join("a.ivecs"), &i).unwrap();
        assert_eq!(read_ivecs(dir.path().join("a.ivecs")).unwrap(), i);

        let head: Vecs<i32> = read_vecs_head(dir.path().join("a.ivecs"), 2).unwrap();
        assert_eq!(head.len(), 2);
        assert_eq!(head.row(1), &[0, i32::MAX]);
        let all: Vecs<i32> = read_vecs_head(dir.path().join("a.ivecs"), 99).unwrap();
        assert_eq!(all, i);
    }

    #[test]
    fn the_file_layout_is_texmex() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ivecs");
        write_ivecs(&p, &Vecs::from_rows(&[[5i32, 6], [7, 8]]).unwrap()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes(&[&[5, 6], &[7, 8]]));
        write_ivecs_rows(&p, &[vec![1], vec![2, 3]]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes(&[&[1], &[2, 3]]));
    }

    #[test]
    fn malformed_files_are_errors_that_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.ivecs");
        let check = |content: &[u8], want_offset: u64, want_reason: &str| {
            std::fs::write(&p, content).unwrap();
            match read_ivecs(&p) {
                Err(VecsError::Malformed { offset, reason, .. }) => {
                    assert_eq!(offset, want_offset, "{reason}");
                    assert!(reason.contains(want_reason), "{reason}");
                }
                other => panic!("expected Malformed, got {other:?}"),
            }
        };
        check(&[], 0, "empty");
        check(&[1, 0], 0, "empty");
        check(&bytes(&[&[]]), 0, "not positive");
        check(&(-3i32).to_le_bytes(), 0, "not positive");
        let mut truncated = bytes(&[&[1, 2], &[3, 4]]);
        truncated.pop();
        check(&truncated, 12, "truncated");
        // 36 bytes: a whole number of 2-value rows, but the second header says 5.
        check(
            &bytes(&[&[1, 2], &[3, 4, 5, 6, 7]]),
            12,
            "row 1 has dimension 5",
        );
        assert!(matches!(
            read_ivecs(dir.path().join("missing.ivecs")),
            Err(VecsError::Io { .. })
        ));
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Vecs::from_flat(0, Vec::<f32>::new()).is_err());
        assert!(Vecs::from_flat(3, vec![1.0f32; 4]).is_err());
        assert!(Vecs::from_rows(&[vec![1i32, 2], vec![3]]).is_err());
        let mut m = Vecs::from_rows(&[[1i32, 2, 3], [4, 5, 6]]).unwrap();
        m.truncate_columns(2).unwrap();
        assert_eq!(m.as_flat(), &[1, 2, 4, 5]);
        assert!(m.truncate_columns(3).is_err());
        m.truncate(1);
        assert_eq!(m.len(), 1);
    }
}
