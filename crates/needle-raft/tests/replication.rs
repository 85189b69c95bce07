//! Replication and the read paths: read-your-writes on the leader, `NotLeader` with the right
//! hint on a follower, follower reads within `max_staleness`, linearizable follower reads.

mod common;

use std::time::Duration;

use common::{Cluster, test_config};
use needle_raft::{NeedleError, ReadConsistency, ReplicatedDatabaseConfig};
use serde_json::json;

#[test]
fn replication_and_read_your_writes() {
    let c = Cluster::new(3, common::seed("replication_and_read_your_writes"));
    let leader = c.wait_leader(Duration::from_secs(10));
    let l = c.node(leader);
    l.create_collection("docs", 3).unwrap();
    for i in 0..50 {
        l.insert(
            "docs",
            &format!("d{i}"),
            vec![i as f32, 1.0, 0.0],
            Some(json!({"i": i})),
        )
        .unwrap();
        // Read-your-writes on the leader: linearizable reads see every acknowledged write.
        let got = l
            .get("docs", &format!("d{i}"))
            .unwrap()
            .expect("just written");
        assert_eq!(got.metadata, Some(json!({"i": i})));
    }
    l.update("docs", "d1", None, Some(json!({"i": 100})))
        .unwrap();
    // A replicated delete says whether the record was there, as applied.
    assert!(l.delete("docs", "d2").unwrap());
    assert!(!l.delete("docs", "d2").unwrap());
    l.insert_batch(
        "docs",
        (0..10)
            .map(|i| needle_core::Record {
                id: format!("b{i}"),
                vector: vec![0.0, i as f32, 1.0],
                metadata: None,
            })
            .collect(),
    )
    .unwrap();
    assert_eq!(l.count("docs").unwrap(), 59);
    let hits = l.search("docs", &[3.0, 1.0, 0.0], 1).unwrap();
    assert_eq!(hits[0].id, "d3");
    // A rejected command is rejected on every node, deterministically.
    assert!(matches!(
        l.update("docs", "missing", None, Some(json!({}))),
        Err(NeedleError::Core(_))
    ));
    assert_eq!(l.list_collections().unwrap(), vec!["docs".to_string()]);
    let (applied, _) = c.wait_converged(Duration::from_secs(10));
    assert!(applied >= 55, "applied {applied}");
}

#[test]
fn follower_write_gets_not_leader_with_hint() {
    let c = Cluster::new(3, common::seed("follower_write_gets_not_leader_with_hint"));
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = c
        .live()
        .into_iter()
        .find(|n| n.node_id() != leader)
        .unwrap();
    match follower.create_collection("x", 2) {
        Err(NeedleError::NotLeader { leader: hint }) => assert_eq!(hint, Some(leader)),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    // Without follower reads, a default read on a follower is refused the same way.
    match follower.list_collections() {
        Err(NeedleError::NotLeader { leader: hint }) => assert_eq!(hint, Some(leader)),
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn follower_reads_are_bounded_by_max_staleness() {
    let config = ReplicatedDatabaseConfig {
        allow_follower_reads: true,
        ..test_config()
    };
    let c = Cluster::with_config(
        3,
        common::seed("follower_reads_are_bounded_by_max_staleness"),
        config,
    );
    let leader = c.wait_leader(Duration::from_secs(10));
    c.node(leader).create_collection("c", 2).unwrap();
    c.node(leader)
        .insert("c", "a", vec![1.0, 0.0], None)
        .unwrap();
    c.wait_converged(Duration::from_secs(5));
    let fid = c
        .live()
        .into_iter()
        .find(|n| n.node_id() != leader)
        .unwrap()
        .node_id();
    let f = c.node(fid);
    assert_eq!(f.count("c").unwrap(), 1);
    // Linearizable on a follower: ReadIndex through the leader.
    c.node(leader)
        .insert("c", "b", vec![0.0, 1.0], None)
        .unwrap();
    assert_eq!(f.count_with("c", ReadConsistency::Linearizable).unwrap(), 2);
    // Cut the follower off: past max_staleness its local reads are refused.
    c.net.isolate(fid);
    std::thread::sleep(c.config.max_staleness + Duration::from_millis(200));
    match f.count("c") {
        Err(NeedleError::StaleRead { .. }) => {}
        other => panic!("expected StaleRead, got {other:?}"),
    }
    assert!(matches!(
        f.count_with("c", ReadConsistency::Linearizable),
        Err(NeedleError::Timeout { .. })
    ));
    c.net.heal();
    c.wait_converged(Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match c.node(fid).count("c") {
            Ok(n) => {
                assert_eq!(n, 2);
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "still refused: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
