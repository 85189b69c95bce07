//! A snapshot job that fails (an I/O error from the disk under the Raft directory) is an error
//! the node recovers from: the caller of `trigger_snapshot` gets it, writes go on being applied,
//! and a later snapshot succeeds. Never a stopped or stalled node (issue 10, item 7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use needle_core::Database;
use needle_core::disk::{FaultKind, SimDisk, SimOp};
use needle_raft::{NeedleError, ReplicatedDatabase, ReplicatedDatabaseConfig};
use needle_transport_mem::MemNetwork;

#[test]
fn a_failed_snapshot_job_is_reported_and_the_node_goes_on() {
    let disk = SimDisk::new(3);
    let net = MemNetwork::new(3);
    let config = ReplicatedDatabaseConfig::new("/node-1/raft", [1]);
    let node = ReplicatedDatabase::open_on(
        Arc::new(disk.clone()),
        1,
        Database::in_memory(),
        Box::new(net.handler(1)),
        config,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.is_leader() {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(20));
    }
    node.create_collection("c", 2).unwrap();
    node.insert("c", "a", vec![1.0, 0.0], None).unwrap();
    // The snapshot of an in-memory database is a file written whole and renamed into place:
    // fail that rename.
    disk.fail_next(SimOp::Rename, FaultKind::Eio);
    match node.trigger_snapshot() {
        Err(NeedleError::Snapshot { reason }) => assert!(reason.contains("EIO"), "{reason}"),
        other => panic!("expected a snapshot error, got {other:?}"),
    }
    assert_eq!(node.fatal_error(), None, "the node stopped");
    node.insert("c", "b", vec![0.0, 1.0], None).unwrap();
    assert_eq!(node.count("c").unwrap(), 2);
    node.trigger_snapshot().unwrap();
    node.insert("c", "c", vec![1.0, 1.0], None).unwrap();
    assert_eq!(node.count("c").unwrap(), 3);
    node.shutdown().unwrap();
}
