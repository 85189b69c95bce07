//! The transport boundary: `NodeId`, `RaftMessage` (what travels between nodes) and the
//! `MessageHandler` trait every transport implements. Knows nothing of sockets.

use std::time::{Duration, Instant};

use crate::error::Result;

/// A node's id in the cluster. Never 0 (raft-rs reserves 0 for "none").
pub type NodeId = u64;

/// One message between two nodes: a raft-rs message, a chunk of a snapshot sent beside it, or a
/// member's notice to a peer that is no longer in its configuration.
/// Transports treat it as opaque bytes through [`RaftMessage::encode`] and [`RaftMessage::decode`].
/// `#[non_exhaustive]`: a transport that looks inside (to count chunks, say) keeps a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RaftMessage {
    /// A message of the Raft protocol itself.
    Raft(raft::prelude::Message),
    /// A piece of a database snapshot, streamed before the (small) MsgSnapshot that refers to it.
    SnapshotChunk(crate::snapshot::SnapshotChunk),
    /// A receiver's acknowledgement of snapshot chunks: the sender's flow control.
    SnapshotAck(crate::snapshot::SnapshotAck),
    /// A member's answer to a message from a peer that is not in the configuration the member
    /// has applied: the peer was removed (or never added) and may stop. Raft-rs's leader sends
    /// nothing more to a removed node, so a node removed while it could not hear the leader
    /// never applies its own removal; this tells it.
    Removed(RemovalNotice),
}

/// "You are not in my configuration": sent by a member to a peer whose messages it receives
/// while the configuration it has applied, at log index `index`, does not contain that peer.
///
/// The receiver has not applied `index` (else it would have applied its own removal, and
/// stopped, or been added back at or before `index`). Unless it applies that far, it serves
/// nothing and does not campaign ([`crate::NodeStatus::removed`]); a node added back under the
/// same id is caught up past `index` by the leader and serves again, so a stale notice only
/// pauses it. A notice is believed only from a member (voter, learner or outgoing voter) of
/// the configuration the receiver has applied: any other peer's is ignored, so a peer outside
/// it cannot pause a member. At most one notice goes to a peer per election timeout. A notice at index 0
/// pauses no one: a learner that has heard nothing for two election timeouts sends one to the
/// voters it knows, to be answered (a learner sends nothing else unasked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovalNotice {
    /// The sender's applied index; its configuration there does not contain the receiver.
    pub index: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NeedleError;

    /// The notice's wire form: a tag and its index; a short or long one is a typed error.
    #[test]
    fn a_removal_notice_round_trips_and_bad_bytes_are_refused() {
        for index in [0, 1, 1 << 40, u64::MAX] {
            let m = RaftMessage::Removed(RemovalNotice { index });
            assert_eq!(RaftMessage::decode(&m.encode()).expect("round trip"), m);
        }
        let good = RaftMessage::Removed(RemovalNotice { index: 9 }).encode();
        assert_eq!(good.len(), 9);
        let mut long = good.clone();
        long.push(0);
        for bytes in [&good[..1], &good[..5], &good[..8], &long[..]] {
            assert!(matches!(
                RaftMessage::decode(bytes),
                Err(NeedleError::InvalidMessage { .. })
            ));
        }
    }
}
