//! # needle-raft
//!
//! Raft replication for Needle: [`ReplicatedDatabase`] wraps an unchanged `needle_core::Database`
//! and drives it with raft-rs. Writes are [`ReplicatedCommand`]s replicated through the Raft log
//! and applied on every node in log order; reads follow [`ReadConsistency`]. Transports implement
//! [`MessageHandler`]; see `needle-transport-mem` for an in-memory one with fault injection.
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
pub use database::{ReadConsistency, ReplicatedDatabase};
pub use error::{NeedleError, Result, WriteOutcome};
pub use message::{MessageHandler, NodeId, RaftMessage};
pub use snapshot::SnapshotChunk;
pub use status::{NodeStatus, PeerProgress, Role};

/// The raft-rs message type carried by [`RaftMessage::Raft`], re-exported for transports.
pub use raft::prelude::Message as RaftProtoMessage;
