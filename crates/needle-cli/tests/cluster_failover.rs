//! Three `needle serve` processes on loopback: writes over HTTP (single and batched), SIGKILL of
//! the leader, writes succeed again through the new leader, the killed node restarts and catches
//! up, and every acknowledged write is on every node with equal database checksums.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::vectors;
use serde_json::{Value, json};

const RECORDS: &str = "/v1/collections/items/records";
const BATCH: &str = "/v1/collections/items/records/batch";

fn record(i: usize, v: &[f32]) -> Value {
    json!({"id": format!("r{i}"), "vector": v, "metadata": {"i": i}})
}

/// `n` single-record writes, each acknowledged, following the leader.
fn singles(
    c: &Cluster,
    leader: &mut u64,
    next: &mut usize,
    acked: &mut Vec<String>,
    vs: &[Vec<f32>],
    n: usize,
) {
    for _ in 0..n {
        let (_, at) = c
            .write(
                *leader,
                RECORDS,
                &record(*next, &vs[*next]),
                Duration::from_secs(20),
            )
            .expect("single write acknowledged");
        *leader = at;
        acked.push(format!("r{next}"));
        *next += 1;
    }
}

#[test]
fn a_leader_sigkill_loses_no_acknowledged_write_and_the_node_catches_up() {
    let mut c = Cluster::start(3, &[]);
    let vs = vectors(1000, 8);
    let mut leader = c.wait_leader(Duration::from_secs(30));
    let long = Duration::from_secs(20);
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 8}),
        long,
    )
    .expect("collection created");

    let mut acked: Vec<String> = Vec::new();
    let mut next = 0;
    singles(&c, &mut leader, &mut next, &mut acked, &vs, 40);
    for _ in 0..3 {
        let batch: Vec<Value> = (next..next + 100).map(|i| record(i, &vs[i])).collect();
        let (r, at) = c
            .write(leader, BATCH, &json!({ "records": batch }), long)
            .expect("batch acknowledged");
        assert_eq!(r.body["inserted"], 100);
        leader = at;
        acked.extend((next..next + 100).map(|i| format!("r{i}")));
        next += 100;
    }

    // SIGKILL the leader; a write succeeds again through a new one.
    let victim = leader;
    let killed = Instant::now();
    c.kill(victim);
    let survivor = c.running()[0];
    let (_, at) = c
        .write(
            survivor,
            RECORDS,
            &record(next, &vs[next]),
            Duration::from_secs(30),
        )
        .expect("a write after the leader's death is acknowledged");
    eprintln!("write gap after SIGKILL: {:?}", killed.elapsed());
    assert_ne!(at, victim);
    acked.push(format!("r{next}"));
    next += 1;
    leader = at;
    singles(&c, &mut leader, &mut next, &mut acked, &vs, 20);
    let batch: Vec<Value> = (next..next + 200).map(|i| record(i, &vs[i])).collect();
    c.write(leader, BATCH, &json!({ "records": batch }), long)
        .expect("batch through the new leader");
    acked.extend((next..next + 200).map(|i| format!("r{i}")));

    // Restart the killed node: it catches up with what it missed.
    c.spawn(victim);
    let commit = c.status(leader, false).expect("leader status")["commit"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied = c
            .status(victim, false)
            .and_then(|s| s["applied"].as_u64())
            .unwrap_or(0);
        if applied >= commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {victim} stuck at {applied} < {commit}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Equal checksums at equal applied index on all three nodes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sums = loop {
        let sums: Vec<(Value, Value)> = (1..=3)
            .map(|id| {
                let s = c.status(id, true).unwrap_or_default();
                (s["checksum_applied"].clone(), s["state_checksum"].clone())
            })
            .collect();
        if sums.iter().all(|s| *s == sums[0] && !s.1.is_null()) {
            break sums;
        }
        assert!(
            Instant::now() < deadline,
            "checksums never converged: {sums:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("checksums: {sums:?}");

    // Every acknowledged write is on every node, read locally on each.
    let expected: BTreeSet<String> = acked.into_iter().collect();
    for id in 1..=3 {
        let r = c
            .client(id)
            .get("/v1/collections/items/ids?consistency=follower")
            .expect("ids");
        assert!(r.is_success(), "{r:?}");
        let have: BTreeSet<String> = r.body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let missing: Vec<_> = expected.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} writes: {missing:?}",
            missing.len()
        );
        assert_eq!(
            have.len(),
            expected.len(),
            "node {id} has writes nobody acknowledged"
        );
    }
    // A record written while the victim was down, read back from it with its vector.
    let r = c
        .client(victim)
        .get("/v1/collections/items/records/r400?consistency=linearizable")
        .expect("get");
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["metadata"]["i"], 400);
}
