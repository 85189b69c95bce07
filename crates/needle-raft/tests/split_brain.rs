//! Issue 10, item 1: a node joining a young cluster (one whose log was never compacted) must learn
//! the founders' configuration, not replay the log from an empty one. Found on three `needle serve`
//! processes: the joiner's own voter list was `[4]`, and once two founders were killed it elected
//! itself and acknowledged a write alone.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use needle_raft::Role;

#[test]
fn a_joiner_of_a_young_cluster_knows_every_voter_and_never_acknowledges_alone() {
    let c = Cluster::new(3, common::seed("joiner_of_a_young_cluster"));
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    for i in 0..20 {
        c.on_leader(Duration::from_secs(5), |l| {
            l.insert("c", &format!("a{i}"), vec![i as f32, 1.0], None)
        });
    }
    // The log is young: nothing was compacted, so the leader could catch node 4 up by appends.
    c.start(4);
    c.on_leader(Duration::from_secs(20), |l| l.add_node(4));
    let leader_voters = c.on_leader(Duration::from_secs(5), |l| l.status()).voters;
    assert_eq!(leader_voters, vec![1, 2, 3, 4]);
    // The joiner's own view, once it has applied the promotion.
    let deadline = Instant::now() + Duration::from_secs(10);
    let joiner = loop {
        let st = c.node(4).status().expect("node 4 status");
        if st.voters.contains(&4) || Instant::now() >= deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        joiner.voters, leader_voters,
        "node 4's own view: {joiner:?}"
    );
    assert!(c.node(4).fatal_error().is_none());
    assert_eq!(
        c.node(4)
            .count_with("c", needle_raft::ReadConsistency::Linearizable)
            .unwrap(),
        20
    );

    // Two of four voters are gone: the other two are no majority, and neither may acknowledge.
    c.crash(1);
    c.crash(3);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut attempts = 0;
    while Instant::now() < deadline {
        for id in [2, 4] {
            let n = c.node(id);
            if n.role() == Role::Leader || attempts % 10 == 0 {
                let r = n.insert("c", &format!("alone-{id}-{attempts}"), vec![0.0, 0.0], None);
                assert!(
                    r.is_err(),
                    "node {id} acknowledged a write with two of four voters"
                );
            }
        }
        attempts += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in [2, 4] {
        let st = c.node(id).status().unwrap();
        assert_ne!(
            st.role,
            Role::Leader,
            "node {id} leads without a majority: {st:?}"
        );
    }
}
