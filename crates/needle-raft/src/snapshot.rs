//! Snapshots: how a node makes one, streams it in chunks, receives one on disk and installs it;
//! and the wire encoding of [`RaftMessage`].
//!
//! A snapshot at index `i` is a header (`magic | header length | index | term | dedup window`)
//! followed by the database's checkpoint bytes at `i`. Nothing is written twice: right after
//! `checkpoint_with_tag(i)` the database file *is* the checkpoint stream of `write_snapshot`, so a
//! node keeps the header in `snapshot-<i>.meta` and an open handle on that checkpoint's inode
//! (a later checkpoint renames a new file over the path; the handle still reads the old one).
//! An in-memory database has no file: its snapshot is written whole to `snapshot-<i>.snap`.
//!
//! raft-rs only ever sees a small descriptor (index, term, length, crc) in `Snapshot.data`; the
//! stream travels as [`SnapshotChunk`]s read piecewise from the handle, and the last chunk
//! carries the MsgSnapshot. The receiver writes each chunk at its offset in
//! `incoming-<i>-<term>.from-<sender>.part`, and steps the MsgSnapshot only once every chunk is
//! there and the CRC of the whole stream checks (the file is then fsynced and renamed to `.snap`).
//!
//! **Flow control by acknowledgement** ([`Outgoing`]): the receiver answers every chunk with a
//! [`SnapshotAck`] (how many chunks from the start it holds); the sender keeps at most
//! `snapshot_window_bytes` of chunks unacknowledged and sends more only as acks arrive, so a
//! transport's bounded queue is never flooded. Chunks lost on the way are sent again from the
//! first unacknowledged one (go-back-N) when no ack has come for a while; a transfer with no
//! ack at all for `max_idle` is abandoned (raft-rs hears `Failure` and sends a new snapshot).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use needle_core::Database;
use needle_core::disk::{Disk, DiskFile, FileReader, OpenMode};
use protobuf::Message as PbMessage;
use raft::prelude::Message;

use crate::command::DedupWindow;
use crate::error::{NeedleError, Result};
use crate::message::{NodeId, RaftMessage};
use crate::storage::{Reader, SnapshotDescriptor, sync_dir};

/// The current header: `NEEDLSN3 | body length u32 | body | crc32c(body) u32`. Its magic is 20
/// bits away from the previous one, so no rot of a few bits turns one format into the other.
const HEADER_MAGIC: &[u8; 8] = b"NEEDLSN3";
/// Headers written before the checksum existed: `NDLRSNP2 | body length u32 | body`. Still read.
const HEADER_MAGIC_V2: &[u8; 8] = b"NDLRSNP2";
const WIRE_RAFT: u8 = 1;
const WIRE_CHUNK: u8 = 2;
const WIRE_ACK: u8 = 3;
const WIRE_REMOVED: u8 = 4;

/// A receiver's acknowledgement of a snapshot stream: it holds every chunk below `received`
/// (the whole stream, and has stepped its MsgSnapshot, when `received` is the chunk count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotAck {
    /// The snapshot's Raft index.
    pub index: u64,
    /// The snapshot's Raft term.
    pub term: u64,
    /// How many chunks, from the first, the receiver holds.
    pub received: u32,
}

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
        RaftMessage::SnapshotAck(a) => {
            b.push(WIRE_ACK);
            b.extend_from_slice(&a.index.to_le_bytes());
            b.extend_from_slice(&a.term.to_le_bytes());
            b.extend_from_slice(&a.received.to_le_bytes());
        }
        RaftMessage::Removed(n) => {
            b.push(WIRE_REMOVED);
            b.extend_from_slice(&n.index.to_le_bytes());
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
        WIRE_ACK => {
            let mut r = Reader::new(rest);
            let short = || bad("snapshot ack too short");
            let index = r.u64().ok_or_else(short)?;
            let term = r.u64().ok_or_else(short)?;
            let received = r.u32().ok_or_else(short)?;
            if !r.is_empty() {
                return Err(bad("snapshot ack too long"));
            }
            Ok(RaftMessage::SnapshotAck(SnapshotAck {
                index,
                term,
                received,
            }))
        }
        WIRE_REMOVED => {
            let index =
                <[u8; 8]>::try_from(rest).map_err(|_| bad("removal notice of the wrong length"))?;
            Ok(RaftMessage::Removed(crate::message::RemovalNotice {
                index: u64::from_le_bytes(index),
            }))
        }
        _ => Err(bad("unknown message tag")),
    }
}

/// Bytes read or CRC-checked at a time when a snapshot is streamed, checked or hashed.
const IO_PIECE: usize = 1 << 20;

fn meta_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snapshot-{index:020}.meta"))
}

/// The whole stream of an in-memory database's snapshot (header and database bytes).
fn full_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snapshot-{index:020}.snap"))
}

fn incoming_path(dir: &Path, index: u64, term: u64, ext: &str) -> PathBuf {
    dir.join(format!("incoming-{index:020}-{term:020}.{ext}"))
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> NeedleError {
    let context = format!("{what} {}", path.display());
    move |e| NeedleError::io(context.clone(), e)
}

fn write_file_durably(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = needle_core::disk::parent_dir(path);
    let tmp = path.with_extension("tmp");
    let io = io_err("writing", path);
    let f = disk.open(&tmp, OpenMode::CreateTruncate).map_err(&io)?;
    f.write_all_at(0, bytes).map_err(&io)?;
    f.sync().map_err(&io)?;
    drop(f);
    disk.rename(&tmp, path).map_err(&io)?;
    sync_dir(disk, &dir)
}

/// The names of the files in `dir` (none if it does not exist).
fn list_names(disk: &dyn Disk, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !disk.exists(dir).map_err(io_err("listing", dir))? {
        return Ok(Vec::new());
    }
    Ok(disk
        .list(dir)
        .map_err(io_err("listing", dir))?
        .into_iter()
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .collect())
}

/// The header of a snapshot: what it is, and the dedup window at its index.
pub(crate) struct SnapshotHeader {
    pub index: u64,
    pub term: u64,
    pub window: DedupWindow,
}

fn encode_header(index: u64, term: u64, window: &DedupWindow) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&index.to_le_bytes());
    body.extend_from_slice(&term.to_le_bytes());
    window.encode(&mut body);
    window.encode_outcomes(&mut body);
    let mut b = Vec::with_capacity(12 + body.len());
    b.extend_from_slice(HEADER_MAGIC);
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    b
}

/// Reads the header at the start of `file` (a `.meta`, `.snap` or incoming file); returns it
/// and the offset of the database bytes after it.
fn read_header(
    file: &dyn DiskFile,
    path: &Path,
    window_span: u64,
) -> Result<(SnapshotHeader, u64)> {
    let bad = |off: u64, why: &str| NeedleError::corrupted(path, off, why);
    let file_len = file.len().map_err(io_err("reading", path))?;
    if file_len < 12 {
        return Err(bad(0, "shorter than a snapshot header"));
    }
    let mut fixed = [0u8; 12];
    file.read_exact_at(0, &mut fixed)
        .map_err(io_err("reading", path))?;
    let checked = match &fixed[..8] {
        m if m == HEADER_MAGIC => true,
        m if m == HEADER_MAGIC_V2 => false,
        _ => return Err(bad(0, "not a needle-raft snapshot")),
    };
    let body_len = u32::from_le_bytes(fixed[8..].try_into().expect("4 bytes"));
    let crc_len = if checked { 4 } else { 0 };
    if 12 + u64::from(body_len) + crc_len > file_len {
        return Err(bad(
            8,
            "snapshot header cut short (its length runs past the file)",
        ));
    }
    let mut body = vec![0u8; body_len as usize + crc_len as usize];
    file.read_exact_at(12, &mut body)
        .map_err(io_err("reading", path))?;
    if checked {
        let stored = body.split_off(body_len as usize);
        if crc32c::crc32c(&body).to_le_bytes()[..] != stored[..] {
            // The dedup window decides what a retried command does: a rotted one would make
            // this node apply differently from the others.
            return Err(bad(12, "snapshot header checksum mismatch"));
        }
    }
    let mut r = Reader::new(&body);
    let index = r.u64().ok_or_else(|| bad(12, "short header"))?;
    let term = r.u64().ok_or_else(|| bad(20, "short header"))?;
    let mut window = DedupWindow::decode(window_span, &mut r)
        .filter(|w| w.newest().is_none_or(|newest| newest <= index))
        .ok_or_else(|| bad(28, "bad dedup window"))?;
    // The outcomes section is absent from headers written before it existed.
    if !r.is_empty() {
        window
            .decode_outcomes(&mut r)
            .filter(|_| r.is_empty())
            .ok_or_else(|| bad(28, "bad dedup window outcomes"))?;
    }
    Ok((
        SnapshotHeader {
            index,
            term,
            window,
        },
        12 + u64::from(body_len) + crc_len,
    ))
}

/// This node's snapshot, ready to stream: the header in memory, the database bytes behind an
/// open handle. Reads are positioned, so several peers can be sent the same snapshot at once.
pub(crate) struct SnapshotSource {
    pub desc: SnapshotDescriptor,
    header: Vec<u8>,
    file: Arc<dyn DiskFile>,
    db_offset: u64,
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("desc", &self.desc)
            .finish()
    }
}

impl SnapshotSource {
    /// Wraps `file` (database bytes from `db_offset` to its end) and CRCs the whole stream.
    fn new(
        index: u64,
        term: u64,
        header: Vec<u8>,
        file: Arc<dyn DiskFile>,
        db_offset: u64,
    ) -> Result<Self> {
        let io = |e| NeedleError::io("reading a snapshot's database bytes", e);
        let db_len = file.len().map_err(io)?.saturating_sub(db_offset);
        let mut src = SnapshotSource {
            desc: SnapshotDescriptor {
                index,
                term,
                len: header.len() as u64 + db_len,
                crc: 0,
            },
            header,
            file,
            db_offset,
        };
        let mut crc = crc32c::crc32c(&src.header);
        let mut off = src.header.len() as u64;
        while off < src.desc.len {
            let piece = src.read_range(off, IO_PIECE).map_err(io)?;
            crc = crc32c::crc32c_append(crc, &piece);
            off += piece.len() as u64;
        }
        src.desc.crc = crc;
        Ok(src)
    }

    /// Up to `max` bytes of the stream from `off` (fewer only at its end).
    fn read_range(&self, off: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let hlen = self.header.len() as u64;
        let end = (off + max as u64).min(self.desc.len);
        let mut buf = Vec::with_capacity(end.saturating_sub(off) as usize);
        if off < hlen {
            buf.extend_from_slice(&self.header[off as usize..end.min(hlen) as usize]);
        }
        let db_from = off.max(hlen) - hlen;
        let db_to = end.max(hlen) - hlen;
        if db_to > db_from {
            let at = buf.len();
            buf.resize(at + (db_to - db_from) as usize, 0);
            self.file
                .read_exact_at(self.db_offset + db_from, &mut buf[at..])?;
        }
        Ok(buf)
    }
}

/// Makes this node's snapshot at `index`. The database must hold exactly the entries up to
/// `index`, and nothing may be applied until this returns; the Raft log must already be synced
/// up to `index`. With `checkpoint` false the database's checkpoint is already at `index` (at
/// restart, or right after installing a snapshot) and is only described.
pub(crate) fn prepare(
    disk: &dyn Disk,
    dir: &Path,
    db: &Database,
    index: u64,
    term: u64,
    window: &DedupWindow,
    checkpoint: bool,
) -> Result<SnapshotSource> {
    let header = encode_header(index, term, window);
    match db.path() {
        Some(path) => {
            if checkpoint {
                db.checkpoint_with_tag(index)?;
            }
            // Open before anything else can checkpoint: this handle pins the inode at `index`.
            // The database's file is on the database's disk.
            let file = db
                .disk()
                .open(path, OpenMode::Read)
                .map_err(io_err("opening", path))?;
            write_file_durably(disk, &meta_path(dir, index), &header)?;
            SnapshotSource::new(index, term, header, file, 0)
        }
        None => {
            let path = full_path(dir, index);
            if checkpoint || !disk.exists(&path).map_err(io_err("looking for", &path))? {
                let mut bytes = header.clone();
                db.write_snapshot(&mut bytes, index)?;
                write_file_durably(disk, &path, &bytes)?;
            }
            let file = disk
                .open(&path, OpenMode::Read)
                .map_err(io_err("opening", &path))?;
            let db_offset = header.len() as u64;
            SnapshotSource::new(index, term, header, file, db_offset)
        }
    }
}

/// The index of a snapshot file named `name`: `snapshot-<i>.meta`, `snapshot-<i>.snap`, or (with
/// `incoming`) a complete received stream `incoming-<i>-<term>.snap`.
fn snapshot_file_index(name: &str, incoming: bool) -> Option<u64> {
    if let Some(stem) = name.strip_prefix("snapshot-") {
        return stem
            .strip_suffix(".meta")
            .or_else(|| stem.strip_suffix(".snap"))?
            .parse()
            .ok();
    }
    if !incoming {
        return None;
    }
    name.strip_prefix("incoming-")?
        .strip_suffix(".snap")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// The header of the newest snapshot at or below `max_index` that this node made, installed or
/// received whole. A received stream counts: after a crash between restoring the database from
/// it and writing the installed snapshot's `.meta`, it is the only header at the database's index
/// (the log's entries before that index are gone). Every header at an index holds the same dedup
/// window, since the window is derived from the log alone.
pub(crate) fn latest_header(
    disk: &dyn Disk,
    dir: &Path,
    max_index: u64,
    window_span: u64,
) -> Result<Option<SnapshotHeader>> {
    let newest = list_names(disk, dir)?
        .into_iter()
        .filter_map(|(name, path)| Some((snapshot_file_index(&name, true)?, path)))
        .filter(|(i, _)| *i <= max_index)
        .max_by_key(|(i, _)| *i);
    let Some((named, path)) = newest else {
        return Ok(None);
    };
    let f = disk
        .open(&path, OpenMode::Read)
        .map_err(io_err("opening", &path))?;
    let (h, _) = read_header(&*f, &path, window_span)?;
    // Every writer names a file after the index in its header (and a received stream's header
    // is checked against its name before it is kept), so a disagreement is tampering or a
    // misplaced file: the window it holds may be of another point of the log.
    if h.index != named {
        return Err(NeedleError::corrupted(
            &path,
            12,
            format!(
                "holds the snapshot at index {}, but its name says {named}",
                h.index
            ),
        ));
    }
    Ok(Some(h))
}

/// The newest complete snapshot stream on this node (an in-memory database's own, or one
/// received whole and CRC-checked) with an index in `min..=max`, to restore the database from at
/// restart. Pass `min == max` for the exact snapshot the log names.
pub(crate) fn newest_stream(
    disk: &dyn Disk,
    dir: &Path,
    min: u64,
    max: u64,
) -> Result<Option<(u64, PathBuf)>> {
    Ok(list_names(disk, dir)?
        .into_iter()
        .filter_map(|(name, path)| {
            name.ends_with(".snap")
                .then(|| snapshot_file_index(&name, true))
                .flatten()
                .map(|i| (i, path))
        })
        .filter(|(i, _)| (min..=max).contains(i))
        .max_by_key(|(i, _)| *i))
}

/// Replaces the database's contents with the snapshot stream at `path`, which must be the
/// snapshot at `index`; returns its header.
pub(crate) fn restore(
    disk: &dyn Disk,
    path: &Path,
    db: &Database,
    window_span: u64,
    index: u64,
) -> Result<SnapshotHeader> {
    let f = disk
        .open(path, OpenMode::Read)
        .map_err(io_err("opening", path))?;
    let (header, db_offset) = read_header(&*f, path, window_span)?;
    if header.index != index {
        return Err(NeedleError::corrupted(
            path,
            12,
            format!("holds the snapshot at {}, not at {index}", header.index),
        ));
    }
    let mut reader = FileReader::new(f, db_offset).map_err(io_err("reading", path))?;
    db.restore_snapshot(&mut reader)?;
    Ok(header)
}

/// After installing a received snapshot at `index`: an in-memory database keeps the stream as
/// its own snapshot file; a file-backed one has it as its checkpoint already.
pub(crate) fn keep_installed(
    disk: &dyn Disk,
    dir: &Path,
    from: &Path,
    db: &Database,
    index: u64,
) -> Result<()> {
    if db.path().is_none() {
        let to = full_path(dir, index);
        disk.rename(from, &to).map_err(io_err("renaming", from))?;
        sync_dir(disk, dir)?;
    }
    Ok(())
}

/// Deletes every snapshot file in `dir` except those of `keep`, chunks still arriving, and
/// received streams above `keep`: one of those may have been stepped into raft-rs already and be
/// about to be installed (it is deleted once a snapshot at or above its index is this node's).
/// Best effort: a file left behind by a failed removal is removed by a later call.
pub(crate) fn remove_other_snapshots(disk: &dyn Disk, dir: &Path, keep: u64) {
    let Ok(names) = list_names(disk, dir) else {
        return;
    };
    let kept = [meta_path(dir, keep), full_path(dir, keep)];
    for (name, p) in names {
        let delete = if name.starts_with("incoming-") {
            snapshot_file_index(&name, true).is_some_and(|i| i <= keep)
        } else {
            snapshot_file_index(&name, false).is_some() && !kept.contains(&p)
        };
        if delete {
            let _ = disk.remove(&p);
        }
    }
}

/// How many chunks of `chunk_size` bytes carry a stream of `len` bytes.
fn chunk_count(len: u64, index: u64, chunk_size: usize) -> Result<u32> {
    u32::try_from(len.div_ceil(chunk_size as u64).max(1)).map_err(|_| NeedleError::Snapshot {
        reason: format!(
            "the snapshot at index {index} ({len} bytes) needs more than 2^32 chunks of {chunk_size} bytes"
        ),
    })
}

/// Chunk `seq` of `src` (of `count`), read from disk; the last one carries `msg`.
fn chunk_at(
    src: &SnapshotSource,
    msg: &Message,
    chunk_size: usize,
    count: u32,
    seq: u32,
) -> Result<SnapshotChunk> {
    let d = src.desc;
    let off = u64::from(seq) * chunk_size as u64;
    let data = src
        .read_range(off, chunk_size)
        .map_err(|e| NeedleError::io(format!("reading snapshot {} for a peer", d.index), e))?;
    let last = seq + 1 == count;
    Ok(SnapshotChunk {
        index: d.index,
        term: d.term,
        seq,
        count,
        total_len: d.len,
        crc: d.crc,
        data,
        message: last.then(|| msg.clone()),
    })
}

/// Streams all of `src` at once as chunks of `chunk_size` bytes (tests: no flow control).
#[cfg(test)]
pub(crate) fn send_chunks(
    src: &SnapshotSource,
    msg: Message,
    chunk_size: usize,
    mut send: impl FnMut(SnapshotChunk) -> Result<()>,
) -> Result<()> {
    let chunk_size = chunk_size.max(1);
    let count = chunk_count(src.desc.len, src.desc.index, chunk_size)?;
    for seq in 0..count {
        send(chunk_at(src, &msg, chunk_size, count, seq)?)?;
    }
    Ok(())
}

/// One snapshot on its way to one peer, paced by the peer's [`SnapshotAck`]s: at most
/// `window` bytes of chunks are sent and not yet acknowledged. Driven by the node's thread
/// (no thread of its own): [`Outgoing::pump`] after it starts, on each ack and on each tick.
pub(crate) struct Outgoing {
    src: Arc<SnapshotSource>,
    msg: Message,
    chunk_size: usize,
    count: u32,
    /// The receiver holds every chunk below `acked`.
    acked: u32,
    /// The next chunk to send.
    next: u32,
    /// The last time `acked` grew (or the transfer started, or went back to `acked`).
    progress_at: Duration,
}

/// What a tick decided for a transfer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Going on.
    Going,
    /// No acknowledgement for too long: abandoned.
    Abandoned,
}

impl Outgoing {
    /// A transfer of `src` (whose MsgSnapshot is `msg`) in chunks of `chunk_size` bytes.
    pub(crate) fn new(
        src: Arc<SnapshotSource>,
        msg: Message,
        chunk_size: usize,
        now: Duration,
    ) -> Result<Outgoing> {
        let chunk_size = chunk_size.max(1);
        let count = chunk_count(src.desc.len, src.desc.index, chunk_size)?;
        Ok(Outgoing {
            src,
            msg,
            chunk_size,
            count,
            acked: 0,
            next: 0,
            progress_at: now,
        })
    }

    /// The snapshot's (index, term).
    pub(crate) fn id(&self) -> (u64, u64) {
        (self.src.desc.index, self.src.desc.term)
    }

    /// Sends chunks while fewer than `window` bytes are unacknowledged (at least one chunk
    /// may always be in flight). A send the transport refuses stops here; the next pump (an
    /// ack, a tick) tries again from that chunk.
    pub(crate) fn pump(
        &mut self,
        window: u64,
        mut send: impl FnMut(SnapshotChunk) -> Result<()>,
    ) -> Result<()> {
        let per_window = (window / self.chunk_size as u64).max(1);
        while self.next < self.count && u64::from(self.next - self.acked) < per_window {
            let c = chunk_at(&self.src, &self.msg, self.chunk_size, self.count, self.next)?;
            if send(c).is_err() {
                break;
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Takes in an ack; true once the receiver holds the whole stream.
    pub(crate) fn ack(&mut self, a: &SnapshotAck, now: Duration) -> bool {
        if (a.index, a.term) != self.id() || a.received > self.count {
            return false;
        }
        if a.received > self.acked {
            self.acked = a.received;
            self.next = self.next.max(self.acked);
            self.progress_at = now;
        }
        self.acked == self.count
    }

    /// On a tick: with no ack for `resend_after`, sends again from the first unacknowledged
    /// chunk (chunks or acks were lost); with none for `max_idle`, abandons the transfer.
    pub(crate) fn tick(
        &mut self,
        now: Duration,
        resend_after: Duration,
        max_idle: Duration,
    ) -> Pace {
        let quiet = now.saturating_sub(self.progress_at);
        if quiet >= max_idle {
            return Pace::Abandoned;
        }
        if quiet >= resend_after && self.next > self.acked {
            // Go back: whatever was sent past `acked` is sent again (the receiver ignores
            // duplicates). `progress_at` is not moved, so `max_idle` still counts from the
            // last real progress.
            self.next = self.acked;
        }
        Pace::Going
    }
}

/// What [`Assembler::add`] made of a chunk.
#[derive(Debug)]
pub(crate) enum Added {
    /// The stream is not complete: the receiver holds its chunks below `.0`.
    Partial(u32),
    /// The stream is complete, stored and checked: step this MsgSnapshot (`.1` = chunk count).
    Complete(Message, u32),
    /// A chunk of a stream completed before, carrying no newer message: nothing to do but ack
    /// (`.0` chunks: the whole, unless the node has not taken the snapshot; see `on_message`).
    AlreadyComplete(u32),
}

struct Assembly {
    count: u32,
    total_len: u64,
    crc: u32,
    /// The length of every chunk but the last (all the same), once one has arrived.
    chunk_len: Option<u64>,
    last_len: Option<u64>,
    have: HashSet<u32>,
    /// Every chunk below it is here.
    contiguous: u32,
    message: Option<Message>,
    /// When the last chunk of this stream arrived (the node's time).
    last_chunk: Duration,
    file: Arc<dyn DiskFile>,
    path: PathBuf,
}

/// Collects chunks (in any order, duplicates ignored) into a file on disk until a snapshot
/// stream is complete. Holds no chunk in memory.
#[derive(Default)]
pub(crate) struct Assembler {
    pending: HashMap<(NodeId, u64, u64), Assembly>,
    /// Per sender, the last stream completed, its chunk count and the term of the MsgSnapshot
    /// last returned for it: a late or resent chunk of it is acknowledged, not assembled again.
    completed: HashMap<NodeId, ((u64, u64), u32, u64)>,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Assembler {
    /// Adds a chunk arrived at `now`. Once the stream from `from` is complete and its CRC
    /// checks, it is stored durably as `incoming-<index>-<term>.snap` and the MsgSnapshot to
    /// step is returned. A stream that received no chunk for `max_idle` is dropped: a transfer
    /// times out on inactivity, not on age, so a large snapshot that keeps arriving completes.
    /// Each sender's stream goes to a part file of its own.
    pub(crate) fn add(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
        from: NodeId,
        c: SnapshotChunk,
        max_idle: Duration,
        now: Duration,
    ) -> Result<Added> {
        if let Some((_, count, stepped)) = self
            .completed
            .get_mut(&from)
            .filter(|(id, _, _)| *id == (c.index, c.term))
        {
            // The same snapshot sent again under a newer leader term: its stream is stored
            // already, but the MsgSnapshot stepped before may have been dropped by raft-rs as
            // stale (the sender's term had passed by the time the stream completed), and the
            // sender will not move on until one of its own term is stepped. Step the new one.
            return Ok(match c.message {
                Some(m) if m.term > *stepped => {
                    *stepped = m.term;
                    Added::Complete(m, *count)
                }
                _ => Added::AlreadyComplete(*count),
            });
        }
        self.pending.retain(|_, a| {
            let fresh = now.saturating_sub(a.last_chunk) < max_idle;
            if !fresh {
                let _ = disk.remove(&a.path);
            }
            fresh
        });
        let key = (from, c.index, c.term);
        // One stream at a time from a sender (a leader sends a peer one snapshot, and a newer
        // one replaces the transfer): each pending stream holds an open file, so a sender naming
        // ever new streams would otherwise run this node out of file handles. A late chunk of an
        // older stream is refused rather than let it replace the newer one's progress.
        if self
            .pending
            .keys()
            .any(|k| k.0 == from && (k.1, k.2) > (key.1, key.2))
        {
            return Err(NeedleError::invalid_message(format!(
                "a chunk of snapshot {} term {} while node {from} sends a newer one",
                key.1, key.2
            )));
        }
        self.pending.retain(|k, a| {
            let keep = k.0 != from || *k == key;
            if !keep {
                let _ = disk.remove(&a.path);
            }
            keep
        });
        let res = self.add_inner(disk, dir, key, c, now);
        match &res {
            Err(_) => {
                if let Some(a) = self.pending.remove(&key) {
                    let _ = disk.remove(&a.path);
                }
            }
            Ok(Added::Complete(m, count)) => {
                self.completed
                    .insert(from, ((key.1, key.2), *count, m.term));
            }
            Ok(_) => {}
        }
        res
    }

    fn add_inner(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
        key: (NodeId, u64, u64),
        c: SnapshotChunk,
        now: Duration,
    ) -> Result<Added> {
        let a = match self.pending.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let path = incoming_path(dir, c.index, c.term, &format!("from-{}.part", key.0));
                let file = disk
                    .open(&path, OpenMode::CreateTruncate)
                    .map_err(io_err("creating", &path))?;
                e.insert(Assembly {
                    count: c.count,
                    total_len: c.total_len,
                    crc: c.crc,
                    chunk_len: None,
                    last_len: None,
                    have: HashSet::new(),
                    contiguous: 0,
                    message: None,
                    last_chunk: now,
                    file,
                    path,
                })
            }
        };
        a.last_chunk = now;
        if a.count != c.count || a.total_len != c.total_len || a.crc != c.crc {
            return Err(NeedleError::invalid_message(
                "snapshot chunks disagree on the stream",
            ));
        }
        let len = c.data.len() as u64;
        let off = if c.seq + 1 < c.count {
            if len == 0 || *a.chunk_len.get_or_insert(len) != len {
                return Err(NeedleError::invalid_message(
                    "snapshot chunks of different lengths",
                ));
            }
            u64::from(c.seq) * len
        } else {
            a.last_len = Some(len);
            a.total_len
                .checked_sub(len)
                .ok_or_else(|| NeedleError::invalid_message("snapshot chunk past the end"))?
        };
        if off + len > a.total_len {
            return Err(NeedleError::invalid_message("snapshot chunk past the end"));
        }
        if !a.have.contains(&c.seq) {
            a.file
                .write_all_at(off, &c.data)
                .map_err(io_err("writing", &a.path))?;
            a.have.insert(c.seq);
        }
        while a.have.contains(&a.contiguous) {
            a.contiguous += 1;
        }
        if c.message.is_some() {
            a.message = c.message;
        }
        if a.have.len() < a.count as usize || a.message.is_none() {
            return Ok(Added::Partial(a.contiguous));
        }
        let a = self
            .pending
            .remove(&key)
            .expect("the assembly was just found");
        let covered = match a.count {
            1 => a.last_len == Some(a.total_len),
            n => {
                a.chunk_len.unwrap_or(0) * u64::from(n - 1) + a.last_len.unwrap_or(0) == a.total_len
            }
        };
        let done = Assembly::finish(&a, disk, dir, key, covered);
        if done.is_err() {
            let _ = disk.remove(&a.path);
        }
        done?;
        let message = a.message.expect("a complete stream has its message");
        Ok(Added::Complete(message, a.count))
    }
}

impl Assembly {
    fn finish(
        &self,
        disk: &dyn Disk,
        dir: &Path,
        key: (NodeId, u64, u64),
        covered: bool,
    ) -> Result<()> {
        if !covered {
            return Err(NeedleError::invalid_message(
                "snapshot chunks do not cover the stream",
            ));
        }
        let io = io_err("checking", &self.path);
        let len = self.file.len().map_err(&io)?;
        if len != self.total_len {
            return Err(NeedleError::invalid_message(
                "snapshot chunks do not cover the stream",
            ));
        }
        let mut crc = 0;
        let mut buf = vec![0u8; IO_PIECE];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(IO_PIECE as u64) as usize;
            self.file.read_exact_at(off, &mut buf[..n]).map_err(&io)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            off += n as u64;
        }
        if crc != self.crc {
            return Err(NeedleError::invalid_message("snapshot stream CRC mismatch"));
        }
        // The stream is kept under the (index, term) its chunks name, and read back by that
        // name at restart: a header that is not a snapshot header, or that names another
        // snapshot, would be refused there (a node that could not open) instead of here.
        let (h, _) = read_header(&*self.file, &self.path, 0)
            .map_err(|e| NeedleError::invalid_message(format!("snapshot stream header: {e}")))?;
        if (h.index, h.term) != (key.1, key.2) {
            return Err(NeedleError::invalid_message(format!(
                "the snapshot stream of index {} term {} holds the header of index {} term {}",
                key.1, key.2, h.index, h.term
            )));
        }
        self.file.sync().map_err(&io)?;
        let to = incoming_path(dir, key.1, key.2, "snap");
        disk.rename(&self.path, &to).map_err(&io)?;
        sync_dir(disk, dir)
    }
}

/// The received stream of the snapshot at (`index`, `term`).
pub(crate) fn incoming_file(dir: &Path, index: u64, term: u64) -> PathBuf {
    incoming_path(dir, index, term, "snap")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RequestId;
    use needle_core::disk::OsDisk;
    use needle_core::{DatabaseOptions, WalMode};

    fn fill(db: &Database, from: usize, n: usize) {
        for i in from..from + n {
            db.insert("c", &format!("r{i}"), vec![i as f32, 1.0, 2.0, 3.0], None)
                .unwrap();
        }
    }

    /// Streams `src` as shuffled and duplicated chunks into an assembler in `dir`.
    fn deliver(src: &SnapshotSource, dir: &Path, chunk: usize, corrupt: bool) -> Result<()> {
        let mut chunks = Vec::new();
        send_chunks(src, Message::default(), chunk, |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        chunks.reverse();
        let dup = chunks[1].clone();
        chunks.insert(0, dup);
        if corrupt {
            chunks[3].data[0] ^= 1;
        }
        let mut asm = Assembler::default();
        let mut got = None;
        for c in chunks {
            if let Added::Complete(m, _) =
                asm.add(&OsDisk, dir, 1, c, Duration::from_secs(60), Duration::ZERO)?
            {
                got = Some(m);
            }
        }
        assert!(got.is_some(), "the stream completed");
        Ok(())
    }

    /// A snapshot completed once and sent again by the same sender under a newer term: its
    /// chunks are not assembled again, but the new MsgSnapshot (the last chunk's) is returned to
    /// be stepped, once; the same term again is only acknowledged. Without it, a MsgSnapshot that
    /// raft-rs dropped as stale was never replaced (simulator seed 5940441644795897227).
    #[test]
    fn a_snapshot_sent_again_in_a_newer_term_is_stepped_again() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let off = DatabaseOptions { wal: WalMode::Off };
        let a = Database::open_with(tmp.path().join("a.needle"), off).unwrap();
        a.create_collection("c", 4).unwrap();
        fill(&a, 0, 50);
        let src = prepare(&OsDisk, &dir_a, &a, 7, 3, &DedupWindow::new(100), true).unwrap();
        let stream = |term: u64| {
            let m = Message {
                msg_type: raft::prelude::MessageType::MsgSnapshot,
                term,
                ..Default::default()
            };
            let mut chunks = Vec::new();
            send_chunks(&src, m, 1000, |c| {
                chunks.push(c);
                Ok(())
            })
            .unwrap();
            chunks
        };
        let mut asm = Assembler::default();
        let mut stepped = Vec::new();
        let mut acks = Vec::new();
        for term in [3, 4, 4, 5] {
            for c in stream(term) {
                match asm
                    .add(
                        &OsDisk,
                        &dir_b,
                        1,
                        c,
                        Duration::from_secs(60),
                        Duration::ZERO,
                    )
                    .unwrap()
                {
                    Added::Complete(m, _) => stepped.push(m.term),
                    Added::AlreadyComplete(n) => acks.push(n),
                    Added::Partial(_) => {}
                }
            }
        }
        assert_eq!(stepped, [3, 4, 5], "each newer term stepped once");
        assert!(!acks.is_empty());
        assert!(
            incoming_file(&dir_b, 7, 3).exists(),
            "the stream stays stored"
        );
    }

    #[test]
    fn a_checkpoint_handle_streams_the_state_at_its_index() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let off = DatabaseOptions { wal: WalMode::Off };
        let a = Database::open_with(tmp.path().join("a.needle"), off.clone()).unwrap();
        a.create_collection("c", 4).unwrap();
        fill(&a, 0, 200);
        let mut window = DedupWindow::new(100);
        window.record(7, RequestId { client: 1, seq: 2 });
        let src = prepare(&OsDisk, &dir_a, &a, 7, 3, &window, true).unwrap();
        let at_snapshot = a.state_checksum();
        // Later writes and a later checkpoint rename a new file over the path: the handle still
        // reads the checkpoint at index 7.
        fill(&a, 200, 50);
        a.checkpoint_with_tag(9).unwrap();
        assert_ne!(a.state_checksum(), at_snapshot);
        deliver(&src, &dir_b, 1000, false).unwrap();
        let b = Database::open_with(tmp.path().join("b.needle"), off).unwrap();
        let h = restore(&OsDisk, &incoming_file(&dir_b, 7, 3), &b, 100, 7).unwrap();
        assert_eq!(b.state_checksum(), at_snapshot);
        assert_eq!(b.checkpoint_tag(), 7);
        assert!(h.window.contains(&RequestId { client: 1, seq: 2 }));
        // The header on disk describes the snapshot too.
        let h = latest_header(&OsDisk, &dir_a, 100, 100).unwrap().unwrap();
        assert_eq!(h.index, 7);
    }

    /// The header's dedup window decides what a retried command does, so a header rotted at
    /// rest must be refused, never read: every bit of a `.meta` flipped is `Corrupted`. A header
    /// of the format before the checksum still reads.
    #[test]
    fn every_flipped_bit_of_a_snapshot_header_is_corruption_and_old_headers_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut window = DedupWindow::new(100);
        for i in 0..20 {
            window.record(3 + i, RequestId { client: i, seq: 1 });
        }
        let header = encode_header(42, 3, &window);
        let path = meta_path(dir, 42);
        for bit in 0..header.len() * 8 {
            let mut h = header.clone();
            h[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &h).unwrap();
            match latest_header(&OsDisk, dir, 100, 100) {
                Err(NeedleError::Corrupted { .. }) => {}
                Err(e) => panic!("bit {bit}: {e}"),
                Ok(_) => panic!("bit {bit}: a rotted header was read"),
            }
        }
        std::fs::write(&path, &header).unwrap();
        let h = latest_header(&OsDisk, dir, 100, 100).unwrap().unwrap();
        assert_eq!(h.index, 42);
        assert!(h.window.contains(&RequestId { client: 7, seq: 1 }));
        // The previous format: `NDLRSNP2 | len | body`, no checksum.
        let body = &header[12..header.len() - 4];
        let mut old = HEADER_MAGIC_V2.to_vec();
        old.extend_from_slice(&(body.len() as u32).to_le_bytes());
        old.extend_from_slice(body);
        std::fs::write(&path, &old).unwrap();
        let h = latest_header(&OsDisk, dir, 100, 100).unwrap().unwrap();
        assert_eq!(h.index, 42);
        assert!(h.window.contains(&RequestId { client: 7, seq: 1 }));
    }

    /// A header whose checksum is valid and whose window names an entry past the snapshot's
    /// own index (no node records an entry it has not applied): `Corrupted`.
    #[test]
    fn a_header_whose_window_runs_past_its_index_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut window = DedupWindow::new(100);
        for i in 0..5 {
            window.record(40 + i, RequestId { client: i, seq: 1 });
        }
        std::fs::write(meta_path(dir, 44), encode_header(44, 3, &window)).unwrap();
        assert_eq!(
            latest_header(&OsDisk, dir, 100, 100)
                .unwrap()
                .unwrap()
                .index,
            44
        );
        std::fs::remove_file(meta_path(dir, 44)).unwrap();
        std::fs::write(meta_path(dir, 43), encode_header(43, 3, &window)).unwrap();
        match latest_header(&OsDisk, dir, 100, 100) {
            Err(NeedleError::Corrupted { .. }) => {}
            Err(e) => panic!("expected Corrupted, got {e}"),
            Ok(_) => panic!("a window past its snapshot was read"),
        }
    }

    /// A `.meta` (or a received stream) whose header names another index than its file name:
    /// only tampering or a misplaced file makes one. `Corrupted`, naming the file and both
    /// indexes; the file is left as it was.
    #[test]
    fn a_snapshot_header_that_disagrees_with_its_file_name_is_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let header = encode_header(42, 3, &DedupWindow::new(100));
        for path in [meta_path(dir, 43), incoming_file(dir, 43, 3)] {
            std::fs::write(&path, &header).unwrap();
            match latest_header(&OsDisk, dir, 100, 100) {
                Err(NeedleError::Corrupted {
                    file,
                    offset: 12,
                    reason,
                }) => {
                    assert_eq!(file, path);
                    assert!(reason.contains("42") && reason.contains("43"), "{reason}");
                }
                Err(e) => panic!("{}: expected Corrupted, got {e}", path.display()),
                Ok(_) => panic!("{}: a misnamed header was read", path.display()),
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                header,
                "a check never modifies"
            );
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(meta_path(dir, 42), &header).unwrap();
        let h = latest_header(&OsDisk, dir, 100, 100).unwrap().unwrap();
        assert_eq!((h.index, h.term), (42, 3));
    }

    /// A stream whose chunks name one snapshot and whose bytes (CRC and all) hold the header of
    /// another, or no header: refused when it completes, never stored under the chunks' name
    /// (where `latest_header` and `restore` would refuse it at every restart).
    #[test]
    fn a_received_stream_whose_header_names_another_snapshot_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        fill(&db, 0, 50);
        let src = prepare(&OsDisk, &dir_a, &db, 7, 3, &DedupWindow::new(100), true).unwrap();
        let mut chunks = Vec::new();
        send_chunks(&src, Message::default(), 1000, |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        let garbage = |mut cs: Vec<SnapshotChunk>| {
            cs[0].data[..8].copy_from_slice(b"NOTASNAP");
            let crc = cs
                .iter()
                .fold(0, |crc, c| crc32c::crc32c_append(crc, &c.data));
            for c in &mut cs {
                c.crc = crc;
            }
            cs
        };
        let renamed = |index: u64, term: u64| {
            let mut cs = chunks.clone();
            for c in &mut cs {
                (c.index, c.term) = (index, term);
            }
            cs
        };
        for (what, cs) in [
            ("another index", renamed(8, 3)),
            ("another term", renamed(7, 4)),
            ("no header", garbage(chunks.clone())),
        ] {
            let (index, term) = (cs[0].index, cs[0].term);
            let mut asm = Assembler::default();
            let mut last = None;
            for c in cs {
                last = Some(asm.add(
                    &OsDisk,
                    &dir_b,
                    1,
                    c,
                    Duration::from_secs(60),
                    Duration::ZERO,
                ));
            }
            match last.unwrap() {
                Err(NeedleError::InvalidMessage { .. }) => {}
                Err(e) => panic!("{what}: expected InvalidMessage, got {e}"),
                Ok(a) => panic!("{what}: the stream was taken: {a:?}"),
            }
            assert!(!incoming_file(&dir_b, index, term).exists(), "{what}");
            assert_eq!(
                latest_header(&OsDisk, &dir_b, 100, 100)
                    .unwrap()
                    .map(|h| h.index),
                None
            );
        }
        let mut asm = Assembler::default();
        for c in chunks {
            asm.add(
                &OsDisk,
                &dir_b,
                1,
                c,
                Duration::from_secs(60),
                Duration::ZERO,
            )
            .unwrap();
        }
        assert!(incoming_file(&dir_b, 7, 3).exists());
    }

    /// Acks a faulty or hostile receiver could send a transfer (another stream's id, a count past
    /// the stream's, chunks never sent, going back, repeated), between pumps through a transport
    /// that refuses at random and ticks. Never a panic; `acked <= next <= count`; the transfer
    /// finishes only on an ack of its own id and whole count (a receiver that lies about holding
    /// chunks is believed: raft-rs then probes it, and it asks for the snapshot again); every
    /// chunk sent is the stream's own chunk at its seq. Random: seed printed, `NEEDLE_SEED`.
    #[test]
    fn hostile_snapshot_acks_never_panic_nor_send_what_the_stream_is_not() {
        let seed = needle_testkit::seed(
            "hostile_snapshot_acks_never_panic_nor_send_what_the_stream_is_not",
        );
        let cases = needle_testkit::knob("NEEDLE_HOSTILE_CASES", 300);
        let mut rng = crate::sim::Rng::new(seed);
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        fill(&db, 0, 60);
        let src =
            Arc::new(prepare(&OsDisk, tmp.path(), &db, 7, 3, &DedupWindow::new(10), true).unwrap());
        let chunk_size = 700;
        let mut want = Vec::new();
        send_chunks(&src, Message::default(), chunk_size, |c| {
            want.push(c);
            Ok(())
        })
        .unwrap();
        let count = want.len() as u32;
        assert!(count > 4, "{count} chunks");
        for case in 0..cases {
            let ctx = format!("case {case} (NEEDLE_SEED={seed})");
            let mut out =
                Outgoing::new(src.clone(), Message::default(), chunk_size, Duration::ZERO).unwrap();
            let mut now = Duration::ZERO;
            for step in 0..20 {
                now += Duration::from_millis(rng.below(400));
                match rng.below(3) {
                    0 => {
                        let refuse = rng.below(4) == 0;
                        let window = rng.below(4 * chunk_size as u64);
                        out.pump(window, |c| {
                            let w = &want[c.seq as usize];
                            assert_eq!(&c, w, "{ctx} step {step}: a chunk not the stream's");
                            if refuse {
                                Err(NeedleError::invalid_message("full"))
                            } else {
                                Ok(())
                            }
                        })
                        .unwrap();
                    }
                    1 => {
                        let _ =
                            out.tick(now, Duration::from_millis(300), Duration::from_millis(3000));
                    }
                    _ => {
                        let received = [
                            0,
                            1,
                            out.acked,
                            out.next,
                            out.next.saturating_add(1),
                            count - 1,
                            count,
                            count + 1,
                            u32::MAX,
                        ][rng.below(9) as usize];
                        let (index, term) = [(7, 3), (7, 4), (8, 3), (0, 0), (u64::MAX, u64::MAX)]
                            [rng.below(5) as usize];
                        let a = SnapshotAck {
                            index,
                            term,
                            received,
                        };
                        let whole = (index, term) == (7, 3) && received == count;
                        let done = out.ack(&a, now);
                        assert_eq!(done, whole, "{ctx} step {step}: {a:?}");
                        if done {
                            break; // the node drops a finished transfer
                        }
                    }
                }
                assert!(
                    out.acked <= out.next && out.next <= out.count,
                    "{ctx} step {step}: acked {} next {} count {}",
                    out.acked,
                    out.next,
                    out.count
                );
            }
        }
    }

    /// A sender that starts stream after stream (each a first chunk only): one pending stream,
    /// one part file, one open handle per sender, not one per stream. Another sender's stream is
    /// kept, a late chunk of an older stream is refused, and a newer stream completes.
    #[test]
    fn a_sender_has_one_pending_stream_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        fill(&db, 0, 50);
        let src = prepare(&OsDisk, &dir_a, &db, 7, 3, &DedupWindow::new(10), true).unwrap();
        let mut chunks = Vec::new();
        send_chunks(&src, Message::default(), 1000, |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        let mut asm = Assembler::default();
        let add = |asm: &mut Assembler, from, c| {
            asm.add(
                &OsDisk,
                &dir_b,
                from,
                c,
                Duration::from_secs(60),
                Duration::ZERO,
            )
        };
        let mut other = chunks[0].clone();
        other.index = 5;
        add(&mut asm, 2, other).unwrap();
        for i in 0..200 {
            let mut c = chunks[0].clone();
            (c.index, c.term) = (6, 1000 + i);
            add(&mut asm, 1, c).unwrap();
        }
        assert_eq!(asm.pending.len(), 2);
        let parts = std::fs::read_dir(&dir_b).unwrap().count();
        assert_eq!(parts, 2, "one part file per sender");
        // A late chunk of an older stream does not replace the newest one.
        let mut late = chunks[1].clone();
        (late.index, late.term) = (6, 1100);
        assert!(add(&mut asm, 1, late).is_err());
        assert!(asm.pending.contains_key(&(1, 6, 1199)));
        for c in chunks {
            add(&mut asm, 1, c).unwrap();
        }
        assert!(incoming_file(&dir_b, 7, 3).exists());
        assert_eq!(asm.pending.len(), 1, "node 2's stream is still pending");
    }

    #[test]
    fn an_in_memory_snapshot_round_trips_and_a_bad_chunk_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        fill(&db, 0, 100);
        let src = prepare(&OsDisk, tmp.path(), &db, 5, 2, &DedupWindow::new(10), true).unwrap();
        let recv = tmp.path().join("recv");
        std::fs::create_dir_all(&recv).unwrap();
        assert!(deliver(&src, &recv, 512, true).is_err());
        assert!(!incoming_file(&recv, 5, 2).exists());
        deliver(&src, &recv, 512, false).unwrap();
        let other = Database::in_memory();
        restore(&OsDisk, &incoming_file(&recv, 5, 2), &other, 10, 5).unwrap();
        assert_eq!(other.state_checksum(), db.state_checksum());
        assert!(restore(&OsDisk, &incoming_file(&recv, 5, 2), &other, 10, 6).is_err());
        assert_eq!(
            newest_stream(&OsDisk, tmp.path(), 0, 10)
                .unwrap()
                .map(|(i, _)| i),
            Some(5)
        );
        assert_eq!(
            newest_stream(&OsDisk, tmp.path(), 5, 5)
                .unwrap()
                .map(|(i, _)| i),
            Some(5)
        );
        assert_eq!(newest_stream(&OsDisk, tmp.path(), 6, 10).unwrap(), None);
        assert_eq!(newest_stream(&OsDisk, tmp.path(), 0, 4).unwrap(), None);
    }

    #[test]
    fn a_received_stream_survives_cleanup_below_it_and_gives_the_dedup_window() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let db = Database::in_memory();
        db.create_collection("c", 4).unwrap();
        fill(&db, 0, 100);
        let mut window = DedupWindow::new(100);
        window.record(9, RequestId { client: 4, seq: 4 });
        let src = prepare(&OsDisk, &dir_a, &db, 9, 2, &window, true).unwrap();
        deliver(&src, &dir_b, 512, false).unwrap();
        // The receiver has an older snapshot of its own at 5.
        let own = Database::in_memory();
        own.create_collection("c", 4).unwrap();
        prepare(&OsDisk, &dir_b, &own, 5, 1, &DedupWindow::new(100), true).unwrap();
        // Making its own snapshot at 5 must not delete the received one at 9, which raft-rs
        // may already be about to install.
        remove_other_snapshots(&OsDisk, &dir_b, 5);
        assert!(incoming_file(&dir_b, 9, 2).exists());
        assert!(full_path(&dir_b, 5).exists());
        // A crash after restoring from the stream but before the installed snapshot's header
        // is written: the received stream's header gives the dedup window at 9.
        let h = latest_header(&OsDisk, &dir_b, 9, 100).unwrap().unwrap();
        assert_eq!(h.index, 9);
        assert!(h.window.contains(&RequestId { client: 4, seq: 4 }));
        assert_eq!(
            latest_header(&OsDisk, &dir_b, 8, 100)
                .unwrap()
                .unwrap()
                .index,
            5
        );
        // Once a snapshot at or above it is kept, the received stream goes.
        remove_other_snapshots(&OsDisk, &dir_b, 9);
        assert!(!incoming_file(&dir_b, 9, 2).exists());
        assert!(!full_path(&dir_b, 5).exists());
    }
}
