//! Membership under load: add a node (learner, caught up by snapshot, promoted), transfer the
//! leadership to it, remove an old node, while clients keep writing. No acknowledged write is lost.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, test_config};
use needle_raft::{NeedleError, ReadConsistency};

#[test]
fn add_transfer_remove_under_load() {
    let config = test_config().snapshot_threshold(100);
    let seed = common::seed("add_transfer_remove_under_load");
    let c = Cluster::with_config(3, seed, config);
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..2 {
            let (c, stop, acked) = (&c, &stop, &acked);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{i}");
                    if c.try_on_leader(Duration::from_secs(5), |l| {
                        l.insert("c", &id, vec![w as f32, i as f32], None)
                    })
                    .is_ok()
                    {
                        acked.lock().unwrap().push(id);
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        // Add node 4: it starts empty, joins as a learner, catches up, and is promoted.
        c.start(4);
        c.on_leader(Duration::from_secs(20), |l| l.add_node(4));
        let st = c.on_leader(Duration::from_secs(5), |l| l.status());
        assert!(st.voters.contains(&4), "{st:?}");
        // Hand the leadership to the new node.
        c.on_leader(Duration::from_secs(10), |l| {
            if l.node_id() == 4 {
                Ok(())
            } else {
                l.transfer_leadership(4)
            }
        });
        assert_eq!(c.wait_leader(Duration::from_secs(5)), 4);
        // Remove node 1 and stop it.
        c.on_leader(Duration::from_secs(10), |l| l.remove_node(1));
        c.crash(1);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
    });
    let st = c.on_leader(Duration::from_secs(5), |l| l.status());
    assert_eq!(st.voters, vec![2, 3, 4]);
    c.wait_converged(Duration::from_secs(15));
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() > 10, "writes kept flowing: {}", acked.len());
    for id in &acked {
        assert!(
            c.on_leader(Duration::from_secs(5), |l| l.get("c", id))
                .is_some(),
            "lost {id}"
        );
    }
}

/// Issue 10, item 3: raft-rs keeps a removed leader leading and drops its proposals, so removing
/// the leader stopped all writes. The leader refuses to remove itself; once the leadership is
/// handed over, the old leader can be removed, and a node that applies its own removal stops.
#[test]
fn removing_the_leader_is_refused_and_a_removed_node_stops_serving() {
    let c = Cluster::new(3, common::seed("removing_the_leader"));
    let leader = c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    match c.node(leader).remove_node(leader) {
        Err(NeedleError::MembershipChangeRefused { reason }) => {
            assert!(reason.contains("transfer"), "{reason}")
        }
        other => panic!("removing the leader: {other:?}"),
    }
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "a", vec![1.0, 0.0], None)
    });
    // Hand over, then remove the old leader.
    let other = c.founders.iter().copied().find(|&id| id != leader).unwrap();
    c.on_leader(Duration::from_secs(10), |l| {
        if l.node_id() == other {
            Ok(())
        } else {
            l.transfer_leadership(other)
        }
    });
    c.on_leader(Duration::from_secs(10), |l| l.remove_node(leader));
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(leader).fatal_error().is_none() {
        assert!(
            Instant::now() < deadline,
            "node {leader} still serves after its removal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    match c.node(leader).count_with(
        "c",
        ReadConsistency::BoundedStaleness(Duration::from_secs(1)),
    ) {
        Err(NeedleError::Stopped { reason }) => assert!(reason.contains("removed"), "{reason}"),
        other => panic!("a removed node answered a read: {other:?}"),
    }
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "b", vec![0.0, 1.0], None)
    });
    let st = c.on_leader(Duration::from_secs(5), |l| l.status());
    assert!(!st.voters.contains(&leader), "{st:?}");
}

/// A node removed while it hears nothing from the others (a one-way partition: its own messages
/// still go out) never applies its removal; once the partition heals, a member answers its
/// pre-votes with a removal notice, and it pauses: its status says so, writes and linearizable
/// reads get `Stopped`, and it campaigns no more (its term stands). The others go on. The same
/// as the simulator's `a_node_removed_while_cut_off_is_told_once_healed`, on real threads.
#[test]
fn a_node_removed_while_cut_off_is_told_once_healed() {
    let c = Cluster::new(3, common::seed("a_node_removed_while_cut_off"));
    let leader = c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    let victim = c.founders.iter().copied().find(|&id| id != leader).unwrap();
    c.net.set_filter(move |_, to, _| to != victim);
    c.on_leader(Duration::from_secs(10), |l| l.remove_node(victim));
    std::thread::sleep(Duration::from_millis(500));
    let st = c.node(victim).status().expect("the removed node runs on");
    assert_eq!(st.removed, None, "told while cut off: {st:?}");
    assert!(st.voters.contains(&victim), "{st:?}");
    c.net.set_filter(|_, _, _| true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = c
            .node(victim)
            .status()
            .expect("a paused node answers its status");
        if st.removed.is_some() {
            break st;
        }
        assert!(Instant::now() < deadline, "never told: {st:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    match c.node(victim).insert("c", "x", vec![1.0, 0.0], None) {
        Err(NeedleError::Stopped { reason }) => assert!(reason.contains("removed"), "{reason}"),
        other => panic!("a removed node answered a write: {other:?}"),
    }
    match c
        .node(victim)
        .count_with("c", ReadConsistency::Linearizable)
    {
        Err(NeedleError::Stopped { .. }) => {}
        other => panic!("a removed node answered a linearizable read: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(500));
    let later = c.node(victim).status().expect("still paused");
    assert_eq!((later.term, later.removed), (st.term, st.removed));
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "y", vec![0.0, 1.0], None)
    });
    let st = c.on_leader(Duration::from_secs(5), |l| l.status());
    assert!(!st.voters.contains(&victim), "{st:?}");
}

/// notice15, on real threads: a node removed while cut off, told once healed, then added back
/// under the same id (`add_node`: learner, caught up, voter) applies its own old removal on the
/// way without stopping, serves again and reads what the others wrote meanwhile.
#[test]
fn a_node_removed_while_cut_off_and_added_back_serves_again() {
    let c = Cluster::new(3, common::seed("a_node_removed_and_added_back"));
    let leader = c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    let victim = c.founders.iter().copied().find(|&id| id != leader).unwrap();
    c.net.set_filter(move |_, to, _| to != victim);
    c.on_leader(Duration::from_secs(10), |l| l.remove_node(victim));
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "y", vec![0.0, 1.0], None)
    });
    c.net.set_filter(|_, _, _| true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(victim).status().expect("runs").removed.is_none() {
        assert!(Instant::now() < deadline, "never told");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.on_leader(Duration::from_secs(20), |l| l.add_node(victim));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c
            .node(victim)
            .status()
            .expect("added back, it must not stop on its old removal");
        if st.removed.is_none() && st.voters.contains(&victim) {
            break;
        }
        assert!(Instant::now() < deadline, "never serves again: {st:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.on_leader(Duration::from_secs(10), |l| {
        l.insert("c", "z", vec![1.0, 1.0], None)
    });
    let n = c
        .node(victim)
        .count_with("c", ReadConsistency::Linearizable)
        .expect("it serves a linearizable read");
    assert_eq!(n, 2);
    let st = c.on_leader(Duration::from_secs(5), |l| l.status());
    assert!(st.voters.contains(&victim), "{st:?}");
}
