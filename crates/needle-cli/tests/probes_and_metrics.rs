//! `/livez`, `/readyz` and `/metrics` (issue 13): probes that say whether a node is up and
//! caught up, and Prometheus text with the Raft state and per-endpoint request metrics.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, Node, free_ports};
use serde_json::json;

/// The value of the first sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_node_is_live_ready_once_caught_up_and_exports_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "probe-token").unwrap();
    let mut c = Cluster::start(1, &["--token-file", token_file.to_str().unwrap()]);
    c.token = Some("probe-token".into());
    let leader = c.wait_leader(Duration::from_secs(30));
    let n = c.client(leader);

    // The probes answer without the token; everything else still needs it.
    let anonymous = needle_cli::client::Client::new(c.node(leader).http);
    let r = anonymous.get("/livez").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["live"], true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = anonymous.get("/readyz").unwrap();
        if r.status == 200 {
            assert_eq!(r.body["ready"], true);
            assert_eq!(r.body["leader"], leader);
            break;
        }
        assert_eq!(r.error_code(), Some("not_ready"), "{r:?}");
        assert!(Instant::now() < deadline, "never ready: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(anonymous.get("/metrics").unwrap().status, 401);

    assert!(
        n.post(
            "/v1/collections",
            &json!({"name": "items", "dimensions": 2})
        )
        .unwrap()
        .is_success()
    );
    for i in 0..3 {
        let r = n
            .post(
                "/v1/collections/items/records",
                &json!({"id": format!("r{i}"), "vector": [1.0, i as f32]}),
            )
            .unwrap();
        assert!(r.is_success(), "{r:?}");
    }
    for _ in 0..2 {
        let r = n
            .post("/v1/collections/items/search", &json!({"id": "r1", "k": 2}))
            .unwrap();
        assert!(r.is_success(), "{r:?}");
    }
    let r = n
        .post("/v1/collections/items/search", &json!({"id": "nope"}))
        .unwrap();
    assert_eq!(r.status, 404);

    let r = n.get("/metrics").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let text = r
        .body
        .as_str()
        .expect("metrics are text, not JSON")
        .to_string();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert_eq!(sample(&text, "needle_raft_is_leader "), Some(1.0), "{text}");
    assert_eq!(sample(&text, "needle_raft_role "), Some(3.0), "{text}");
    assert!(sample(&text, "needle_raft_term ").unwrap() >= 1.0, "{text}");
    let applied = sample(&text, "needle_raft_applied_index ").unwrap();
    assert!(applied >= 4.0, "{text}");
    assert_eq!(
        sample(&text, "needle_raft_commit_index "),
        Some(applied),
        "{text}"
    );
    assert_eq!(sample(&text, "needle_raft_voters "), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "needle_collection_records{collection=\"items\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "needle_searches_total{outcome=\"ok\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "needle_searches_total{outcome=\"error\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "needle_writes_total{outcome=\"ok\"}"),
        Some(4.0),
        "{text}"
    );
    // Per-route latency histograms name the route pattern, not the concrete path.
    let search_route = "route=\"/v1/collections/{collection}/search\"";
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("needle_http_request_duration_seconds_count") && l.contains(search_route)
        })
        .unwrap_or_else(|| panic!("no search latency histogram: {text}"));
    assert!(count.ends_with(" 3"), "{count}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("needle_http_requests_total")
                && l.contains(search_route)
                && l.contains("status=\"404\"")),
        "{text}"
    );
    assert!(
        text.contains("needle_transport_messages_dropped_total{reason=\"queue_full\"}"),
        "{text}"
    );
    // Each of the four writes was one Raft proposal, answered ok.
    assert_eq!(
        sample(&text, "needle_raft_proposals_total{outcome=\"ok\"}"),
        Some(4.0),
        "{text}"
    );
    // The Raft log (and the database file) fsync through the timed disk: every write above
    // waited for at least one.
    let fsyncs = sample(&text, "needle_fsync_duration_seconds_count{kind=\"file\"}").unwrap();
    assert!(fsyncs >= 4.0, "{text}");
    assert!(
        sample(&text, "needle_fsync_duration_seconds_sum{kind=\"file\"}").unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, "needle_fsync_duration_seconds_count{kind=\"dir\"}").unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "needle_raft_peer_lag{peer=\"1\"}"),
        Some(0.0),
        "{text}"
    );
    for name in [
        "needle_raft_snapshots_sent_total",
        "needle_raft_snapshots_received_total",
        "needle_raft_snapshot_bytes_sent_total",
        "needle_raft_snapshot_bytes_received_total",
        "needle_raft_last_index",
        "needle_raft_first_index",
        "needle_raft_snapshot_index",
        "needle_raft_leader_id",
        "needle_raft_fatal",
        "needle_transport_messages_sent_total",
        "needle_transport_messages_received_total",
    ] {
        assert!(
            sample(&text, &format!("{name} ")).is_some(),
            "no {name}: {text}"
        );
    }

    // The OpenAPI description is served, and names the routes.
    let r = n.get("/v1/openapi.json").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body["openapi"].as_str().unwrap().starts_with("3."),
        "{r:?}"
    );
    assert!(
        r.body["paths"]["/v1/collections/{collection}/search"]["post"]["requestBody"].is_object(),
        "{r:?}"
    );

    // A node that waits to be added (--join, no leader yet) is live but not ready.
    let joiner_dir = c.dir.path().to_path_buf();
    c.nodes.push(Node::new(2, free_ports(2), &joiner_dir));
    let mut cmd = c.command(2);
    cmd.arg("--join");
    let child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
    c.adopt(2, child);
    c.wait_http(2);
    let j = needle_cli::client::Client::new(c.node(2).http);
    assert_eq!(j.get("/livez").unwrap().status, 200);
    let r = j.get("/readyz").unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (503, Some("not_ready")),
        "{r:?}"
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no leader"),
        "{r:?}"
    );
}
