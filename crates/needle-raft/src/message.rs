//! The transport boundary: `NodeId`, `RaftMessage` (what travels between nodes) and the
//! `MessageHandler` trait every transport implements. Knows nothing of sockets.

use std::time::{Duration, Instant};

use crate::error::Result;

/// A node's id in the cluster. Never 0 (raft-rs reserves 0 for "none").
pub type NodeId = u64;

/// One message between two nodes: a raft-rs message, or a chunk of a snapshot sent beside it.
/// Transports treat it as opaque bytes through [`RaftMessage::encode`] and [`RaftMessage::decode`].
#[derive(Debug, Clone, PartialEq)]
pub enum RaftMessage {
    /// A message of the Raft protocol itself.
    Raft(raft::prelude::Message),
    /// A piece of a database snapshot, streamed before the (small) MsgSnapshot that refers to it.
    SnapshotChunk(crate::snapshot::SnapshotChunk),
    /// A receiver's acknowledgement of snapshot chunks: the sender's flow control.
    SnapshotAck(crate::snapshot::SnapshotAck),
}

impl RaftMessage {
    /// Encodes the message into a self-describing byte buffer.
    pub fn encode(&self) -> Vec<u8> {
        crate::snapshot::encode_message(self)
    }

    /// Decodes bytes made by [`RaftMessage::encode`]. Any other bytes are a typed error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<RaftMessage> {
        crate::snapshot::decode_message(bytes)
    }
}

impl From<raft::prelude::Message> for RaftMessage {
    fn from(m: raft::prelude::Message) -> Self {
        RaftMessage::Raft(m)
    }
}

/// The network as Raft sees it. Transports may drop, delay, duplicate or reorder messages;
/// Raft tolerates all of these. `send` must never block for long: the Raft thread calls it.
pub trait MessageHandler: Send + Sync {
    /// Sends a message to a peer. An error means it was not queued; Raft retransmits.
    fn send(&self, to: NodeId, message: RaftMessage) -> Result<()>;

    /// Returns the next received message and its sender, if one is waiting; never blocks.
    fn receive(&self) -> Result<Option<(NodeId, RaftMessage)>>;

    /// The ids of the peers this handler knows (not including this node).
    fn peers(&self) -> Vec<NodeId>;

    /// Waits up to `timeout` for the next message. The default polls [`MessageHandler::receive`];
    /// transports with a channel inside should override it with a real blocking wait.
    fn receive_timeout(&self, timeout: Duration) -> Result<Option<(NodeId, RaftMessage)>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.receive()? {
                return Ok(Some(m));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
        }
    }
}
