//! A `needle serve` process with the wrong cluster secret is refused by every node (the refusal
//! is logged with its reason and counted), cannot join or disturb the cluster, and the cluster
//! goes on taking writes.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, TIMINGS, free_ports};
use serde_json::json;

#[test]
fn a_process_with_the_wrong_secret_is_refused_and_the_cluster_goes_on() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2}),
        Duration::from_secs(20),
    )
    .expect("collection created");

    // An intruder: node 4, which names the real nodes as its peers but has another secret.
    let wrong = c.dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not the cluster's secret").unwrap();
    let ports = free_ports(2);
    let peers: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft))
        .collect();
    let log = c.dir.path().join("intruder.log");
    let mut intruder = std::process::Command::new(env!("CARGO_BIN_EXE_needle"))
        .args(["serve", "--id", "4", "--data"])
        .arg(c.dir.path().join("intruder"))
        .args(["--raft", &format!("127.0.0.1:{}", ports[0])])
        .args(["--http", &format!("127.0.0.1:{}", ports[1])])
        .args(["--peers", &peers.join(",")])
        .arg("--secret-file")
        .arg(&wrong)
        .args(TIMINGS)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the intruder");

    // Every node it dials refuses it; the refusals are counted with a reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let statuses: Vec<_> = (1..=3).filter_map(|id| c.status(id, false)).collect();
        let refusing = statuses
            .iter()
            .filter(|s| s["transport"]["handshakes_refused"].as_u64() > Some(0))
            .count();
        if refusing == 3 {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "not every node refused the intruder: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let reason = refused[0]["transport"]["last_refusal"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!reason.is_empty(), "a refusal carries its reason");
    eprintln!("refusal reason: {reason}");

    // The cluster goes on: writes are acknowledged, the members stay 1, 2, 3.
    let mut leader = c.wait_leader(Duration::from_secs(30));
    for i in 0..30 {
        let (_, at) = c
            .write(
                leader,
                "/v1/collections/items/records",
                &json!({"id": format!("k{i}"), "vector": [1.0, i as f32]}),
                Duration::from_secs(20),
            )
            .expect("writes go on");
        leader = at;
    }
    let s = c.status(leader, false).unwrap();
    assert_eq!(s["voters"], json!([1, 2, 3]));
    let r = c.client(leader).get("/v1/collections/items").unwrap();
    assert_eq!(r.body["count"], 30);

    // The intruder never learned of a leader nor applied anything.
    let intruder_http = std::net::SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let s = needle_cli::client::Client::new(intruder_http)
        .get("/v1/status")
        .expect("the intruder answers its own status");
    assert_eq!(s.body["leader"], serde_json::Value::Null, "{}", s.body);
    // It applied at most its own founding configuration, none of the cluster's writes.
    let leader_applied = c.status(leader, false).unwrap()["applied"]
        .as_u64()
        .unwrap();
    assert!(
        s.body["applied"].as_u64().unwrap() <= 1 && leader_applied > 30,
        "{}",
        s.body
    );
    let _ = intruder.kill();
    let _ = intruder.wait();
    let intruder_log = std::fs::read_to_string(&log).unwrap_or_default();
    let cluster_logs = c.logs();
    assert!(
        cluster_logs.contains("warn") || intruder_log.contains("warn"),
        "the refusal is logged:\n{cluster_logs}\n{intruder_log}"
    );
    c.kill(1);
}
