//! The in-process cluster: `ReplicatedDatabase` nodes on a `MemNetwork`, each with its own
//! database file and Raft directory under one temporary directory. Start `n` founders, find the
//! leader, crash and restart nodes, add empty ones, wait for every node to apply the same index
//! with the same checksum. Every wait is bounded and panics with the nodes' state at its deadline.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use needle_core::{Database, DatabaseOptions, WalMode};
use needle_raft::{NeedleError, NodeId, ReplicatedDatabase, ReplicatedDatabaseConfig, Role};
use needle_transport_mem::MemNetwork;

/// Short timings so that tests run fast: 10 ms ticks.
pub fn test_config() -> ReplicatedDatabaseConfig {
    ReplicatedDatabaseConfig::default()
        .tick_interval(Duration::from_millis(10))
        .heartbeat_interval(Duration::from_millis(30))
        .election_timeout_min(Duration::from_millis(300))
        .election_timeout_max(Duration::from_millis(600))
        .max_staleness(Duration::from_millis(500))
        .proposal_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(2))
        .snapshot_threshold(1_000)
        .log_retain_entries(50)
        .snapshot_chunk_size(16 * 1024)
        .log_segment_size(256 * 1024)
}

/// The size of node `id`'s latest snapshot as streamed to a peer: its header file
/// (`snapshot-*.meta`) and the database checkpoint it describes.
pub fn snapshot_bytes(c: &Cluster, id: NodeId) -> u64 {
    let header: u64 = std::fs::read_dir(c.dir.path().join(format!("node-{id}-raft")))
        .expect("the node's raft directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".meta"))
        .map(|e| e.metadata().expect("metadata").len())
        .sum();
    let db = std::fs::metadata(c.dir.path().join(format!("node-{id}.needle")))
        .expect("the node's database file")
        .len();
    header + db
}

type Nodes = BTreeMap<NodeId, Arc<ReplicatedDatabase>>;

/// The leader of the highest term among `nodes` if every one of them names it as its leader
/// (for any transport's nodes: `Arc`s, references).
pub fn agreed_leader<N: Deref<Target = ReplicatedDatabase>>(nodes: &[N]) -> Option<NodeId> {
    let leader = nodes
        .iter()
        .filter(|n| n.role() == Role::Leader)
        .max_by_key(|n| (n.term(), n.node_id()))?
        .node_id();
    nodes
        .iter()
        .all(|n| n.leader() == Some(leader))
        .then_some(leader)
}

/// `(applied index, state checksum)` if every one of `nodes` has applied the same index, with the
/// same checksum, and that index is at least the highest commit index any of them knows.
pub fn converged<N: Deref<Target = ReplicatedDatabase>>(nodes: &[N]) -> Option<(u64, u64)> {
    let states: Vec<(u64, u64)> = nodes
        .iter()
        .map(|n| (n.applied_index(), n.state_checksum()))
        .collect();
    let max_commit = nodes
        .iter()
        .filter_map(|n| n.status().ok())
        .map(|s| s.commit)
        .max()
        .unwrap_or(0);
    let first = *states.first()?;
    (states.iter().all(|s| *s == first) && first.0 >= max_commit).then_some(first)
}

/// `n` nodes (ids `1..=n`, the founders) and any added later, on one `MemNetwork` whose faults
/// (partitions, drops, delays) the test drives through [`Cluster::net`]. Dropping it shuts every
/// running node down.
pub struct Cluster {
    /// The network, seeded: its random faults replay with the cluster's seed.
    pub net: MemNetwork,
    /// Node `id`'s database is `node-{id}.needle` here, its Raft directory `node-{id}-raft`.
    pub dir: tempfile::TempDir,
    nodes: RwLock<Nodes>,
    /// The initial members; a node started with another id starts empty and waits to be added.
    pub founders: Vec<NodeId>,
    /// The configuration each node starts with (its data directory and members are set per node).
    pub config: ReplicatedDatabaseConfig,
}

impl Cluster {
    /// `n` founders with [`test_config`]'s short timings, on a network seeded with `seed`.
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, test_config())
    }

    /// As [`Cluster::new`] with a configuration of the test's own.
    pub fn with_config(n: u64, seed: u64, config: ReplicatedDatabaseConfig) -> Cluster {
        let founders: Vec<NodeId> = (1..=n).collect();
        let c = Cluster {
            net: MemNetwork::new(seed),
            dir: tempfile::tempdir().expect("temporary directory"),
            nodes: RwLock::new(BTreeMap::new()),
            founders: founders.clone(),
            config,
        };
        for id in founders {
            c.start(id);
        }
        c
    }

    fn paths(&self, id: NodeId) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join(format!("node-{id}.needle")),
            self.dir.path().join(format!("node-{id}-raft")),
        )
    }

    /// Starts (or restarts) node `id` from its files. A node that is not a founder starts empty
    /// and waits to be added.
    pub fn start(&self, id: NodeId) {
        self.start_with(id, self.config.clone());
    }

    /// As `start`, with a configuration of its own (its data directory and founders are set
    /// here).
    pub fn start_with(&self, id: NodeId, config: ReplicatedDatabaseConfig) {
        let (db_path, raft_dir) = self.paths(id);
        // A client thread may still hold the crashed node for a moment (and so its file lock).
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match Database::open_with(&db_path, DatabaseOptions { wal: WalMode::Off }) {
                Ok(db) => break db,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot open {}: {e}",
                        db_path.display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let config = config
            .data_dir(raft_dir)
            .initial_members(if self.founders.contains(&id) {
                self.founders.clone()
            } else {
                vec![]
            });
        let handler = self.net.handler(id);
        let node = ReplicatedDatabase::new(id, db, Box::new(handler), config).expect("start node");
        self.nodes.write().unwrap().insert(id, Arc::new(node));
    }

    /// Crashes node `id`: cut from the network, then stopped.
    pub fn crash(&self, id: NodeId) {
        self.net.crash(id);
        let node = self.nodes.write().unwrap().remove(&id);
        if let Some(node) = node {
            node.shutdown().expect("shutdown");
        }
    }

    /// Starts a crashed node again from its files.
    pub fn restart(&self, id: NodeId) {
        self.start(id);
    }

    /// Whether node `id` runs (started and not crashed).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.read().unwrap().contains_key(&id)
    }

    /// Running node `id`; panics if it does not run.
    pub fn node(&self, id: NodeId) -> Arc<ReplicatedDatabase> {
        self.try_node(id).expect("node is running")
    }

    /// Running node `id`, if it runs.
    pub fn try_node(&self, id: NodeId) -> Option<Arc<ReplicatedDatabase>> {
        self.nodes.read().unwrap().get(&id).cloned()
    }

    /// Every running node.
    pub fn live(&self) -> Vec<Arc<ReplicatedDatabase>> {
        self.nodes.read().unwrap().values().cloned().collect()
    }

    /// The ids of the running nodes.
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes.read().unwrap().keys().copied().collect()
    }

    /// Waits for a node that leads in the highest term among `among` and returns it.
    pub fn wait_leader_among(&self, among: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<_> = among
                .iter()
                .filter_map(|id| self.try_node(*id))
                .filter(|n| n.role() == Role::Leader)
                .map(|n| (n.term(), n.node_id()))
                .collect();
            if let Some(&(_, id)) = leaders.iter().max() {
                // Every other node of the group agrees on it.
                let group: Vec<_> = among.iter().filter_map(|i| self.try_node(*i)).collect();
                if agreed_leader(&group) == Some(id) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a leader that every running node agrees on.
    pub fn wait_leader(&self, timeout: Duration) -> NodeId {
        self.wait_leader_among(&self.live_ids(), timeout)
    }

    /// Runs `f` on whichever node leads, retrying through elections and `NotLeader`.
    pub fn on_leader<T>(
        &self,
        timeout: Duration,
        f: impl Fn(&ReplicatedDatabase) -> Result<T, NeedleError>,
    ) -> T {
        self.try_on_leader(timeout, f)
            .unwrap_or_else(|e| panic!("operation kept failing: {e}"))
    }

    /// As `on_leader`, returning the last error at the deadline.
    pub fn try_on_leader<T>(
        &self,
        timeout: Duration,
        f: impl Fn(&ReplicatedDatabase) -> Result<T, NeedleError>,
    ) -> Result<T, NeedleError> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self
                .live()
                .into_iter()
                .filter(|n| n.is_leader())
                .max_by_key(|n| n.term());
            let Some(node) = leader else {
                if Instant::now() >= deadline {
                    return Err(NeedleError::NotLeader { leader: None });
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            match f(&node) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits until every running node has applied the same index with the same checksum.
    pub fn wait_converged(&self, timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live();
            if let Some(state) = converged(&live) {
                return state;
            }
            if Instant::now() >= deadline {
                let detail: Vec<_> = live
                    .iter()
                    .map(|n| (n.node_id(), n.status().ok(), n.state_checksum()))
                    .collect();
                panic!("cluster did not converge within {timeout:?}: {detail:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(id, applied index, state checksum)` of every running node.
    pub fn checksums(&self) -> Vec<(NodeId, u64, u64)> {
        self.live()
            .iter()
            .map(|n| (n.node_id(), n.applied_index(), n.state_checksum()))
            .collect()
    }

    /// Shuts every running node down (they stay in the map; dropping the cluster does this).
    pub fn shutdown(&self) {
        for n in self.live() {
            n.shutdown().expect("shutdown");
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field("founders", &self.founders)
            .field("running", &self.live_ids())
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
