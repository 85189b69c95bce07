//! A cluster of `ReplicatedDatabase` nodes on a `MemNetwork`, each with its own database file and
//! Raft directory under one temporary directory, for the behaviour tests.
#![allow(dead_code)]

pub mod linearizability;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use needle_core::{Database, DatabaseOptions, WalMode};
use needle_raft::{NeedleError, NodeId, ReplicatedDatabase, ReplicatedDatabaseConfig, Role};
use needle_transport_mem::MemNetwork;

/// The seed of a random test: `NEEDLE_SEED` if set, else a fresh one. Printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("NEEDLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (re-run with NEEDLE_SEED={seed})");
    seed
}

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

pub struct Cluster {
    pub net: MemNetwork,
    pub dir: tempfile::TempDir,
    nodes: RwLock<Nodes>,
    pub founders: Vec<NodeId>,
    pub config: ReplicatedDatabaseConfig,
}

impl Cluster {
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, test_config())
    }

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

    pub fn restart(&self, id: NodeId) {
        self.start(id);
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.read().unwrap().contains_key(&id)
    }

    pub fn node(&self, id: NodeId) -> Arc<ReplicatedDatabase> {
        self.try_node(id).expect("node is running")
    }

    pub fn try_node(&self, id: NodeId) -> Option<Arc<ReplicatedDatabase>> {
        self.nodes.read().unwrap().get(&id).cloned()
    }

    pub fn live(&self) -> Vec<Arc<ReplicatedDatabase>> {
        self.nodes.read().unwrap().values().cloned().collect()
    }

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
                let agree = among
                    .iter()
                    .filter_map(|i| self.try_node(*i))
                    .all(|n| n.leader() == Some(id));
                if agree {
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
            let states: Vec<(u64, u64)> = live
                .iter()
                .map(|n| (n.applied_index(), n.state_checksum()))
                .collect();
            let max_commit = live
                .iter()
                .filter_map(|n| n.status().ok())
                .map(|s| s.commit)
                .max()
                .unwrap_or(0);
            if states.windows(2).all(|w| w[0] == w[1]) && states[0].0 >= max_commit {
                return states[0];
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

    pub fn shutdown(&self) {
        for n in self.live() {
            n.shutdown().expect("shutdown");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
