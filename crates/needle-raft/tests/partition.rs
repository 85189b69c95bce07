//! Partitions: a leader cut off in a minority can neither commit nor serve a linearizable read,
//! the majority elects a new leader, and after healing all converge. A follower that was cut off
//! and rejoins does not depose the leader (pre-vote).

mod common;

use std::time::Duration;

use common::Cluster;
use needle_raft::{NeedleError, WriteOutcome};

#[test]
fn minority_partition_old_leader_cannot_commit_or_read() {
    let c = Cluster::new(
        5,
        common::seed("minority_partition_old_leader_cannot_commit_or_read"),
    );
    let old = c.wait_leader(Duration::from_secs(10));
    c.node(old).create_collection("c", 2).unwrap();
    c.node(old)
        .insert("c", "before", vec![1.0, 0.0], None)
        .unwrap();
    let others: Vec<_> = c.founders.iter().copied().filter(|&i| i != old).collect();
    let minority = [old, others[0]];
    let majority = &others[1..];
    c.net.partition(&[&minority, majority]);
    // The old leader cannot commit: the write times out as "may have been applied" or is
    // refused once it steps down (check_quorum).
    match c.node(old).insert("c", "lost", vec![0.0, 1.0], None) {
        Err(e @ NeedleError::Timeout { .. }) | Err(e @ NeedleError::LeadershipLost { .. }) => {
            assert!(
                e.may_have_been_applied()
                    || matches!(
                        e,
                        NeedleError::LeadershipLost {
                            outcome: WriteOutcome::NotApplied
                        }
                    )
            )
        }
        Err(NeedleError::NotLeader { .. }) => {}
        other => panic!("a minority leader acknowledged a write: {other:?}"),
    }
    // The majority elects a new leader and commits.
    let new = c.wait_leader_among(majority, Duration::from_secs(10));
    c.node(new)
        .insert("c", "majority", vec![0.5, 0.5], None)
        .unwrap();
    // Nor can the old leader (or its partner) serve a linearizable read.
    for &id in &minority {
        match c.node(id).get("c", "majority") {
            Err(NeedleError::Timeout { .. }) | Err(NeedleError::NotLeader { .. }) => {}
            other => panic!("node {id} in the minority served a read: {other:?}"),
        }
    }
    c.net.heal();
    c.wait_converged(Duration::from_secs(15));
    let got = c.on_leader(Duration::from_secs(5), |l| l.get("c", "majority"));
    assert!(got.is_some());
    // The minority's uncommitted write was discarded everywhere (it timed out: never acknowledged).
    assert!(
        c.on_leader(Duration::from_secs(5), |l| l.get("c", "lost"))
            .is_none()
    );
}

#[test]
fn rejoining_follower_does_not_depose_the_leader() {
    let c = Cluster::new(
        3,
        common::seed("rejoining_follower_does_not_depose_the_leader"),
    );
    let leader = c.wait_leader(Duration::from_secs(10));
    let term = c.node(leader).term();
    let f = c
        .live()
        .into_iter()
        .find(|n| n.node_id() != leader)
        .unwrap()
        .node_id();
    c.net.isolate(f);
    // Several election timeouts: without pre-vote the isolated node would inflate its term.
    std::thread::sleep(Duration::from_millis(c.config.election_timeout_max * 4));
    assert_eq!(
        c.node(f).term(),
        term,
        "pre-vote must keep an isolated follower's term"
    );
    c.net.heal();
    c.node(leader).create_collection("c", 2).unwrap();
    c.wait_converged(Duration::from_secs(10));
    assert_eq!(c.wait_leader(Duration::from_secs(5)), leader);
    assert_eq!(c.node(leader).term(), term);
}
