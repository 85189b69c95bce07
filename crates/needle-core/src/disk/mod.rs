//! The storage seam: every byte needle-core (and needle-raft) reads or writes goes through the
//! [`Disk`] trait, in the spirit of tantivy's `Directory` and redb's crash-test backend.
//!
//! Three implementations:
//! - [`OsDisk`]: the real file system (positional reads and writes, `fsync`, directory `fsync`,
//!   advisory locks);
//! - [`MemDisk`]: memory, for `Database::in_memory()` and tests that need no faults;
//! - [`SimDisk`]: a simulated faulty disk driven by a seed. Per file it keeps the bytes written
//!   and the bytes made durable (a file's contents by [`DiskFile::sync`], a name by
//!   [`Disk::sync_dir`] of its directory). [`SimDisk::crash`] keeps what is durable and, for each
//!   unsynced write, makes a seeded choice of dropped / kept / torn at a 512-byte sector /
//!   zeroed; an unsynced create, rename or remove may be lost. It can fail any call with EIO or
//!   ENOSPC ([`SimDisk::set_faults`], [`SimDisk::fail_next`]) and flip bits at rest
//!   ([`SimDisk::flip_bit`]).
//!
//! This module knows nothing of Needle's formats; `frame` (the CRC-framed record log shared by
//! the database log and the Raft log) sits on top of it.
//!
//! Paths are plain `Path`s. A file handle refers to the file (the inode), not the name: after a
//! rename over its name, a handle opened before still reads the old contents, as on POSIX.

pub mod frame;
mod mem;
mod os;
mod sim;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use mem::MemDisk;
pub use os::OsDisk;
pub use sim::{CrashReport, FaultConfig, FaultKind, SimDisk, SimOp};

/// How [`Disk::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write; created empty if missing (the name is durable only after
    /// [`Disk::sync_dir`] of its directory).
    Create,
    /// Read and write; created empty, replacing any file of that name (`O_TRUNC`).
    CreateTruncate,
}

/// A file system as Needle uses it. Implementations are cheap to share (`Arc<dyn Disk>`).
///
/// Every method returns `io::Result`; callers wrap errors with what they were doing and the path.
pub trait Disk: Send + Sync + Debug {
    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;
    /// Does a file (or directory) of that name exist?
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Renames `from` over `to` atomically (replacing `to`). Durable after `sync_dir` of the
    /// directories involved.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path` (`NotFound` if missing). Durable after `sync_dir`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the names in directory `dir` durable (creates, renames and removes in it).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents (durable at once on the simulated disk's terms: directories
    /// are not part of its fault model).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The files directly in `dir` (full paths), sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Takes an exclusive advisory lock named by `path` (creating the lock file if needed);
    /// `Err(WouldBlock)` if another holder has it. Released when the returned guard drops.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DiskLock>>;
    /// Gives `to` the permissions of `from` (so a file replaced by a rename keeps the mode its
    /// owner gave it). Disks without permissions do nothing.
    fn copy_permissions(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Ok(())
    }
    /// A fresh random number, the salt of a log file being started (see
    /// [`frame::Seal::Bound`]): unpredictable, so that no bytes a user writes can spell a frame
    /// that verifies. From the operating system's random source; the simulated disk draws it
    /// from its seed, so a run replays.
    fn new_salt(&self) -> io::Result<u64> {
        getrandom::u64().map_err(|e| io::Error::other(format!("the random source: {e}")))
    }
}

/// An open file. Positional: there is no cursor, so `&self` suffices and handles can be shared.
pub trait DiskFile: Send + Sync + Debug {
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset` (extending the file, zero-filling any gap).
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's contents and length durable (`fsync`).
    fn sync(&self) -> io::Result<()>;
    /// Maps `len` bytes from `offset` read-only, if this disk can (`Ok(None)` if it cannot: the
    /// caller then keeps its own copy in memory). Only [`OsDisk`] maps (on Unix); [`MemDisk`] and
    /// [`SimDisk`] return `None`, so their fault model stays complete.
    ///
    /// The caller must have checked the bytes (lengths, checksums) through
    /// [`DiskFile::read_exact_at`] first, and must keep the file from being truncated or written
    /// in place while the map lives (Needle replaces its files by rename, and holds a lock): a
    /// map of bytes that are later cut off faults (SIGBUS) when read.
    fn map_read_only(&self, offset: u64, len: usize) -> io::Result<Option<ReadOnlyMap>> {
        let _ = (offset, len);
        Ok(None)
    }
    /// Reads the whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large"))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large to read"))?;
        buf.resize(len, 0);
        self.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// Bytes of a file mapped read-only by [`DiskFile::map_read_only`]; unmapped when dropped. The
/// map refers to the file (the inode): renaming another file over its name leaves it valid.
pub struct ReadOnlyMap {
    map: memmap2::Mmap,
}

impl ReadOnlyMap {
    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops the map's pages from this process's resident memory (`MADV_DONTNEED`; they stay
    /// in the page cache and are mapped again if read). A hint: does nothing where unsupported.
    pub fn release_pages(&self) {
        #[cfg(unix)]
        {
            // SAFETY: the map is shared, read-only and backed by a file that is never written in
            // place while mapped, so a dropped page reads back the same bytes; no reference into
            // the pages is invalidated (their contents do not change).
            let _ = unsafe {
                self.map
                    .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
            };
        }
    }
}

impl Debug for ReadOnlyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadOnlyMap({} bytes)", self.map.len())
    }
}

/// An exclusive lock held until dropped.
pub trait DiskLock: Send + Sync + Debug {}

/// The directory holding `path` (`.` for a bare file name): what to pass to [`Disk::sync_dir`]
/// after creating or renaming `path`.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An `io::Write` that appends to a [`DiskFile`] from `offset` on.
#[derive(Debug)]
pub struct FileWriter {
    file: Arc<dyn DiskFile>,
    offset: u64,
}

impl FileWriter {
    /// Writes start at `offset`.
    pub fn new(file: Arc<dyn DiskFile>, offset: u64) -> Self {
        FileWriter { file, offset }
    }
    /// Where the next write goes.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// The file written to.
    pub fn file(&self) -> &Arc<dyn DiskFile> {
        &self.file
    }
}

impl io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(self.offset, buf)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An `io::Read` over a [`DiskFile`] from `offset` on.
#[derive(Debug)]
pub struct FileReader {
    file: Arc<dyn DiskFile>,
    offset: u64,
    len: u64,
}

impl FileReader {
    /// Reads from `offset` to the file's length at the time of this call.
    pub fn new(file: Arc<dyn DiskFile>, offset: u64) -> io::Result<Self> {
        let len = file.len()?;
        Ok(FileReader { file, offset, len })
    }
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.offset);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(self.offset, &mut buf[..n])?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour every implementation shares (faults aside).
    fn conformance(disk: &dyn Disk, root: &Path) {
        disk.create_dir_all(&root.join("sub")).unwrap();
        let a = root.join("sub/a");
        assert!(!disk.exists(&a).unwrap());
        assert_eq!(
            disk.open(&a, OpenMode::Read).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let f = disk.open(&a, OpenMode::Create).unwrap();
        f.write_all_at(0, b"hello").unwrap();
        f.write_all_at(8, b"!").unwrap();
        assert_eq!(f.read_all().unwrap(), b"hello\0\0\0!");
        f.set_len(5).unwrap();
        f.sync().unwrap();
        disk.sync_dir(&root.join("sub")).unwrap();
        let mut buf = [0u8; 3];
        f.read_exact_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"ell");
        assert_eq!(
            f.read_exact_at(4, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let b = root.join("sub/b");
        let g = disk.open(&b, OpenMode::Create).unwrap();
        g.write_all_at(0, b"old").unwrap();
        disk.rename(&a, &b).unwrap();
        assert!(!disk.exists(&a).unwrap());
        assert_eq!(
            disk.open(&b, OpenMode::Read).unwrap().read_all().unwrap(),
            b"hello"
        );
        assert_eq!(disk.list(&root.join("sub")).unwrap(), vec![b.clone()]);
        let t = disk.open(&b, OpenMode::CreateTruncate).unwrap();
        assert!(t.is_empty().unwrap());
        let r = disk.open(&b, OpenMode::Read).unwrap();
        assert!(r.write_all_at(0, b"x").is_err(), "read-only handle");
        disk.remove(&b).unwrap();
        assert!(!disk.exists(&b).unwrap());
        let lock = disk.lock(&root.join("sub/l")).unwrap();
        assert_eq!(
            disk.lock(&root.join("sub/l")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(lock);
        drop(disk.lock(&root.join("sub/l")).unwrap());
    }

    #[test]
    fn os_disk_conforms() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&OsDisk, dir.path());
    }

    /// `OsDisk` maps a range of a file (past its end: an error, not a fault); the other disks
    /// cannot map, and say so with `None`.
    #[test]
    fn only_the_os_disk_maps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let f = OsDisk.open(&path, OpenMode::Create).unwrap();
        f.write_all_at(0, &(0u8..=255).cycle().take(10_000).collect::<Vec<u8>>())
            .unwrap();
        let map = f.map_read_only(4100, 8).unwrap();
        if cfg!(unix) {
            assert_eq!(map.unwrap().bytes(), &[4, 5, 6, 7, 8, 9, 10, 11]);
            assert!(f.map_read_only(9_999, 2).is_err());
        } else {
            assert!(map.is_none());
        }
        let mem = MemDisk::new();
        let g = mem.open(Path::new("/m"), OpenMode::Create).unwrap();
        g.write_all_at(0, b"abc").unwrap();
        assert!(g.map_read_only(0, 3).unwrap().is_none());
        let sim = SimDisk::new(1);
        let h = sim.open(Path::new("/m"), OpenMode::Create).unwrap();
        h.write_all_at(0, b"abc").unwrap();
        assert!(h.map_read_only(0, 3).unwrap().is_none());
    }

    #[test]
    fn mem_disk_conforms() {
        conformance(&MemDisk::new(), Path::new("/m"));
    }

    #[test]
    fn sim_disk_conforms() {
        conformance(&SimDisk::new(5), Path::new("/s"));
    }
}
