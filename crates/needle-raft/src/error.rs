//! The one error type of needle-raft. It wraps needle-core's error and adds what replication
//! can go wrong with. The distinction callers most need is [`WriteOutcome`]: after an error, was the
//! write certainly not applied (retry freely), or may it have been applied (retry with the same
//! request id, which the state machine deduplicates)?

use std::path::PathBuf;
use std::time::Duration;

use crate::message::NodeId;

/// Result alias used throughout needle-raft.
pub type Result<T, E = NeedleError> = std::result::Result<T, E>;

/// What is known about a write that did not return `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The command was not applied and never will be: retrying cannot apply it twice.
    NotApplied,
    /// The command was proposed and its fate is unknown: it may have been applied, or may still
    /// be. Retry with the same request id ([`crate::RequestId`]) to apply it at most once.
    MaybeApplied,
}

/// Everything that can go wrong in needle-raft.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NeedleError {
    /// This node is not the leader; `leader` is the leader it knows of, if any. Nothing was applied.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The operation did not finish within `after`. For a write, `outcome` says whether it may
    /// have been applied; a read has no effect and is always `NotApplied`.
    #[error("{operation} timed out after {after:?} ({outcome:?})")]
    Timeout {
        operation: &'static str,
        after: Duration,
        outcome: WriteOutcome,
    },
    /// This node lost its leadership while the write was pending.
    #[error("leadership lost while the write was pending ({outcome:?})")]
    LeadershipLost { outcome: WriteOutcome },
    /// Raft refused the proposal (no leader yet, a leadership transfer in progress, too many
    /// uncommitted bytes, or a membership change already pending). Nothing was applied.
    #[error("proposal dropped: {reason}")]
    ProposalDropped { reason: String },
    /// The write's Raft entry is `size` bytes, over `max_entry_bytes` (`max`). Nothing was
    /// proposed or applied: split the batch into smaller ones.
    #[error(
        "write too large: its entry is {size} bytes, over max_entry_bytes ({max}); nothing was applied: split the batch into smaller ones"
    )]
    EntryTooLarge { size: u64, max: u64 },
    /// A bounded-staleness read was refused: this node could not confirm, within the bound
    /// `max_staleness`, that it has applied every write acknowledged more than `max_staleness`
    /// ago. `since` is the age of its latest confirmation (a ReadIndex answer; `None`: never).
    #[error(
        "stale read refused: cannot confirm this node is within {max_staleness:?} of the leader (latest confirmation {since:?} old)"
    )]
    StaleRead {
        since: Option<Duration>,
        max_staleness: Duration,
    },
    /// The command reached the state machine, which rejected it (deterministically, on every node).
    #[error(transparent)]
    Core(#[from] needle_core::Error),
    /// The Raft log on disk is not what needle-raft wrote.
    #[error("corrupted raft file {}: at offset {offset}: {reason}", file.display())]
    Corrupted {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An operating-system I/O error, with what needle-raft was doing at the time.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// raft-rs reported an error.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Bytes from the network that do not decode, or a message that would be unsafe to step.
    #[error("invalid message: {reason}")]
    InvalidMessage { reason: String },
    /// A configuration that cannot work: `field` names the setting of
    /// [`crate::ReplicatedDatabaseConfig`] (or `node_id`, or `db` for the database handed to
    /// [`crate::ReplicatedDatabase::new`], or `transport`), `reason` what is wrong with it.
    /// Nothing was started.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A membership change that was refused before it entered the log: it would remove the
    /// current leader (transfer the leadership first), or it cannot apply to the current
    /// configuration. Nothing was proposed.
    #[error("membership change refused: {reason}")]
    MembershipChangeRefused { reason: String },
    /// A leadership transfer to a node that is not a voter of the current configuration (a
    /// learner, or no member at all): raft-rs would ignore it, and the caller would wait out its
    /// timeout. Nothing changed.
    #[error("leadership transfer to node {to} refused: {reason}")]
    LeadershipTransferRefused { to: NodeId, reason: String },
    /// Making, sending or installing a snapshot failed; the node keeps serving and tries again
    /// at the next threshold (or on the next [`crate::ReplicatedDatabase::trigger_snapshot`]).
    #[error("snapshot failed: {reason}")]
    Snapshot { reason: String },
    /// An invariant of needle-raft itself did not hold: a bug in Needle, not in the caller's
    /// input or the network's bytes. `reason` says which.
    #[error("internal error (a bug in needle-raft): {reason}")]
    Internal { reason: String },
    /// A transport could not deliver (peer unknown, crashed, or queue full).
    #[error("transport error: {reason}")]
    Transport { reason: String },
    /// The command was applied (under this request id) and the state machine rejected it;
    /// `reason` is that rejection as the first caller saw it. Nothing was changed.
    #[error("rejected when applied: {reason}")]
    Rejected { reason: String },
    /// The node's Raft thread stopped on an error it cannot serve through (a membership change
    /// that does not apply to this node's configuration, a failed log write): the node serves
    /// nothing until it is restarted, and `reason` says why.
    #[error("the node stopped: {reason}")]
    Stopped { reason: String },
    /// The node has been shut down (or its Raft thread has stopped).
    #[error("the node is shut down")]
    Shutdown,
}

impl NeedleError {
    /// True when a failed write may nonetheless have been (or still be) applied.
    pub fn may_have_been_applied(&self) -> bool {
        matches!(
            self,
            NeedleError::Timeout {
                outcome: WriteOutcome::MaybeApplied,
                ..
            } | NeedleError::LeadershipLost {
                outcome: WriteOutcome::MaybeApplied
            }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NeedleError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupted(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        NeedleError::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_message(reason: impl Into<String>) -> Self {
        NeedleError::InvalidMessage {
            reason: reason.into(),
        }
    }
}
