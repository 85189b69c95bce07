//! `ReplicatedDatabase` refuses the databases it cannot keep consistent (issue 10, item 9): one
//! with a log of its own (a restart would replay its writes and Raft would apply them again) and
//! one with other handles (a write through a clone would bypass Raft). What it hands out to read
//! is a view with no writes.

use std::time::{Duration, Instant};

use needle_core::{Database, DatabaseOptions, WalMode};
use needle_raft::{NeedleError, ReadConsistency, ReplicatedDatabase, ReplicatedDatabaseConfig};
use needle_transport_mem::MemNetwork;

fn config(dir: &std::path::Path) -> ReplicatedDatabaseConfig {
    ReplicatedDatabaseConfig::new(dir.join("raft"), [1])
        .tick_interval(Duration::from_millis(10))
        .heartbeat_interval(Duration::from_millis(30))
        .election_timeout(Duration::from_millis(150), Duration::from_millis(300))
}

fn refused_db(r: needle_raft::Result<ReplicatedDatabase>) -> String {
    match r {
        Err(NeedleError::InvalidConfig {
            field: "db",
            reason,
        }) => reason,
        other => panic!("expected InvalidConfig for db, got {other:?}"),
    }
}

#[test]
fn a_database_with_its_own_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new(1);
    for wal in [WalMode::Synced, WalMode::Unsynced] {
        let db = Database::open_with(dir.path().join("a.needle"), DatabaseOptions { wal }).unwrap();
        let reason = refused_db(ReplicatedDatabase::new(
            1,
            db,
            Box::new(net.handler(1)),
            config(dir.path()),
        ));
        assert!(reason.contains("WalMode::Off"), "{reason}");
    }
    // Nothing was started: the Raft directory was not created.
    assert!(!dir.path().join("raft").exists());
}

#[test]
fn a_shared_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new(1);
    let db = Database::open_with(
        dir.path().join("a.needle"),
        DatabaseOptions { wal: WalMode::Off },
    )
    .unwrap();
    let around_raft = db.clone();
    let reason = refused_db(ReplicatedDatabase::new(
        1,
        db,
        Box::new(net.handler(1)),
        config(dir.path()),
    ));
    assert!(reason.contains("reader()"), "{reason}");
    drop(around_raft);
}

#[test]
fn open_starts_a_node_and_hands_out_only_a_read_view() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new(1);
    let node = ReplicatedDatabase::open(
        1,
        dir.path().join("a.needle"),
        Box::new(net.handler(1)),
        config(dir.path()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.is_leader() {
        assert!(Instant::now() < deadline, "a single node elects itself");
        std::thread::sleep(Duration::from_millis(10));
    }
    node.create_collection("c", 2).unwrap();
    node.insert("c", "a", vec![1.0, 0.0], None).unwrap();
    node.read_barrier(ReadConsistency::Linearizable).unwrap();
    let reader = node.reader();
    assert_eq!(reader.count("c").unwrap(), 1);
    assert_eq!(reader.search("c", &[1.0, 0.0], 1).unwrap()[0].id, "a");
    node.shutdown().unwrap();
}

/// A leadership transfer to a node that is not a voter (no member at all here) is refused at
/// once, typed, and the node still leads; raft-rs ignores such a transfer, and the caller waited
/// out the whole timeout for a `Timeout` (found by needle-cli's `serve_hostile_bodies`).
#[test]
fn a_leadership_transfer_to_a_non_voter_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new(1);
    let node = ReplicatedDatabase::open(
        1,
        dir.path().join("a.needle"),
        Box::new(net.handler(1)),
        config(dir.path()),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.is_leader() {
        assert!(Instant::now() < deadline, "a single node elects itself");
        std::thread::sleep(Duration::from_millis(10));
    }
    for to in [2, 1 << 40, u64::MAX] {
        match node.transfer_leadership(to) {
            Err(NeedleError::LeadershipTransferRefused { to: t, reason }) => {
                assert_eq!(t, to);
                assert!(reason.contains("not a voter"), "{reason}");
            }
            other => panic!("transfer to {to}: expected LeadershipTransferRefused, got {other:?}"),
        }
    }
    assert!(node.is_leader());
    node.transfer_leadership(1)
        .expect("to itself: already done");
    node.shutdown().unwrap();
}
