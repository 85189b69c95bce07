//! The one error type of needle-transport-tcp, and its mapping into needle-raft's
//! `NeedleError::Transport` for the `MessageHandler` methods (and for callers that use `?`).

use std::net::SocketAddr;

use needle_raft::{NeedleError, NodeId};

/// Everything that can go wrong in the TCP transport's own API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpError {
    /// A [`crate::TcpConfig`] that cannot work.
    #[error("invalid TCP transport configuration: {reason}")]
    InvalidConfig { reason: String },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An operating-system error, with what the transport was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A peer id that cannot be used: 0 (reserved) or this node's own id.
    #[error("invalid peer {peer}: {reason}")]
    InvalidPeer { peer: NodeId, reason: String },
    /// `send` to a node that is not a peer (never added, or removed).
    #[error("node {peer} is not a known peer")]
    UnknownPeer { peer: NodeId },
    /// The peer's outgoing queue is full (by count or by bytes): the message was dropped.
    #[error("queue to node {peer} is full: message dropped")]
    QueueFull { peer: NodeId },
    /// The encoded message does not fit in one frame: it was dropped.
    #[error("message to node {peer} is {size} bytes, over the frame limit of {max} bytes")]
    MessageTooLarge { peer: NodeId, size: usize, max: u32 },
    /// The handler has been shut down.
    #[error("the TCP transport is shut down")]
    Shutdown,
}

impl From<TcpError> for NeedleError {
    fn from(e: TcpError) -> Self {
        match e {
            TcpError::Shutdown => NeedleError::Shutdown,
            TcpError::InvalidConfig { reason } => NeedleError::InvalidConfig {
                field: "transport",
                reason,
            },
            other => NeedleError::Transport {
                reason: other.to_string(),
            },
        }
    }
}
