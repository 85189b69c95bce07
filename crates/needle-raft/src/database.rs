//! [`ReplicatedDatabase`]: the public face. Writes become [`ReplicatedCommand`]s proposed through
//! the Raft thread and waited on; reads pass the consistency check of [`ReadConsistency`] and then
//! run on the local database. Knows no transport beyond the [`MessageHandler`] trait.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use needle_core::disk::{Disk, OsDisk};
use needle_core::{
    CollectionConfig, CollectionInfo, Database, DatabaseOptions, Filter, IndexKind, Record,
    ScrollPage, SearchOptions, SearchResult, WalMode,
};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

use crate::command::{BatchRecord, ReplicatedCommand, RequestId, encode_entry};
use crate::config::ReplicatedDatabaseConfig;
use crate::error::{NeedleError, Result, WriteOutcome};
use crate::message::{MessageHandler, NodeId};
use crate::node::{Background, Node, Request, Shared};
use crate::status::{NodeStatus, Role};

/// How fresh a read must be: each level means one thing on every node, whatever the
/// configuration. (The plain reads — `search`, `get`, `count`, `list_collections` — pick a level
/// by the ADR's table instead: see [`ReplicatedDatabase::search`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadConsistency {
    /// Linearizable on any node: a ReadIndex round through the leader (which confirms with a
    /// quorum that it still leads), then a wait until this node has applied that index. Sees
    /// every write acknowledged before the read began. Costs a round trip to the leader and a
    /// quorum; `Timeout` after `read_timeout` when there is no leader or quorum.
    Linearizable,
    /// A local read on the node that believes it is the leader, with no round trip; any other
    /// node answers `NotLeader`. **Risk:** a leader cut off from the others keeps believing it
    /// leads until check-quorum steps it down (up to about two `election_timeout_min`, longer
    /// if its Raft thread stalls), while the majority may already have elected a new leader and
    /// acknowledged writes: such a read can miss them, with no bound. Use it when a fast read of
    /// the leader's state is worth that.
    Leader,
    /// A local read that sees every write acknowledged more than the given duration before the
    /// read began, on any node, or is refused with `StaleRead` (see `docs/replication.md`,
    /// "Bounded-staleness reads", for how the bound is kept and the clock assumption).
    BoundedStaleness(Duration),
}

/// A node of a replicated Needle database: an unchanged [`Database`] driven by Raft.
///
/// ```no_run
/// # fn handler() -> Box<dyn needle_raft::MessageHandler> { unimplemented!() }
/// use needle_core::{Database, DatabaseOptions, WalMode};
/// use needle_raft::{ReplicatedDatabase, ReplicatedDatabaseConfig};
///
/// let db = Database::open_with("node1.needle", DatabaseOptions { wal: WalMode::Off })?;
/// let config = ReplicatedDatabaseConfig::new("node1-raft", [1, 2, 3]);
/// let node = ReplicatedDatabase::new(1, db, handler(), config)?;
/// node.create_collection("docs", 3)?;
/// node.insert("docs", "a", vec![1.0, 0.0, 0.0], None)?;
/// let hits = node.search("docs", &[1.0, 0.0, 0.0], 1)?;
/// # Ok::<(), needle_raft::NeedleError>(())
/// ```
pub struct ReplicatedDatabase {
    id: NodeId,
    db: Database,
    config: ReplicatedDatabaseConfig,
    requests: Sender<Request>,
    shared: Arc<Shared>,
    client: u64,
    seq: AtomicU64,
    stop_receiver: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReplicatedDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedDatabase")
            .field("id", &self.id)
            .field("role", &self.shared.role())
            .field("leader", &self.shared.leader())
            .finish()
    }
}

impl ReplicatedDatabase {
    /// Opens (or creates) the database file at `path` with its own log off, as replication
    /// needs, and starts node `node_id` over it (see [`ReplicatedDatabase::new`]).
    pub fn open(
        node_id: NodeId,
        path: impl AsRef<std::path::Path>,
        handler: Box<dyn MessageHandler>,
        config: ReplicatedDatabaseConfig,
    ) -> Result<Self> {
        let db = Database::open_with(path, DatabaseOptions { wal: WalMode::Off })?;
        Self::new(node_id, db, handler, config)
    }

    /// A read-only view of this node's local database: what it has applied, with no
    /// consistency check (see [`DatabaseReader`]). Writes go through the `ReplicatedDatabase`.
    pub fn reader(&self) -> DatabaseReader {
        DatabaseReader {
            db: self.db.clone(),
        }
    }

    /// Starts node `node_id` over `db`, which must be opened with `WalMode::Off` (the Raft log
    /// is the log) and be the only handle to its database (no clones: every write must go
    /// through Raft); either misuse is refused with `InvalidConfig { field: "db" }`, saying
    /// what to do. [`ReplicatedDatabase::open`] opens the file the right way.
    /// Recovers from `config.data_dir` when it holds a log: the database is brought to its
    /// checkpoint's index (or to the latest snapshot), and the log is replayed from there.
    pub fn new(
        node_id: NodeId,
        db: Database,
        handler: Box<dyn MessageHandler>,
        config: ReplicatedDatabaseConfig,
    ) -> Result<Self> {
        Self::open_on(Arc::new(OsDisk), node_id, db, handler, config)
    }

    /// [`ReplicatedDatabase::new`] with the Raft log and snapshot files of `config.data_dir` on
    /// `disk` rather than the file system: a [`needle_core::disk::SimDisk`] in tests (crashes
    /// that lose unsynced bytes, I/O errors), or any other [`Disk`]. The database keeps its own
    /// disk (the one it was opened on, see `Database::open_on`); both may be the same.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use needle_core::Database;
    /// use needle_core::disk::MemDisk;
    /// use needle_raft::{ReplicatedDatabase, ReplicatedDatabaseConfig};
    /// use needle_transport_mem::MemNetwork;
    ///
    /// let net = MemNetwork::new(7);
    /// let config = ReplicatedDatabaseConfig::new("/node1-raft", [1]);
    /// let disk = Arc::new(MemDisk::new());
    /// let handler = Box::new(net.handler(1));
    /// let node = ReplicatedDatabase::open_on(disk, 1, Database::in_memory(), handler, config)?;
    /// node.shutdown()?;
    /// # Ok::<(), needle_raft::NeedleError>(())
    /// ```
    pub fn open_on(
        disk: Arc<dyn Disk>,
        node_id: NodeId,
        db: Database,
        handler: Box<dyn MessageHandler>,
        config: ReplicatedDatabaseConfig,
    ) -> Result<Self> {
        config.validate()?;
        if db.wal_mode() != WalMode::Off {
            return Err(NeedleError::InvalidConfig {
                field: "db",
                reason: format!(
                    "the database was opened with {:?}: open it with WalMode::Off (the Raft log is \
                     its log; with its own log, a restart would replay the writes and Raft would \
                     apply them again), or use ReplicatedDatabase::open",
                    db.wal_mode()
                ),
            });
        }
        if db.handle_count() > 1 {
            return Err(NeedleError::InvalidConfig {
                field: "db",
                reason: format!(
                    "{} other handles (clones) of this Database exist: a write through one would \
                     bypass Raft. Hand over the only handle and read through \
                     ReplicatedDatabase::reader()",
                    db.handle_count() - 1
                ),
            });
        }
        if node_id == 0 {
            return Err(NeedleError::InvalidConfig {
                field: "node_id",
                reason: "node id 0 is reserved".into(),
            });
        }
        let handler: Arc<dyn MessageHandler> = Arc::from(handler);
        let shared = Arc::new(Shared {
            role: AtomicU8::new(Role::Follower as u8),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            started: Instant::now(),
            stopped: AtomicBool::new(false),
            fatal: Mutex::new(None),
            fresh: Mutex::new(None),
        });
        let node = Node::open(
            disk,
            node_id,
            db.clone(),
            handler.clone(),
            config.clone(),
            shared.clone(),
            Background::Threads,
            process_nonce(),
        )?;
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (msg_tx, msg_rx) = crossbeam_channel::bounded(65_536);
        let stop_receiver = Arc::new(AtomicBool::new(false));
        let stop = stop_receiver.clone();
        let receiver = std::thread::Builder::new()
            .name(format!("needle-raft-recv-{node_id}"))
            .spawn(move || receive_loop(handler, msg_tx, stop))
            .map_err(|e| NeedleError::io("spawning the receive thread", e))?;
        let raft = std::thread::Builder::new()
            .name(format!("needle-raft-{node_id}"))
            .spawn(move || crate::node::run(node, req_rx, msg_rx))
            .map_err(|e| NeedleError::io("spawning the raft thread", e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(ReplicatedDatabase {
            id: node_id,
            db,
            config,
            requests: req_tx,
            shared,
            client: (node_id << 48) ^ nanos,
            seq: AtomicU64::new(0),
            stop_receiver,
            threads: Mutex::new(vec![raft, receiver]),
        })
    }

    // ---- writes ----

    /// A fresh request id for a write issued through this node.
    pub fn next_request_id(&self) -> RequestId {
        RequestId {
            client: self.client,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Proposes `cmd` and waits until it is committed by a majority and applied here.
    pub fn execute(&self, cmd: ReplicatedCommand) -> Result<()> {
        self.execute_with_id(self.next_request_id(), cmd)
    }

    /// As [`ReplicatedDatabase::execute`], with the caller's request id: after an error where
    /// [`NeedleError::may_have_been_applied`] is true, retrying with the same id applies the
    /// command at most once.
    pub fn execute_with_id(&self, id: RequestId, cmd: ReplicatedCommand) -> Result<()> {
        self.execute_applied(id, cmd).map(|_| ())
    }

    /// Proposes `cmd`, waits for it, and returns what its apply returned (for a delete, whether
    /// the record was there).
    fn execute_applied(&self, id: RequestId, cmd: ReplicatedCommand) -> Result<u64> {
        let data = encode_entry(id, &cmd);
        // A bigger entry might never fit a transport frame: it would never commit, and every
        // later write would queue behind it.
        if data.len() as u64 > self.config.max_entry_bytes {
            return Err(NeedleError::EntryTooLarge {
                size: data.len() as u64,
                max: self.config.max_entry_bytes,
            });
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Propose {
            id,
            data,
            reply: tx,
        })?;
        self.wait(
            rx,
            "write",
            self.config.proposal_timeout,
            WriteOutcome::MaybeApplied,
        )
    }

    /// Creates a collection with the default configuration.
    pub fn create_collection(&self, name: &str, dimensions: usize) -> Result<()> {
        self.execute(ReplicatedCommand::CreateCollection {
            name: name.to_string(),
            dimensions,
            config: None,
        })
    }

    /// Creates a collection with `config`.
    pub fn create_collection_with_config(
        &self,
        name: &str,
        dimensions: usize,
        config: CollectionConfig,
    ) -> Result<()> {
        self.execute(ReplicatedCommand::CreateCollection {
            name: name.to_string(),
            dimensions,
            config: Some(config),
        })
    }

    /// Inserts (or replaces) a record.
    pub fn insert(
        &self,
        collection: &str,
        id: &str,
        vector: Vec<f32>,
        metadata: Option<serde_json::Value>,
    ) -> Result<()> {
        self.execute(ReplicatedCommand::Insert {
            collection: collection.to_string(),
            id: id.to_string(),
            vector,
            metadata: metadata.as_ref().map(ReplicatedCommand::json),
        })
    }

    /// Inserts many records as one command: one Raft entry, all or nothing. A batch whose entry
    /// is over `max_entry_bytes` is refused with [`NeedleError::EntryTooLarge`] (nothing
    /// applied): split it into smaller batches.
    pub fn insert_batch(&self, collection: &str, records: Vec<Record>) -> Result<()> {
        self.execute(ReplicatedCommand::InsertBatch {
            collection: collection.to_string(),
            records: records
                .into_iter()
                .map(|r| BatchRecord {
                    metadata: r.metadata.as_ref().map(ReplicatedCommand::json),
                    id: r.id,
                    vector: r.vector,
                })
                .collect(),
        })
    }

    /// Updates a record's vector and/or metadata.
    pub fn update(
        &self,
        collection: &str,
        id: &str,
        vector: Option<Vec<f32>>,
        metadata: Option<serde_json::Value>,
    ) -> Result<()> {
        self.execute(ReplicatedCommand::Update {
            collection: collection.to_string(),
            id: id.to_string(),
            vector,
            metadata: metadata.as_ref().map(ReplicatedCommand::json),
        })
    }

    /// Deletes a record; returns whether it was there when the delete was applied (a record that
    /// is not there is not an error). A retry with the same [`RequestId`] that the dedup window
    /// skips returns `false`: that apply removed nothing.
    pub fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        self.delete_with_id(self.next_request_id(), collection, id)
    }

    /// As [`ReplicatedDatabase::delete`], with the caller's request id (see
    /// [`ReplicatedDatabase::execute_with_id`]): the HTTP API's `Idempotency-Key`.
    pub fn delete_with_id(&self, request: RequestId, collection: &str, id: &str) -> Result<bool> {
        self.execute_applied(
            request,
            ReplicatedCommand::Delete {
                collection: collection.to_string(),
                id: id.to_string(),
            },
        )
        .map(|n| n > 0)
    }

    /// Declares a payload index on every node (see `needle_core::Database::create_index`).
    pub fn create_index(&self, collection: &str, path: &str, kind: IndexKind) -> Result<()> {
        self.execute(ReplicatedCommand::CreateIndex {
            collection: collection.to_string(),
            path: path.to_string(),
            kind: kind.name().to_string(),
        })
    }

    /// [`create_index`](Self::create_index) with options (see
    /// `needle_core::Database::create_index_with`).
    pub fn create_index_with(
        &self,
        collection: &str,
        path: &str,
        kind: IndexKind,
        options: needle_core::IndexOptions,
    ) -> Result<()> {
        if options.value_graphs {
            return self.create_index(collection, path, kind);
        }
        self.execute(ReplicatedCommand::CreateIndexWithOptions {
            collection: collection.to_string(),
            path: path.to_string(),
            kind: kind.name().to_string(),
            value_graphs: options.value_graphs,
        })
    }

    /// Drops a payload index on every node.
    pub fn drop_index(&self, collection: &str, path: &str) -> Result<()> {
        self.execute(ReplicatedCommand::DropIndex {
            collection: collection.to_string(),
            path: path.to_string(),
        })
    }

    /// Deletes every record matching `filter`, as one replicated command evaluated at apply
    /// time (the same records on every node); returns how many were deleted, as counted by the
    /// apply (the same number on every node). A retry with the same [`RequestId`] gets the
    /// first apply's count when this node kept it (the dedup window), else 0.
    pub fn delete_by_filter(&self, collection: &str, filter: &Filter) -> Result<usize> {
        self.delete_by_filter_with_id(self.next_request_id(), collection, filter)
    }

    /// As [`ReplicatedDatabase::delete_by_filter`], with the caller's request id.
    pub fn delete_by_filter_with_id(
        &self,
        request: RequestId,
        collection: &str,
        filter: &Filter,
    ) -> Result<usize> {
        self.execute_applied(
            request,
            ReplicatedCommand::DeleteByFilter {
                collection: collection.to_string(),
                filter: ReplicatedCommand::json(filter.to_json()),
            },
        )
        .map(|n| n as usize)
    }

    /// Deletes the records with these ids as one replicated command; returns how many were
    /// there (counted by the apply, the same on every node).
    pub fn delete_many(&self, collection: &str, ids: &[String]) -> Result<usize> {
        self.delete_many_with_id(self.next_request_id(), collection, ids)
    }

    /// As [`ReplicatedDatabase::delete_many`], with the caller's request id.
    pub fn delete_many_with_id(
        &self,
        request: RequestId,
        collection: &str,
        ids: &[String],
    ) -> Result<usize> {
        self.execute_applied(
            request,
            ReplicatedCommand::DeleteMany {
                collection: collection.to_string(),
                ids: ids.to_vec(),
            },
        )
        .map(|n| n as usize)
    }

    /// Compacts a collection on every node.
    pub fn compact(&self, collection: &str) -> Result<()> {
        self.execute(ReplicatedCommand::Compact {
            collection: collection.to_string(),
        })
    }

    /// Drops a collection.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.execute(ReplicatedCommand::DropCollection {
            name: name.to_string(),
        })
    }

    // ---- reads ----

    /// Makes a read at `consistency` safe to run on the local database (see [`ReadConsistency`]).
    pub fn read_barrier(&self, consistency: ReadConsistency) -> Result<()> {
        match consistency {
            ReadConsistency::Linearizable => self.read_index(),
            ReadConsistency::Leader => {
                if self.shared.stopped.load(Ordering::Acquire) {
                    return Err(self.stopped_error());
                }
                if self.shared.role() == Role::Leader {
                    Ok(())
                } else {
                    Err(NeedleError::NotLeader {
                        leader: self.shared.leader(),
                    })
                }
            }
            ReadConsistency::BoundedStaleness(bound) => self.check_fresh(bound),
        }
    }

    /// The level of the plain reads, by the ADR's table: linearizable on the leader; on a
    /// follower bounded by `max_staleness` when `allow_follower_reads` is on, else `NotLeader`.
    fn plain_read_barrier(&self) -> Result<()> {
        if self.shared.role() == Role::Leader {
            self.read_index()
        } else if self.config.allow_follower_reads {
            self.check_fresh(self.config.max_staleness)
        } else {
            Err(NeedleError::NotLeader {
                leader: self.shared.leader(),
            })
        }
    }

    fn read_index(&self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Read { reply: tx })?;
        self.wait(
            rx,
            "linearizable read",
            self.config.read_timeout,
            WriteOutcome::NotApplied,
        )
    }

    /// A bounded-staleness barrier, the same on a leader and a follower: the local database
    /// must have applied an index that a ReadIndex round (the leader confirming its leadership
    /// with a quorum) answered for a request this node issued within `bound`. Otherwise one such
    /// round is made now, waiting at most `bound` (and `read_timeout`), else `StaleRead`.
    fn check_fresh(&self, bound: Duration) -> Result<()> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(self.stopped_error());
        }
        let now = self.shared.started.elapsed();
        let since = match self.shared.fresh_within(bound, now) {
            Ok(age) => {
                // Refresh in the background before the bound runs out, so that steady readers
                // keep reading locally.
                if age > bound / 2 {
                    let _ = self.requests.send(Request::Probe);
                }
                return Ok(());
            }
            Err(since) => since,
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let timeout = bound.min(self.config.read_timeout);
        self.send(Request::ReadWithin { reply: tx, timeout })?;
        match self.wait(
            rx,
            "bounded-staleness read",
            timeout,
            WriteOutcome::NotApplied,
        ) {
            Err(NeedleError::Timeout { .. }) => Err(NeedleError::StaleRead {
                since,
                max_staleness: bound,
            }),
            other => other,
        }
    }

    /// The `k` nearest records, at the ADR's consistency for plain reads: on the leader
    /// linearizable ([`ReadConsistency::Linearizable`]); on a follower, when
    /// `allow_follower_reads` is on, [`ReadConsistency::BoundedStaleness`]`(max_staleness)`,
    /// else [`NeedleError::NotLeader`]. `get`, `count` and `list_collections` do the same.
    pub fn search(&self, collection: &str, query: &[f32], k: usize) -> Result<Vec<SearchResult>> {
        self.plain_read_barrier()?;
        Ok(self
            .db
            .search_with(collection, query, k, &SearchOptions::new())?)
    }

    /// The `k` nearest records with search options, at `consistency`.
    pub fn search_with(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        opts: &SearchOptions,
        consistency: ReadConsistency,
    ) -> Result<Vec<SearchResult>> {
        self.read_barrier(consistency)?;
        Ok(self.db.search_with(collection, query, k, opts)?)
    }

    /// One record, at the consistency of plain reads (see [`ReplicatedDatabase::search`]).
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Record>> {
        self.plain_read_barrier()?;
        Ok(self.db.get(collection, id)?)
    }

    /// One record, at `consistency`.
    pub fn get_with(
        &self,
        collection: &str,
        id: &str,
        consistency: ReadConsistency,
    ) -> Result<Option<Record>> {
        self.read_barrier(consistency)?;
        Ok(self.db.get(collection, id)?)
    }

    /// The number of records in a collection, at the consistency of plain reads (see
    /// [`ReplicatedDatabase::search`]).
    pub fn count(&self, collection: &str) -> Result<usize> {
        self.plain_read_barrier()?;
        Ok(self.db.count(collection)?)
    }

    /// The number of records in a collection, at `consistency`.
    pub fn count_with(&self, collection: &str, consistency: ReadConsistency) -> Result<usize> {
        self.read_barrier(consistency)?;
        Ok(self.db.count(collection)?)
    }

    /// The number of records matching `filter` (all with `None`), at `consistency`.
    pub fn count_matching_with(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        consistency: ReadConsistency,
    ) -> Result<usize> {
        self.read_barrier(consistency)?;
        Ok(self.db.count_matching(collection, filter)?)
    }

    /// Records by id, in the order asked, at `consistency`.
    pub fn get_many_with(
        &self,
        collection: &str,
        ids: &[String],
        consistency: ReadConsistency,
    ) -> Result<Vec<Option<Record>>> {
        self.read_barrier(consistency)?;
        Ok(self.db.get_many(collection, ids)?)
    }

    /// One page of the records matching `filter`, in id order after `cursor`, at `consistency`
    /// (see `needle_core::Database::scroll`; the cursor is an id, valid on any node).
    pub fn scroll_with(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        cursor: Option<&str>,
        limit: usize,
        consistency: ReadConsistency,
    ) -> Result<ScrollPage> {
        self.read_barrier(consistency)?;
        Ok(self.db.scroll(collection, filter, cursor, limit)?)
    }

    /// A collection's dimensions, configuration, counts and payload indexes, at `consistency`.
    pub fn collection_info_with(
        &self,
        collection: &str,
        consistency: ReadConsistency,
    ) -> Result<CollectionInfo> {
        self.read_barrier(consistency)?;
        Ok(self.db.collection_info(collection)?)
    }

    /// The collections' names, sorted, at the consistency of plain reads (see
    /// [`ReplicatedDatabase::search`]).
    pub fn list_collections(&self) -> Result<Vec<String>> {
        self.plain_read_barrier()?;
        Ok(self.db.list_collections())
    }

    /// The collections' names, sorted, at `consistency`.
    pub fn list_collections_with(&self, consistency: ReadConsistency) -> Result<Vec<String>> {
        self.read_barrier(consistency)?;
        Ok(self.db.list_collections())
    }

    // ---- membership and operations ----

    fn conf_change(&self, changes: &[(ConfChangeType, NodeId)]) -> Result<()> {
        let mut cc = ConfChangeV2::default();
        let singles: Vec<ConfChangeSingle> = changes
            .iter()
            .map(|&(t, id)| {
                let mut s = ConfChangeSingle::default();
                s.set_change_type(t);
                s.node_id = id;
                s
            })
            .collect();
        cc.set_changes(singles.into());
        let id = self.next_request_id();
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::ConfChange { id, cc, reply: tx })?;
        self.wait(
            rx,
            "membership change",
            self.config.proposal_timeout,
            WriteOutcome::MaybeApplied,
        )
        .map(|_| ())
    }

    /// Adds `node` as a learner, waits until it has caught up with the leader's log (by snapshot
    /// and appends), then promotes it to voter. Call on the leader. The new node starts with an
    /// empty `data_dir` and no `initial_members`.
    pub fn add_node(&self, node: NodeId) -> Result<()> {
        let status = self.status()?;
        if !status.learners.contains(&node) && !status.voters.contains(&node) {
            self.conf_change(&[(ConfChangeType::AddLearnerNode, node)])?;
        }
        let deadline = Instant::now() + self.config.proposal_timeout * 4;
        loop {
            let s = self.status()?;
            if s.voters.contains(&node) {
                return Ok(());
            }
            if s.role != Role::Leader {
                return Err(NeedleError::NotLeader { leader: s.leader });
            }
            let caught_up = s
                .progress
                .get(&node)
                .is_some_and(|p| p.matched + 2 >= s.commit && p.matched > 0);
            if caught_up {
                return self.conf_change(&[(ConfChangeType::AddNode, node)]);
            }
            if Instant::now() >= deadline {
                return Err(NeedleError::Timeout {
                    operation: "learner catch-up",
                    after: self.config.proposal_timeout * 4,
                    outcome: WriteOutcome::NotApplied,
                });
            }
            std::thread::sleep(self.config.tick_interval);
        }
    }

    /// Removes `node` (voter or learner) from the cluster. Call on the leader.
    pub fn remove_node(&self, node: NodeId) -> Result<()> {
        self.conf_change(&[(ConfChangeType::RemoveNode, node)])
    }

    /// Hands leadership to `to` (a caught-up voter) and waits until this node sees it lead.
    pub fn transfer_leadership(&self, to: NodeId) -> Result<()> {
        let timeout = Duration::from_millis(self.config.election_timeout_max * 2);
        let deadline = Instant::now() + timeout;
        loop {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.send(Request::TransferLeader { to, reply: tx })?;
            match self.wait(rx, "leadership transfer", timeout, WriteOutcome::NotApplied) {
                Ok(()) | Err(NeedleError::NotLeader { .. }) => {}
                Err(e) => return Err(e),
            }
            let step = Instant::now() + Duration::from_millis(self.config.election_timeout_min);
            while Instant::now() < step {
                if self.shared.leader() == Some(to) {
                    return Ok(());
                }
                std::thread::sleep(self.config.tick_interval);
            }
            if Instant::now() >= deadline {
                return Err(NeedleError::Timeout {
                    operation: "leadership transfer",
                    after: timeout,
                    outcome: WriteOutcome::NotApplied,
                });
            }
            if self.shared.role() != Role::Leader {
                return Err(NeedleError::NotLeader {
                    leader: self.shared.leader(),
                });
            }
        }
    }

    /// Role, term, leader, commit and applied index, members, and (on the leader) each peer's
    /// progress.
    pub fn status(&self) -> Result<NodeStatus> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Status { reply: tx })?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| NeedleError::Shutdown)
    }

    /// Takes a snapshot now (database checkpoint, snapshot file, log compaction).
    pub fn trigger_snapshot(&self) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Snapshot { reply: tx })?;
        self.wait(
            rx,
            "snapshot",
            Duration::from_secs(60),
            WriteOutcome::NotApplied,
        )
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &ReplicatedDatabaseConfig {
        &self.config
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// The role this node last reported (no round trip).
    pub fn role(&self) -> Role {
        self.shared.role()
    }

    /// True when this node believes it leads. Only a hint: reads and writes check for themselves.
    pub fn is_leader(&self) -> bool {
        self.shared.role() == Role::Leader
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.leader()
    }

    /// The current term as this node knows it.
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Acquire)
    }

    /// The highest log index applied to the local database.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The local database's content checksum (equal on two nodes at equal applied index).
    pub fn state_checksum(&self) -> u64 {
        self.db.state_checksum()
    }

    /// Why the Raft thread stopped, if it stopped on an error.
    pub fn fatal_error(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the node: the Raft thread finishes its current Ready, syncs the log and exits;
    /// pending writes get `Timeout { outcome: MaybeApplied }`. Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        let _ = self.requests.send(Request::Shutdown);
        self.stop_receiver.store(true, Ordering::Release);
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }

    fn send(&self, r: Request) -> Result<()> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(self.stopped_error());
        }
        self.requests.send(r).map_err(|_| self.stopped_error())
    }

    /// Why the node serves nothing: `Stopped` with the Raft thread's error, else `Shutdown`.
    fn stopped_error(&self) -> NeedleError {
        match self.fatal_error() {
            Some(reason) => NeedleError::Stopped { reason },
            None => NeedleError::Shutdown,
        }
    }

    fn wait<T>(
        &self,
        rx: Receiver<Result<T>>,
        operation: &'static str,
        timeout: Duration,
        outcome: WriteOutcome,
    ) -> Result<T> {
        // The Raft thread answers at its own deadline; the margin covers a busy thread.
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(NeedleError::Timeout {
                operation,
                after: timeout,
                outcome,
            }),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => match outcome {
                WriteOutcome::NotApplied => Err(NeedleError::Shutdown),
                WriteOutcome::MaybeApplied => Err(NeedleError::Timeout {
                    operation,
                    after: Duration::ZERO,
                    outcome,
                }),
            },
        }
    }
}

/// A number that differs between two starts of a node (the clock and the process id).
fn process_nonce() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

impl Drop for ReplicatedDatabase {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn receive_loop(
    handler: Arc<dyn MessageHandler>,
    out: Sender<(NodeId, crate::message::RaftMessage)>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        match handler.receive_timeout(Duration::from_millis(5)) {
            Ok(Some(m)) => {
                if out.send(m).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A read-only view of a node's local database, from [`ReplicatedDatabase::reader`]: searches and
/// lookups of what this node has applied, with no consistency check of their own (call
/// [`ReplicatedDatabase::read_barrier`] first for one) and no way to write around Raft.
#[derive(Clone)]
pub struct DatabaseReader {
    db: Database,
}

impl std::fmt::Debug for DatabaseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseReader").field(&self.db).finish()
    }
}

impl DatabaseReader {
    /// See `needle_core::Database::search`.
    pub fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
    ) -> needle_core::Result<Vec<SearchResult>> {
        self.db.search(collection, query, k)
    }

    /// See `needle_core::Database::search_with`.
    pub fn search_with(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        opts: &SearchOptions,
    ) -> needle_core::Result<Vec<SearchResult>> {
        self.db.search_with(collection, query, k, opts)
    }

    /// See `needle_core::Database::get`.
    pub fn get(&self, collection: &str, id: &str) -> needle_core::Result<Option<Record>> {
        self.db.get(collection, id)
    }

    /// See `needle_core::Database::get_many`.
    pub fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> needle_core::Result<Vec<Option<Record>>> {
        self.db.get_many(collection, ids)
    }

    /// See `needle_core::Database::ids`.
    pub fn ids(&self, collection: &str) -> needle_core::Result<Vec<String>> {
        self.db.ids(collection)
    }

    /// See `needle_core::Database::count`.
    pub fn count(&self, collection: &str) -> needle_core::Result<usize> {
        self.db.count(collection)
    }

    /// See `needle_core::Database::count_matching`.
    pub fn count_matching(
        &self,
        collection: &str,
        filter: Option<&Filter>,
    ) -> needle_core::Result<usize> {
        self.db.count_matching(collection, filter)
    }

    /// See `needle_core::Database::scroll`.
    pub fn scroll(
        &self,
        collection: &str,
        filter: Option<&Filter>,
        cursor: Option<&str>,
        limit: usize,
    ) -> needle_core::Result<ScrollPage> {
        self.db.scroll(collection, filter, cursor, limit)
    }

    /// See `needle_core::Database::collection_info`.
    pub fn collection_info(&self, name: &str) -> needle_core::Result<CollectionInfo> {
        self.db.collection_info(name)
    }

    /// See `needle_core::Database::list_collections`.
    pub fn list_collections(&self) -> Vec<String> {
        self.db.list_collections()
    }

    /// Writes a consistent snapshot of the local database to `w` (see
    /// `needle_core::Database::write_snapshot`); the database itself is not changed.
    pub fn write_snapshot(&self, w: &mut dyn std::io::Write, tag: u64) -> needle_core::Result<u64> {
        self.db.write_snapshot(w, tag)
    }

    /// See `needle_core::Database::state_checksum`.
    pub fn state_checksum(&self) -> u64 {
        self.db.state_checksum()
    }
}
