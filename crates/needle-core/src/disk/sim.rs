//! [`SimDisk`]: a simulated faulty disk for tests, driven by a seed.
//!
//! The model (after redb's crash-test backend and FoundationDB's simulated files):
//! - Each file (inode) keeps its visible bytes and its durable bytes, and the writes and
//!   truncations made since its last successful [`DiskFile::sync`], in order. A sync makes those
//!   durable. A **failed** sync makes nothing durable and forgets the pending writes as far as
//!   durability goes (Linux marks the pages clean after a failed `fsync`: "fsyncgate"), so a later
//!   successful sync does not save them either — they are still visible until a crash. A sync
//!   refused because the power is off ([`SimDisk::power_off_after`]) forgets nothing: those
//!   writes were in flight when the power went, and the crash decides what became of each.
//! - Names (create, rename, remove) are pending until [`Disk::sync_dir`] of their directory.
//! - [`SimDisk::crash`] models a power loss: each pending name operation is kept or lost (seeded,
//!   in order), and each surviving file restarts from its durable bytes, with each pending write
//!   **dropped**, **kept**, **torn** (only its first whole 512-byte sectors land) or **zeroed**
//!   (its range reads as zeros), and each pending truncation kept or dropped. Every handle opened
//!   before the crash is dead afterwards (the process that held it is gone), and locks are freed.
//! - Faults: any call can fail with EIO, writes with ENOSPC — at random
//!   ([`SimDisk::set_faults`]), at a chosen call index ([`SimDisk::fail_at`], for "every call
//!   site" tests), at the next call of a kind ([`SimDisk::fail_next`]), or from a call index on
//!   ([`SimDisk::power_off_after`]: the machine is off, nothing more reaches the disk). Bits can rot
//!   at rest ([`SimDisk::flip_bit`]).
//!
//! One seed gives one exact behaviour, provided the calls come in the same order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Disk, DiskFile, DiskLock, OpenMode, parent_dir};

const SECTOR: u64 = 512;

/// The kind of a disk call, for [`SimDisk::fail_next`] and for reading [`SimDisk::calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOp {
    /// [`Disk::open`].
    Open,
    /// [`Disk::exists`] and [`Disk::list`].
    Stat,
    /// [`DiskFile::read_exact_at`] and [`DiskFile::len`].
    Read,
    /// [`DiskFile::write_all_at`].
    Write,
    /// [`DiskFile::set_len`].
    SetLen,
    /// [`DiskFile::sync`].
    Sync,
    /// [`Disk::rename`].
    Rename,
    /// [`Disk::remove`].
    Remove,
    /// [`Disk::sync_dir`].
    SyncDir,
    /// [`Disk::lock`] and [`Disk::create_dir_all`].
    Other,
}

/// How an injected fault fails a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`: an I/O error.
    Eio,
    /// `ENOSPC`: the disk is full.
    NoSpace,
}

impl FaultKind {
    fn error(self, op: SimOp, call: u64) -> io::Error {
        match self {
            FaultKind::Eio => io::Error::other(format!(
                "simulated EIO (input/output error) on {op:?}, call #{call}"
            )),
            FaultKind::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simulated ENOSPC (no space left on device) on {op:?}, call #{call}"),
            ),
        }
    }
}

/// Random faults, in parts per million of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Chance that any call (but [`SimOp::Read`], see `read_eio_ppm`) fails with EIO.
    pub eio_ppm: u32,
    /// Chance that a read fails with EIO.
    pub read_eio_ppm: u32,
    /// Chance that a write or a growing `set_len` fails with ENOSPC.
    pub enospc_ppm: u32,
}

/// What [`SimDisk::crash`] did, for test output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Pending name operations (create, rename, remove) that were lost.
    pub names_lost: usize,
    /// Pending name operations that survived.
    pub names_kept: usize,
    /// Unsynced writes that never landed.
    pub writes_dropped: usize,
    /// Unsynced writes that landed whole.
    pub writes_kept: usize,
    /// Unsynced writes of which only the first sectors landed.
    pub writes_torn: usize,
    /// Unsynced writes whose range reads as zeros.
    pub writes_zeroed: usize,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
enum NameOp {
    Create {
        path: PathBuf,
        ino: u64,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        ino: u64,
    },
    Remove {
        path: PathBuf,
    },
}

impl NameOp {
    fn dir(&self) -> PathBuf {
        match self {
            NameOp::Create { path, .. } | NameOp::Remove { path } => parent_dir(path),
            NameOp::Rename { to, .. } => parent_dir(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            NameOp::Create { path, ino } => {
                names.insert(path.clone(), *ino);
            }
            NameOp::Rename { from, to, ino } => {
                if names.get(from) == Some(ino) {
                    names.remove(from);
                    names.insert(to.clone(), *ino);
                }
            }
            NameOp::Remove { path } => {
                names.remove(path);
            }
        }
    }
}

#[derive(Debug)]
struct SimState {
    seed: u64,
    rng: u64,
    /// Salts handed out ([`Disk::new_salt`]): from their own sequence, so drawing one changes
    /// no fault choice of the seed.
    salts: u64,
    epoch: u64,
    calls: u64,
    next_ino: u64,
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    pending_names: Vec<NameOp>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    faults: FaultConfig,
    fail_at: BTreeMap<u64, FaultKind>,
    fail_next: VecDeque<(SimOp, FaultKind)>,
    power_off_at: Option<u64>,
}

impl SimState {
    fn next_u64(&mut self) -> u64 {
        // splitmix64: small, fast and good enough for choosing faults.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }

    /// Counts the call and decides whether it fails.
    fn enter(&mut self, op: SimOp) -> io::Result<()> {
        let call = self.calls;
        self.calls += 1;
        if self.power_off_at.is_some_and(|at| call >= at) {
            return Err(io::Error::other(format!(
                "simulated power loss: the disk is gone (call #{call}, {op:?})"
            )));
        }
        if let Some(kind) = self.fail_at.remove(&call) {
            return Err(kind.error(op, call));
        }
        if let Some(i) = self.fail_next.iter().position(|(o, _)| *o == op) {
            let (_, kind) = self.fail_next.remove(i).expect("index from position");
            return Err(kind.error(op, call));
        }
        let eio = if op == SimOp::Read {
            self.faults.read_eio_ppm
        } else {
            self.faults.eio_ppm
        };
        if self.chance_ppm(eio) {
            return Err(FaultKind::Eio.error(op, call));
        }
        if matches!(op, SimOp::Write | SimOp::SetLen) {
            let ppm = self.faults.enospc_ppm;
            if self.chance_ppm(ppm) {
                return Err(FaultKind::NoSpace.error(op, call));
            }
        }
        Ok(())
    }

    fn new_inode(&mut self) -> u64 {
        self.next_ino += 1;
        self.inodes.insert(self.next_ino, Inode::default());
        self.next_ino
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

pub(super) fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) -> io::Result<()> {
    let start =
        usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    let end = start
        .checked_add(data.len())
        .ok_or_else(|| io::Error::from(io::ErrorKind::FileTooLarge))?;
    if buf.len() < end {
        buf.try_reserve(end - buf.len())
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
    Ok(())
}

/// Fills `buf` from `offset` of `data`; `UnexpectedEof` if `data` ends first.
pub(super) fn read_from(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start =
        usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let src = start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

pub(super) fn set_len_of(buf: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    if len > buf.len() {
        buf.try_reserve(len - buf.len())
            .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    }
    buf.resize(len, 0);
    Ok(())
}

/// A simulated faulty disk. Clones share the same state (the same disk); see the module docs
/// for the fault model.
///
/// ```
/// use std::path::Path;
/// use needle_core::disk::{Disk, OpenMode, SimDisk};
///
/// let disk = SimDisk::new(7);
/// disk.create_dir_all(Path::new("/db")).unwrap();
/// let f = disk.open(Path::new("/db/a"), OpenMode::Create).unwrap();
/// f.write_all_at(0, b"durable").unwrap();
/// f.sync().unwrap();
/// disk.sync_dir(Path::new("/db")).unwrap();
/// f.write_all_at(7, b" and not").unwrap(); // never synced
/// disk.crash();
/// let f = disk.open(Path::new("/db/a"), OpenMode::Read).unwrap();
/// let bytes = f.read_all().unwrap();
/// assert!(bytes.starts_with(b"durable")); // the rest: dropped, kept, torn or zeroed
/// ```
#[derive(Debug, Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<SimState>>,
}

impl SimDisk {
    /// An empty disk whose every choice follows `seed`.
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        dirs.insert(PathBuf::from("."));
        SimDisk {
            inner: Arc::new(Mutex::new(SimState {
                seed,
                rng: seed ^ 0x5EED_D15C,
                salts: 0,
                epoch: 0,
                calls: 0,
                next_ino: 0,
                inodes: HashMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending_names: Vec::new(),
                dirs,
                locks: BTreeSet::new(),
                faults: FaultConfig::default(),
                fail_at: BTreeMap::new(),
                fail_next: VecDeque::new(),
                power_off_at: None,
            })),
        }
    }

    /// This disk as a shared `Arc<dyn Disk>` (the same disk: a clone).
    pub fn shared(&self) -> Arc<dyn Disk> {
        Arc::new(self.clone())
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding the lock has already failed; go on with its state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seed this disk was made with.
    pub fn seed(&self) -> u64 {
        self.state().seed
    }

    /// The number of calls made so far; call `i` (from 0) can be failed with [`SimDisk::fail_at`].
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Random faults from now on.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state().faults = faults;
    }

    /// Fails the call numbered `call` (counting from 0 over the disk's whole life).
    pub fn fail_at(&self, call: u64, kind: FaultKind) {
        self.state().fail_at.insert(call, kind);
    }

    /// Fails the next call of kind `op`.
    pub fn fail_next(&self, op: SimOp, kind: FaultKind) {
        self.state().fail_next.push_back((op, kind));
    }

    /// From call number `call` on, every call fails: the machine has lost power, and only a
    /// [`SimDisk::crash`] brings the disk back.
    pub fn power_off_after(&self, call: u64) {
        self.state().power_off_at = Some(call);
    }

    /// Clears every scheduled and random fault (not the power-off; see [`SimDisk::crash`]).
    pub fn clear_faults(&self) {
        let mut s = self.state();
        s.faults = FaultConfig::default();
        s.fail_at.clear();
        s.fail_next.clear();
    }

    /// Simulates a power loss and a reboot (see the module docs). Handles opened before are dead,
    /// locks are freed, the power is back on and no fault is scheduled.
    pub fn crash(&self) -> CrashReport {
        let mut guard = self.state();
        let s = &mut *guard;
        let mut report = CrashReport::default();
        let mut names = s.durable_names.clone();
        for op in std::mem::take(&mut s.pending_names) {
            if s.below(2) == 0 {
                op.apply(&mut names);
                report.names_kept += 1;
            } else {
                report.names_lost += 1;
            }
        }
        let live: BTreeSet<u64> = names.values().copied().collect();
        let mut inodes = HashMap::new();
        let mut old = std::mem::take(&mut s.inodes);
        for ino in live {
            let Some(inode) = old.remove(&ino) else {
                continue;
            };
            let mut data = inode.durable;
            for p in inode.pending {
                match p {
                    Pending::SetLen(len) => {
                        if s.below(2) == 0 {
                            let _ = set_len_of(&mut data, len);
                        }
                    }
                    Pending::Write {
                        offset,
                        data: bytes,
                    } => match s.below(4) {
                        0 => report.writes_dropped += 1,
                        1 => {
                            let _ = write_into(&mut data, offset, &bytes);
                            report.writes_kept += 1;
                        }
                        2 => {
                            // Whole sectors from the start of the write, up to a random sector
                            // boundary inside it.
                            let end = offset + bytes.len() as u64;
                            let first_boundary = (offset / SECTOR + 1) * SECTOR;
                            let boundaries = if end > first_boundary {
                                (end - first_boundary).div_ceil(SECTOR)
                            } else {
                                0
                            };
                            let cut = first_boundary + s.below(boundaries + 1) * SECTOR;
                            let keep = (cut.min(end) - offset) as usize;
                            let _ = write_into(&mut data, offset, &bytes[..keep]);
                            report.writes_torn += 1;
                        }
                        _ => {
                            let _ = write_into(&mut data, offset, &vec![0; bytes.len()]);
                            report.writes_zeroed += 1;
                        }
                    },
                }
            }
            inodes.insert(
                ino,
                Inode {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        s.inodes = inodes;
        s.names = names.clone();
        s.durable_names = names;
        s.locks.clear();
        s.epoch += 1;
        s.power_off_at = None;
        s.fail_at.clear();
        s.fail_next.clear();
        report
    }

    /// Flips bit `bit` (0 = lowest bit of byte 0) of `path`, in its visible and durable bytes: rot
    /// at rest. Errors if the file is missing or shorter.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut s = self.state();
        let ino = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let byte =
            usize::try_from(bit / 8).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = 1u8 << (bit % 8);
        let b = inode
            .data
            .get_mut(byte)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bit past the end"))?;
        *b ^= mask;
        if let Some(b) = inode.durable.get_mut(byte) {
            *b ^= mask;
        }
        Ok(())
    }

    /// Every file's visible bytes, by name (no call is counted): for tests that check that
    /// nothing changed.
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let s = self.state();
        s.names
            .iter()
            .filter_map(|(p, ino)| s.inodes.get(ino).map(|i| (p.clone(), i.data.clone())))
            .collect()
    }

    /// Replaces the visible and durable bytes of `path` (creating it durably if missing; no call
    /// is counted): for tests that plant a file.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.state();
        let ino = match s.names.get(path) {
            Some(ino) => *ino,
            None => {
                let ino = s.new_inode();
                s.names.insert(path.to_path_buf(), ino);
                s.durable_names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        if let Some(inode) = s.inodes.get_mut(&ino) {
            inode.data = bytes.to_vec();
            inode.durable = bytes.to_vec();
            inode.pending.clear();
        }
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    ino: u64,
    epoch: u64,
    writable: bool,
    path: PathBuf,
}

#[derive(Debug)]
struct SimLock {
    disk: SimDisk,
    path: PathBuf,
    epoch: u64,
}

impl DiskLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.disk.state();
        if s.epoch == self.epoch {
            s.locks.remove(&self.path);
        }
    }
}

impl SimFile {
    fn with<T>(
        &self,
        op: SimOp,
        f: impl FnOnce(&mut SimState, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut s = self.disk.state();
        if s.epoch != self.epoch {
            return Err(io::Error::other(format!(
                "{}: handle opened before a simulated crash",
                self.path.display()
            )));
        }
        s.enter(op)?;
        if !matches!(op, SimOp::Read) && !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: opened read-only", self.path.display()),
            ));
        }
        f(&mut s, self.ino)
    }
}

fn inode(s: &mut SimState, ino: u64) -> io::Result<&mut Inode> {
    s.inodes
        .get_mut(&ino)
        .ok_or_else(|| io::Error::other("simulated inode vanished"))
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(SimOp::Read, |s, ino| Ok(inode(s, ino)?.data.len() as u64))
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(SimOp::Read, |s, ino| {
            read_from(&inode(s, ino)?.data, offset, buf)
        })
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(SimOp::Write, |s, ino| {
            let i = inode(s, ino)?;
            write_into(&mut i.data, offset, data)?;
            i.pending.push(Pending::Write {
                offset,
                data: data.to_vec(),
            });
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(SimOp::SetLen, |s, ino| {
            let i = inode(s, ino)?;
            set_len_of(&mut i.data, len)?;
            i.pending.push(Pending::SetLen(len));
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.disk.state();
        if s.epoch != self.epoch {
            return Err(io::Error::other(format!(
                "{}: handle opened before a simulated crash",
                self.path.display()
            )));
        }
        let failed = s.enter(SimOp::Sync);
        if failed.is_err() && s.power_off_at.is_some_and(|at| s.calls > at) {
            // Refused because the power is off: the pending writes were in flight when it went,
            // and the crash decides what became of each (dropped, kept, torn, zeroed).
            return failed;
        }
        let i = inode(&mut s, self.ino)?;
        let pending = std::mem::take(&mut i.pending);
        // On failure the pending writes are forgotten (fsyncgate): never made durable.
        failed?;
        for p in pending {
            match p {
                Pending::Write { offset, data } => write_into(&mut i.durable, offset, &data)?,
                Pending::SetLen(len) => set_len_of(&mut i.durable, len)?,
            }
        }
        Ok(())
    }
}

impl Disk for SimDisk {
    fn new_salt(&self) -> io::Result<u64> {
        let mut s = self.state();
        s.salts += 1;
        // splitmix64 of (seed, draw): one seed gives the same salts in the same order.
        let mut z = (s.seed ^ 0x5A17_5A17_5A17_5A17)
            .wrapping_add(s.salts.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut s = self.state();
        s.enter(SimOp::Open)?;
        let existing = s.names.get(path).copied();
        let ino = match (existing, mode) {
            (Some(ino), OpenMode::CreateTruncate) => {
                let i = inode(&mut s, ino)?;
                i.data.clear();
                i.pending.push(Pending::SetLen(0));
                ino
            }
            (Some(ino), _) => ino,
            (None, OpenMode::Read | OpenMode::Write) => return Err(not_found(path)),
            (None, OpenMode::Create | OpenMode::CreateTruncate) => {
                if !s.dirs.contains(&parent_dir(path)) {
                    return Err(not_found(&parent_dir(path)));
                }
                let ino = s.new_inode();
                s.names.insert(path.to_path_buf(), ino);
                s.pending_names.push(NameOp::Create {
                    path: path.to_path_buf(),
                    ino,
                });
                ino
            }
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            ino,
            epoch: s.epoch,
            writable: mode != OpenMode::Read,
            path: path.to_path_buf(),
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut s = self.state();
        s.enter(SimOp::Stat)?;
        Ok(s.names.contains_key(path) || s.dirs.contains(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.enter(SimOp::Rename)?;
        let ino = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), ino);
        s.pending_names.push(NameOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            ino,
        });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.enter(SimOp::Remove)?;
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        s.pending_names.push(NameOp::Remove {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut guard = self.state();
        let s = &mut *guard;
        s.enter(SimOp::SyncDir)?;
        let (now, later): (Vec<NameOp>, Vec<NameOp>) = std::mem::take(&mut s.pending_names)
            .into_iter()
            .partition(|op| op.dir() == dir);
        for op in &now {
            op.apply(&mut s.durable_names);
        }
        s.pending_names = later;
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.enter(SimOp::Other)?;
        for a in dir.ancestors() {
            if !a.as_os_str().is_empty() {
                s.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut s = self.state();
        s.enter(SimOp::Stat)?;
        Ok(s.names
            .keys()
            .filter(|p| parent_dir(p) == dir)
            .cloned()
            .collect())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DiskLock>> {
        let mut s = self.state();
        s.enter(SimOp::Other)?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another holder",
            ));
        }
        Ok(Box::new(SimLock {
            disk: self.clone(),
            path: path.to_path_buf(),
            epoch: s.epoch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synced_bytes_and_names_survive_a_crash() {
        for seed in 0..200 {
            let d = SimDisk::new(seed);
            d.create_dir_all(&p("/d")).unwrap();
            let f = d.open(&p("/d/a"), OpenMode::Create).unwrap();
            f.write_all_at(0, &[1; 1000]).unwrap();
            f.sync().unwrap();
            d.sync_dir(&p("/d")).unwrap();
            f.write_all_at(1000, &[2; 1500]).unwrap();
            d.crash();
            assert!(f.len().is_err(), "a handle from before the crash is dead");
            let got = d
                .open(&p("/d/a"), OpenMode::Read)
                .unwrap()
                .read_all()
                .unwrap();
            assert_eq!(&got[..1000], &[1; 1000][..], "seed {seed}");
            let tail = &got[1000..];
            assert!(tail.len() <= 1500, "seed {seed}");
            assert!(tail.iter().all(|&b| b == 2 || b == 0), "seed {seed}");
        }
    }

    #[test]
    fn every_crash_outcome_happens() {
        let mut seen = CrashReport::default();
        let mut lost_file = false;
        for seed in 0..400 {
            let d = SimDisk::new(seed);
            let f = d.open(&p("/x"), OpenMode::Create).unwrap();
            f.write_all_at(0, &[9; 2000]).unwrap();
            let r = d.crash();
            seen.writes_dropped += r.writes_dropped;
            seen.writes_kept += r.writes_kept;
            seen.writes_torn += r.writes_torn;
            seen.writes_zeroed += r.writes_zeroed;
            lost_file |= !d.exists(&p("/x")).unwrap();
        }
        assert!(seen.writes_dropped > 0 && seen.writes_kept > 0);
        assert!(seen.writes_torn > 0 && seen.writes_zeroed > 0);
        assert!(lost_file, "an unsynced create can be lost");
    }

    #[test]
    fn a_torn_write_keeps_whole_leading_sectors() {
        for seed in 0..300 {
            let d = SimDisk::new(seed);
            let f = d.open(&p("/t"), OpenMode::Create).unwrap();
            f.sync().unwrap();
            d.sync_dir(&p("/")).unwrap();
            f.write_all_at(100, &[7; 2000]).unwrap();
            let r = d.crash();
            if r.writes_torn == 1 {
                let got = d
                    .open(&p("/t"), OpenMode::Read)
                    .unwrap()
                    .read_all()
                    .unwrap();
                assert!(got.is_empty() || (got.len() as u64) % SECTOR == 0 || got.len() == 2100);
                assert!(got[100.min(got.len())..].iter().all(|&b| b == 7));
            }
        }
    }

    #[test]
    fn an_unsynced_rename_may_be_lost_a_synced_one_is_not() {
        let mut lost = false;
        for seed in 0..100 {
            let d = SimDisk::new(seed);
            let f = d.open(&p("/tmp"), OpenMode::Create).unwrap();
            f.write_all_at(0, b"new").unwrap();
            f.sync().unwrap();
            d.sync_dir(&p("/")).unwrap();
            d.rename(&p("/tmp"), &p("/db")).unwrap();
            d.crash();
            lost |= !d.exists(&p("/db")).unwrap();

            let d = SimDisk::new(seed);
            let f = d.open(&p("/tmp"), OpenMode::Create).unwrap();
            f.write_all_at(0, b"new").unwrap();
            f.sync().unwrap();
            d.rename(&p("/tmp"), &p("/db")).unwrap();
            d.sync_dir(&p("/")).unwrap();
            d.crash();
            let got = d
                .open(&p("/db"), OpenMode::Read)
                .unwrap()
                .read_all()
                .unwrap();
            assert_eq!(got, b"new");
        }
        assert!(lost);
    }

    #[test]
    fn a_failed_sync_never_makes_its_writes_durable() {
        for seed in 0..50 {
            let d = SimDisk::new(seed);
            let f = d.open(&p("/f"), OpenMode::Create).unwrap();
            f.sync().unwrap();
            d.sync_dir(&p("/")).unwrap();
            f.write_all_at(0, b"lost").unwrap();
            d.fail_next(SimOp::Sync, FaultKind::Eio);
            assert!(f.sync().is_err());
            assert_eq!(
                f.read_all().unwrap(),
                b"lost",
                "still visible until a crash"
            );
            f.sync().unwrap();
            d.crash();
            let got = d
                .open(&p("/f"), OpenMode::Read)
                .unwrap()
                .read_all()
                .unwrap();
            assert!(got.is_empty(), "seed {seed}: {got:?}");
        }
    }

    #[test]
    fn faults_at_a_call_index_and_power_off() {
        let d = SimDisk::new(1);
        let f = d.open(&p("/f"), OpenMode::Create).unwrap();
        let at = d.calls();
        d.fail_at(at + 1, FaultKind::NoSpace);
        f.write_all_at(0, b"a").unwrap();
        let e = f.write_all_at(1, b"b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        f.write_all_at(1, b"c").unwrap();
        d.power_off_after(d.calls());
        assert!(f.sync().is_err());
        assert!(d.open(&p("/g"), OpenMode::Create).is_err());
        d.crash();
        assert!(d.open(&p("/g"), OpenMode::Create).is_ok());
    }

    #[test]
    fn same_seed_same_crash() {
        let run = |seed| {
            let d = SimDisk::new(seed);
            for i in 0..20u64 {
                let f = d
                    .open(&p(&format!("/f{}", i % 3)), OpenMode::Create)
                    .unwrap();
                f.write_all_at(i * 300, &[i as u8; 700]).unwrap();
                if i % 5 == 0 {
                    f.sync().unwrap();
                }
            }
            d.crash();
            d.files()
        };
        assert_eq!(run(42), run(42));
    }

    #[test]
    fn flip_bit_rots_durable_bytes_and_locks_exclude() {
        let d = SimDisk::new(3);
        let f = d.open(&p("/f"), OpenMode::Create).unwrap();
        f.write_all_at(0, &[0; 4]).unwrap();
        f.sync().unwrap();
        d.sync_dir(&p("/")).unwrap();
        d.flip_bit(&p("/f"), 9).unwrap();
        d.crash();
        assert_eq!(d.files()[&p("/f")], vec![0, 2, 0, 0]);
        let l = d.lock(&p("/f-lock")).unwrap();
        assert_eq!(
            d.lock(&p("/f-lock")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(l);
        assert!(d.lock(&p("/f-lock")).is_ok());
    }
}
