//! Everything that touches bytes on disk: the checkpoint format ([`checkpoint`]), the
//! write-ahead log ([`wal`]) and the small file-system helpers both need. Knows the
//! `Collection` layout, nothing of locking policy or the public API.

pub(crate) mod checkpoint;
pub(crate) mod wal;

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskLock, parent_dir};
use crate::error::{Error, Result};

/// `data.needle` → `data.needle-wal`.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// `data.needle` → `data.needle-lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    sibling(path, "-lock")
}

/// `data.needle` → `data.needle-tmp`, where a checkpoint is written before its rename.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    sibling(path, "-tmp")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// fsyncs the directory holding `path`, so a rename or a new file in it survives a crash.
pub(crate) fn sync_dir(disk: &dyn Disk, path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    disk.sync_dir(&dir)
        .map_err(|e| Error::io(format!("fsyncing directory {}", dir.display()), e))
}

/// Takes the exclusive advisory lock that keeps a second `Database` (here or in another process)
/// off the same file. The lock lives on a separate `-lock` file because checkpoints replace the
/// `.needle` file by rename, and a lock on the old inode would not protect the new one.
pub(crate) fn lock(disk: &dyn Disk, path: &Path) -> Result<Box<dyn DiskLock>> {
    let lp = lock_path(path);
    disk.lock(&lp).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: path.to_path_buf(),
        },
        _ => Error::io(format!("locking {}", lp.display()), e),
    })
}

/// A little-endian reader over a byte slice that never reads past the end: every read returns
/// `None` instead, and the caller turns that into a `Corrupted` error with the offset.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
