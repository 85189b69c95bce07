//! `Database`: the public face of needle-core. Owns the catalogue of collections, the file lock,
//! the write-ahead log and checkpoints, and turns each public write into an [`Op`] that is
//! validated, logged, then applied — in that order, under one writer lock, so a failed write
//! changes nothing and the log replays exactly what was acknowledged.
//!
//! Concurrency: writes are serialised by the writer lock; each collection sits behind its own
//! `RwLock`, taken for writing only while a validated change is applied, so searches go on
//! while a write is being validated, logged and fsynced, and while a checkpoint is written.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::collection::{Collection, Prepared, validate_collection_name, validate_dimensions};
use crate::config::{CollectionConfig, DatabaseOptions, Quantization, SearchOptions, WalMode};
use crate::disk::{Disk, DiskLock, FileWriter, MemDisk, OpenMode, OsDisk};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::payload::{IndexInfo, IndexKind, IndexOptions, PayloadIndex};
use crate::storage::checkpoint::{self, Header};
use crate::storage::wal::{self, LogState, MAX_RECORD, Op, OpRecord, Wal};
use crate::storage::{lock, sync_dir, tmp_path, wal_path};

/// One record: an id, its vector and its metadata (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// The stored vector (unit length under cosine).
    pub vector: Vec<f32>,
    pub metadata: Option<Value>,
}

impl Record {
    /// A record with the given id, vector and metadata.
    pub fn new(id: impl Into<String>, vector: Vec<f32>, metadata: Option<Value>) -> Self {
        Record {
            id: id.into(),
            vector,
            metadata,
        }
    }
}

/// One search hit, nearest first in a result list.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub id: String,
    /// Cosine: `1 - cos`; Euclidean: the Euclidean distance; dot product: `-(a · b)`.
    pub distance: f32,
    pub metadata: Option<Value>,
    /// Present when `SearchOptions::include_vectors` was set.
    pub vector: Option<Vec<f32>>,
}

/// What `collection_info` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    pub dimensions: usize,
    pub config: CollectionConfig,
    /// Live records.
    pub count: usize,
    /// Deleted or replaced records whose space `compact` would reclaim.
    pub deleted: usize,
    /// The payload indexes, by path.
    pub indexes: Vec<IndexInfo>,
    /// Bytes of memory taken by the int8 codes that filtered searches' exact passes read
    /// (one cache-line-aligned block of `ceil((dimensions + 8) / 64) · 64` bytes per slot);
    /// kept while a collection without quantization has a payload index, 0 otherwise. Part of
    /// what the indexes cost, besides each index's own `memory_bytes`.
    pub index_codes_bytes: usize,
}

/// One page of [`Database::scroll`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScrollPage {
    /// The records, in id order.
    pub records: Vec<Record>,
    /// The cursor for the next page; `None` when this page is the last.
    pub next_cursor: Option<String>,
}

/// What `open` found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// The tag of the checkpoint that was loaded (see [`Database::checkpoint_with_tag`]).
    pub checkpoint_tag: u64,
    /// Log records replayed on top of the checkpoint.
    pub wal_records_replayed: u64,
    /// Bytes of torn tail cut from the log.
    pub wal_bytes_truncated: u64,
    /// With [`WalMode::Unsynced`] only: valid log records found after a hole (a write a power
    /// loss did not keep) and dropped with it, since replaying them without the lost write
    /// would apply them out of order. Always 0 with a synced log (a hole there is `Corrupted`).
    pub wal_records_dropped_after_hole: u64,
}

/// An embedded vector database: one `.needle` file and its write-ahead log.
///
/// `Database` is `Send + Sync` and cheap to clone (an `Arc` inside): clones share one database.
///
/// ```no_run
/// use needle_core::Database;
/// let db = Database::open("vectors.needle")?;
/// db.create_collection("docs", 384)?;
/// # Ok::<(), needle_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

/// Names and sizes only: a database's `Debug` must not dump its records.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let catalog = self.inner.catalog.read();
        let collections: BTreeMap<&str, usize> = catalog
            .iter()
            .map(|(name, c)| (name.as_str(), c.read().live))
            .collect();
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .field("wal", &self.inner.options.wal)
            .field("collections", &collections)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<RwLock<Collection>>;

/// After large one-off work (a checkpoint, an open): gives back the huge-page arrays' memory
/// past their items ([`Collection::release_tails`]) and the allocator's free memory
/// ([`crate::heap`]). The caller holds the writer lock (or is the only user, at open), so no
/// write grows an array meanwhile; searches may go on.
fn release_unused_memory(collections: &[Shared]) {
    for c in collections {
        c.read().release_tails();
    }
    crate::heap::release_free_memory();
}

struct Inner {
    /// Where every byte is read and written.
    disk: Arc<dyn Disk>,
    /// The checkpoint file on `disk`.
    path: PathBuf,
    /// `Database::in_memory`: on a private `MemDisk`, with no path to show.
    in_memory: bool,
    options: DatabaseOptions,
    catalog: RwLock<BTreeMap<String, Shared>>,
    writer: Mutex<Writer>,
    tag: AtomicU64,
    report: OpenReport,
    _lock: Box<dyn DiskLock>,
}

#[derive(Debug)]
struct Writer {
    wal: Option<Wal>,
    generation: u64,
    /// Set when a write, fsync or rename of the log or the checkpoint failed in a way that
    /// leaves the files' durable state unknown (after a failed fsync, Linux may have dropped the
    /// unsynced pages and a retry would "succeed": fsyncgate). No further write or checkpoint is
    /// accepted until the database is reopened, which reads what is really on disk.
    failed: Option<String>,
    /// Opened by [`Database::open_read_only`]: every write and checkpoint is refused.
    read_only: Option<PathBuf>,
}

impl Writer {
    /// Starts the log over after a checkpoint. A failure leaves the log in an unknown state (old
    /// records under an old header, or a hole), so it stops all further writes until reopening.
    fn reset_wal(&mut self, generation: u64) -> Result<()> {
        let Some(wal) = self.wal.as_mut() else {
            return Ok(());
        };
        wal.reset(generation)
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }

    /// Refuses any write once the files' state is unknown (see `failed`).
    fn check_usable(&self) -> Result<()> {
        if let Some(path) = &self.read_only {
            return Err(Error::ReadOnly { path: path.clone() });
        }
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(Error::io(
                "writing: an earlier write, fsync or rename of the database's files failed; reopen the database",
                std::io::Error::other(reason.clone()),
            )),
        }
    }
}

/// A validated write, ready to apply; applying it cannot fail.
pub(crate) enum Plan {
    Create(String, Box<Collection>),
    Drop(String),
    Upsert(Shared, Vec<Prepared>),
    Update(Shared, String, Option<Vec<f32>>, Option<Value>),
    Delete(Shared, String),
    Compact(Shared, Box<Collection>),
    CreateIndex(Shared, Box<PayloadIndex>),
    DropIndex(Shared, String),
    /// Tombstones these live slots.
    DeleteSlots(Shared, Vec<u32>),
    Nothing,
}

impl Database {
    /// Opens (or creates) the database at `path` with a synced write-ahead log.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Self::open_with(path, DatabaseOptions::default())
    }

    /// Opens (or creates) the database at `path`. Loads the checkpoint, replays the log after
    /// it and cuts a torn tail. A second opener of the same file, here or in another process,
    /// gets [`Error::Locked`]; a log damaged in the middle is [`Error::Corrupted`]
    /// and nothing is cut (see [`Database::check`] and [`Database::repair`]).
    pub fn open_with(path: impl AsRef<Path>, options: DatabaseOptions) -> Result<Database> {
        Self::open_on(OsDisk::shared(), path, options)
    }

    /// As [`Database::open_with`], on any [`Disk`]: the real file system ([`OsDisk`]), memory
    /// ([`MemDisk`]) or the simulated faulty disk of the tests ([`crate::disk::SimDisk`]).
    /// Every byte the database reads or writes goes through `disk`.
    ///
    /// ```
    /// use needle_core::{Database, DatabaseOptions};
    /// use needle_core::disk::MemDisk;
    /// let disk = MemDisk::shared();
    /// let db = Database::open_on(disk.clone(), "/v.needle", DatabaseOptions::default())?;
    /// db.create_collection("docs", 3)?;
    /// drop(db);
    /// let db = Database::open_on(disk, "/v.needle", DatabaseOptions::default())?;
    /// assert_eq!(db.list_collections(), vec!["docs".to_string()]);
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn open_on(
        disk: Arc<dyn Disk>,
        path: impl AsRef<Path>,
        options: DatabaseOptions,
    ) -> Result<Database> {
        Self::open_inner(disk, path.as_ref(), options, false)
    }

    fn open_inner(
        disk: Arc<dyn Disk>,
        path: &Path,
        options: DatabaseOptions,
        in_memory: bool,
    ) -> Result<Database> {
        let path = path.to_path_buf();
        let lock = lock(&*disk, &path)?;
        let _ = disk.remove(&tmp_path(&path));
        let _ = disk.remove(&tmp_path(&wal_path(&path)));
        let (header, collections) = load_checkpoint(&*disk, &path)?;
        let fresh = !disk
            .exists(&path)
            .map_err(|e| Error::io(format!("looking for {}", path.display()), e))?;
        let db = Database {
            inner: Arc::new(Inner {
                disk: disk.clone(),
                path: path.clone(),
                in_memory,
                options: options.clone(),
                catalog: RwLock::new(
                    collections
                        .into_iter()
                        .map(|c| (c.name.clone(), Arc::new(RwLock::new(c))))
                        .collect(),
                ),
                writer: Mutex::new(Writer {
                    wal: None,
                    generation: header.generation,
                    failed: None,
                    read_only: None,
                }),
                tag: AtomicU64::new(header.tag),
                report: OpenReport {
                    checkpoint_tag: header.tag,
                    ..Default::default()
                },
                _lock: lock,
            }),
        };
        if fresh {
            // A log without its checkpoint belongs to some older database: never replay it.
            match disk.remove(&wal_path(&path)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("removing the orphan log {}", wal_path(&path).display()),
                        e,
                    ));
                }
            }
            db.checkpoint_with_tag(0)?;
        }
        let generation = db.inner.writer.lock().generation;
        let db = db.recover_wal(&path, generation)?;
        // Loading decoded the whole file and replayed the log: hand back what that freed.
        let collections = db.snapshot_of_catalog();
        release_unused_memory(&collections);
        drop(collections);
        Ok(db)
    }

    fn recover_wal(self, path: &Path, generation: u64) -> Result<Database> {
        let wpath = wal_path(path);
        let disk = &*self.inner.disk;
        let bytes = read_if_exists(disk, &wpath)?.unwrap_or_default();
        let unsynced = self.inner.options.wal == WalMode::Unsynced;
        let state = wal::recover(&bytes, &wpath, generation)?;
        let mut replayed = 0u64;
        let mut torn = 0u64;
        let mut dropped = 0u64;
        let mut valid_len = None;
        let mut seal = crate::disk::frame::Seal::Payload;
        if let LogState::Current(rec) = state {
            seal = rec.seal;
            if let Some(d) = &rec.damage {
                // A whole record that does not decode is no hole a power loss left, even unsynced.
                if !unsynced || d.reason == crate::disk::frame::UNDECODABLE {
                    return Err(Error::corrupted(
                        &wpath,
                        d.offset,
                        format!(
                            "{}, with {} valid records after it (the first at offset {}); \
                             nothing was cut: see `needle check` and `needle repair`",
                            d.reason, d.records_after, d.next_valid
                        ),
                    ));
                }
                // Unsynced: a hole a power loss left; the log ends there.
                dropped = d.records_after;
            }
            let mut w = self.inner.writer.lock();
            for (i, (offset, op)) in rec.ops.into_iter().enumerate() {
                let plan = self.plan(&op).map_err(|e| {
                    Error::corrupted(
                        &wpath,
                        offset,
                        format!("log record {i} does not apply: {e}"),
                    )
                })?;
                reserve_room(&plan)?;
                self.apply(&mut w, plan);
                replayed += 1;
            }
            torn = rec.file_len - rec.valid_len;
            valid_len = Some(rec.valid_len);
        }
        let sync = self.inner.options.wal == WalMode::Synced;
        let wal = match (self.inner.options.wal, valid_len) {
            (WalMode::Off, _) => None,
            (_, Some(len)) => {
                let valid = usize::try_from(len)
                    .ok()
                    .and_then(|len| bytes.get(..len))
                    .expect("recovery's valid length is within the bytes it read");
                Some(Wal::reopen(&self.inner.disk, &wpath, valid, seal, sync)?)
            }
            (_, None) => Some(Wal::create(&self.inner.disk, &wpath, generation, sync)?),
        };
        self.inner.writer.lock().wal = wal;
        if self.inner.options.wal == WalMode::Off && replayed > 0 {
            // Without a log of our own, fold what the old log held into a checkpoint now.
            self.checkpoint()?;
        }
        let mut inner = Arc::try_unwrap(self.inner).map_err(|_| Error::Internal {
            reason: "the database was shared while it was being opened".into(),
        })?;
        inner.report.wal_records_replayed = replayed;
        inner.report.wal_bytes_truncated = torn;
        inner.report.wal_records_dropped_after_hole = dropped;
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    /// A database that lives in memory only: on a private [`MemDisk`], with no log
    /// ([`WalMode::Off`]); a checkpoint writes its copy into that memory.
    pub fn in_memory() -> Database {
        let options = DatabaseOptions { wal: WalMode::Off };
        Self::open_inner(
            MemDisk::shared(),
            Path::new("in-memory.needle"),
            options,
            true,
        )
        .expect("a fresh private MemDisk holds no file and never fails a call")
    }

    /// An in-memory database holding `collections` as they are, with nothing written anywhere:
    /// what `check` replays a log onto.
    /// With `read_only`, the database names that file as its path and refuses every write.
    pub(crate) fn detached(
        tag: u64,
        collections: Vec<Collection>,
        read_only: Option<&Path>,
    ) -> Result<Database> {
        let disk = MemDisk::shared();
        let path = read_only.map_or_else(|| PathBuf::from("detached.needle"), Path::to_path_buf);
        let lock = lock(&*disk, &path)?;
        Ok(Database {
            inner: Arc::new(Inner {
                disk,
                path,
                in_memory: read_only.is_none(),
                options: DatabaseOptions { wal: WalMode::Off },
                catalog: RwLock::new(
                    collections
                        .into_iter()
                        .map(|c| (c.name.clone(), Arc::new(RwLock::new(c))))
                        .collect(),
                ),
                writer: Mutex::new(Writer {
                    wal: None,
                    generation: 0,
                    failed: None,
                    read_only: read_only.map(Path::to_path_buf),
                }),
                tag: AtomicU64::new(tag),
                report: OpenReport {
                    checkpoint_tag: tag,
                    ..Default::default()
                },
                _lock: lock,
            }),
        })
    }

    /// The same database with `report` as what its open found (the database must not be shared
    /// yet).
    pub(crate) fn with_open_report(self, report: OpenReport) -> Result<Database> {
        let mut inner = Arc::try_unwrap(self.inner).map_err(|_| Error::Internal {
            reason: "the database was shared while it was being opened".into(),
        })?;
        inner.report = report;
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    /// The `.needle` file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        (!self.inner.in_memory).then_some(self.inner.path.as_path())
    }

    /// The log mode this database was opened with.
    pub fn wal_mode(&self) -> WalMode {
        self.inner.options.wal
    }

    /// How many `Database` handles (this one and its clones) share this database now: a
    /// wrapper that must be the only writer (needle-raft) checks that it holds the only one.
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The disk this database reads and writes through.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.inner.disk
    }

    /// What `open` found: the checkpoint's tag, log records replayed, torn bytes cut.
    pub fn open_report(&self) -> OpenReport {
        self.inner.report
    }

    // ---- collections --------------------------------------------------------------------------

    /// Creates a collection with the default configuration (cosine, m = 16).
    pub fn create_collection(&self, name: &str, dimensions: usize) -> Result<()> {
        self.create_collection_with_config(name, dimensions, CollectionConfig::default())
    }

    /// Creates a collection with the given configuration.
    pub fn create_collection_with_config(
        &self,
        name: &str,
        dimensions: usize,
        config: CollectionConfig,
    ) -> Result<()> {
        self.execute(Op::create_collection(name, dimensions as u64, &config))
            .map(|_| ())
    }

    /// Drops a collection and all its records.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.execute(Op::DropCollection {
            name: name.to_string(),
        })
        .map(|_| ())
    }

    /// The names of all collections, sorted.
    pub fn list_collections(&self) -> Vec<String> {
        self.inner.catalog.read().keys().cloned().collect()
    }

    /// Dimensions, configuration and counts of one collection.
    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let shared = self.collection(name)?;
        let c = shared.read();
        Ok(CollectionInfo {
            name: c.name.clone(),
            dimensions: c.dim,
            config: c.config.clone(),
            count: c.live,
            deleted: c.slots() - c.live,
            indexes: c
                .indexes
                .values()
                .map(|i| {
                    let mut info = i.info();
                    let path = i.path.dotted();
                    info.value_graphs = c.value_graphs.get(&path).map_or(0, |g| g.len());
                    info.value_graph_bytes = c.value_graphs_memory_bytes(&path);
                    info.memory_bytes += info.value_graph_bytes + c.ordered_memory_bytes(&path);
                    info
                })
                .collect(),
            index_codes_bytes: c.codes_memory_bytes(),
        })
    }

    /// How many of a collection's slots (records, including deleted ones not yet compacted)
    /// have their f32 vector read from the checkpoint file through a read-only memory map
    /// rather than held in memory. Non-zero only under `quantization: sq8` once its ranges are
    /// trained, on a file-backed database, for the slots of the last checkpoint: slots written
    /// after it are in memory until the next one. See `docs/file-format.md`.
    pub fn mapped_vectors(&self, name: &str) -> Result<usize> {
        let shared = self.collection(name)?;
        let c = shared.read();
        Ok(c.vectors.mapped_len() / c.dim.max(1))
    }

    /// For tests (through `__private`): whether a collection's int8 codes for filtered
    /// searches are present exactly when wanted and equal to freshly computed ones (`None`:
    /// none, and none wanted).
    pub(crate) fn index_codes_are_fresh(&self, name: &str) -> Result<Option<bool>> {
        Ok(self.collection(name)?.read().codes_are_fresh())
    }

    fn collection(&self, name: &str) -> Result<Shared> {
        self.inner
            .catalog
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::CollectionNotFound {
                name: name.to_string(),
            })
    }

    // ---- writes -------------------------------------------------------------------------------

    /// Inserts a record, or replaces the record with the same id (an upsert).
    pub fn insert(
        &self,
        collection: &str,
        id: &str,
        vector: Vec<f32>,
        metadata: Option<Value>,
    ) -> Result<()> {
        self.insert_batch(collection, vec![Record::new(id, vector, metadata)])
    }

    /// Inserts many records, all or nothing, with one log write and one fsync. Records are linked
    /// into the graph in parallel (rayon), with a result that does not depend on the thread count.
    pub fn insert_batch(&self, collection: &str, records: Vec<Record>) -> Result<()> {
        let records = records
            .into_iter()
            .map(|r| OpRecord {
                id: r.id,
                vector: r.vector,
                metadata: r.metadata.map(|m| m.to_string()),
            })
            .collect();
        self.execute(Op::Upsert {
            collection: collection.to_string(),
            records,
        })
        .map(|_| ())
    }

    /// Changes a record's vector and/or metadata. A `None` leaves that part as it is.
    pub fn update(
        &self,
        collection: &str,
        id: &str,
        vector: Option<Vec<f32>>,
        metadata: Option<Value>,
    ) -> Result<()> {
        self.execute(Op::Update {
            collection: collection.to_string(),
            id: id.to_string(),
            vector,
            metadata: metadata.map(|m| m.to_string()),
        })
        .map(|_| ())
    }

    /// Deletes a record; returns whether it was there.
    pub fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        self.execute(Op::Delete {
            collection: collection.to_string(),
            id: id.to_string(),
        })
    }

    /// Rebuilds a collection from its live records: reclaims the space of deleted ones and
    /// restores the graph's quality. Searches go on during the rebuild.
    pub fn compact(&self, collection: &str) -> Result<()> {
        self.execute(Op::Compact {
            collection: collection.to_string(),
        })
        .map(|_| ())
    }

    /// Declares a payload index on a metadata path (dotted, like a filter's field names) and
    /// fills it from the records already there. Filters on the path then read a typed column
    /// instead of JSON, and selective ones are answered from the index's posting lists.
    ///
    /// A value at the path that is not of `kind` (nor an array of it) is kept and still matches
    /// filters exactly, from its JSON; `collection_info` counts such records as `irregular`.
    ///
    /// A collection without quantization also keeps, from its first index until its last is
    /// dropped, int8 codes of its vectors that filtered searches read before re-ranking by the
    /// f32 vectors (`ceil((dimensions + 8) / 64) · 64` bytes a record, in memory only:
    /// `CollectionInfo::index_codes_bytes`); answers carry exact f32 distances either way.
    ///
    /// ```
    /// use needle_core::{Database, Filter, IndexKind, SearchOptions};
    /// use serde_json::json;
    ///
    /// let db = Database::in_memory();
    /// db.create_collection("docs", 2)?;
    /// db.insert("docs", "a", vec![1.0, 0.0], Some(json!({"tenant": 7})))?;
    /// db.insert("docs", "b", vec![0.0, 1.0], Some(json!({"tenant": 8})))?;
    /// db.create_index("docs", "tenant", IndexKind::Integer)?;
    /// let seven = Filter::parse(&json!({"tenant": 7}))?;
    /// assert_eq!(db.count_matching("docs", Some(&seven))?, 1);
    /// assert_eq!(db.collection_info("docs")?.indexes[0].path, "tenant");
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn create_index(&self, collection: &str, path: &str, kind: IndexKind) -> Result<()> {
        self.create_index_with(collection, path, kind, IndexOptions::default())
    }

    /// [`create_index`](Self::create_index) with options: `IndexOptions::new().value_graphs(false)`
    /// declares an index whose values never get graphs of their own (their memory saved; filters
    /// on it plan as without them). The options are logged, replicated and stored in the
    /// checkpoint with the index.
    pub fn create_index_with(
        &self,
        collection: &str,
        path: &str,
        kind: IndexKind,
        options: IndexOptions,
    ) -> Result<()> {
        let (collection, path, kind) = (collection.to_string(), path.to_string(), kind.code());
        let op = if options.value_graphs {
            Op::CreateIndex {
                collection,
                path,
                kind,
            }
        } else {
            Op::CreateIndexV2 {
                collection,
                path,
                kind,
                value_graphs: false,
            }
        };
        self.execute(op).map(|_| ())
    }

    /// Drops the payload index on `path` ([`Error::IndexNotFound`] if there is none).
    pub fn drop_index(&self, collection: &str, path: &str) -> Result<()> {
        self.execute(Op::DropIndex {
            collection: collection.to_string(),
            path: path.to_string(),
        })
        .map(|_| ())
    }

    /// Deletes every record matching `filter`, as one logged write; returns how many.
    pub fn delete_by_filter(&self, collection: &str, filter: &Filter) -> Result<usize> {
        self.execute_counted(Op::DeleteByFilter {
            collection: collection.to_string(),
            filter: filter.to_json().to_string(),
        })
    }

    /// Deletes the records with these ids (absent ones are skipped), as one logged write;
    /// returns how many were there.
    pub fn delete_many(&self, collection: &str, ids: &[String]) -> Result<usize> {
        self.execute_counted(Op::DeleteMany {
            collection: collection.to_string(),
            ids: ids.to_vec(),
        })
    }

    /// Validates, logs, applies. Returns whether anything changed.
    fn execute(&self, op: Op) -> Result<bool> {
        self.execute_counted(op).map(|n| n > 0)
    }

    /// Validates, logs, applies. Returns how many records (or collections, or indexes) changed.
    fn execute_counted(&self, op: Op) -> Result<usize> {
        let mut w = self.inner.writer.lock();
        w.check_usable()?;
        let plan = self.plan(&op)?;
        if matches!(plan, Plan::Nothing) {
            return Ok(0);
        }
        reserve_room(&plan)?;
        if let Some(wal) = w.wal.as_mut() {
            let payload = wal::encode_op(&op);
            if payload.len() > MAX_RECORD {
                return Err(Error::InvalidArgument {
                    what: "batch".into(),
                    reason: format!(
                        "encodes to {} bytes, over the {MAX_RECORD}-byte limit of one log record; split it",
                        payload.len()
                    ),
                });
            }
            if let Err(e) = wal.append(&payload) {
                w.failed = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(self.apply(&mut w, plan))
    }

    /// Checks an op against the current state and prepares everything it needs.
    pub(crate) fn plan(&self, op: &Op) -> Result<Plan> {
        Ok(match op {
            Op::CreateCollection { .. } | Op::CreateCollectionV2 { .. } => {
                let (name, dimensions, config) = match op {
                    Op::CreateCollectionV2 {
                        name,
                        dimensions,
                        config,
                        quantization,
                    } => {
                        let q = Quantization::from_code(*quantization).ok_or_else(|| {
                            Error::InvalidConfig {
                                reason: format!("unknown quantization code {quantization}"),
                            }
                        })?;
                        (name, dimensions, config.with(q))
                    }
                    Op::CreateCollection {
                        name,
                        dimensions,
                        config,
                    } => (name, dimensions, config.with(Quantization::None)),
                    _ => unreachable!("matched above"),
                };
                let config = &config;
                validate_collection_name(name)?;
                let dim = usize::try_from(*dimensions).unwrap_or(usize::MAX);
                validate_dimensions(dim)?;
                config.validate()?;
                if self.inner.catalog.read().contains_key(name) {
                    return Err(Error::CollectionExists { name: name.clone() });
                }
                Plan::Create(
                    name.clone(),
                    Box::new(Collection::new(name, dim, config.clone())),
                )
            }
            Op::DropCollection { name } => {
                self.collection(name)?;
                Plan::Drop(name.clone())
            }
            Op::Upsert {
                collection,
                records,
            } => {
                let shared = self.collection(collection)?;
                let prepared = {
                    let c = shared.read();
                    records
                        .iter()
                        .map(|r| {
                            let metadata = parse_metadata(&c, &r.id, r.metadata.as_deref())?;
                            c.prepare(&r.id, r.vector.clone(), metadata)
                        })
                        .collect::<Result<Vec<_>>>()?
                };
                if prepared.is_empty() {
                    Plan::Nothing
                } else {
                    Plan::Upsert(shared, prepared)
                }
            }
            Op::Update {
                collection,
                id,
                vector,
                metadata,
            } => {
                let shared = self.collection(collection)?;
                let (vector, metadata) = {
                    let c = shared.read();
                    let metadata = parse_metadata(&c, id, metadata.as_deref())?;
                    c.prepare_update(id, vector.clone(), metadata)?
                };
                if vector.is_none() && metadata.is_none() {
                    Plan::Nothing
                } else {
                    Plan::Update(shared, id.clone(), vector, metadata)
                }
            }
            Op::Delete { collection, id } => {
                let shared = self.collection(collection)?;
                let present = {
                    let c = shared.read();
                    c.check_id(id)?;
                    c.index.contains(&c.ids, id)
                };
                if present {
                    Plan::Delete(shared, id.clone())
                } else {
                    Plan::Nothing
                }
            }
            Op::Compact { collection } => {
                let shared = self.collection(collection)?;
                // Built under a read lock: searches go on while the graph is rebuilt.
                let fresh = shared.read().compacted()?;
                Plan::Compact(shared, Box::new(fresh))
            }
            Op::CreateIndex {
                collection,
                path,
                kind,
            }
            | Op::CreateIndexV2 {
                collection,
                path,
                kind,
                ..
            } => {
                let shared = self.collection(collection)?;
                let kind = IndexKind::from_code(*kind).ok_or_else(|| Error::InvalidArgument {
                    what: "index kind".into(),
                    reason: format!("unknown kind code {kind}"),
                })?;
                let mut idx = shared.read().prepare_index(path, kind)?;
                if let Op::CreateIndexV2 { value_graphs, .. } = op {
                    idx.value_graphs = *value_graphs;
                }
                Plan::CreateIndex(shared, Box::new(idx))
            }
            Op::DropIndex { collection, path } => {
                let shared = self.collection(collection)?;
                let dotted = {
                    let c = shared.read();
                    let dotted = crate::payload::parse_path(collection, path)?.dotted();
                    if !c.indexes.contains_key(&dotted) {
                        return Err(Error::IndexNotFound {
                            collection: collection.clone(),
                            path: dotted,
                        });
                    }
                    dotted
                };
                Plan::DropIndex(shared, dotted)
            }
            Op::DeleteByFilter { collection, filter } => {
                let shared = self.collection(collection)?;
                let json: Value =
                    serde_json::from_str(filter).map_err(|e| Error::InvalidFilter {
                        path: String::new(),
                        reason: format!("not valid JSON: {e}"),
                    })?;
                let filter = Filter::parse(&json)?;
                let slots = shared.read().matching_slots(Some(&filter));
                if slots.is_empty() {
                    Plan::Nothing
                } else {
                    Plan::DeleteSlots(shared, slots)
                }
            }
            Op::DeleteMany { collection, ids } => {
                let shared = self.collection(collection)?;
                let slots = {
                    let c = shared.read();
                    let mut slots = Vec::with_capacity(ids.len());
                    for id in ids {
                        c.check_id(id)?;
                        slots.extend(c.index.get(&c.ids, id));
                    }
                    slots.sort_unstable();
                    slots.dedup();
                    slots
                };
                if slots.is_empty() {
                    Plan::Nothing
                } else {
                    Plan::DeleteSlots(shared, slots)
                }
            }
        })
    }

    pub(crate) fn apply_replayed(&self, plan: Plan) -> Result<()> {
        // The writer lock before the room: `reserve_room` copies growing arrays under the read
        // lock and swaps them in later, which is only right if no write comes between.
        let mut w = self.inner.writer.lock();
        reserve_room(&plan)?;
        self.apply(&mut w, plan);
        Ok(())
    }

    /// Applies a validated plan; returns how many things it changed.
    fn apply(&self, _writer: &mut Writer, plan: Plan) -> usize {
        match plan {
            Plan::Create(name, c) => {
                self.inner
                    .catalog
                    .write()
                    .insert(name, Arc::new(RwLock::new(*c)));
            }
            Plan::Drop(name) => {
                self.inner.catalog.write().remove(&name);
            }
            Plan::Upsert(shared, records) => {
                let n = records.len();
                Collection::apply_batch_shared(&shared, records);
                return n;
            }
            Plan::Update(shared, id, vector, metadata) => {
                shared.write().apply_update(&id, vector, metadata)
            }
            Plan::Delete(shared, id) => {
                shared.write().apply_delete(&id);
            }
            Plan::Compact(shared, fresh) => *shared.write() = *fresh,
            Plan::CreateIndex(shared, idx) => shared.write().apply_create_index(*idx),
            Plan::DropIndex(shared, path) => {
                shared.write().apply_drop_index(&path);
            }
            Plan::DeleteSlots(shared, slots) => {
                let mut c = shared.write();
                for &s in &slots {
                    let id = c.ids[s as usize].to_string();
                    c.apply_delete(&id);
                }
                return slots.len();
            }
            Plan::Nothing => return 0,
        }
        1
    }

    // ---- reads --------------------------------------------------------------------------------

    /// The record with this id, if there is one.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Record>> {
        let shared = self.collection(collection)?;
        let c = shared.read();
        c.check_id(id)?;
        Ok(c.get(id).map(|(vector, metadata)| Record {
            id: id.to_string(),
            vector,
            metadata,
        }))
    }

    /// The ids of all live records, in storage order (the order they were last written in,
    /// or compacted into). With [`Database::get`] this enumerates a collection, e.g. to export it.
    pub fn ids(&self, collection: &str) -> Result<Vec<String>> {
        let shared = self.collection(collection)?;
        let c = shared.read();
        Ok((0..c.slots())
            .filter(|&s| !c.deleted[s])
            .map(|s| c.ids[s].to_string())
            .collect())
    }

    /// The number of live records.
    pub fn count(&self, collection: &str) -> Result<usize> {
        Ok(self.collection(collection)?.read().live)
    }

    /// The number of live records matching `filter` (all of them with `None`). Exact; answered
    /// from payload indexes where the filter's paths have them.
    pub fn count_matching(&self, collection: &str, filter: Option<&Filter>) -> Result<usize> {
        let shared = self.collection(collection)?;
        let c = shared.read();
        Ok(match filter {
            None => c.live,
            Some(f) => c.matching_slots(Some(f)).len(),
        })
    }

    /// The records with these ids, in the order asked (`None` where there is no such record).
    pub fn get_many(&self, collection: &str, ids: &[String]) -> Result<Vec<Option<Record>>> {
        let shared = self.collection(collection)?;
        let c = shared.read();
        ids.iter()
            .map(|id| {
                c.check_id(id)?;
                Ok(c.get(id).map(|(vector, metadata)| Record {
                    id: id.clone(),
                    vector,
                    metadata,
                }))
            })
            .collect()
    }

    /// One page of the records matching `filter`, in id order (by bytes): at most `limit`
    /// records whose ids sort after `cursor` (from the start with `None`). The page's
    /// `next_cursor` continues it; a cursor stays valid across any writes (records written
    /// meanwhile appear if their id sorts after it), so scrolling sees every record that exists
    /// throughout, once.
    ///
    /// ```
    /// use needle_core::Database;
    ///
    /// let db = Database::in_memory();
    /// db.create_collection("docs", 2)?;
    /// for id in ["c", "a", "b"] {
    ///     db.insert("docs", id, vec![1.0, 0.0], None)?;
    /// }
    /// let page = db.scroll("docs", None, None, 2)?;
    /// assert_eq!(page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    /// let rest = db.scroll("docs", None, page.next_cursor.as_deref(), 2)?;
    /// assert_eq!(rest.records[0].id, "c");
    /// assert_eq!(rest.next_cursor, None);
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn scroll(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScrollPage> {
        if limit == 0 {
            return Err(Error::InvalidArgument {
                what: "limit".into(),
                reason: "must be at least 1".into(),
            });
        }
        let shared = self.collection(collection)?;
        let c = shared.read();
        // One more than asked tells whether another page follows.
        let mut page = c.scroll(filter, cursor, limit.saturating_add(1));
        let more = page.len() > limit;
        page.truncate(limit);
        let records: Vec<Record> = page
            .into_iter()
            .map(|(id, s)| {
                let s = s as usize;
                Record {
                    id,
                    vector: c.vectors.get(s * c.dim, c.dim).to_vec(),
                    metadata: c.metadata[s].clone(),
                }
            })
            .collect();
        let next_cursor = if more {
            records.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(ScrollPage {
            records,
            next_cursor,
        })
    }

    /// The `k` nearest records to `query`, nearest first, with their metadata.
    pub fn search(&self, collection: &str, query: &[f32], k: usize) -> Result<Vec<SearchResult>> {
        self.search_with(collection, query, k, &SearchOptions::new())
    }

    /// Search with a filter, a per-query `ef_search`, and vectors included or not.
    pub fn search_with(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        opts: &SearchOptions,
    ) -> Result<Vec<SearchResult>> {
        let shared = self.collection(collection)?;
        let c = shared.read();
        Self::search_in(&c, query, k, opts)
    }

    /// Many searches at once, spread over the current rayon pool (one query per task; run it
    /// inside `ThreadPool::install` to choose the threads): per query, the same answer as
    /// [`search_with`](Self::search_with), in the order of `queries`.
    ///
    /// Each query takes the collection's read lock on its own, so writes are not held back for
    /// the whole batch: a write that lands while the batch runs is seen by the queries that
    /// start after it. An invalid query (wrong dimension, a non-finite component, ...) fails
    /// the whole call with the error of the first such query in order (an invalid vector's
    /// reason names its position in `queries`); nothing is returned for the others.
    pub fn search_many<Q: AsRef<[f32]> + Sync>(
        &self,
        collection: &str,
        queries: &[Q],
        k: usize,
        opts: &SearchOptions,
    ) -> Result<Vec<Vec<SearchResult>>> {
        use rayon::prelude::*;
        let shared = self.collection(collection)?;
        let answers: Vec<Result<Vec<SearchResult>>> = queries
            .par_iter()
            .with_max_len(1)
            .map(|q| Self::search_in(&shared.read(), q.as_ref(), k, opts))
            .collect();
        answers
            .into_iter()
            .enumerate()
            .map(|(i, answer)| answer.map_err(|e| e.for_query(i)))
            .collect()
    }

    /// One search in a locked collection, its hits turned into results.
    fn search_in(
        c: &Collection,
        query: &[f32],
        k: usize,
        opts: &SearchOptions,
    ) -> Result<Vec<SearchResult>> {
        let hits = c.search(query, k, opts)?;
        Ok(hits
            .into_iter()
            .map(|h| {
                let s = h.slot as usize;
                SearchResult {
                    id: c.ids[s].to_string(),
                    distance: h.distance,
                    metadata: if opts.include_metadata {
                        c.metadata[s].clone()
                    } else {
                        None
                    },
                    vector: opts
                        .include_vectors
                        .then(|| c.vectors.get(s * c.dim, c.dim).to_vec()),
                }
            })
            .collect())
    }

    // ---- checkpoints and snapshots ------------------------------------------------------------

    /// Writes a checkpoint (keeping the current tag) and empties the log.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_with_tag(self.checkpoint_tag())
    }

    /// Writes a checkpoint that carries `tag`, an opaque value returned by
    /// [`Database::checkpoint_tag`] and by [`Database::open_report`] after the next open.
    /// needle-raft stores the Raft index the checkpoint contains there.
    ///
    /// Atomic: written to a temporary file, fsynced, renamed over the old one, directory fsynced.
    /// Writers wait; readers do not.
    pub fn checkpoint_with_tag(&self, tag: u64) -> Result<()> {
        let mut w = self.inner.writer.lock();
        w.check_usable()?;
        let collections = self.snapshot_of_catalog();
        let result = self.install_checkpoint(&mut w, tag, &collections).0;
        // A checkpoint usually follows a build (and under sq8 drops the f32 copy in memory):
        // hand the memory the build freed back to the system. The writer lock (`w`) is held.
        release_unused_memory(&collections);
        drop(collections);
        result
    }

    /// Writes `collections` as the next checkpoint generation and starts the log over.
    ///
    /// Before the rename, a failure changes nothing (the old checkpoint and its log are intact).
    /// A failed rename may or may not have happened: writes are refused until reopening. After
    /// it, the new file is the checkpoint: on success the new generation is in force; if the
    /// directory fsync or the log reset fails, the database refuses writes until reopened (a
    /// crash may then leave either checkpoint, each consistent with the log on disk).
    /// Returns the result and whether the new checkpoint is known to be in place.
    fn install_checkpoint(
        &self,
        w: &mut Writer,
        tag: u64,
        collections: &[Shared],
    ) -> (Result<()>, bool) {
        let disk = &*self.inner.disk;
        let path = &self.inner.path;
        let generation = w.generation + 1;
        let offsets =
            match write_checkpoint_file(disk, path, Header { tag, generation }, collections) {
                Ok(offsets) => offsets,
                Err(Unrenamed::Before(e)) => return (Err(e), false),
                Err(Unrenamed::Rename(e)) => {
                    w.failed = Some(e.to_string());
                    return (Err(e), false);
                }
            };
        let synced = sync_dir(disk, path);
        // The rename happened: the file at `path` holds the new generation.
        w.generation = generation;
        self.inner.tag.store(tag, Ordering::SeqCst);
        if let Err(e) = synced {
            w.failed = Some(e.to_string());
            return (Err(e), true);
        }
        remap_vectors(disk, path, collections, &offsets);
        (w.reset_wal(generation), true)
    }

    /// The tag of the last checkpoint written, or of the one loaded by `open`.
    pub fn checkpoint_tag(&self) -> u64 {
        self.inner.tag.load(Ordering::SeqCst)
    }

    fn snapshot_of_catalog(&self) -> Vec<Shared> {
        self.inner.catalog.read().values().cloned().collect()
    }

    /// Writes a consistent snapshot of the whole database (the checkpoint format, carrying `tag`)
    /// to `w`; returns the bytes written. Writers wait while it is written; readers do not.
    pub fn write_snapshot(&self, w: &mut dyn Write, tag: u64) -> Result<u64> {
        let _writer = self.inner.writer.lock();
        let collections = self.snapshot_of_catalog();
        let mut counter = Counting { inner: w, count: 0 };
        encode_shared(&mut counter, Header { tag, generation: 0 }, &collections)
            .map(|_| ())
            .map_err(|e| Error::io("writing a snapshot", e))?;
        Ok(counter.count)
    }

    /// Replaces the whole database with a snapshot made by [`Database::write_snapshot`]; returns
    /// its tag. The snapshot is checked completely first: a bad one is an error and changes
    /// nothing. On a file-backed database the snapshot becomes the new checkpoint.
    pub fn restore_snapshot(&self, r: &mut dyn std::io::Read) -> Result<u64> {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading a snapshot", e))?;
        let (header, collections) = checkpoint::decode(&bytes, Path::new("<snapshot>"))?;
        drop(bytes);
        let mut w = self.inner.writer.lock();
        w.check_usable()?;
        let shared: Vec<Shared> = collections
            .into_iter()
            .map(|c| Arc::new(RwLock::new(c)))
            .collect();
        let (installed, renamed) = self.install_checkpoint(&mut w, header.tag, &shared);
        if !renamed {
            // Failed before or at the rename: the catalogue stays as it was.
            return installed.map(|()| header.tag);
        }
        // The snapshot is the checkpoint on disk now: the catalogue follows it, even if what
        // came after the rename failed (that failure is returned, and stops further writes).
        let catalog = shared
            .into_iter()
            .map(|c| {
                let name = c.read().name.clone();
                (name, c)
            })
            .collect();
        *self.inner.catalog.write() = catalog;
        installed.map(|()| header.tag)
    }

    /// A checksum of the database's contents: equal for databases whose snapshots are
    /// byte-identical, and different (but for a 2⁻⁶⁴ chance) when any byte differs (replicas
    /// compare it at equal applied index).
    pub fn state_checksum(&self) -> u64 {
        let _writer = self.inner.writer.lock();
        let collections = self.snapshot_of_catalog();
        let mut sink = Checksum::default();
        encode_shared(&mut sink, Header::default(), &collections)
            .map(|_| ())
            .expect("writing to a checksum never fails");
        sink.finish()
    }
}

/// Reserves the memory a plan needs to apply, so that applying it cannot fail: done before the
/// write is logged, and an error (the system refused the memory) changes nothing.
fn reserve_room(plan: &Plan) -> Result<()> {
    match plan {
        Plan::Upsert(shared, records) => {
            // The big copies under the read lock: searches go on (they took up to 27 ms under
            // the write lock, the longest wait of a search during batch inserts: lock10).
            // The records' levels are drawn here too (a hash of each id), not under the lock.
            let (room, levels) = {
                let c = shared.read();
                let room = c.prepared_room(records.len())?;
                (room, c.upper_levels(records.iter().map(|r| r.id.as_str())))
            };
            let mut c = shared.write();
            let replaced = c.install_room(room);
            let reserved = c
                .reserve(records.len())
                .and_then(|()| c.reserve_upper(records.len(), levels))
                .and_then(|()| {
                    let joining: Vec<Option<&Value>> =
                        records.iter().map(|r| r.metadata.as_ref()).collect();
                    c.reserve_value_graphs(&joining, records.len())
                });
            // The arrays the copies replaced are freed after the write lock (tidy12).
            drop(c);
            drop(replaced);
            reserved
        }
        Plan::Update(shared, id, vector, metadata) => {
            // A new vector takes a new slot: its room is made as an upsert's, outside the
            // write lock (the id index's table may have to grow or rehash its removed
            // entries, which updates leave too).
            let room = match vector {
                Some(_) => Some(shared.read().prepared_room(1)?),
                None => None,
            };
            let mut c = shared.write();
            let replaced = room.map(|room| c.install_room(room));
            let reserved = if vector.is_some() {
                let level = c.level_of(id) as usize;
                c.reserve(1).and_then(|()| c.reserve_upper(1, level))
            } else {
                Ok(())
            }
            .and_then(|()| {
                // A new vector alone keeps the metadata: the record joins its values again.
                let kept = match metadata {
                    Some(_) => None,
                    None => c
                        .index
                        .get(&c.ids, id)
                        .and_then(|s| c.metadata[s as usize].clone()),
                };
                c.reserve_value_graphs(&[metadata.as_ref().or(kept.as_ref())], 1)
            });
            drop(c);
            drop(replaced);
            reserved
        }
        // A delete can make a waiting value eligible (it then holds at most half the records).
        Plan::Delete(shared, _) => shared.write().reserve_value_graphs(&[], 1),
        Plan::DeleteSlots(shared, slots) => shared.write().reserve_value_graphs(&[], slots.len()),
        Plan::CreateIndex(shared, idx) => shared.write().reserve_index_value_graphs(idx),
        _ => Ok(()),
    }
}

fn parse_metadata(c: &Collection, id: &str, json: Option<&str>) -> Result<Option<Value>> {
    json.map(|text| {
        serde_json::from_str::<Value>(text).map_err(|e| Error::InvalidMetadata {
            collection: c.name.clone(),
            id: id.to_string(),
            reason: format!("not valid JSON: {e}"),
        })
    })
    .transpose()
}

/// The whole file at `path`, or `None` if there is none.
pub(crate) fn read_if_exists(disk: &dyn Disk, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match disk.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    file.read_all()
        .map(Some)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// Reads the checkpoint whole (one sequential read through the seam) and decodes it.
pub(crate) fn load_checkpoint_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(Header, Vec<Collection>)> {
    if bytes.is_empty() {
        return Err(Error::corrupted(
            path,
            0,
            "file is empty: not a Needle checkpoint (remove it to start a new database)",
        ));
    }
    checkpoint::decode(bytes, path)
}

/// Loads the checkpoint at `path` (none: an empty database), then maps the vectors of its sq8
/// collections from the same file handle whose bytes were just checked (see [`map_vectors`]).
fn load_checkpoint(disk: &dyn Disk, path: &Path) -> Result<(Header, Vec<Collection>)> {
    let file = match disk.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Header::default(), Vec::new()));
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let bytes = file
        .read_all()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.is_empty() {
        return load_checkpoint_bytes(&bytes, path);
    }
    let (header, mut collections, offsets) = checkpoint::decode_with_offsets(&bytes, path)?;
    drop(bytes);
    for (c, at) in collections.iter_mut().zip(offsets) {
        map_vectors(&file, c, at);
    }
    Ok((header, collections))
}

/// Under `quantization: sq8` (once trained: searches then read f32 vectors only to re-rank),
/// replaces a collection's in-memory vectors by a read-only map of the same bytes at `at` in
/// `file`, a checkpoint whose lengths and checksums were checked (read back at open, or just
/// written). Does nothing where the disk cannot map (`MemDisk`, `SimDisk`) or the map fails:
/// mapping only saves memory, and the copy in memory stays correct.
fn map_vectors(file: &Arc<dyn crate::disk::DiskFile>, c: &mut Collection, at: u64) {
    if c.sq8.is_none() || c.vectors.len() == 0 {
        return;
    }
    if let Ok(Some(map)) = file.map_read_only(at, c.vectors.len() * 4) {
        c.vectors.replace_by_map(map, Arc::clone(file), at);
    }
}

/// After a checkpoint was renamed into place at `path`: maps the vectors of its sq8 collections
/// from it (see [`map_vectors`]), dropping the copies in memory and the maps of the previous
/// file. The caller holds the writer lock, so the collections are as they were written.
fn remap_vectors(disk: &dyn Disk, path: &Path, collections: &[Shared], offsets: &[u64]) {
    if !collections.iter().any(|c| c.read().sq8.is_some()) {
        return;
    }
    let Ok(file) = disk.open(path, OpenMode::Read) else {
        return;
    };
    for (c, &at) in collections.iter().zip(offsets) {
        map_vectors(&file, &mut c.write(), at);
    }
}

fn encode_shared(
    w: &mut dyn Write,
    header: Header,
    collections: &[Shared],
) -> std::io::Result<Vec<u64>> {
    let guards: Vec<_> = collections.iter().map(|c| c.read()).collect();
    checkpoint::encode(w, header, guards.iter().map(|g| &**g))
}

/// Why a checkpoint file did not get renamed into place.
enum Unrenamed {
    /// Writing or fsyncing the temporary file failed: nothing else changed.
    Before(Error),
    /// The rename itself failed: it may or may not have happened.
    Rename(Error),
}

/// Writes a checkpoint to the temporary file, fsyncs it and renames it over `path`. The caller
/// fsyncs the directory. On an error before the rename the temporary file is removed (best
/// effort) and nothing else changed.
fn write_checkpoint_file(
    disk: &dyn Disk,
    path: &Path,
    header: Header,
    collections: &[Shared],
) -> std::result::Result<Vec<u64>, Unrenamed> {
    let tmp = tmp_path(path);
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    let written = (|| {
        let file = disk
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| io("creating", e))?;
        // The new checkpoint keeps the permissions the user gave the file it replaces.
        if disk.exists(path).unwrap_or(false) {
            disk.copy_permissions(path, &tmp)
                .map_err(|e| io("setting the permissions of", e))?;
        }
        let mut out = BufWriter::with_capacity(1 << 20, FileWriter::new(file, 0));
        let offsets = encode_shared(&mut out, header, collections).map_err(|e| io("writing", e))?;
        let writer = out
            .into_inner()
            .map_err(|e| io("writing", e.into_error()))?;
        writer.file().sync().map_err(|e| io("fsyncing", e))?;
        Ok(offsets)
    })();
    let offsets = match written {
        Ok(offsets) => offsets,
        Err(e) => {
            let _ = disk.remove(&tmp);
            return Err(Unrenamed::Before(e));
        }
    };
    disk.rename(&tmp, path).map_err(|e| {
        Unrenamed::Rename(Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        ))
    })?;
    Ok(offsets)
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The hash of [`Database::state_checksum`]: XXH3-64 (seed 0) of the snapshot bytes, streamed
/// (`twox-hash`), so it does not depend on how the encoder splits its writes. Not a CRC: each
/// section of the snapshot format ends with the CRC-32C of its bytes, and a running CRC over
/// bytes followed by their own CRC comes out the same whatever the bytes (CRCs are linear), so
/// a CRC of the stream (as before 62e1421) saw the section lengths alone: replicas with
/// different vectors, links, metadata or sq8 ranges had equal checksums
/// (`tests/state_checksum.rs`).
struct Checksum(twox_hash::XxHash3_64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(twox_hash::XxHash3_64::with_seed(0))
    }
}

impl Checksum {
    fn finish(self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

impl Write for Checksum {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint and an open give back the huge-page arrays' room past their items
    /// (`Flat::release_tail`); the next write grows into it with huge pages advised again.
    #[cfg(target_os = "linux")]
    #[test]
    fn checkpoint_and_open_release_the_arrays_tails() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("t.needle");
        let records = |from: usize| -> Vec<Record> {
            (from..from + 50)
                .map(|i| Record::new(format!("r{i}"), vec![i as f32, 1.0, (i % 7) as f32], None))
                .collect()
        };
        let released = |db: &Database| {
            let c = db.collection("c").expect("the collection");
            let c = c.read();
            (
                c.vectors.tail_is_released(),
                c.graph.links0.tail_is_released(),
            )
        };
        let db = Database::open_with(&path, DatabaseOptions { wal: WalMode::Off }).unwrap();
        db.create_collection("c", 3).unwrap();
        db.insert_batch("c", records(0)).unwrap();
        assert_eq!(released(&db), (false, false));
        db.checkpoint().unwrap();
        assert_eq!(released(&db), (true, true));
        db.insert_batch("c", records(50)).unwrap();
        assert_eq!(released(&db), (false, false));
        db.checkpoint().unwrap();
        drop(db);
        // Opened, the vectors are an exact copy (the links too, then with no room past them).
        let db = Database::open_with(&path, DatabaseOptions { wal: WalMode::Off }).unwrap();
        assert!(released(&db).0);
        assert_eq!(db.count("c").unwrap(), 100);
    }
}
