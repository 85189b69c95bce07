//! [`OsDisk`]: the real file system.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Disk, DiskFile, DiskLock, OpenMode};

/// The operating system's file system: positional reads and writes, `fsync`, directory `fsync`
/// and advisory locks (`flock`, through the `fs4` crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl OsDisk {
    /// The real file system, shared.
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

#[derive(Debug)]
struct OsFile {
    file: File,
}

#[derive(Debug)]
struct OsLock {
    _file: File,
}

impl DiskLock for OsLock {}

impl Disk for OsDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::Write => {
                o.write(true);
            }
            OpenMode::Create => {
                o.write(true).create(true).truncate(false);
            }
            OpenMode::CreateTruncate => {
                o.write(true).create(true).truncate(true);
            }
        }
        Ok(Arc::new(OsFile {
            file: o.open(path)?,
        }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DiskLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        // fs4's lock (flock on Unix, LockFileEx on Windows), not std's `File::try_lock`: that
        // one is Rust 1.89, and the MSRV is 1.85.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Box::new(OsLock { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another holder",
            )),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    fn copy_permissions(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())
    }
}

impl DiskFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(unix)]
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }

    #[cfg(windows)]
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.file.seek_read(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    #[cfg(windows)]
    fn write_all_at(&self, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !data.is_empty() {
            match self.file.seek_write(data, offset)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    data = &data[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    #[cfg(unix)]
    fn map_read_only(&self, offset: u64, len: usize) -> io::Result<Option<super::ReadOnlyMap>> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "map range overflows"))?;
        if end > self.len()? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("map of bytes {offset}..{end} runs past the end of the file"),
            ));
        }
        // SAFETY: memmap2's contract is that the file is not truncated or written in place while
        // mapped; `DiskFile::map_read_only` passes that duty to the caller, who holds the
        // database's lock and replaces files only by rename.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(&self.file)?
        };
        #[cfg(target_os = "linux")]
        {
            // Re-ranking reads a few vectors at random: read-ahead would only fill memory.
            let _ = map.advise(memmap2::Advice::Random);
        }
        Ok(Some(super::ReadOnlyMap { map }))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}
