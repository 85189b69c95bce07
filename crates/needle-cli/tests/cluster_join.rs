//! Issue 10's scenario with real processes: three `needle serve` nodes, a collection and 20
//! writes, a fourth node started with `--join` and added with `POST /v1/cluster/nodes`. The
//! joiner's own voter list must equal the leader's; then two nodes are SIGKILLed, and no node
//! may acknowledge a write alone (two of four is no majority). A killed node restarted restores
//! the majority, and writes are acknowledged again.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Node, free_ports};
use serde_json::{Value, json};

fn voters(s: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = s["voters"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

#[test]
fn a_joined_node_learns_the_founders_and_never_acknowledges_a_write_alone() {
    let mut c = Cluster::start(3, &[]);
    let long = Duration::from_secs(20);
    let leader = c.wait_leader(Duration::from_secs(30));
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2}),
        long,
    )
    .expect("collection created");
    let mut leader = leader;
    for i in 0..20 {
        let (_, at) = c
            .write(
                leader,
                "/v1/collections/items/records",
                &json!({"id": format!("r{i}"), "vector": [1.0, i as f32]}),
                long,
            )
            .expect("write acknowledged");
        leader = at;
    }

    // Node 4: started with --join and the founders' addresses, then added through the leader.
    let dir = c.dir.path().to_path_buf();
    c.nodes.push(Node::new(4, free_ports(2), &dir));
    let mut cmd = c.command(4);
    cmd.arg("--join");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&c.node(4).log)
        .unwrap();
    let child = cmd.stderr(Stdio::from(log)).spawn().expect("start node 4");
    c.adopt(4, child);
    c.wait_http(4);
    let n4 = c.node(4);
    let (r, leader) = c
        .write(
            leader,
            "/v1/cluster/nodes",
            &json!({"id": 4, "raft": n4.raft, "http": n4.http}),
            Duration::from_secs(60),
        )
        .expect("node 4 added");
    assert_eq!(voters(&r.body), vec![1, 2, 3, 4], "{r:?}");

    // The joiner's own view of the membership is the leader's (bounded wait: it must apply the
    // configuration entries).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let at_leader = c.status(leader, false).map(|s| voters(&s));
        let at_joiner = c.status(4, false).map(|s| voters(&s));
        if at_leader.is_some() && at_leader == at_joiner {
            assert_eq!(at_joiner, Some(vec![1, 2, 3, 4]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the joiner's voters {at_joiner:?} never matched the leader's {at_leader:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Kill the leader and another founder: two of four remain, no majority.
    let other = (1..=3).find(|&i| i != leader).unwrap();
    c.kill(leader);
    c.kill(other);
    let survivors = c.running();
    assert_eq!(survivors.len(), 2);
    assert!(survivors.contains(&4));
    // About ten election timeouts (300–600 ms each in the test timings): long enough for a
    // lone node to elect itself if the bug were there. Every write must go unacknowledged.
    let window = Instant::now() + Duration::from_secs(6);
    let mut tries = 0;
    while Instant::now() < window {
        for &id in &survivors {
            tries += 1;
            let r = c.client(id).with_timeout(Duration::from_secs(3)).post(
                "/v1/collections/items/records",
                &json!({"id": format!("lonely{tries}"), "vector": [0.0, 1.0]}),
            );
            if let Ok(r) = r {
                assert!(
                    !r.is_success(),
                    "node {id} acknowledged a write with only {survivors:?} of 4 running: {r:?}"
                );
            }
            if let Some(s) = c.status(id, false) {
                assert_ne!(
                    s["role"], "leader",
                    "node {id} leads with only {survivors:?} of 4 running: {s}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{tries} writes refused while two of four nodes were down");

    // Restart one killed node: three of four is a majority again, and writes are acknowledged.
    c.spawn(other);
    let (_, at) = c
        .write(
            4,
            "/v1/collections/items/records",
            &json!({"id": "after", "vector": [0.5, 0.5]}),
            Duration::from_secs(60),
        )
        .expect("a write is acknowledged once a majority runs again");
    let ids = c
        .client(at)
        .get("/v1/collections/items/ids")
        .expect("ids")
        .body;
    let ids: Vec<&str> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), 21, "{ids:?}");
    assert!(!ids.iter().any(|i| i.starts_with("lonely")), "{ids:?}");
}
