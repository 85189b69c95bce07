//! The write-ahead log (`.needle-wal`): a header naming the checkpoint generation it follows
//! (and, from format 2 on, the log's random salt), then records `len u32 | crc u32 | payload`
//! where the payload is a bincode-encoded [`Op`] and the CRC is bound to the salt and the
//! record's offset ([`frame::Seal`]). Appends are fsynced before a write is acknowledged (unless
//! the log is unsynced).
//!
//! Format 1 (24-byte header, `crc32c(payload)`) is still read, and a log of format 1 is
//! appended to in format 1 until the next checkpoint starts the log over in format 2.
//!
//! Recovery keeps every record up to the first bad one. A bad record at the tail (cut short, or
//! failing its checksum with nothing valid after it) is a torn write and is truncated; a bad
//! record followed by a valid one is corruption, reported with its offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::CollectionConfig;
use crate::disk::frame::{self, End, Seal};
use crate::disk::{Disk, DiskFile, OpenMode, parent_dir};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"NEEDLWAL";
/// The format written: frames bound to the log's salt and their offset.
const VERSION: u32 = 2;
/// The first format (read, and appended to until the next reset): frames `crc32c(payload)`.
const VERSION_1: u32 = 1;
/// `magic | version u32 | generation u64 | salt u64 | crc32c u32` (format 1: no salt, 24 bytes).
pub(crate) const HEADER_LEN: u64 = 32;
const HEADER_LEN_1: u64 = 24;
/// The largest record (one write or one batch) the log takes.
pub(crate) const MAX_RECORD: usize = frame::MAX_PAYLOAD;

/// One logged write, exactly as the caller asked for it (vectors not yet normalised), so that
/// replaying it repeats the same computation bit for bit. Metadata travels as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    CreateCollection {
        name: String,
        dimensions: u64,
        config: ConfigV1,
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
    // New variants go last: bincode numbers variants in order, and old logs must still decode.
    CreateIndex {
        collection: String,
        path: String,
        kind: u8,
    },
    DropIndex {
        collection: String,
        path: String,
    },
    /// The filter as JSON text; applying it again matches the same records (the state is the same).
    DeleteByFilter {
        collection: String,
        filter: String,
    },
    DeleteMany {
        collection: String,
        ids: Vec<String>,
    },
    /// A collection whose config has a field `CreateCollection`'s encoding lacks (quantization).
    /// A config without one is logged as `CreateCollection`, as before.
    CreateCollectionV2 {
        name: String,
        dimensions: u64,
        config: ConfigV1,
        quantization: u8,
    },
    /// An index with options `CreateIndex`'s encoding lacks (value graphs off). An index with
    /// the default options is logged as `CreateIndex`, as before.
    CreateIndexV2 {
        collection: String,
        path: String,
        kind: u8,
        value_graphs: bool,
    },
}

/// `CollectionConfig` as the log encoded it before it had `quantization`: the fields and their
/// order are frozen, so old logs decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfigV1 {
    pub distance: crate::config::Distance,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub seed: u64,
}

impl ConfigV1 {
    pub fn with(&self, quantization: crate::config::Quantization) -> CollectionConfig {
        CollectionConfig {
            distance: self.distance,
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            seed: self.seed,
            quantization,
        }
    }
}

impl From<&CollectionConfig> for ConfigV1 {
    fn from(c: &CollectionConfig) -> Self {
        ConfigV1 {
            distance: c.distance,
            m: c.m,
            ef_construction: c.ef_construction,
            ef_search: c.ef_search,
            seed: c.seed,
        }
    }
}

impl Op {
    /// The op that creates a collection, in the oldest encoding that carries its config.
    pub fn create_collection(name: &str, dimensions: u64, config: &CollectionConfig) -> Op {
        if config.quantization == crate::config::Quantization::None {
            Op::CreateCollection {
                name: name.to_string(),
                dimensions,
                config: config.into(),
            }
        } else {
            Op::CreateCollectionV2 {
                name: name.to_string(),
                dimensions,
                config: config.into(),
                quantization: config.quantization.code(),
            }
        }
    }
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
    disk: Arc<dyn Disk>,
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    len: u64,
    /// How this file's frames are checksummed (its format and salt).
    seal: Seal,
    sync: bool,
}

/// The header of a format-2 log.
fn header_bytes(generation: u64, salt: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    h[20..28].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header of a format-1 log, as the first format wrote it.
#[cfg(test)]
fn header_bytes_v1(generation: u64) -> [u8; HEADER_LEN_1 as usize] {
    let mut h = [0u8; HEADER_LEN_1 as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION_1.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

impl Wal {
    /// Creates (or empties) the log for checkpoint `generation`, and makes its name durable.
    pub fn create(disk: &Arc<dyn Disk>, path: &Path, generation: u64, sync: bool) -> Result<Wal> {
        let file = disk
            .open(path, OpenMode::Create)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut wal = Wal {
            disk: Arc::clone(disk),
            file,
            path: path.to_path_buf(),
            len: 0,
            seal: Seal::Payload,
            sync,
        };
        wal.reset(generation)?;
        let dir = parent_dir(path);
        disk.sync_dir(&dir)
            .map_err(|e| Error::io(format!("fsyncing directory {}", dir.display()), e))?;
        Ok(wal)
    }

    /// Opens the log of the current checkpoint again, holding exactly `valid`: the bytes
    /// recovery read and replayed (anything after them — a torn tail, or in unsynced mode a hole
    /// and what follows — is dropped).
    ///
    /// What recovery read is not necessarily on disk: after a failed fsync the page cache keeps
    /// the bytes it could not write but marks them clean (Linux, "fsyncgate"), so they read back
    /// until a power loss and no later fsync writes them. Appending acknowledged writes after
    /// such bytes would lose the writes with them (a header that never reached the disk makes the
    /// whole log read as empty). So `valid` is written anew to a temporary file, fsynced, renamed
    /// over the log and the directory fsynced: a crash at any point leaves the old log or the new
    /// one, and the log that writes are appended to is durable as it was read.
    pub fn reopen(
        disk: &Arc<dyn Disk>,
        path: &Path,
        valid: &[u8],
        seal: Seal,
        sync: bool,
    ) -> Result<Wal> {
        let tmp = crate::storage::tmp_path(path);
        let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
        let file = disk
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| io("creating", &tmp, e))?;
        // The new log keeps the permissions its owner gave the old one.
        disk.copy_permissions(path, &tmp)
            .map_err(|e| io("setting the permissions of", &tmp, e))?;
        file.write_all_at(0, valid)
            .and_then(|()| file.sync())
            .map_err(|e| io("writing", &tmp, e))?;
        disk.rename(&tmp, path)
            .map_err(|e| io(&format!("renaming {} to", tmp.display()), path, e))?;
        let dir = parent_dir(path);
        disk.sync_dir(&dir)
            .map_err(|e| io("fsyncing directory", &dir, e))?;
        Ok(Wal {
            disk: Arc::clone(disk),
            file,
            path: path.to_path_buf(),
            len: valid.len() as u64,
            seal,
            sync,
        })
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("{what} {}", self.path.display()), e)
    }

    /// Empties the log and starts it over for `generation`, in the current format under a new
    /// salt (so no frame of the log's earlier lives verifies in the new one). The truncation is
    /// made durable before the new header is written, so a crash in between leaves an empty or
    /// zeroed (ignored) log, or the old one (stale, ignored) — never old records under a new
    /// header.
    pub fn reset(&mut self, generation: u64) -> Result<()> {
        let salt = self
            .disk
            .new_salt()
            .map_err(|e| self.io_err("drawing a salt for", e))?;
        self.file
            .set_len(0)
            .map_err(|e| self.io_err("truncating", e))?;
        self.file.sync().map_err(|e| self.io_err("fsyncing", e))?;
        self.file
            .write_all_at(0, &header_bytes(generation, salt))
            .map_err(|e| self.io_err("writing the header of", e))?;
        self.file.sync().map_err(|e| self.io_err("fsyncing", e))?;
        self.len = HEADER_LEN;
        self.seal = Seal::Bound { salt };
        Ok(())
    }

    /// Appends one encoded op and, if synced, fsyncs before returning. On failure the log is
    /// cut back to where it was (best effort: the caller stops all writes anyway, since after
    /// a failed write or fsync the file's durable state is unknown).
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let buf = frame::encode(self.seal, self.len, payload);
        let result = self
            .file
            .write_all_at(self.len, &buf)
            .and_then(|()| if self.sync { self.file.sync() } else { Ok(()) });
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

/// How the log file on disk relates to the checkpoint it was opened with.
#[derive(Debug)]
pub(crate) enum LogState {
    /// No log, or one cut off inside its header or zeroed there (a crash while it was being
    /// created or reset): nothing to replay.
    Empty,
    /// A complete log of another generation: left behind by a checkpoint whose log reset did
    /// not happen (older), never replayed. Its records are not even read.
    Stale,
    /// The log of this checkpoint.
    Current(Recovered),
}

/// What recovery found in the log of the current checkpoint.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// How the log's frames are checksummed (its format, and its salt).
    pub seal: Seal,
    /// Each record's offset in the file, and its op.
    pub ops: Vec<(u64, Op)>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    /// The file's length: anything past `valid_len` is a torn tail, or damage.
    pub file_len: u64,
    /// A bad record at `valid_len` with a valid record after it: corruption in a synced log,
    /// a hole a power loss may leave in an unsynced one.
    pub damage: Option<Damage>,
}

/// A bad record followed by valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Offset of the bad record in the file.
    pub offset: u64,
    pub reason: &'static str,
    /// Offset of the first valid record after it.
    pub next_valid: u64,
    /// Valid records after it (up to the next bad one).
    pub records_after: u64,
}

/// Reads the log at `path`, which should follow checkpoint `generation`.
///
/// The header is checked first: a log of another generation is reported without reading its
/// records, so a damaged stale log never blocks an open. In the current log, the records up to
/// the first bad one, and what follows: a torn tail (the caller may cut it) or damage (a bad
/// record with a valid one after it: the caller decides, see `Recovered::damage`).
pub(crate) fn recover(bytes: &[u8], path: &Path, generation: u64) -> Result<LogState> {
    let corrupt = |offset: u64, reason: &str| Error::corrupted(path, offset, reason);
    let head = &bytes[..bytes.len().min(HEADER_LEN as usize)];
    if head.len() < 12 || head.iter().all(|&b| b == 0) {
        // Short, or all zeros: a reset or creation cut short by a crash.
        return Ok(LogState::Empty);
    }
    if &head[0..8] != MAGIC {
        return Err(corrupt(0, "not a Needle write-ahead log (bad magic)"));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let crc_ok = |len: usize| {
        bytes.get(..len).is_some_and(|h| {
            crc32c::crc32c(&h[..len - 4])
                == u32::from_le_bytes([h[len - 4], h[len - 3], h[len - 2], h[len - 1]])
        })
    };
    let header_len = match version {
        VERSION => HEADER_LEN as usize,
        VERSION_1 => HEADER_LEN_1 as usize,
        // A version this build does not know, in a header whose checksum holds (in either
        // layout it knows): written by a newer build. Otherwise a damaged version field.
        _ if crc_ok(HEADER_LEN as usize) || crc_ok(HEADER_LEN_1 as usize) => {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        _ => return Err(corrupt(0, "log header checksum mismatch")),
    };
    let Some(header) = bytes.get(..header_len) else {
        // A header cut short by a crash while the log was being created or reset.
        return Ok(LogState::Empty);
    };
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if !crc_ok(header_len) {
        return Err(corrupt(0, "log header checksum mismatch"));
    }
    let found = u64_at(12);
    let seal = match version {
        VERSION_1 => Seal::Payload,
        _ => Seal::Bound { salt: u64_at(20) },
    };
    if found < generation {
        return Ok(LogState::Stale);
    }
    if found > generation {
        return Err(corrupt(
            12,
            &format!(
                "the log follows checkpoint generation {found}, but the checkpoint is generation {generation}"
            ),
        ));
    }

    let body_at = header_len as u64;
    let body = &bytes[header_len..];
    let scan = frame::scan(body, seal, body_at, decode_op);
    let damage = match scan.end {
        End::Clean | End::Torn { .. } => None,
        End::Corrupted {
            offset,
            reason,
            next_valid,
        } => Some(Damage {
            offset,
            reason,
            next_valid,
            records_after: count_records_from(bytes, seal, next_valid),
        }),
    };
    let valid_len = scan.valid_len();
    Ok(LogState::Current(Recovered {
        seal,
        valid_len,
        file_len: bytes.len() as u64,
        damage,
        ops: scan
            .records
            .into_iter()
            .map(|r| (r.offset, r.value))
            .collect(),
    }))
}

/// How many valid records follow from file offset `at` (for the report of an unsynced hole).
fn count_records_from(bytes: &[u8], seal: Seal, at: u64) -> u64 {
    let rest = usize::try_from(at)
        .ok()
        .and_then(|at| bytes.get(at..))
        .unwrap_or_default();
    frame::scan(rest, seal, at, decode_op).records.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: u64) -> Vec<u8> {
        encode_op(&Op::Delete {
            collection: "c".into(),
            id: format!("r{i}"),
        })
    }

    /// A log as the first format wrote it: a 24-byte header, frames `crc32c(payload)`.
    #[test]
    fn a_first_format_log_reads_with_its_own_checksums() {
        let mut log = header_bytes_v1(3).to_vec();
        for i in 0..3 {
            let payload = op(i);
            log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            log.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            log.extend_from_slice(&payload);
        }
        let Ok(LogState::Current(rec)) = recover(&log, Path::new("x"), 3) else {
            panic!("a current log")
        };
        assert_eq!(rec.seal, Seal::Payload);
        assert_eq!(rec.ops.len(), 3);
        assert_eq!(rec.ops[0].0, HEADER_LEN_1);
        assert_eq!(rec.valid_len, log.len() as u64);
        // Cut short: a torn tail, from the last whole record.
        let cut = &log[..log.len() - 2];
        let Ok(LogState::Current(rec)) = recover(cut, Path::new("x"), 3) else {
            panic!("a current log")
        };
        assert_eq!(rec.ops.len(), 2);
        assert!(rec.damage.is_none());
    }

    #[test]
    fn a_current_log_binds_its_frames_to_its_salt() {
        let salt = 0xfeed_f00d;
        let mut log = header_bytes(5, salt).to_vec();
        for i in 0..3 {
            let at = log.len() as u64;
            frame::encode_into(&mut log, Seal::Bound { salt }, at, &op(i));
        }
        let Ok(LogState::Current(rec)) = recover(&log, Path::new("x"), 5) else {
            panic!("a current log")
        };
        assert_eq!(rec.seal, Seal::Bound { salt });
        assert_eq!(rec.ops.len(), 3);
        // The same frames under another salt's header: none verifies (a torn tail of all).
        let mut other = header_bytes(5, salt + 1).to_vec();
        other.extend_from_slice(&log[HEADER_LEN as usize..]);
        let Ok(LogState::Current(rec)) = recover(&other, Path::new("x"), 5) else {
            panic!("a current log")
        };
        assert!(rec.ops.is_empty() && rec.damage.is_none());
        // A header cut short is an empty log; an unknown version is refused by name.
        assert!(matches!(
            recover(&log[..20], Path::new("x"), 5),
            Ok(LogState::Empty)
        ));
        let mut v9 = log.clone();
        v9[8] = 9;
        assert!(matches!(
            recover(&v9, Path::new("x"), 5),
            Err(Error::Corrupted { offset: 0, .. })
        ));
        let crc = crc32c::crc32c(&v9[..28]);
        v9[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            recover(&v9, Path::new("x"), 5),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
    }
}
