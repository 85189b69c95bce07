//! A three-node Needle cluster in one process, on the in-memory transport: write through the
//! leader, kill the leader, and read the write back from the new one.
//!
//! `cargo run -p needle-raft --example three_node_cluster`
//!
//! Each node is an ordinary `needle_core::Database` file (opened with its own log off: the Raft
//! log is the log) plus a Raft directory, and a `MessageHandler` from `needle-transport-mem`.
//! Swap `MemNetwork` for `needle-transport-tcp` and the same code runs across machines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use needle_core::{Database, DatabaseOptions, WalMode};
use needle_raft::{NodeId, ReadConsistency, ReplicatedDatabase, ReplicatedDatabaseConfig};
use needle_transport_mem::MemNetwork;
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

fn start(
    net: &MemNetwork,
    dir: &std::path::Path,
    id: NodeId,
) -> Result<ReplicatedDatabase, BoxError> {
    let db = Database::open_with(
        dir.join(format!("node-{id}.needle")),
        DatabaseOptions { wal: WalMode::Off },
    )?;
    // Quick elections for a demo: 10 ms ticks, elections after 150–300 ms.
    let config = ReplicatedDatabaseConfig::new(dir.join(format!("node-{id}-raft")), [1, 2, 3])
        .tick_interval(Duration::from_millis(10))
        .heartbeat_interval(Duration::from_millis(30))
        .election_timeout(Duration::from_millis(150), Duration::from_millis(300));
    Ok(ReplicatedDatabase::new(
        id,
        db,
        Box::new(net.handler(id)),
        config,
    )?)
}

/// Waits until one of `nodes` is leader and returns its id.
fn leader(nodes: &BTreeMap<NodeId, ReplicatedDatabase>) -> Result<NodeId, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some((&id, _)) = nodes.iter().find(|(_, n)| n.is_leader()) {
            return Ok(id);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("no leader elected within 10 s".into())
}

fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let net = MemNetwork::new(42);
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(&net, dir.path(), id)?);
    }

    let first = leader(&nodes)?;
    println!("node {first} is leader");
    let l = &nodes[&first];
    l.create_collection("docs", 3)?;
    l.insert(
        "docs",
        "a",
        vec![1.0, 0.0, 0.0],
        Some(json!({"lang": "en"})),
    )?;
    l.insert(
        "docs",
        "b",
        vec![0.0, 1.0, 0.0],
        Some(json!({"lang": "fr"})),
    )?;
    println!("wrote 2 records through node {first} (each acknowledged by a majority)");

    // Kill the leader: cut it from the network, then stop it.
    net.crash(first);
    nodes.remove(&first).map(|n| n.shutdown()).transpose()?;
    let second = leader(&nodes)?;
    println!("node {first} killed; node {second} is the new leader");

    // On a leader, reads are linearizable by default (a ReadIndex round): every acknowledged
    // write is seen. A follower answers `ReadConsistency::Linearizable` reads the same way.
    let n = &nodes[&second];
    let hits = n.search("docs", &[0.9, 0.1, 0.0], 1)?;
    assert_eq!(hits[0].id, "a");
    println!(
        "node {second}: {} records, nearest to [0.9, 0.1, 0] is '{}'",
        n.count("docs")?,
        hits[0].id
    );
    let follower = nodes.keys().find(|&&id| id != second).copied();
    if let Some(f) = follower {
        let count = nodes[&f].count_with("docs", ReadConsistency::Linearizable)?;
        println!("node {f} (a follower), linearizable read: {count} records");
    }
    for node in nodes.values() {
        node.shutdown()?;
    }
    Ok(())
}
