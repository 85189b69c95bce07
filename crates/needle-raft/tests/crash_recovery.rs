//! Crashes and restarts: a crashed leader is replaced and rejoins; a whole cluster restarted from
//! its files keeps every acknowledged write and applies nothing twice.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use needle_raft::NeedleError;

#[test]
fn leader_crash_and_restart() {
    let c = Cluster::new(3, common::seed("leader_crash_and_restart"));
    let leader = c.wait_leader(Duration::from_secs(10));
    c.node(leader).create_collection("c", 2).unwrap();
    for i in 0..20 {
        c.node(leader)
            .insert("c", &format!("a{i}"), vec![i as f32, 1.0], None)
            .unwrap();
    }
    let t0 = Instant::now();
    c.crash(leader);
    let others: Vec<_> = c
        .founders
        .iter()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    let new_leader = c.wait_leader_among(&others, Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    // The write-unavailability gap: from the crash to the first acknowledged write.
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "after", vec![0.0, 1.0], None)
    });
    eprintln!(
        "leader_crash_and_restart: write gap after leader crash {:?}",
        t0.elapsed()
    );
    for i in 0..20 {
        c.on_leader(Duration::from_secs(5), |l| {
            l.insert("c", &format!("b{i}"), vec![1.0, i as f32], None)
        });
    }
    c.restart(leader);
    let (_, _) = c.wait_converged(Duration::from_secs(15));
    assert_eq!(
        c.node(leader).status().unwrap().applied,
        c.node(new_leader).applied_index()
    );
    let n = c.on_leader(Duration::from_secs(5), |l| l.count("c"));
    assert_eq!(n, 41);
}

#[test]
fn full_cluster_restart_keeps_every_acknowledged_write_once() {
    let config = common::test_config()
        // Some state comes back from checkpoints, the rest from log replay.
        .snapshot_threshold(40)
        .log_retain_entries(5);
    let seed = common::seed("full_cluster_restart_keeps_every_acknowledged_write_once");
    let c = Cluster::with_config(3, seed, config);
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    let mut acked = Vec::new();
    for i in 0..100 {
        let id = format!("k{i}");
        c.on_leader(Duration::from_secs(5), |l| {
            l.insert("c", &id, vec![i as f32, 1.0], None)
        });
        acked.push(id);
        if i % 10 == 0 {
            // Delete-then-reinsert patterns would show a double apply as a wrong count.
            c.on_leader(Duration::from_secs(5), |l| l.delete("c", &format!("k{i}")));
            acked.pop();
        }
    }
    // A non-idempotent command: applied twice, the second would fail and drop the data below.
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("once", 2));
    c.on_leader(Duration::from_secs(5), |l| {
        l.insert("once", "x", vec![1.0, 0.0], None)
    });
    let (applied_before, sum_before) = c.wait_converged(Duration::from_secs(10));
    for id in c.founders.clone() {
        c.crash(id);
    }
    for id in c.founders.clone() {
        c.restart(id);
    }
    c.wait_leader(Duration::from_secs(10));
    // A linearizable read waits for the new leader to commit its no-op (without it the cluster
    // could look converged at the old index, and the comparison below would race).
    c.on_leader(Duration::from_secs(5), |l| {
        l.read_barrier(needle_raft::ReadConsistency::Linearizable)
    });
    // The new leader's no-op is the only new entry.
    let (applied_after, sum_after) = c.wait_converged(Duration::from_secs(10));
    assert_eq!(sum_after, sum_before, "state changed across a full restart");
    assert!(applied_after > applied_before);
    let count = c.on_leader(Duration::from_secs(5), |l| l.count("c"));
    assert_eq!(count, acked.len());
    for id in &acked {
        let got = c.on_leader(Duration::from_secs(5), |l| l.get("c", id));
        assert!(got.is_some(), "acknowledged {id} lost");
    }
    assert_eq!(c.on_leader(Duration::from_secs(5), |l| l.count("once")), 1);
    assert!(matches!(
        c.on_leader(Duration::from_secs(5), |l| Ok(
            l.create_collection("once", 2)
        )),
        Err(NeedleError::Core(_))
    ));
}
