//! Bounded-staleness reads are bounded (issue 10, item 4): a `BoundedStaleness(d)` read served
//! at time T sees every write acknowledged before T − d, or is refused with `StaleRead`.
//! "Heard from a leader recently" is not enough: each case below kept hearing from a leader (or
//! believed it was one) while its database lagged.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Cluster;
use needle_raft::{NeedleError, RaftMessage, RaftProtoMessage, ReadConsistency};

const BOUND: Duration = Duration::from_millis(200);

/// Only messages that carry no state: heartbeats (and their answers), votes, ReadIndex rounds.
/// Appends with entries and snapshot chunks to `to` are dropped.
fn starve(node: u64) -> impl Fn(u64, u64, &RaftMessage) -> bool + Send + Sync + 'static {
    move |_from, to, m| {
        if to != node {
            return true;
        }
        match m {
            RaftMessage::Raft(m) => !carries_state(m),
            _ => false,
        }
    }
}

fn carries_state(m: &RaftProtoMessage) -> bool {
    use raft::prelude::MessageType as T;
    match m.get_msg_type() {
        T::MsgAppend => !m.entries.is_empty(),
        T::MsgSnapshot => true,
        _ => false,
    }
}

/// Reads `count` on `node` at `BoundedStaleness(BOUND)`; the answer must be a refusal or
/// include the `expected` records written before.
fn assert_bounded(c: &Cluster, node: u64, expected: usize, what: &str) {
    // Past the bound since the last acknowledged write: a read must see it or be refused.
    thread::sleep(BOUND + Duration::from_millis(50));
    for _ in 0..5 {
        match c
            .node(node)
            .count_with("c", ReadConsistency::BoundedStaleness(BOUND))
        {
            Err(NeedleError::StaleRead { .. }) => {}
            Ok(n) => assert_eq!(
                n, expected,
                "{what}: node {node} served a read staler than {BOUND:?}"
            ),
            Err(NeedleError::Core(e)) => {
                panic!("{what}: node {node} served a read of an empty database: {e}")
            }
            Err(e) => panic!("{what}: node {node}: unexpected {e}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn write_some(c: &Cluster, from: usize, n: usize) {
    for i in from..from + n {
        c.on_leader(Duration::from_secs(10), |l| {
            l.insert("c", &format!("k{i}"), vec![i as f32, 1.0], None)
        });
    }
}

/// A new learner hears heartbeats from the first moment but has none of the data.
#[test]
fn a_new_learner_is_not_fresh_with_an_empty_database() {
    let c = Arc::new(Cluster::new(3, common::seed("a_new_learner")));
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    write_some(&c, 0, 20);
    c.net.set_filter(starve(4));
    c.start(4);
    let adder = {
        let c = c.clone();
        thread::spawn(move || {
            // Times out: the learner never catches up while starved.
            let _ = c.try_on_leader(Duration::from_secs(5), |l| l.add_node(4));
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(4).leader().is_none() {
        assert!(
            Instant::now() < deadline,
            "the learner never heard a leader"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_bounded(&c, 4, 20, "new learner");
    c.net.clear_filter();
    adder.join().unwrap();
    // Once it has the data, it serves.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c
            .node(4)
            .count_with("c", ReadConsistency::BoundedStaleness(BOUND))
        {
            Ok(20) => break,
            other => assert!(Instant::now() < deadline, "never served: {other:?}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    c.shutdown();
}

/// A follower that missed writes and is being sent a snapshot hears heartbeats all along.
#[test]
fn a_follower_receiving_a_snapshot_is_not_fresh() {
    let config = common::test_config()
        .snapshot_threshold(10)
        .log_retain_entries(0);
    let c = Cluster::with_config(3, common::seed("receiving_a_snapshot"), config);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagger = c.founders.iter().copied().find(|&i| i != leader).unwrap();
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    write_some(&c, 0, 5);
    c.wait_converged(Duration::from_secs(10));
    c.crash(lagger);
    write_some(&c, 5, 40);
    let st = c.on_leader(Duration::from_secs(5), |l| l.status());
    assert!(st.first_index > 10, "the leader compacted its log: {st:?}");
    // Back, but its snapshot (and any append) never arrives.
    c.net.set_filter(starve(lagger));
    c.restart(lagger);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(lagger).leader().is_none() {
        assert!(Instant::now() < deadline, "the lagger never heard a leader");
        thread::sleep(Duration::from_millis(10));
    }
    assert_bounded(&c, lagger, 45, "snapshot being received");
    c.net.clear_filter();
    c.wait_converged(Duration::from_secs(30));
    assert_eq!(
        c.node(lagger)
            .count_with("c", ReadConsistency::BoundedStaleness(BOUND))
            .unwrap(),
        45
    );
    c.shutdown();
}

/// A leader cut off from the others keeps believing it leads until check-quorum steps it down;
/// meanwhile the majority elects a new leader and acknowledges writes. Node `slow` has a long
/// election timeout (so check-quorum takes seconds to depose it) and is made leader by a
/// transfer.
#[test]
fn a_partitioned_deposed_leader_is_not_fresh() {
    let c = Cluster::new(3, common::seed("deposed_leader"));
    let first = c.wait_leader(Duration::from_secs(10));
    let slow = c.founders.iter().copied().find(|&i| i != first).unwrap();
    c.crash(slow);
    c.start_with(
        slow,
        c.config
            .clone()
            .election_timeout(Duration::from_secs(5), Duration::from_millis(5010)),
    );
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    write_some(&c, 0, 5);
    c.wait_converged(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(10), |l| {
        if l.node_id() == slow {
            Ok(())
        } else {
            l.transfer_leadership(slow)
        }
    });
    assert_eq!(c.wait_leader(Duration::from_secs(5)), slow);
    // The old leader's own bounded read works while it leads a quorum.
    c.node(slow)
        .count_with("c", ReadConsistency::BoundedStaleness(BOUND))
        .unwrap();
    c.net.isolate(slow);
    let others: Vec<u64> = c.founders.iter().copied().filter(|&i| i != slow).collect();
    let new = c.wait_leader_among(&others, Duration::from_secs(10));
    c.node(new)
        .insert("c", "new", vec![9.0, 1.0], None)
        .unwrap();
    assert!(
        c.node(slow).is_leader(),
        "the test needs the cut-off node to still believe it leads"
    );
    assert_bounded(&c, slow, 6, "partitioned deposed leader");
    // `Leader` trusts that belief: documented as unbounded, and it is.
    assert_eq!(
        c.node(slow)
            .count_with("c", ReadConsistency::Leader)
            .unwrap(),
        5
    );
    c.net.heal();
    c.shutdown();
}
