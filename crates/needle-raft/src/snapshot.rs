//! Snapshots as files and as chunks on the wire, and the wire encoding of [`RaftMessage`].
//!
//! A snapshot file is `magic | index | term | dedup window | database snapshot bytes | crc32c`.
//! raft-rs only ever sees a small descriptor (index, term, length, crc) in `Snapshot.data`; the
//! file itself travels as [`SnapshotChunk`]s, and the last chunk carries the MsgSnapshot, which
//! the receiver steps only once the whole file is stored and its CRC checks.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use needle_core::Database;
use protobuf::Message as PbMessage;
use raft::prelude::Message;

use crate::command::DedupWindow;
use crate::error::{NeedleError, Result};
use crate::message::{NodeId, RaftMessage};
use crate::storage::{Reader, SnapshotDescriptor, sync_dir};

const FILE_MAGIC: &[u8; 8] = b"NDLRSNP1";
const WIRE_RAFT: u8 = 1;
const WIRE_CHUNK: u8 = 2;

/// A piece of a snapshot file on its way from the leader to a follower.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotChunk {
    /// The snapshot's Raft index.
    pub index: u64,
    /// The snapshot's Raft term.
    pub term: u64,
    /// This chunk's position, `0..count`.
    pub seq: u32,
    /// How many chunks make the file.
    pub count: u32,
    /// The file's length in bytes.
    pub total_len: u64,
    /// The file's CRC (its trailer).
    pub crc: u32,
    /// The bytes of this chunk.
    pub data: Vec<u8>,
    /// The MsgSnapshot to step once the file is complete; carried by the last chunk only.
    pub message: Option<Message>,
}

pub(crate) fn encode_message(m: &RaftMessage) -> Vec<u8> {
    let mut b = Vec::new();
    match m {
        RaftMessage::Raft(msg) => {
            b.push(WIRE_RAFT);
            b.extend_from_slice(
                &msg.write_to_bytes()
                    .expect("protobuf encoding into a Vec cannot fail"),
            );
        }
        RaftMessage::SnapshotChunk(c) => {
            b.push(WIRE_CHUNK);
            b.extend_from_slice(&c.index.to_le_bytes());
            b.extend_from_slice(&c.term.to_le_bytes());
            b.extend_from_slice(&c.seq.to_le_bytes());
            b.extend_from_slice(&c.count.to_le_bytes());
            b.extend_from_slice(&c.total_len.to_le_bytes());
            b.extend_from_slice(&c.crc.to_le_bytes());
            b.extend_from_slice(&(c.data.len() as u32).to_le_bytes());
            b.extend_from_slice(&c.data);
            match &c.message {
                None => b.push(0),
                Some(msg) => {
                    b.push(1);
                    b.extend_from_slice(
                        &msg.write_to_bytes()
                            .expect("protobuf encoding into a Vec cannot fail"),
                    );
                }
            }
        }
    }
    b
}

pub(crate) fn decode_message(bytes: &[u8]) -> Result<RaftMessage> {
    let bad = |what: &str| NeedleError::invalid_message(format!("{what} ({} bytes)", bytes.len()));
    let (&tag, rest) = bytes.split_first().ok_or_else(|| bad("empty message"))?;
    match tag {
        WIRE_RAFT => Message::parse_from_bytes(rest)
            .map(RaftMessage::Raft)
            .map_err(|e| bad(&format!("raft message does not decode: {e}"))),
        WIRE_CHUNK => {
            let mut r = Reader::new(rest);
            let short = || bad("snapshot chunk too short");
            let index = r.u64().ok_or_else(short)?;
            let term = r.u64().ok_or_else(short)?;
            let seq = r.u32().ok_or_else(short)?;
            let count = r.u32().ok_or_else(short)?;
            let total_len = r.u64().ok_or_else(short)?;
            let crc = r.u32().ok_or_else(short)?;
            let data = r.bytes().ok_or_else(short)?.to_vec();
            let message = match r.u8().ok_or_else(short)? {
                0 if r.is_empty() => None,
                1 => Some(
                    Message::parse_from_bytes(r.rest())
                        .map_err(|e| bad(&format!("snapshot message does not decode: {e}")))?,
                ),
                _ => return Err(bad("bad snapshot chunk trailer")),
            };
            if seq >= count || count == 0 {
                return Err(bad("snapshot chunk sequence out of range"));
            }
            Ok(RaftMessage::SnapshotChunk(SnapshotChunk {
                index,
                term,
                seq,
                count,
                total_len,
                crc,
                data,
                message,
            }))
        }
        _ => Err(bad("unknown message tag")),
    }
}

pub(crate) fn snapshot_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snapshot-{index:020}.snap"))
}

fn incoming_path(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("incoming-{index:020}-{term:020}.snap"))
}

fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("snapshot paths live in the raft directory");
    let tmp = path.with_extension("tmp");
    let io = |e| NeedleError::io(format!("writing {}", path.display()), e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(dir)
}

/// Writes this node's snapshot at `index` (the database exactly at that applied index) and
/// returns its descriptor.
pub(crate) fn write_snapshot_file(
    dir: &Path,
    index: u64,
    term: u64,
    window: &DedupWindow,
    db: &Database,
) -> Result<SnapshotDescriptor> {
    let mut b = Vec::new();
    b.extend_from_slice(FILE_MAGIC);
    b.extend_from_slice(&index.to_le_bytes());
    b.extend_from_slice(&term.to_le_bytes());
    window.encode(&mut b);
    db.write_snapshot(&mut b, index)?;
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    write_file_durably(&snapshot_path(dir, index), &b)?;
    Ok(SnapshotDescriptor {
        index,
        term,
        len: b.len() as u64,
        crc,
    })
}

/// A snapshot file read back and checked.
pub(crate) struct LoadedSnapshot {
    pub desc: SnapshotDescriptor,
    pub window: DedupWindow,
    bytes: Vec<u8>,
    db_offset: usize,
}

impl LoadedSnapshot {
    pub(crate) fn read(path: &Path, window_span: u64) -> Result<LoadedSnapshot> {
        let bytes = std::fs::read(path)
            .map_err(|e| NeedleError::io(format!("reading {}", path.display()), e))?;
        let bad = |off: usize, why: &str| NeedleError::corrupted(path, off as u64, why);
        if bytes.len() < FILE_MAGIC.len() + 20 + 4 || &bytes[..8] != FILE_MAGIC {
            return Err(bad(0, "not a needle-raft snapshot file"));
        }
        let body = &bytes[..bytes.len() - 4];
        let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != crc {
            return Err(bad(bytes.len() - 4, "snapshot CRC mismatch"));
        }
        let mut r = Reader::new(&body[8..]);
        let index = r.u64().ok_or_else(|| bad(8, "short header"))?;
        let term = r.u64().ok_or_else(|| bad(16, "short header"))?;
        let window =
            DedupWindow::decode(window_span, &mut r).ok_or_else(|| bad(24, "bad dedup window"))?;
        let db_offset = body.len() - r.rest().len();
        Ok(LoadedSnapshot {
            desc: SnapshotDescriptor {
                index,
                term,
                len: bytes.len() as u64,
                crc,
            },
            window,
            db_offset,
            bytes,
        })
    }

    /// Replaces the database's contents with the snapshot's.
    pub(crate) fn restore_into(&self, db: &Database) -> Result<()> {
        let mut db_bytes = &self.bytes[self.db_offset..self.bytes.len() - 4];
        db.restore_snapshot(&mut db_bytes)?;
        Ok(())
    }
}

/// Deletes every snapshot file in `dir` except the one at `keep`.
pub(crate) fn remove_other_snapshots(dir: &Path, keep: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let keep = snapshot_path(dir, keep);
    for ent in rd.flatten() {
        let p = ent.path();
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if p != keep
            && (name.starts_with("snapshot-") || name.starts_with("incoming-"))
            && name.ends_with(".snap")
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The newest snapshot file in `dir`, if any.
pub(crate) fn latest_snapshot_file(dir: &Path) -> Option<(u64, PathBuf)> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten()
        .filter_map(|ent| {
            let name = ent.file_name().to_string_lossy().into_owned();
            let idx = name
                .strip_prefix("snapshot-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()?;
            Some((idx, ent.path()))
        })
        .max_by_key(|(i, _)| *i)
}

/// Splits this node's snapshot file into chunks, the last carrying `msg`.
pub(crate) fn chunk_snapshot(
    dir: &Path,
    d: &SnapshotDescriptor,
    msg: Message,
    chunk_size: usize,
) -> Result<Vec<SnapshotChunk>> {
    let path = snapshot_path(dir, d.index);
    let bytes = std::fs::read(&path)
        .map_err(|e| NeedleError::io(format!("reading {}", path.display()), e))?;
    let chunk_size = chunk_size.max(1);
    let count = bytes.len().div_ceil(chunk_size).max(1) as u32;
    let mut out = Vec::with_capacity(count as usize);
    for (seq, data) in bytes.chunks(chunk_size).enumerate() {
        out.push(SnapshotChunk {
            index: d.index,
            term: d.term,
            seq: seq as u32,
            count,
            total_len: bytes.len() as u64,
            crc: d.crc,
            data: data.to_vec(),
            message: None,
        });
    }
    if let Some(last) = out.last_mut() {
        last.message = Some(msg);
    }
    Ok(out)
}

struct Assembly {
    count: u32,
    total_len: u64,
    crc: u32,
    parts: BTreeMap<u32, Vec<u8>>,
    message: Option<Message>,
    started: Instant,
}

/// Collects chunks (in any order, duplicates ignored) until a snapshot file is complete.
#[derive(Default)]
pub(crate) struct Assembler {
    pending: HashMap<(NodeId, u64, u64), Assembly>,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Assembler {
    /// Adds a chunk. Once the file from `from` is complete and checks, it is stored in `dir` and
    /// the MsgSnapshot to step is returned.
    pub(crate) fn add(
        &mut self,
        dir: &Path,
        from: NodeId,
        c: SnapshotChunk,
        max_age: Duration,
    ) -> Result<Option<Message>> {
        self.pending.retain(|_, a| a.started.elapsed() < max_age);
        let key = (from, c.index, c.term);
        let a = self.pending.entry(key).or_insert_with(|| Assembly {
            count: c.count,
            total_len: c.total_len,
            crc: c.crc,
            parts: BTreeMap::new(),
            message: None,
            started: Instant::now(),
        });
        if a.count != c.count || a.total_len != c.total_len || a.crc != c.crc {
            self.pending.remove(&key);
            return Err(NeedleError::invalid_message(
                "snapshot chunks disagree on the file",
            ));
        }
        if c.message.is_some() {
            a.message = c.message;
        }
        a.parts.entry(c.seq).or_insert(c.data);
        if a.parts.len() < a.count as usize || a.message.is_none() {
            return Ok(None);
        }
        let a = self
            .pending
            .remove(&key)
            .expect("the assembly was just found");
        let mut bytes = Vec::with_capacity(a.total_len as usize);
        for p in a.parts.into_values() {
            bytes.extend_from_slice(&p);
        }
        if bytes.len() as u64 != a.total_len || bytes.len() < 4 {
            return Err(NeedleError::invalid_message(
                "snapshot file length mismatch",
            ));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        if crc != a.crc || crc32c::crc32c(body) != crc {
            return Err(NeedleError::invalid_message("snapshot file CRC mismatch"));
        }
        write_file_durably(&incoming_path(dir, key.1, key.2), &bytes)?;
        Ok(a.message)
    }
}

/// Moves a received snapshot file into place as this node's snapshot at `index`.
pub(crate) fn adopt_incoming(dir: &Path, index: u64, term: u64) -> Result<PathBuf> {
    let from = incoming_path(dir, index, term);
    let to = snapshot_path(dir, index);
    std::fs::rename(&from, &to)
        .map_err(|e| NeedleError::io(format!("renaming {}", from.display()), e))?;
    sync_dir(dir)?;
    Ok(to)
}
