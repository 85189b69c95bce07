//! Writing a transport of one's own: a `MessageHandler` over crossbeam channels, in 60 lines.
//!
//! `cargo run -p needle-raft --example custom_transport`
//!
//! A transport moves `RaftMessage`s between nodes. It may drop, delay, duplicate or reorder them
//! (Raft tolerates all of these) but must deliver each one whole and say truthfully who sent it:
//! authenticate peers in a real network (`needle-transport-tcp` does, with an HMAC handshake).
//! `send` should not block for long (it runs on the Raft thread): queue, and drop when full.
//! `receive_timeout` should block on the queue, not poll.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use needle_core::{Database, DatabaseOptions, WalMode};
use needle_raft::{
    MessageHandler, NodeId, RaftMessage, ReadConsistency, ReplicatedDatabase,
    ReplicatedDatabaseConfig,
};

type Inbox = Sender<(NodeId, RaftMessage)>;

/// The "network": every node's inbox, by id.
#[derive(Clone, Default)]
struct Hub {
    inboxes: Arc<RwLock<BTreeMap<NodeId, Inbox>>>,
}

/// One node's end of the hub.
struct ChannelHandler {
    me: NodeId,
    hub: Hub,
    inbox: Receiver<(NodeId, RaftMessage)>,
}

impl Hub {
    fn join(&self, me: NodeId) -> ChannelHandler {
        // Bounded: a slow node makes senders drop, never block (Raft retransmits).
        let (tx, rx) = crossbeam_channel::bounded(10_000);
        self.inboxes.write().unwrap().insert(me, tx);
        ChannelHandler {
            me,
            hub: self.clone(),
            inbox: rx,
        }
    }
}

impl MessageHandler for ChannelHandler {
    fn send(&self, to: NodeId, message: RaftMessage) -> needle_raft::Result<()> {
        if let Some(inbox) = self.hub.inboxes.read().unwrap().get(&to) {
            // A full or closed inbox loses the message, as a network would.
            let _ = inbox.try_send((self.me, message));
        }
        Ok(())
    }

    fn receive(&self) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        Ok(self.inbox.try_recv().ok())
    }

    fn peers(&self) -> Vec<NodeId> {
        let inboxes = self.hub.inboxes.read().unwrap();
        inboxes
            .keys()
            .copied()
            .filter(|&id| id != self.me)
            .collect()
    }

    fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        Ok(self.inbox.recv_timeout(timeout).ok())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let hub = Hub::default();
    let handlers: Vec<ChannelHandler> = (1..=3).map(|id| hub.join(id)).collect();
    let mut nodes = Vec::new();
    for handler in handlers {
        let id = handler.me;
        let db = Database::open_with(
            dir.path().join(format!("node-{id}.needle")),
            DatabaseOptions { wal: WalMode::Off },
        )?;
        let config = ReplicatedDatabaseConfig::default()
            .data_dir(dir.path().join(format!("node-{id}-raft")))
            .initial_members(vec![1, 2, 3])
            .tick_interval(Duration::from_millis(10))
            .heartbeat_interval(Duration::from_millis(30))
            .election_timeout_min(Duration::from_millis(150))
            .election_timeout_max(Duration::from_millis(300));
        nodes.push(ReplicatedDatabase::new(id, db, Box::new(handler), config)?);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            break n;
        }
        if Instant::now() > deadline {
            return Err("no leader within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    leader.create_collection("docs", 2)?;
    leader.insert("docs", "x", vec![1.0, 0.0], None)?;
    // Any node answers a linearizable read (through the leader's ReadIndex).
    for n in &nodes {
        let count = n.count_with("docs", ReadConsistency::Linearizable)?;
        println!("node {}: {count} record(s)", n.node_id());
    }
    for n in &nodes {
        n.shutdown()?;
    }
    Ok(())
}
