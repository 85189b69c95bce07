//! What a node reports about itself: [`NodeStatus`], [`Role`] and each peer's [`PeerProgress`].

use std::collections::BTreeMap;

use crate::message::NodeId;

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower = 0,
    /// Probing whether it could win an election (pre-vote).
    PreCandidate = 1,
    /// Campaigning.
    Candidate = 2,
    /// Leads the cluster.
    Leader = 3,
}

impl Role {
    pub(crate) fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::PreCandidate,
            2 => Role::Candidate,
            3 => Role::Leader,
            _ => Role::Follower,
        }
    }
}

/// How far a peer has replicated, as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    /// The highest log index known to be on the peer.
    pub matched: u64,
    /// The next index the leader will send.
    pub next_index: u64,
    /// raft-rs's progress state: `Probe`, `Replicate` or `Snapshot`.
    pub state: String,
    /// Whether the peer answered recently (within an election timeout).
    pub recent_active: bool,
}

/// A snapshot of a node's Raft state, from [`crate::ReplicatedDatabase::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit: u64,
    /// The highest index applied to the database.
    pub applied: u64,
    /// The first index still in the log.
    pub first_index: u64,
    /// The last index in the log.
    pub last_index: u64,
    /// The index of this node's latest snapshot (0 if none).
    pub snapshot_index: u64,
    /// The voters of the configuration this node has applied.
    pub voters: Vec<NodeId>,
    /// The learners of that configuration.
    pub learners: Vec<NodeId>,
    /// On the leader, the index up to which a membership change may be in the log and not yet
    /// applied: the last change it proposed, or its last index when it took office (a change
    /// from an earlier term may be there). Once `applied` passes it, no change is in flight
    /// anywhere: the leader has committed an entry of its term after every change that any
    /// log holds. 0 on other nodes.
    pub pending_conf_index: u64,
    /// `Some(index)` when a member told this node that the configuration it applied at `index`
    /// does not contain this node ([`crate::RemovalNotice`]), and this node has not applied that
    /// far: it was removed while it could not hear the leader. It serves nothing (requests get
    /// [`crate::NeedleError::Stopped`]) and does not campaign, until it applies a configuration
    /// containing itself at or past `index` (it was added back). Also `Some(index)` while this
    /// node, having applied its own removal at `index` behind its leader's commit index, waits
    /// for the committed entries it has not received (one may add it back); it stops if none
    /// arrives for an election timeout. `None` otherwise.
    pub removed: Option<u64>,
    /// Each member's progress; filled on the leader only.
    pub progress: BTreeMap<NodeId, PeerProgress>,
}
