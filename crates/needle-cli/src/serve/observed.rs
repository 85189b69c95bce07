//! What `/metrics` measures below the HTTP layer, through the two seams a node is built on:
//! - [`TimedDisk`]: the `needle_core::disk::Disk` the Raft log and the database file are opened
//!   on, the OS file system with every `fsync` (file and directory) timed into a histogram. One
//!   `Instant::now()` pair per fsync, next to a syscall that takes tens of microseconds at least.
//! - [`CountingHandler`]: the `MessageHandler` Raft talks through, the TCP transport with the
//!   snapshot chunks counted as they pass (snapshots and bytes, sent and received).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use needle_core::disk::{Disk, DiskFile, DiskLock, OpenMode, ReadOnlyMap};
use needle_raft::{MessageHandler, NodeId, RaftMessage};
use prometheus_client::metrics::histogram::Histogram;

/// A [`Disk`] that times every fsync of `inner` into `fsync` (and directory fsyncs into
/// `dir_fsync`).
#[derive(Debug)]
pub struct TimedDisk {
    inner: Arc<dyn Disk>,
    fsync: Histogram,
    dir_fsync: Histogram,
}

impl TimedDisk {
    pub fn new(inner: Arc<dyn Disk>, fsync: Histogram, dir_fsync: Histogram) -> Self {
        TimedDisk {
            inner,
            fsync,
            dir_fsync,
        }
    }
}

fn timed<T>(h: &Histogram, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let started = Instant::now();
    let r = f();
    h.observe(started.elapsed().as_secs_f64());
    r
}

impl Disk for TimedDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(TimedFile {
            inner,
            fsync: self.fsync.clone(),
        }))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        timed(&self.dir_fsync, || self.inner.sync_dir(dir))
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DiskLock>> {
        self.inner.lock(path)
    }
    fn copy_permissions(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.copy_permissions(from, to)
    }
    fn new_salt(&self) -> io::Result<u64> {
        self.inner.new_salt()
    }
}

#[derive(Debug)]
struct TimedFile {
    inner: Arc<dyn DiskFile>,
    fsync: Histogram,
}

impl DiskFile for TimedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn is_empty(&self) -> io::Result<bool> {
        self.inner.is_empty()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        timed(&self.fsync, || self.inner.sync())
    }
    fn map_read_only(&self, offset: u64, len: usize) -> io::Result<Option<ReadOnlyMap>> {
        self.inner.map_read_only(offset, len)
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }
}

/// Snapshot traffic through a node's transport.
#[derive(Debug, Default)]
pub struct SnapshotCounters {
    /// Snapshots whose last chunk (the one carrying the MsgSnapshot) was handed to the transport.
    pub sent: AtomicU64,
    /// Snapshots whose last chunk arrived.
    pub received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

impl SnapshotCounters {
    fn received(&self, m: &RaftMessage) {
        if let RaftMessage::SnapshotChunk(c) = m {
            self.bytes_received
                .fetch_add(c.data.len() as u64, Ordering::Relaxed);
            if c.seq.saturating_add(1) >= c.count {
                self.received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A [`MessageHandler`] that counts snapshot chunks on their way through `inner`.
pub struct CountingHandler<H> {
    inner: H,
    counters: Arc<SnapshotCounters>,
}

impl<H> CountingHandler<H> {
    pub fn new(inner: H, counters: Arc<SnapshotCounters>) -> Self {
        CountingHandler { inner, counters }
    }
}

impl<H: MessageHandler> MessageHandler for CountingHandler<H> {
    fn send(&self, to: NodeId, message: RaftMessage) -> needle_raft::Result<()> {
        let chunk = match &message {
            RaftMessage::SnapshotChunk(c) => {
                Some((c.data.len() as u64, c.seq.saturating_add(1) >= c.count))
            }
            _ => None,
        };
        let sent = self.inner.send(to, message);
        // Counted when queued; a chunk the transport then drops is counted in its drops.
        if let (Some((bytes, last)), Ok(())) = (chunk, &sent) {
            let c = &self.counters;
            c.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
            if last {
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        sent
    }
    fn receive(&self) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        let got = self.inner.receive()?;
        if let Some((_, m)) = &got {
            self.counters.received(m);
        }
        Ok(got)
    }
    fn peers(&self) -> Vec<NodeId> {
        self.inner.peers()
    }
    fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        let got = self.inner.receive_timeout(timeout)?;
        if let Some((_, m)) = &got {
            self.counters.received(m);
        }
        Ok(got)
    }
}
