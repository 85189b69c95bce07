//! [`MemDisk`]: files in memory, no faults. What `Database::in_memory()` stands on.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{Disk, DiskFile, DiskLock, OpenMode};

/// A file system in memory: every write is durable at once and nothing ever fails (except for
/// missing files and held locks). Clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    inner: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    files: BTreeMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
}

#[derive(Debug, Default)]
struct MemFile {
    data: RwLock<Vec<u8>>,
}

#[derive(Debug)]
struct MemHandle {
    file: Arc<MemFile>,
    writable: bool,
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only")
}

impl DiskFile for MemHandle {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(offset, buf)
    }
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        self.file.write_all_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        self.file.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemLock {
    path: PathBuf,
    inner: Arc<Mutex<MemState>>,
}

impl DiskLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        if let Ok(mut s) = self.inner.lock() {
            s.locks.remove(&self.path);
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn poisoned() -> io::Error {
    io::Error::other("memory disk state poisoned by a panic")
}

impl MemDisk {
    /// An empty memory disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty memory disk, shared.
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(Self::new())
    }
}

impl Disk for MemDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut s = self.inner.lock().map_err(|_| poisoned())?;
        let file = match (s.files.get(path).cloned(), mode) {
            (Some(f), OpenMode::CreateTruncate) => {
                f.data.write().map_err(|_| poisoned())?.clear();
                f
            }
            (Some(f), _) => f,
            (None, OpenMode::Read | OpenMode::Write) => return Err(not_found(path)),
            (None, OpenMode::Create | OpenMode::CreateTruncate) => {
                let f = Arc::new(MemFile::default());
                s.files.insert(path.to_path_buf(), f.clone());
                f
            }
        };
        Ok(Arc::new(MemHandle {
            file,
            writable: mode != OpenMode::Read,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.inner.lock().map_err(|_| poisoned())?;
        Ok(s.files.contains_key(path) || s.dirs.contains(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.inner.lock().map_err(|_| poisoned())?;
        let f = s.files.remove(from).ok_or_else(|| not_found(from))?;
        s.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.inner.lock().map_err(|_| poisoned())?;
        s.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.inner.lock().map_err(|_| poisoned())?;
        for a in dir.ancestors() {
            if !a.as_os_str().is_empty() {
                s.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.inner.lock().map_err(|_| poisoned())?;
        Ok(s.files
            .keys()
            .filter(|p| super::parent_dir(p) == dir)
            .cloned()
            .collect())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DiskLock>> {
        let mut s = self.inner.lock().map_err(|_| poisoned())?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another holder",
            ));
        }
        Ok(Box::new(MemLock {
            path: path.to_path_buf(),
            inner: self.inner.clone(),
        }))
    }
}

impl MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().map_err(|_| poisoned())?.len() as u64)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let d = self.data.read().map_err(|_| poisoned())?;
        super::sim::read_from(&d, offset, buf)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut d = self.data.write().map_err(|_| poisoned())?;
        super::sim::write_into(&mut d, offset, data)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = self.data.write().map_err(|_| poisoned())?;
        super::sim::set_len_of(&mut d, len)
    }
}
