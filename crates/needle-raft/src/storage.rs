//! The Raft log storage: a directory of segment files, each a sequence of CRC-framed records
//! (entries, hard state, conf state, compaction point, installed snapshot). Everything raft-rs
//! reads is served from memory; the disk is written only from the Ready loop, with one `sync`
//! (and at most one fsync) per Ready. Owns no database and knows no network.
//!
//! Every byte goes through a [`Disk`] (the real file system by default; a simulated faulty disk
//! in tests), and the framing and the torn-versus-corrupted scan are needle-core's
//! ([`needle_core::disk::frame`]), shared with the database's log: a segment is a 24-byte
//! header (`magic | version 2 | salt u64 | crc32c`) then frames
//! `len: u32 LE | crc: u32 LE | body`, body = `kind: u8 | payload`, the CRC bound to the
//! segment's salt and the frame's offset ([`frame::Seal::Bound`]). Segments of format 1 (no
//! header, `crc32c(body)`) are still read, and the last one appended to, until the next roll.
//! Recovery replays every segment in order. In the last segment, a bad frame (short, zeros, bad
//! CRC) with no valid frame anywhere after it is a torn write and is cut; a bad frame followed by
//! a valid one, a whole frame (its CRC matches) that does not decode, or any bad frame in an
//! older segment, is `Corrupted { file, offset }` and nothing is cut.
//! Each segment starts with a `Base` record holding the whole non-entry state, so the oldest
//! segments can be deleted once all their entries are below the compaction point.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use needle_core::disk::frame::{self, End, Seal};
use needle_core::disk::{Disk, DiskFile, DiskLock, OpenMode};

use protobuf::Message as PbMessage;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{NeedleError, Result};

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_COMPACT: u8 = 4;
const KIND_SNAPSHOT: u8 = 5;
const KIND_BASE: u8 = 6;

/// A segment of format 2 starts `SEGMENT_MAGIC | version u32 | salt u64 | crc32c u32`. Read as
/// the length of a format-1 frame, the magic is over `frame::MAX_PAYLOAD` ('D' = 0x44 in its
/// fourth byte), so no format-1 segment starts with it.
const SEGMENT_MAGIC: &[u8; 8] = b"NEEDLRFT";
const SEGMENT_VERSION: u32 = 2;
const SEGMENT_HEADER: u64 = 24;

fn segment_header(salt: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Whether `data` starts with a format-2 segment header whose magic is damaged: the header's
/// checksum matches once [`SEGMENT_MAGIC`] is put in place of its first 8 bytes.
fn damaged_magic(data: &[u8]) -> bool {
    let Some(h) = data.get(..SEGMENT_HEADER as usize) else {
        return false;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(SEGMENT_MAGIC), &h[8..20]);
    crc == u32::from_le_bytes([h[20], h[21], h[22], h[23]])
}

fn new_salt(disk: &dyn Disk, dir: &Path) -> Result<u64> {
    disk.new_salt().map_err(|e| {
        NeedleError::io(
            format!("drawing the salt of a new segment in {}", dir.display()),
            e,
        )
    })
}

/// The founders' log starts as if a snapshot of the empty state machine had been installed at
/// (index 1, term 1) with the founders as voters. The state machine at index 1 is empty.
pub(crate) const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

/// The latest snapshot file this node holds: what `Storage::snapshot` hands to raft-rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotDescriptor {
    pub index: u64,
    pub term: u64,
    pub len: u64,
    pub crc: u32,
}

impl SnapshotDescriptor {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(&self.index.to_le_bytes());
        b.extend_from_slice(&self.term.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<SnapshotDescriptor> {
        let mut r = Reader::new(b);
        let d = SnapshotDescriptor {
            index: r.u64()?,
            term: r.u64()?,
            len: r.u64()?,
            crc: r.u32()?,
        };
        r.is_empty().then_some(d)
    }
}

/// The largest index or term a record may name. A log grows by one index an entry, so no log
/// reaches it; below it, replay's `index + 1` and `snap_index + entries` cannot overflow.
pub(crate) const MAX_RECORD_INDEX: u64 = 1 << 62;

/// Whether raft-rs restores `cs` as it is (`confchange::restore`, which is private: the same
/// steps through its public `Changer`), so that `Raft::new` neither fails nor panics on it.
pub(crate) fn check_conf_state(cs: &ConfState) -> std::result::Result<(), String> {
    use raft::prelude::{ConfChangeSingle, ConfChangeType};
    use raft::{Changer, ProgressTracker};
    let lists = [
        cs.get_voters(),
        cs.get_learners(),
        cs.get_voters_outgoing(),
        cs.get_learners_next(),
    ];
    if lists.iter().any(|l| l.contains(&0)) {
        return Err("node id 0".into());
    }
    let single = |node_id: u64, t: ConfChangeType| {
        let mut c = ConfChangeSingle {
            node_id,
            ..Default::default()
        };
        c.set_change_type(t);
        c
    };
    let (add, remove, learner) = (
        ConfChangeType::AddNode,
        ConfChangeType::RemoveNode,
        ConfChangeType::AddLearnerNode,
    );
    let outgoing: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|&id| single(id, add))
        .collect();
    let incoming: Vec<_> = cs
        .get_voters_outgoing()
        .iter()
        .map(|&id| single(id, remove))
        .chain(cs.get_voters().iter().map(|&id| single(id, add)))
        .chain(cs.get_learners().iter().map(|&id| single(id, learner)))
        .chain(cs.get_learners_next().iter().map(|&id| single(id, learner)))
        .collect();
    let mut tracker = ProgressTracker::new(1);
    let refused = |e: raft::Error| format!("raft-rs refuses it: {e}");
    if outgoing.is_empty() {
        for c in &incoming {
            let (cfg, changes) = Changer::new(&tracker)
                .simple(std::slice::from_ref(c))
                .map_err(refused)?;
            tracker.apply_conf(cfg, changes, 1);
        }
    } else {
        for c in &outgoing {
            let (cfg, changes) = Changer::new(&tracker)
                .simple(std::slice::from_ref(c))
                .map_err(refused)?;
            tracker.apply_conf(cfg, changes, 1);
        }
        let (cfg, changes) = Changer::new(&tracker)
            .enter_joint(cs.auto_leave, &incoming)
            .map_err(refused)?;
        tracker.apply_conf(cfg, changes, 1);
    }
    let back = tracker.conf().to_conf_state();
    let sorted = |l: &[u64]| {
        let mut l = l.to_vec();
        l.sort_unstable();
        l
    };
    let same = back.auto_leave == cs.auto_leave
        && [
            (back.get_voters(), cs.get_voters()),
            (back.get_learners(), cs.get_learners()),
            (back.get_voters_outgoing(), cs.get_voters_outgoing()),
            (back.get_learners_next(), cs.get_learners_next()),
        ]
        .iter()
        .all(|(a, b)| sorted(a) == sorted(b));
    if !same {
        return Err(format!("raft-rs would restore it as {back:?}"));
    }
    Ok(())
}

impl Record {
    /// The first index or term past [`MAX_RECORD_INDEX`] that the record names.
    fn index_past_the_bound(&self) -> Option<u64> {
        let mut named: Vec<u64> = Vec::new();
        match self {
            Record::Entries(ents) => named.extend(ents.iter().flat_map(|e| [e.index, e.term])),
            Record::HardState(hs) => named.extend([hs.term, hs.commit]),
            Record::ConfState { index, .. } => named.push(*index),
            Record::Compact { index, term } | Record::Snapshot { index, term, .. } => {
                named.extend([*index, *term])
            }
            Record::Base {
                hs,
                snap_index,
                snap_term,
                confs,
                last_index,
            } => {
                named.extend([hs.term, hs.commit, *snap_index, *snap_term]);
                named.extend(confs.iter().map(|(i, _)| *i));
                named.extend(*last_index);
            }
        }
        named.into_iter().find(|&i| i > MAX_RECORD_INDEX)
    }
}

#[derive(Debug)]
enum Record {
    Entries(Vec<Entry>),
    HardState(HardState),
    ConfState {
        index: u64,
        cs: ConfState,
    },
    Compact {
        index: u64,
        term: u64,
    },
    Snapshot {
        index: u64,
        term: u64,
        cs: ConfState,
    },
    Base {
        hs: HardState,
        snap_index: u64,
        snap_term: u64,
        confs: Vec<(u64, ConfState)>,
        /// The last index when the segment was started: entries `snap_index + 1 ..= last_index`
        /// are in older segments. `None` in a `Base` written before it was recorded.
        last_index: Option<u64>,
    },
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    max_index: u64,
}

/// The Raft log of one node. Implements [`raft::Storage`] from memory; writes are queued by the
/// `persist_*` methods and reach the disk at [`LogStore::sync`].
#[derive(Debug)]
pub(crate) struct LogStore {
    /// Held while the log is open: one node per `data_dir` (`<data_dir>/LOCK`).
    _lock: Arc<dyn DiskLock>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    segment_size: u64,
    segments: Vec<Segment>,
    active: Arc<dyn DiskFile>,
    active_len: u64,
    /// How the active segment's frames are checksummed; `None` while it holds no header yet.
    active_seal: Option<Seal>,
    buf: Vec<u8>,
    /// A write or fsync of the log failed: what is on disk after `active_len` is unknown (and
    /// after a failed fsync, the page cache may no longer hold what was written). Every later
    /// write is refused with this reason; a restart recovers from what is durable.
    failed: Option<String>,
    /// Entries `snap_index + 1 ..= last_index`.
    entries: Vec<Entry>,
    snap_index: u64,
    snap_term: u64,
    hs: HardState,
    /// Conf states by the index at which they took effect, ascending; the oldest kept is the one
    /// in force at `snap_index`.
    confs: Vec<(u64, ConfState)>,
    /// The applied index raft-rs starts from; `initial_state` returns the conf state at it.
    initial_applied: u64,
    snapshot: Option<SnapshotDescriptor>,
    /// A new snapshot is being made in the background: raft-rs is told to ask again later.
    preparing: bool,
    snapshot_wanted: Cell<bool>,
    /// A queued hard state commits a membership change: the next `sync` fsyncs even when raft
    /// says it need not. A commit index is otherwise written lazily; but a committed removal lets
    /// the removed node stop, and a leader that then restarts with an older commit index would
    /// count the stopped node as a voter again and never gather a quorum (simulator seed 1004807).
    commit_must_sync: bool,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:020}.seg"))
}

/// Opens (creating it if needed) a segment for appending.
fn open_segment(disk: &dyn Disk, path: &Path) -> Result<Arc<dyn DiskFile>> {
    disk.open(path, OpenMode::Create)
        .map_err(|e| NeedleError::io(format!("opening {}", path.display()), e))
}

pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir)
        .map_err(|e| NeedleError::io(format!("syncing directory {}", dir.display()), e))
}

impl LogStore {
    /// Opens the log in `dir`, creating it when there is none. A new log starts with `founders`
    /// as its voters (empty for a node that will join an existing cluster).
    pub(crate) fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        segment_size: u64,
        founders: &[u64],
    ) -> Result<LogStore> {
        disk.create_dir_all(dir)
            .map_err(|e| NeedleError::io(format!("creating {}", dir.display()), e))?;
        let lock_path = dir.join("LOCK");
        let lock: Arc<dyn DiskLock> = match disk.lock(&lock_path) {
            Ok(l) => Arc::from(l),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(needle_core::Error::Locked { path: lock_path }.into());
            }
            Err(e) => {
                return Err(NeedleError::io(
                    format!("locking {}", lock_path.display()),
                    e,
                ));
            }
        };
        let mut seqs = Vec::new();
        let listed = disk
            .list(dir)
            .map_err(|e| NeedleError::io(format!("listing {}", dir.display()), e))?;
        for path in listed {
            let Some(name) = path.file_name() else {
                continue;
            };
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_prefix("log-")
                .and_then(|s| s.strip_suffix(".seg"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        // A log whose only segment holds no complete record was never created: a crash cut
        // its creation between the file and its `Base` record (before creation went through a
        // rename). Nothing in it was ever acknowledged: create it anew.
        if let [only] = seqs[..] {
            let path = segment_path(dir, only);
            if read_segment(&*disk, &path, true)?.records.is_empty() {
                disk.remove(&path)
                    .map_err(|e| NeedleError::io(format!("removing {}", path.display()), e))?;
                sync_dir(&*disk, dir)?;
                seqs.clear();
            }
        }
        if seqs.is_empty() {
            return LogStore::create(lock, disk, dir, segment_size, founders);
        }
        // Segments before a hole in the numbering are not read. A compaction removes its
        // segments with one directory fsync after all the removals, so a power loss may keep any
        // subset of them: the segments before a hole are such leftovers, whose entries are all at
        // or below a compaction point recorded in a later segment; they are deleted once the
        // rest has been read. Read with the rest, they would not be harmless when the hole is a
        // segment lost otherwise: their entries would fill the gap that shows the loss, and
        // entries that the lost segment had overwritten would come back. From the segment after
        // the hole on, the log describes itself: that segment starts with a `Base` record, and a
        // gap after it that no compaction record covers is `Corrupted`.
        let after_hole = seqs
            .windows(2)
            .rposition(|w| w[1] != w[0] + 1)
            .map_or(0, |p| p + 1);
        let leftovers: Vec<u64> = seqs.drain(..after_hole).collect();
        let first_seq = seqs[0];
        let last_seq = seqs[seqs.len() - 1];
        let path = segment_path(dir, last_seq);
        let active = open_segment(&*disk, &path)?;
        let mut store = LogStore::empty(lock, disk, dir, segment_size, active);
        let mut term_known = true;
        let mut last_is_empty = false;
        for &seq in &seqs {
            let path = segment_path(dir, seq);
            let is_last = seq == last_seq;
            let SegmentRead {
                records,
                valid_len,
                file_len,
                seal,
            } = read_segment(&*store.disk, &path, is_last)?;
            if is_last {
                last_is_empty = records.is_empty();
                store.active_seal = seal;
            }
            if seq == first_seq
                && !leftovers.is_empty()
                && !matches!(records.first(), Some(Record::Base { .. }))
            {
                return Err(NeedleError::corrupted(
                    path,
                    0,
                    "the segment after a hole in the segment numbers does not start with a base record",
                ));
            }
            let mut max_index = 0;
            for rec in records {
                if let Some(i) = rec.index_past_the_bound() {
                    return Err(NeedleError::corrupted(
                        path,
                        0,
                        format!("a record names index or term {i}, past {MAX_RECORD_INDEX}"),
                    ));
                }
                if let Record::Entries(ents) = &rec {
                    if let Some(e) = ents.last() {
                        max_index = max_index.max(e.index);
                    }
                }
                store.replay(rec, &mut term_known);
            }
            if is_last && valid_len < file_len {
                store
                    .active
                    .set_len(valid_len)
                    .and_then(|_| store.active.sync())
                    .map_err(|e| {
                        NeedleError::io(format!("truncating torn tail of {}", path.display()), e)
                    })?;
            }
            if is_last {
                store.active_len = valid_len;
            }
            store.segments.push(Segment {
                seq,
                path,
                max_index,
            });
        }
        if !term_known {
            return Err(NeedleError::corrupted(
                segment_path(dir, first_seq),
                0,
                "log has a gap that no compaction record covers",
            ));
        }
        let commit = store.hs.commit;
        if commit < store.snap_index || commit > store.last_index() {
            // The log never writes a commit index outside the entries it holds (entries are
            // written before the hard state that commits them; a snapshot or compaction point
            // is committed). raft-rs panics on one at start: refuse the log instead.
            return Err(NeedleError::corrupted(
                segment_path(dir, last_seq),
                0,
                format!(
                    "the commit index {commit} is outside the log's entries ({} to {})",
                    store.snap_index,
                    store.last_index()
                ),
            ));
        }
        store
            .check_replayed()
            .map_err(|why| NeedleError::corrupted(segment_path(dir, last_seq), 0, why))?;
        if !leftovers.is_empty() {
            for seq in leftovers {
                let path = segment_path(dir, seq);
                store
                    .disk
                    .remove(&path)
                    .map_err(|e| NeedleError::io(format!("removing {}", path.display()), e))?;
            }
            sync_dir(&*store.disk, dir)?;
        }
        if store.active_seal.is_none() {
            // The last segment holds no header (a roll cut short): it gets one before anything.
            store.start_segment()?;
        }
        if last_is_empty && seqs.len() > 1 {
            // A crash cut a roll between the new segment's creation and its `Base` record: give
            // it one now, so that it stands alone once the older segments are deleted.
            let base = store.base_record();
            store.push(&base);
            store.sync_inner(true)?;
        }
        Ok(store)
    }

    fn empty(
        lock: Arc<dyn DiskLock>,
        disk: Arc<dyn Disk>,
        dir: &Path,
        segment_size: u64,
        active: Arc<dyn DiskFile>,
    ) -> LogStore {
        LogStore {
            _lock: lock,
            disk,
            failed: None,
            dir: dir.to_path_buf(),
            segment_size,
            segments: Vec::new(),
            active,
            active_len: 0,
            active_seal: None,
            buf: Vec::new(),
            entries: Vec::new(),
            snap_index: 0,
            snap_term: 0,
            hs: HardState::default(),
            confs: Vec::new(),
            initial_applied: 0,
            snapshot: None,
            preparing: false,
            snapshot_wanted: Cell::new(false),
            commit_must_sync: false,
        }
    }

    /// Creates a new log, crash-atomically: the first segment is written and fsynced under a
    /// temporary name, then renamed into place. Founders start from the bootstrap point
    /// (index 1, term 1, the founders as voters), exactly as if they had installed a snapshot
    /// there: the founding configuration is part of the log's compaction point, so a node that
    /// joins later can only be caught up by a snapshot carrying it, never by replaying entries
    /// from an empty configuration (raft-rs's own examples bootstrap the same way). A joiner
    /// (no founders) starts at index 0 with no configuration and waits for that snapshot.
    fn create(
        lock: Arc<dyn DiskLock>,
        disk: Arc<dyn Disk>,
        dir: &Path,
        segment_size: u64,
        founders: &[u64],
    ) -> Result<LogStore> {
        let path = segment_path(dir, 1);
        let tmp = path.with_extension("seg.tmp");
        let base = if founders.is_empty() {
            Record::Base {
                hs: HardState::default(),
                snap_index: 0,
                snap_term: 0,
                confs: vec![],
                last_index: Some(0),
            }
        } else {
            let mut cs = ConfState::default();
            cs.set_voters(founders.to_vec());
            let hs = HardState {
                term: BOOTSTRAP_TERM,
                commit: BOOTSTRAP_INDEX,
                ..Default::default()
            };
            Record::Base {
                hs,
                snap_index: BOOTSTRAP_INDEX,
                snap_term: BOOTSTRAP_TERM,
                confs: vec![(BOOTSTRAP_INDEX, cs)],
                last_index: Some(BOOTSTRAP_INDEX),
            }
        };
        let salt = new_salt(&*disk, dir)?;
        let seal = Seal::Bound { salt };
        let mut bytes = segment_header(salt).to_vec();
        encode_record(&base, seal, SEGMENT_HEADER, &mut bytes);
        disk.open(&tmp, OpenMode::CreateTruncate)
            .and_then(|f| {
                f.write_all_at(0, &bytes)?;
                f.sync()
            })
            .map_err(|e| NeedleError::io(format!("creating {}", tmp.display()), e))?;
        disk.rename(&tmp, &path)
            .map_err(|e| NeedleError::io(format!("renaming {}", tmp.display()), e))?;
        sync_dir(&*disk, dir)?;
        let active = open_segment(&*disk, &path)?;
        let mut store = LogStore::empty(lock, disk, dir, segment_size, active);
        store.active_len = bytes.len() as u64;
        store.active_seal = Some(seal);
        store.apply(base);
        store.segments.push(Segment {
            seq: 1,
            path,
            max_index: 0,
        });
        Ok(store)
    }

    /// Applies a record read back from the log. Replay differs from the live path in one way:
    /// the oldest segments may have been deleted after a compaction, so the first entries read
    /// can start past the last index known so far (a gap). Until a record that sets the real
    /// compaction point at or past that gap is read (`term_known` false until then), the entries
    /// before it are unknown, and the replayed state is provisional: its compaction point is
    /// just before the first entry read.
    ///
    /// While it is provisional, an `Entries` record may start at or before that point: a leader
    /// overwrote, from that index on, entries that the deleted segments held — and with them
    /// every later entry, those read after the gap included. The provisional point then moves
    /// back to just before the overwrite. (Applied as a live record, it would be dropped as
    /// already compacted and the overwritten entries would come back: case seed
    /// 2898690606144881363 of the power-loss test, entries 218–221 of term 53 resurrected
    /// after the entry 217 of term 54 had replaced them.)
    fn replay(&mut self, rec: Record, term_known: &mut bool) {
        if let Record::Entries(ents) = &rec {
            if let Some(first) = ents.first() {
                let past_the_end = first.index > self.last_index() + 1;
                let below_a_provisional_point = !*term_known && first.index <= self.snap_index;
                if past_the_end || below_a_provisional_point {
                    self.open_gap(first.index - 1, term_known);
                }
            }
        }
        let sets_the_point = match &rec {
            Record::Compact { index, .. } => *index >= self.snap_index,
            Record::Base { snap_index, .. } => *snap_index >= self.snap_index,
            Record::Snapshot { .. } => true,
            _ => false,
        };
        if sets_the_point {
            *term_known = true;
        }
        let base_last = match &rec {
            Record::Base { last_index, .. } => *last_index,
            _ => None,
        };
        self.apply(rec);
        if let Some(last) = base_last {
            if self.last_index() < last {
                // Entries up to `last` were written before this segment, in segments not read
                // (deleted after a compaction, or lost): a gap, as above, that only a later
                // compaction record at or past it covers. Without this, a lost segment whose
                // entries all follow this `Base` read as a lost tail.
                self.open_gap(last, term_known);
            }
        }
    }

    /// Replay meets entries it cannot see: everything up to `before` is unknown until a
    /// compaction record at or past it is read. The state becomes provisional: no entries, the
    /// compaction point at `before`, its term unknown.
    fn open_gap(&mut self, before: u64, term_known: &mut bool) {
        self.entries.clear();
        self.snap_index = before;
        *term_known = false;
    }

    /// Applies a record to the in-memory state (live and during replay alike).
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Entries(ents) => self.apply_entries(ents),
            Record::HardState(hs) => self.hs = hs,
            Record::ConfState { index, cs } => {
                self.confs.retain(|(i, _)| *i < index);
                self.confs.push((index, cs));
            }
            Record::Compact { index, term } => self.apply_compact(index, term),
            Record::Snapshot { index, term, cs } => {
                self.entries.clear();
                self.snap_index = index;
                self.snap_term = term;
                if self.hs.commit < index {
                    self.hs.commit = index;
                }
                self.confs.retain(|(i, _)| *i < index);
                self.confs.push((index, cs));
                self.prune_confs();
            }
            Record::Base {
                hs,
                snap_index,
                snap_term,
                confs,
                last_index: _,
            } => {
                self.hs = hs;
                self.apply_compact(snap_index, snap_term);
                self.confs = confs;
            }
        }
    }

    fn apply_entries(&mut self, mut ents: Vec<Entry>) {
        ents.retain(|e| e.index > self.snap_index);
        let Some(first) = ents.first().map(|e| e.index) else {
            return;
        };
        let keep = (first - self.snap_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend(ents);
    }

    fn apply_compact(&mut self, index: u64, term: u64) {
        if index < self.snap_index {
            return;
        }
        if index >= self.last_index() {
            self.entries.clear();
        } else {
            self.entries.drain(..(index - self.snap_index) as usize);
        }
        self.snap_index = index;
        self.snap_term = term;
        self.prune_confs();
    }

    /// What raft-rs assumes of the conf states it starts from, and panics on otherwise
    /// (`Raft::new`: `confchange::restore` and its "invalid restore"; the commit index is
    /// checked by `open` itself): conf states in index order, each one raft-rs rebuilds as it
    /// is. The live path never writes anything else; a record with a valid checksum and a
    /// hostile field does.
    fn check_replayed(&self) -> std::result::Result<(), String> {
        if let Some(w) = self.confs.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "conf states out of order (index {} before {})",
                w[0].0, w[1].0
            ));
        }
        for (index, cs) in &self.confs {
            check_conf_state(cs)
                .map_err(|why| format!("the conf state at index {index}: {why}"))?;
        }
        Ok(())
    }

    fn prune_confs(&mut self) {
        let in_force = self.confs.iter().rposition(|(i, _)| *i <= self.snap_index);
        if let Some(p) = in_force {
            self.confs.drain(..p);
        }
    }

    fn push(&mut self, rec: &Record) {
        let seal = self
            .active_seal
            .expect("the active segment has its header before any record is queued");
        let offset = self.active_len + self.buf.len() as u64;
        encode_record(rec, seal, offset, &mut self.buf);
    }

    /// Queues the header of the (empty) active segment, under a new salt.
    fn start_segment(&mut self) -> Result<()> {
        debug_assert!(self.active_len == 0 && self.buf.is_empty());
        let salt = match self.disk.new_salt() {
            Ok(salt) => salt,
            Err(e) => {
                return Err(self.fail(
                    format!(
                        "drawing the salt of a new segment in {}",
                        self.dir.display()
                    ),
                    e,
                ));
            }
        };
        self.buf.extend_from_slice(&segment_header(salt));
        self.active_seal = Some(Seal::Bound { salt });
        Ok(())
    }

    // ---- the write side, called from the Ready loop ----

    /// Queues `ents` (replacing any stored entries from `ents[0].index` on).
    pub(crate) fn persist_entries(&mut self, ents: &[Entry]) {
        if ents.is_empty() {
            return;
        }
        let rec = Record::Entries(ents.to_vec());
        self.push(&rec);
        if let Some(seg) = self.segments.last_mut() {
            seg.max_index = seg.max_index.max(ents[ents.len() - 1].index);
        }
        self.apply(rec);
    }

    /// Whether raising the commit index to `commit` commits a membership change.
    pub(crate) fn commits_conf_change(&self, commit: u64) -> bool {
        commit > self.hs.commit
            && self
                .entries_in(self.hs.commit + 1, commit)
                .iter()
                .any(|e| e.get_entry_type() != EntryType::EntryNormal)
    }

    pub(crate) fn persist_hard_state(&mut self, hs: &HardState) {
        if self.commits_conf_change(hs.commit) {
            self.commit_must_sync = true;
        }
        let rec = Record::HardState(hs.clone());
        self.push(&rec);
        self.apply(rec);
    }

    pub(crate) fn persist_commit(&mut self, commit: u64) {
        let mut hs = self.hs.clone();
        hs.commit = commit;
        self.persist_hard_state(&hs);
    }

    /// Records the conf state that took effect when the entry at `index` was applied.
    pub(crate) fn persist_conf_state(&mut self, index: u64, cs: &ConfState) {
        let rec = Record::ConfState {
            index,
            cs: cs.clone(),
        };
        self.push(&rec);
        self.apply(rec);
    }

    /// Replaces the whole log with an installed snapshot's point.
    pub(crate) fn persist_snapshot(&mut self, meta: &SnapshotMetadata) {
        let rec = Record::Snapshot {
            index: meta.index,
            term: meta.term,
            cs: meta.get_conf_state().clone(),
        };
        self.push(&rec);
        self.apply(rec);
    }

    /// Drops every entry up to and including `index` (which must be applied and durable in a
    /// snapshot file). Deletes whole segments that no longer hold live entries.
    pub(crate) fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.snap_index {
            return Ok(());
        }
        let term = self.term_of(index).ok_or_else(|| NeedleError::Internal {
            reason: format!(
                "cannot compact to {index}: beyond the last index {}",
                self.last_index()
            ),
        })?;
        let rec = Record::Compact { index, term };
        self.push(&rec);
        self.apply(rec);
        let deletable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.max_index <= self.snap_index)
            .count();
        if deletable > 0 {
            self.roll()?;
            for seg in self.segments.drain(..deletable).collect::<Vec<_>>() {
                if let Err(e) = self.disk.remove(&seg.path) {
                    return Err(self.fail(format!("deleting {}", seg.path.display()), e));
                }
            }
            if let Err(e) = self.disk.sync_dir(&self.dir) {
                return Err(self.fail(format!("syncing directory {}", self.dir.display()), e));
            }
        } else {
            self.sync(false)?;
        }
        Ok(())
    }

    /// With `fsync`, writes the queued records in one write and fsyncs them; without, keeps
    /// them queued for the next fsync. Rolls to a new segment when the active one is full.
    ///
    /// Records that need no fsync (a commit index alone, a compaction point) are not written on
    /// their own: two unsynced appends can reach the disk out of order, and a power loss that
    /// keeps the second and drops the first leaves a hole followed by a valid frame — which
    /// recovery must call corruption. So every write of the log is followed by its fsync, and a
    /// power loss can only tear the last write (a torn tail). Losing a queued commit index is
    /// harmless: the database's checkpoint (what a restart applies from) is taken only after an
    /// fsync, so the persisted commit always covers it.
    ///
    /// After a failed write or fsync every later call fails too (the log's tail on disk is
    /// unknown, and a failed fsync may have dropped written pages from the cache: retrying it
    /// could report success for bytes that are gone). The node stops; a restart recovers from
    /// what is durable.
    pub(crate) fn sync(&mut self, fsync: bool) -> Result<()> {
        let fsync = fsync || self.commit_must_sync;
        if (!fsync || self.buf.is_empty()) && self.failed.is_none() {
            // Nothing written is unsynced: every write is followed by its fsync.
            return Ok(());
        }
        if let Some(why) = &self.failed {
            return Err(NeedleError::io(
                format!(
                    "the raft log in {} refuses writes after an earlier failure ({why})",
                    self.dir.display()
                ),
                std::io::Error::other("raft log failed earlier"),
            ));
        }
        if let Err(e) = self.active.write_all_at(self.active_len, &self.buf) {
            return Err(self.fail(
                format!("appending to the raft log in {}", self.dir.display()),
                e,
            ));
        }
        self.active_len += self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = self.active.sync() {
            return Err(self.fail(
                format!("fsyncing the raft log in {}", self.dir.display()),
                e,
            ));
        }
        self.commit_must_sync = false;
        if self.active_len >= self.segment_size {
            self.roll()?;
        }
        Ok(())
    }

    fn fail(&mut self, what: String, e: std::io::Error) -> NeedleError {
        self.failed = Some(format!("{what}: {e}"));
        NeedleError::io(what, e)
    }

    fn base_record(&self) -> Record {
        Record::Base {
            hs: self.hs.clone(),
            snap_index: self.snap_index,
            snap_term: self.snap_term,
            confs: self.confs.clone(),
            last_index: Some(self.last_index()),
        }
    }

    /// Starts a new segment with a `Base` record holding the current non-entry state.
    fn roll(&mut self) -> Result<()> {
        self.sync_inner(true)?;
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.dir, seq);
        let active = match open_segment(&*self.disk, &path) {
            Ok(f) => f,
            Err(e) => {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        };
        self.active = active;
        self.active_len = 0;
        self.segments.push(Segment {
            seq,
            path,
            max_index: 0,
        });
        self.start_segment()?;
        let base = self.base_record();
        self.push(&base);
        self.sync_inner(true)?;
        let synced = sync_dir(&*self.disk, &self.dir);
        if let Err(e) = &synced {
            self.failed = Some(e.to_string());
        }
        synced
    }

    fn sync_inner(&mut self, fsync: bool) -> Result<()> {
        let size = self.segment_size;
        self.segment_size = u64::MAX;
        let r = self.sync(fsync);
        self.segment_size = size;
        r
    }

    // ---- queries for the node ----

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hs
    }

    pub(crate) fn snap_index(&self) -> u64 {
        self.snap_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }

    pub(crate) fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snap_index {
            return Some(self.snap_term);
        }
        if index < self.snap_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snap_index - 1) as usize].term)
    }

    /// Entries `low..=high` still in the log (those below the compaction point are skipped).
    pub(crate) fn entries_in(&self, low: u64, high: u64) -> &[Entry] {
        let low = low.max(self.snap_index + 1);
        let high = high.min(self.last_index());
        if low > high {
            return &[];
        }
        &self.entries[(low - self.snap_index - 1) as usize..=(high - self.snap_index - 1) as usize]
    }

    /// The conf state in force after applying index `index`.
    pub(crate) fn conf_state_at(&self, index: u64) -> ConfState {
        self.confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .unwrap_or_default()
    }

    pub(crate) fn set_initial_applied(&mut self, applied: u64) {
        self.initial_applied = applied;
    }

    pub(crate) fn set_snapshot(&mut self, d: Option<SnapshotDescriptor>) {
        self.snapshot = d;
        self.snapshot_wanted.set(false);
    }

    /// While true, `Storage::snapshot` answers `SnapshotTemporarilyUnavailable` (raft-rs asks
    /// again on a later heartbeat response).
    pub(crate) fn set_preparing(&mut self, preparing: bool) {
        self.preparing = preparing;
    }

    /// True once raft-rs asked for a snapshot that this node does not have yet.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hs.clone(),
            conf_state: self.conf_state_at(self.initial_applied),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.snap_index - 1) as usize;
        let hi = (high - self.snap_index - 1) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(LogStore::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        match self.snapshot {
            _ if self.preparing => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
            // A snapshot whose configuration lacks the receiver would be ignored by it (raft.rs
            // `restore`): ask for a newer one instead.
            Some(d)
                if d.index >= request_index
                    && d.index >= self.snap_index
                    && d.index > 0
                    && conf_has(&self.conf_state_at(d.index), to) =>
            {
                let mut snap = Snapshot {
                    data: d.encode().into(),
                    ..Default::default()
                };
                let meta = snap.mut_metadata();
                meta.index = d.index;
                meta.term = d.term;
                meta.set_conf_state(self.conf_state_at(d.index));
                Ok(snap)
            }
            _ => {
                self.snapshot_wanted.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

/// Whether `id` is a member (voter or learner, incoming or outgoing) of `cs`.
pub(crate) fn conf_has(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id)
        || cs.learners.contains(&id)
        || cs.voters_outgoing.contains(&id)
        || cs.learners_next.contains(&id)
}

// ---- framing ----

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn pb<M: PbMessage>(m: &M) -> Vec<u8> {
    m.write_to_bytes()
        .expect("protobuf encoding of a raft type into a Vec cannot fail")
}

/// Appends the frame of `rec`, to be stored at `offset` of a segment sealed with `seal`.
fn encode_record(rec: &Record, seal: Seal, offset: u64, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    match rec {
        Record::Entries(ents) => {
            body.push(KIND_ENTRIES);
            body.extend_from_slice(&(ents.len() as u32).to_le_bytes());
            for e in ents {
                put_bytes(&mut body, &pb(e));
            }
        }
        Record::HardState(hs) => {
            body.push(KIND_HARD_STATE);
            put_bytes(&mut body, &pb(hs));
        }
        Record::ConfState { index, cs } => {
            body.push(KIND_CONF_STATE);
            body.extend_from_slice(&index.to_le_bytes());
            put_bytes(&mut body, &pb(cs));
        }
        Record::Compact { index, term } => {
            body.push(KIND_COMPACT);
            body.extend_from_slice(&index.to_le_bytes());
            body.extend_from_slice(&term.to_le_bytes());
        }
        Record::Snapshot { index, term, cs } => {
            body.push(KIND_SNAPSHOT);
            body.extend_from_slice(&index.to_le_bytes());
            body.extend_from_slice(&term.to_le_bytes());
            put_bytes(&mut body, &pb(cs));
        }
        Record::Base {
            hs,
            snap_index,
            snap_term,
            confs,
            last_index,
        } => {
            body.push(KIND_BASE);
            put_bytes(&mut body, &pb(hs));
            body.extend_from_slice(&snap_index.to_le_bytes());
            body.extend_from_slice(&snap_term.to_le_bytes());
            body.extend_from_slice(&(confs.len() as u32).to_le_bytes());
            for (i, cs) in confs {
                body.extend_from_slice(&i.to_le_bytes());
                put_bytes(&mut body, &pb(cs));
            }
            if let Some(last) = last_index {
                body.extend_from_slice(&last.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&seal.crc(offset, &body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// A bounds-checked little-endian reader over untrusted bytes.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    /// Everything not read yet (consumes it).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

fn parse<M: PbMessage>(b: &[u8]) -> Option<M> {
    M::parse_from_bytes(b).ok()
}

fn decode_record(body: &[u8]) -> Option<Record> {
    let mut r = Reader::new(body);
    let rec = match r.u8()? {
        KIND_ENTRIES => {
            let n = r.u32()? as usize;
            let mut ents: Vec<Entry> = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let e = parse::<Entry>(r.bytes()?)?;
                // The log only ever writes runs of consecutive indexes from 1 on, whose terms
                // never fall. Anything else (a crafted record: its checksum matches) would
                // underflow replay's arithmetic or reach raft-rs, which panics on it.
                let follows = match ents.last() {
                    None => e.index >= 1,
                    Some(prev) => prev.index.checked_add(1) == Some(e.index) && e.term >= prev.term,
                };
                if !follows {
                    return None;
                }
                ents.push(e);
            }
            Record::Entries(ents)
        }
        KIND_HARD_STATE => Record::HardState(parse(r.bytes()?)?),
        KIND_CONF_STATE => Record::ConfState {
            index: r.u64()?,
            cs: parse(r.bytes()?)?,
        },
        KIND_COMPACT => Record::Compact {
            index: r.u64()?,
            term: r.u64()?,
        },
        KIND_SNAPSHOT => Record::Snapshot {
            index: r.u64()?,
            term: r.u64()?,
            cs: parse(r.bytes()?)?,
        },
        KIND_BASE => {
            let hs = parse(r.bytes()?)?;
            let snap_index = r.u64()?;
            let snap_term = r.u64()?;
            let n = r.u32()? as usize;
            let mut confs = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                confs.push((r.u64()?, parse(r.bytes()?)?));
            }
            let last_index = if r.is_empty() { None } else { Some(r.u64()?) };
            Record::Base {
                hs,
                snap_index,
                snap_term,
                confs,
                last_index,
            }
        }
        _ => return None,
    };
    r.is_empty().then_some(rec)
}

/// What [`read_segment`] found in one segment.
struct SegmentRead {
    records: Vec<Record>,
    /// Bytes up to the end of the last valid record (the header's end if none; 0 without one).
    valid_len: u64,
    file_len: u64,
    /// How its frames are checksummed; `None` for a segment with neither header nor record
    /// (a creation or roll cut short), which gets a header before anything is appended.
    seal: Option<Seal>,
}

/// Reads one segment: its records, the length of its valid prefix, and the file length.
///
/// A segment that starts with [`SEGMENT_MAGIC`] is of format 2 (its header is checked: a bad
/// one is `Corrupted`, a short one in the last segment is a roll cut short); any other is read
/// as format 1, exactly as before format 2 existed.
///
/// The last segment may end in a torn write (see [`frame::scan`]): a bad frame with no valid
/// frame anywhere after it, which the caller cuts. A bad frame followed by a valid one, a whole
/// frame that does not decode, or any bad frame in a sealed segment, is `Corrupted`.
fn read_segment(disk: &dyn Disk, path: &Path, is_last: bool) -> Result<SegmentRead> {
    let data = disk
        .open(path, OpenMode::Read)
        .and_then(|f| f.read_all())
        .map_err(|e| NeedleError::io(format!("reading {}", path.display()), e))?;
    let len = data.len() as u64;
    let (seal, base) = if data.starts_with(SEGMENT_MAGIC) {
        let Some(h) = data.get(..SEGMENT_HEADER as usize) else {
            if is_last {
                // The header of a new segment, cut short: nothing was ever written after it.
                return Ok(SegmentRead {
                    records: Vec::new(),
                    valid_len: 0,
                    file_len: len,
                    seal: None,
                });
            }
            return Err(NeedleError::corrupted(
                path,
                0,
                "a sealed segment cut short inside its header",
            ));
        };
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if crc32c::crc32c(&h[..20]) != u32::from_le_bytes([h[20], h[21], h[22], h[23]]) {
            return Err(NeedleError::corrupted(
                path,
                0,
                "segment header checksum mismatch",
            ));
        }
        if version != SEGMENT_VERSION {
            return Err(needle_core::Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: version,
                supported: SEGMENT_VERSION,
            }
            .into());
        }
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&h[12..20]);
        let salt = u64::from_le_bytes(salt);
        (Seal::Bound { salt }, SEGMENT_HEADER)
    } else if damaged_magic(&data) {
        // A format-2 header whose checksum holds once the magic is put back: bits of the magic
        // rotted. Read as format 1 it would be one torn frame — the whole log cut.
        return Err(NeedleError::corrupted(
            path,
            0,
            "segment magic damaged (the rest of the header is a valid format-2 header)",
        ));
    } else {
        (Seal::Payload, 0)
    };
    let scan = frame::scan(&data[base as usize..], seal, base, decode_record);
    let valid_len = scan.valid_len();
    let records: Vec<Record> = scan.records.into_iter().map(|r| r.value).collect();
    match scan.end {
        End::Clean => {}
        End::Torn { offset, .. } if !is_last => {
            return Err(NeedleError::corrupted(
                path,
                offset,
                "a bad frame in a sealed segment (only the last segment may end in a torn write)",
            ));
        }
        End::Torn { .. } => {}
        End::Corrupted {
            offset,
            next_valid,
            reason,
        } => {
            let reason = if reason == frame::UNDECODABLE {
                reason.to_string()
            } else {
                format!("{reason}, followed by a valid frame at offset {next_valid}")
            };
            return Err(NeedleError::corrupted(path, offset, reason));
        }
    }
    // A format-1 segment without a record has nothing to go on: it starts over in format 2.
    let seal = (seal != Seal::Payload || !records.is_empty()).then_some(seal);
    Ok(SegmentRead {
        records,
        valid_len,
        file_len: len,
        seal,
    })
}

#[cfg(test)]
mod sim_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use needle_core::disk::OsDisk;
    use raft::Storage;

    fn os() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    /// The seal of a format-2 segment, from its header.
    fn seal_of(segment: &[u8]) -> Seal {
        assert!(segment.starts_with(SEGMENT_MAGIC));
        let salt = u64::from_le_bytes(segment[12..20].try_into().unwrap());
        Seal::Bound { salt }
    }

    /// A segment as the first format wrote it: no header, frames `crc32c(body)`.
    fn first_format_segment(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for rec in records {
            let at = out.len();
            encode_record(rec, Seal::Payload, 0, &mut out);
            let crc = u32::from_le_bytes(out[at + 4..at + 8].try_into().unwrap());
            assert_eq!(
                crc,
                crc32c::crc32c(&out[at + 8..]),
                "the first format's CRC"
            );
        }
        out
    }

    #[test]
    fn a_first_format_log_opens_is_appended_to_and_rolls_into_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut cs = ConfState::default();
        cs.set_voters(vec![1, 2, 3]);
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..Default::default()
        };
        let mut old = first_format_segment(&[
            Record::Base {
                hs: HardState {
                    term: 1,
                    commit: 1,
                    ..Default::default()
                },
                snap_index: 1,
                snap_term: 1,
                confs: vec![(1, cs)],
                last_index: None,
            },
            Record::Entries((2..=4).map(|i| ent(i, 2)).collect()),
            Record::HardState(hs.clone()),
        ]);
        let whole = old.len() as u64;
        let torn = first_format_segment(&[Record::Entries(vec![ent(5, 2)])]);
        old.extend_from_slice(&torn[..torn.len() - 3]);
        let seg1 = segment_path(dir.path(), 1);
        std::fs::write(&seg1, &old).unwrap();

        let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        assert_eq!(LogStore::last_index(&s), 4);
        assert_eq!(s.hard_state(), &hs);
        assert_eq!(s.conf_state_at(4).voters, vec![1, 2, 3]);
        assert_eq!(
            std::fs::metadata(&seg1).unwrap().len(),
            whole,
            "torn tail cut"
        );
        // Appended to in its own format.
        s.persist_entries(&[ent(5, 2)]);
        s.sync(true).unwrap();
        drop(s);
        let bytes = std::fs::read(&seg1).unwrap();
        assert!(!bytes.starts_with(SEGMENT_MAGIC));
        let scan = frame::scan(&bytes, Seal::Payload, 0, decode_record);
        assert_eq!((scan.end, scan.records.len()), (End::Clean, 4));
        // The next roll starts a segment of the current format; both read back.
        let mut s = LogStore::open(os(), dir.path(), 1, &[]).unwrap();
        assert_eq!(LogStore::last_index(&s), 5);
        s.persist_entries(&[ent(6, 2)]);
        s.sync(true).unwrap();
        drop(s);
        let seg2 = std::fs::read(segment_path(dir.path(), 2)).unwrap();
        assert!(seg2.starts_with(SEGMENT_MAGIC));
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        assert_eq!(LogStore::last_index(&s), 6);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.conf_state_at(6).voters, vec![1, 2, 3]);
    }

    /// A roll cut short leaves a last segment with no header, or half of one: it gets a header
    /// and a `Base` record; a damaged header of a sealed segment is corruption.
    #[test]
    fn a_segment_header_cut_short_is_a_roll_to_finish_and_a_bad_one_is_corruption() {
        for leftover in [
            &b""[..],
            &b"NEEDLRF"[..],
            &b"NEEDLRFT\x02\0"[..],
            &[0u8; 24][..],
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1, 2]).unwrap();
                s.persist_entries(&[ent(2, 1), ent(3, 1)]);
                s.sync(true).unwrap();
            }
            std::fs::write(segment_path(dir.path(), 2), leftover).unwrap();
            let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
            assert_eq!(LogStore::last_index(&s), 3, "{leftover:?}");
            drop(s);
            let seg2 = std::fs::read(segment_path(dir.path(), 2)).unwrap();
            assert!(seg2.starts_with(SEGMENT_MAGIC), "{leftover:?}");
            let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
            assert_eq!(LogStore::last_index(&s), 3);
            assert_eq!(s.conf_state_at(3).voters, vec![1, 2]);
        }
        let dir = tempfile::tempdir().unwrap();
        drop(LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap());
        let seg = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[14] ^= 1; // the salt: the header's checksum no longer holds
        std::fs::write(&seg, &bytes).unwrap();
        match LogStore::open(os(), dir.path(), 1 << 20, &[]) {
            Err(NeedleError::Corrupted { offset: 0, .. }) => {}
            other => panic!("expected Corrupted at 0, got {other:?}"),
        }
    }

    #[test]
    fn fresh_log_answers_like_raft_expects() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[1, 2, 3]).unwrap();
        // The founders' bootstrap point: as if a snapshot at (1, 1) had been installed.
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(Storage::last_index(&s).unwrap(), 1);
        assert_eq!(s.term(1).unwrap(), 1);
        let st = s.initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 1);
        assert_eq!(s.conf_state_at(1).voters, vec![1, 2, 3]);
        // A joiner knows nothing: it waits for a snapshot.
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(Storage::last_index(&s).unwrap(), 0);
        assert_eq!(s.term(0).unwrap(), 0);
        assert!(s.initial_state().unwrap().conf_state.voters.is_empty());
    }

    #[test]
    fn a_log_whose_creation_was_cut_by_a_crash_is_created_anew() {
        // Issue 10, item 8: a crash after the first segment existed and before its `Base`
        // record was written left a log without founders.
        for leftover in [&b""[..], &[0u8; 7][..], &[9u8, 0, 0, 0, 1, 2][..]] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(segment_path(dir.path(), 1), leftover).unwrap();
            let s = LogStore::open(os(), dir.path(), 1 << 20, &[1, 2, 3]).unwrap();
            assert_eq!(s.conf_state_at(1).voters, vec![1, 2, 3], "{leftover:?}");
            drop(s);
            let s = LogStore::open(os(), dir.path(), 1 << 20, &[1, 2, 3]).unwrap();
            assert_eq!(s.conf_state_at(1).voters, vec![1, 2, 3]);
        }
    }

    #[test]
    fn a_second_opener_of_one_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
        match LogStore::open(os(), dir.path(), 1 << 20, &[1]) {
            Err(NeedleError::Core(needle_core::Error::Locked { path })) => {
                assert_eq!(path, dir.path().join("LOCK"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(s);
        LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
    }

    #[test]
    fn append_truncate_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
            s.persist_entries(&(1..=5).map(|i| ent(i, 1)).collect::<Vec<_>>());
            s.persist_entries(&[ent(4, 2), ent(5, 2), ent(6, 2)]);
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 5,
                ..Default::default()
            };
            s.persist_hard_state(&hs);
            s.sync(true).unwrap();
        }
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        assert_eq!(Storage::last_index(&s).unwrap(), 6);
        assert_eq!(s.term(3).unwrap(), 1);
        assert_eq!(s.term(4).unwrap(), 2);
        assert_eq!(s.hard_state().commit, 5);
        let got = s
            .entries(2, 7, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 5);
        let limited = s
            .entries(2, 7, Some(1), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(limited.len(), 1);
    }

    #[test]
    fn torn_tail_is_truncated_and_middle_corruption_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
            s.persist_entries(&(1..=3).map(|i| ent(i, 1)).collect::<Vec<_>>());
            s.sync(true).unwrap();
            s.persist_entries(&[ent(4, 1)]);
            s.sync(true).unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        let full = std::fs::read(&seg).unwrap();
        // Tear the last frame: keep all but 3 bytes.
        std::fs::write(&seg, &full[..full.len() - 3]).unwrap();
        let s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        assert_eq!(LogStore::last_index(&s), 3);
        drop(s);
        // Appending after the truncation works.
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
            s.persist_entries(&[ent(4, 1)]);
            s.sync(true).unwrap();
        }
        assert_eq!(
            LogStore::last_index(&LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap()),
            4
        );
        // Flip a byte inside an early frame: corruption, not a torn tail.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[30] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        match LogStore::open(os(), dir.path(), 1 << 20, &[]) {
            Err(NeedleError::Corrupted { .. }) => {}
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn a_zeroed_tail_is_torn_unless_a_valid_frame_follows_and_an_undecodable_frame_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
            s.persist_entries(&(1..=3).map(|i| ent(i, 1)).collect::<Vec<_>>());
            s.sync(true).unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        let good = std::fs::read(&seg).unwrap();
        let reopen = || LogStore::open(os(), dir.path(), 1 << 20, &[]);
        // Zeros after the last frame (a file extended but never written): the CRC of an empty
        // body is 0, so each 8 zero bytes look like a frame with a valid CRC.
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&seg, &zeros).unwrap();
        assert_eq!(LogStore::last_index(&reopen().unwrap()), 3);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good.len() as u64);
        // A frame whose CRC checks but whose body does not decode, then garbage: a whole write
        // (no tear makes a CRC match), so corruption even last, and nothing is cut (the rule of
        // needle-core's log, `frame::UNDECODABLE`).
        let seal = seal_of(&good);
        let mut junk = good.clone();
        junk.extend_from_slice(&frame::encode(seal, good.len() as u64, &[0xeeu8; 5]));
        junk.extend_from_slice(&[0xab; 37]);
        std::fs::write(&seg, &junk).unwrap();
        match reopen() {
            Err(NeedleError::Corrupted { offset, .. }) => assert_eq!(offset, good.len() as u64),
            other => panic!("expected Corrupted, got {other:?}"),
        }
        assert_eq!(std::fs::read(&seg).unwrap(), junk, "nothing cut");
        // A bad-CRC frame followed by more (invalid) bytes: torn, too.
        let mut broken = Vec::new();
        let at = good.len() as u64;
        encode_record(&Record::Entries(vec![ent(4, 1)]), seal, at, &mut broken);
        let mut frame = Vec::new();
        let after = at + broken.len() as u64;
        encode_record(&Record::Entries(vec![ent(4, 1)]), seal, after, &mut frame);
        let mut bad = good.clone();
        broken[10] ^= 0xff;
        bad.extend_from_slice(&broken);
        bad.extend_from_slice(&[0u8; 100]);
        std::fs::write(&seg, &bad).unwrap();
        assert_eq!(LogStore::last_index(&reopen().unwrap()), 3);
        // ... but a valid frame after the bad one is corruption, not a torn write.
        bad.truncate(good.len());
        bad.extend_from_slice(&broken);
        bad.extend_from_slice(&frame);
        std::fs::write(&seg, &bad).unwrap();
        match reopen() {
            Err(NeedleError::Corrupted { offset, .. }) => assert_eq!(offset, good.len() as u64),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    /// Crafted records (their checksums match, so only the decoder or the open can refuse them)
    /// that the log never writes: each is `Corrupted` at its own offset (or, for a commit index
    /// outside the log, in the last segment), the files are left as they were, and nothing
    /// reaches raft-rs, which panics on them (`Raft::new` on a commit index out of range,
    /// `RaftLog` on indexes that do not follow), nor replay's arithmetic (`index - 1`).
    #[test]
    fn crafted_records_the_log_never_writes_are_corruption_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1]).unwrap();
            s.persist_entries(&(1..=3).map(|i| ent(i, 1)).collect::<Vec<_>>());
            s.persist_hard_state(&HardState {
                term: 1,
                vote: 1,
                commit: 3,
                ..Default::default()
            });
            s.sync(true).unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        let good = std::fs::read(&seg).unwrap();
        let seal = seal_of(&good);
        let reopen = || LogStore::open(os(), dir.path(), 1 << 20, &[]);
        let at = good.len() as u64;
        let crafted: Vec<(&str, Record)> = vec![
            ("an entry index 0", Record::Entries(vec![ent(0, 1)])),
            (
                "index 0 after a gap",
                Record::Entries(vec![ent(0, 1), ent(1, 1)]),
            ),
            (
                "a skipped index",
                Record::Entries(vec![ent(4, 1), ent(6, 1)]),
            ),
            (
                "a repeated index",
                Record::Entries(vec![ent(4, 1), ent(4, 1)]),
            ),
            (
                "a falling term",
                Record::Entries(vec![ent(4, 2), ent(5, 1)]),
            ),
        ];
        for (what, rec) in crafted {
            let mut bytes = good.clone();
            encode_record(&rec, seal, at, &mut bytes);
            std::fs::write(&seg, &bytes).unwrap();
            match reopen() {
                Err(NeedleError::Corrupted { offset, .. }) => assert_eq!(offset, at, "{what}"),
                other => panic!("{what}: expected Corrupted at {at}, got {other:?}"),
            }
            assert_eq!(std::fs::read(&seg).unwrap(), bytes, "{what}: nothing cut");
        }
        // A hard state committing past the last entry, and one below the compaction point.
        for (what, commit) in [("past the log", 9), ("below the compaction point", 0)] {
            let mut bytes = good.clone();
            if commit == 0 {
                encode_record(&Record::Compact { index: 2, term: 1 }, seal, at, &mut bytes);
            }
            let hs = HardState {
                term: 1,
                vote: 1,
                commit,
                ..Default::default()
            };
            let at = bytes.len() as u64;
            encode_record(&Record::HardState(hs), seal, at, &mut bytes);
            std::fs::write(&seg, &bytes).unwrap();
            match reopen() {
                Err(NeedleError::Corrupted { reason, .. }) => {
                    assert!(reason.contains("commit index"), "{what}: {reason}")
                }
                other => panic!("{what}: expected Corrupted, got {other:?}"),
            }
            assert_eq!(std::fs::read(&seg).unwrap(), bytes, "{what}: nothing cut");
        }
        // The log as written still opens.
        std::fs::write(&seg, &good).unwrap();
        assert_eq!(LogStore::last_index(&reopen().unwrap()), 3);
    }

    #[test]
    fn compaction_rolls_and_deletes_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 256, &[1, 2]).unwrap();
            for i in 1..=100 {
                s.persist_entries(&[ent(i, 1 + i / 50)]);
                s.persist_commit(i);
                s.sync(true).unwrap();
            }
            let before = s.segments.len();
            assert!(before > 3);
            s.compact(90).unwrap();
            assert!(s.segments.len() < before);
            assert_eq!(s.first_index().unwrap(), 91);
            assert_eq!(LogStore::last_index(&s), 100);
            assert_eq!(s.term(90).unwrap(), 2);
            assert!(matches!(
                s.term(89),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
        }
        let s = LogStore::open(os(), dir.path(), 256, &[]).unwrap();
        assert_eq!(s.first_index().unwrap(), 91);
        assert_eq!(LogStore::last_index(&s), 100);
        assert_eq!(s.term(90).unwrap(), 2);
        assert_eq!(s.hard_state().commit, 100);
        assert_eq!(s.conf_state_at(100).voters, vec![1, 2]);
    }

    #[test]
    fn snapshot_install_resets_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
            s.persist_entries(&[ent(1, 1)]);
            let mut meta = SnapshotMetadata {
                index: 10,
                term: 3,
                ..Default::default()
            };
            let mut cs = ConfState::default();
            cs.set_voters(vec![1, 2, 3]);
            cs.set_learners(vec![4]);
            meta.set_conf_state(cs);
            s.persist_snapshot(&meta);
            s.sync(true).unwrap();
        }
        let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[]).unwrap();
        s.set_initial_applied(10);
        assert_eq!(s.first_index().unwrap(), 11);
        assert_eq!(Storage::last_index(&s).unwrap(), 10);
        assert_eq!(s.term(10).unwrap(), 3);
        assert_eq!(s.hard_state().commit, 10);
        assert_eq!(s.initial_state().unwrap().conf_state.learners, vec![4]);
        assert!(s.snapshot(0, 2).is_err());
        assert!(s.take_snapshot_wanted());
    }

    #[test]
    fn snapshot_is_temporarily_unavailable_while_one_is_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LogStore::open(os(), dir.path(), 1 << 20, &[1, 2]).unwrap();
        s.persist_entries(&(1..=5).map(|i| ent(i, 1)).collect::<Vec<_>>());
        s.set_snapshot(Some(SnapshotDescriptor {
            index: 5,
            term: 1,
            len: 100,
            crc: 7,
        }));
        assert_eq!(s.snapshot(0, 2).unwrap().get_metadata().index, 5);
        // Node 3 is not in the snapshot's configuration: it would ignore it; a newer one is wanted.
        assert!(matches!(
            s.snapshot(0, 3),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(s.take_snapshot_wanted());
        s.set_preparing(true);
        assert!(matches!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        s.set_preparing(false);
        assert!(s.snapshot(0, 2).is_ok());
    }
}
