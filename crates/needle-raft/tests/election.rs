//! Elections in 1-, 3- and 5-node clusters: exactly one leader emerges, all nodes agree on it,
//! and it can commit. Prints the time to the first leader (see docs/replication.md, Measurements).

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

fn elect(n: u64) {
    let seed = common::seed(&format!("election_{n}"));
    let t0 = Instant::now();
    let c = Cluster::new(n, seed);
    let leader = c.wait_leader(Duration::from_secs(10));
    let elapsed = t0.elapsed();
    eprintln!("election_{n}: leader {leader} after {elapsed:?}");
    let leaders = c.live().iter().filter(|n| n.is_leader()).count();
    assert_eq!(leaders, 1);
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 2));
    c.wait_converged(Duration::from_secs(5));
}

#[test]
fn election_single_node() {
    elect(1);
}

#[test]
fn election_three_nodes() {
    elect(3);
}

#[test]
fn election_five_nodes() {
    elect(5);
}
