//! The write-ahead log (`.needle-wal`): a 24-byte header naming the checkpoint generation it
//! follows, then records `len u32 | crc32c u32 | payload` where the payload is a bincode-encoded
//! [`Op`]. Appends are fsynced before a write is acknowledged (unless the log is unsynced).
//!
//! Recovery keeps every record up to the first bad one. A bad record at the tail (cut short, or
//! failing its checksum with nothing valid after it) is a torn write and is truncated; a bad
//! record followed by a valid one is corruption, reported with its offset.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Reader;
use crate::config::CollectionConfig;
use crate::error::{NeedleError, Result};

const MAGIC: &[u8; 8] = b"NEEDLWAL";
const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 24;
const RECORD_HEADER: usize = 8;
/// The largest record (one write or one batch) the log takes.
pub(crate) const MAX_RECORD: usize = 1 << 30;

/// One logged write, exactly as the caller asked for it (vectors not yet normalised), so that
/// replaying it repeats the same computation bit for bit. Metadata travels as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    CreateCollection {
        name: String,
        dimensions: u64,
        config: CollectionConfig,
    },
    DropCollection {
        name: String,
    },
    Upsert {
        collection: String,
        records: Vec<OpRecord>,
    },
    Update {
        collection: String,
        id: String,
        vector: Option<Vec<f32>>,
        metadata: Option<String>,
    },
    Delete {
        collection: String,
        id: String,
    },
    Compact {
        collection: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpRecord {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Option<String>,
}

/// bincode's decode limit counts the sizes a record *claims* (8 bytes per length, 4 per enum
/// tag), which can be up to 8× the bytes it takes encoded; the limit guards allocations, while
/// `MAX_RECORD` bounds the real size, checked on the encoded bytes before they are written.
const DECODE_LIMIT: usize = 8 * MAX_RECORD;

pub(crate) fn encode_op(op: &Op) -> Vec<u8> {
    bincode::serde::encode_to_vec(op, bincode::config::standard()).expect("an Op always encodes")
}

fn decode_op(bytes: &[u8]) -> Option<Op> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    match bincode::serde::decode_from_slice::<Op, _>(bytes, config) {
        Ok((op, used)) if used == bytes.len() => Some(op),
        _ => None,
    }
}

/// An open log, positioned at its end.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    sync: bool,
}

fn header_bytes(generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

impl Wal {
    /// Creates (or empties) the log for checkpoint `generation`.
    pub fn create(path: &Path, generation: u64, sync: bool) -> Result<Wal> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| NeedleError::io(format!("opening {}", path.display()), e))?;
        let mut wal = Wal {
            file,
            path: path.to_path_buf(),
            len: 0,
            sync,
        };
        wal.reset(generation)?;
        super::sync_dir(path)?;
        Ok(wal)
    }

    /// Opens an existing log whose first `valid_len` bytes were recovered; cuts off the rest.
    pub fn open_at(path: &Path, valid_len: u64, sync: bool) -> Result<Wal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| NeedleError::io(format!("opening {}", path.display()), e))?;
        let wal = Wal {
            file,
            path: path.to_path_buf(),
            len: valid_len,
            sync,
        };
        let actual = wal
            .file
            .metadata()
            .map_err(|e| wal.io_err("reading the size of", e))?
            .len();
        if actual != valid_len {
            wal.file
                .set_len(valid_len)
                .map_err(|e| wal.io_err("truncating the torn tail of", e))?;
            wal.file.sync_all().map_err(|e| wal.io_err("fsyncing", e))?;
        }
        Ok(wal)
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> NeedleError {
        NeedleError::io(format!("{what} {}", self.path.display()), e)
    }

    /// Empties the log and starts it over for `generation`. Truncating first means a crash in
    /// between leaves an empty (ignored) log, never old records under a new header.
    pub fn reset(&mut self, generation: u64) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| self.io_err("truncating", e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| self.io_err("seeking in", e))?;
        self.file
            .write_all(&header_bytes(generation))
            .map_err(|e| self.io_err("writing the header of", e))?;
        self.file
            .sync_all()
            .map_err(|e| self.io_err("fsyncing", e))?;
        self.len = HEADER_LEN;
        Ok(())
    }

    /// Appends one encoded op and, if synced, fsyncs before returning. On failure the log is cut
    /// back to where it was, so a failed write leaves nothing behind.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(RECORD_HEADER + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let result = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&buf))
            .and_then(|_| {
                if self.sync {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(self.io_err("appending to", e))
            }
        }
    }
}

/// What recovery found in a log.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub generation: u64,
    pub ops: Vec<Op>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    /// Bytes of torn tail after it.
    pub torn_bytes: u64,
}

/// Reads the log at `path`. `Ok(None)` when there is no usable log: missing, or cut off inside
/// its header (a crash while it was being created or reset).
pub(crate) fn recover(path: &Path) -> Result<Option<Recovered>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NeedleError::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| NeedleError::io(format!("reading {}", path.display()), e))?;
    if bytes.len() < HEADER_LEN as usize {
        return Ok(None);
    }
    let corrupt = |offset: usize, reason: &str| NeedleError::corrupted(path, offset as u64, reason);
    if &bytes[0..8] != MAGIC {
        return Err(corrupt(0, "not a Needle write-ahead log (bad magic)"));
    }
    if crc32c::crc32c(&bytes[0..20])
        != u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]])
    {
        return Err(corrupt(0, "log header checksum mismatch"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(NeedleError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let generation = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());

    let mut ops = Vec::new();
    let mut pos = HEADER_LEN as usize;
    while pos < bytes.len() {
        match record_at(&bytes, pos) {
            Some((op, next)) => {
                ops.push(op);
                pos = next;
            }
            None => {
                if valid_record_after(&bytes, pos) {
                    return Err(corrupt(pos, "bad record followed by valid records"));
                }
                break;
            }
        }
    }
    Ok(Some(Recovered {
        generation,
        ops,
        valid_len: pos as u64,
        torn_bytes: (bytes.len() - pos) as u64,
    }))
}

/// Parses the record at `pos`: its op and where the next record starts.
fn record_at(bytes: &[u8], pos: usize) -> Option<(Op, usize)> {
    let mut r = Reader::new(bytes.get(pos..)?);
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    if len > MAX_RECORD {
        return None;
    }
    let payload = r.take(len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((decode_op(payload)?, pos + RECORD_HEADER + len))
}

/// Is there a valid record anywhere after a bad one at `pos`? First where the bad record's own
/// length says the next one starts, then at every later byte (a damaged length field).
///
/// The scan checksums candidate records; its total work is capped at `SCAN_BUDGET` bytes so a
/// huge torn batch cannot make opening take hours (past the budget the tail counts as torn).
fn valid_record_after(bytes: &[u8], pos: usize) -> bool {
    const SCAN_BUDGET: usize = 1 << 30;
    let mut budget = SCAN_BUDGET;
    for p in pos + 1..bytes.len().saturating_sub(RECORD_HEADER - 1) {
        let mut r = Reader::new(&bytes[p..]);
        let (Some(len), Some(_)) = (r.u32(), r.u32()) else {
            continue;
        };
        let len = len as usize;
        if len == 0 || len > r.remaining() || len > MAX_RECORD {
            continue;
        }
        if len > budget {
            return false;
        }
        budget -= len;
        if record_at(bytes, p).is_some() {
            return true;
        }
    }
    false
}
