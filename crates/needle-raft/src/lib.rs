//! # needle-raft
//!
//! Raft replication for Needle: [`ReplicatedDatabase`] wraps an unchanged `needle_core::Database`
//! and drives it with raft-rs. Writes are [`ReplicatedCommand`]s replicated through the Raft log
//! and applied on every node in log order; reads follow [`ReadConsistency`]. Transports implement
//! [`MessageHandler`]; see `needle-transport-mem` for an in-memory one with fault injection.
//!
//! ## A cluster in one page
//!
//! Each node is an ordinary `needle_core::Database` (opened with its own log off: the Raft log is
//! the log), a Raft directory, and a [`MessageHandler`] — here `needle-transport-mem`'s in-memory
//! network; `needle-transport-tcp` for real peers, or your own (see
//! `examples/custom_transport.rs`). Writes go to the leader and return once a majority has them;
//! a follower answers [`NeedleError::NotLeader`] with the leader's id.
//!
//! ```
//! use std::time::Duration;
//! use needle_core::{Database, DatabaseOptions, WalMode};
//! use needle_raft::{ReadConsistency, ReplicatedDatabase, ReplicatedDatabaseConfig};
//! use needle_transport_mem::MemNetwork;
//!
//! let dir = tempfile::tempdir()?;
//! let net = MemNetwork::new(7);
//! let mut nodes = Vec::new();
//! for id in 1..=3 {
//!     let db = Database::open_with(
//!         dir.path().join(format!("node-{id}.needle")),
//!         DatabaseOptions { wal: WalMode::Off },
//!     )?;
//!     let config = ReplicatedDatabaseConfig::new(dir.path().join(format!("node-{id}-raft")), [1, 2, 3])
//!         .tick_interval(Duration::from_millis(10))
//!         .heartbeat_interval(Duration::from_millis(30))
//!         .election_timeout(Duration::from_millis(150), Duration::from_millis(300));
//!     nodes.push(ReplicatedDatabase::new(id, db, Box::new(net.handler(id)), config)?);
//! }
//! // Wait for an election, then write through the leader.
//! let leader = loop {
//!     if let Some(n) = nodes.iter().find(|n| n.is_leader()) { break n; }
//!     std::thread::sleep(Duration::from_millis(10));
//! };
//! leader.create_collection("docs", 2)?;
//! leader.insert("docs", "a", vec![1.0, 0.0], None)?;
//! // Every node can serve a linearizable read (a ReadIndex round through the leader).
//! for n in &nodes {
//!     assert_eq!(n.count_with("docs", ReadConsistency::Linearizable)?, 1);
//! }
//! for n in &nodes { n.shutdown()?; }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/three_node_cluster.rs` goes on to kill the leader and read from the new one.
//!
//! Modules: `message` (the transport boundary), `command` (the state machine's input), `config`,
//! `error`, `storage` (the Raft log on disk), `snapshot` (snapshot files and chunks), `node` (the
//! Raft thread and its Ready loop), `database` (the public API), `status`.

mod command;
mod config;
mod database;
mod error;
mod message;
mod node;
#[cfg(test)]
mod sim;
mod snapshot;
mod status;
mod storage;

pub use command::{BatchRecord, ReplicatedCommand, RequestId};
pub use config::ReplicatedDatabaseConfig;
pub use database::{DatabaseReader, ReadConsistency, ReplicatedDatabase};
pub use error::{NeedleError, Result, WriteOutcome};
pub use message::{MessageHandler, NodeId, RaftMessage, RemovalNotice};
pub use snapshot::{SnapshotAck, SnapshotChunk};
pub use status::{NodeStatus, PeerProgress, Role};

/// The raft-rs message type carried by [`RaftMessage::Raft`], re-exported for transports.
pub use raft::prelude::Message as RaftProtoMessage;
