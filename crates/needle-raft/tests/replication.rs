//! Replication and the read paths: read-your-writes on the leader, `NotLeader` with the right
//! hint on a follower, follower reads within `max_staleness`, linearizable follower reads.

mod common;

use std::time::Duration;

use common::{Cluster, test_config};
use needle_raft::{NeedleError, ReadConsistency};
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
    let config = test_config().allow_follower_reads(true);
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

#[test]
fn a_write_over_max_entry_bytes_is_refused_unapplied_and_later_writes_go_on() {
    let config = test_config().max_entry_bytes(64 * 1024);
    let c = common::Cluster::with_config(3, common::seed("max_entry_bytes"), config);
    let leader = c.wait_leader(Duration::from_secs(10));
    let l = c.node(leader);
    l.create_collection("v", 64).unwrap();
    let batch = |n: usize| {
        (0..n)
            .map(|i| needle_core::Record {
                id: format!("r{i}"),
                vector: vec![i as f32 + 1.0; 64],
                metadata: None,
            })
            .collect::<Vec<_>>()
    };
    // 400 × 64 floats ≈ 100 KiB: over the cap, refused before it is proposed.
    match l.insert_batch("v", batch(400)) {
        Err(e @ NeedleError::EntryTooLarge { size, max }) => {
            assert!(size > max && max == 64 * 1024, "{e}");
            assert!(!e.may_have_been_applied());
            assert!(e.to_string().contains("split the batch"), "{e}");
        }
        other => panic!("expected EntryTooLarge, got {other:?}"),
    }
    // Split, it goes through, and so do later writes.
    l.insert_batch("v", batch(200)).unwrap();
    l.insert("v", "after", vec![1.0; 64], None).unwrap();
    assert_eq!(l.count("v").unwrap(), 201);
    c.wait_converged(Duration::from_secs(10));
}

/// A forwarded MsgPropose from peer `from` to `to`, carrying one normal entry.
fn forwarded_proposal(from: u64, to: u64, data: Vec<u8>) -> needle_raft::RaftMessage {
    use raft::prelude::{Entry, Message, MessageType};
    let mut m = Message {
        from,
        to,
        entries: vec![Entry {
            data: data.into(),
            ..Default::default()
        }]
        .into(),
        ..Default::default()
    };
    m.set_msg_type(MessageType::MsgPropose);
    needle_raft::RaftMessage::Raft(m)
}

#[test]
fn the_leader_drops_a_forwarded_proposal_that_does_not_decode() {
    use needle_raft::{MessageHandler, ReplicatedCommand};
    let c = common::Cluster::new(3, common::seed("forwarded_proposal"));
    let leader = c.wait_leader(Duration::from_secs(10));
    let l = c.node(leader);
    l.create_collection("c", 2).unwrap();
    // A peer's id, taken over by a hand-driven handler.
    let peer = (1..=3).find(|&i| i != leader).unwrap();
    c.crash(peer);
    let fake = c.net.restart(peer);
    let id = |seq: u64| {
        let mut b = 77u64.to_le_bytes().to_vec();
        b.extend_from_slice(&seq.to_le_bytes());
        b
    };
    // Ten bytes of command claiming a string of 2^64 - 2 bytes.
    let mut evil = id(1);
    evil.extend_from_slice(&[6u8, 0xfd]);
    evil.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
    let before = l.status().unwrap().last_index;
    fake.send(leader, forwarded_proposal(peer, leader, evil))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        l.status().unwrap().last_index,
        before,
        "the undecodable proposal never entered the log"
    );
    // The same path with a command that decodes does append and apply (so the check above
    // tested the path, not a lost message).
    let mut good = id(2);
    good.extend_from_slice(
        &ReplicatedCommand::Insert {
            collection: "c".into(),
            id: "fwd".into(),
            vector: vec![1.0, 2.0],
            metadata: None,
        }
        .encode(),
    );
    fake.send(leader, forwarded_proposal(peer, leader, good))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while l.count("c").unwrap() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the forwarded write applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
