//! The CLI as a client (issue 13): `needle insert|get|search|count|delete --http ADDR` (no
//! FILE) work on a cluster of `needle serve` processes and print what the same commands print
//! on a file holding the same records. Writes sent to a follower follow the leader; a write
//! sent while the leader is dead is retried (one Idempotency-Key) until the new leader takes it.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::needle;
use serde_json::{Value, json};

/// Runs the same command on the file (`needle CMD FILE REST…`) and on the cluster
/// (`needle CMD --http ADDR REST…`) and returns both outputs.
fn both(cmd: &str, file: &str, http: &str, rest: &[&str]) -> (String, String) {
    let local = needle([cmd, file].into_iter().chain(rest.iter().copied()));
    let remote = needle(
        [cmd, "--http", http]
            .into_iter()
            .chain(rest.iter().copied()),
    );
    (local.ok().to_string(), remote.ok().to_string())
}

/// `--json` output without the timing.
fn untimed(text: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if let Some(o) = v.as_object_mut() {
        o.remove("took_ms");
    }
    v
}

#[test]
fn the_commands_on_a_cluster_print_what_they_print_on_a_file() {
    let mut c = Cluster::start(3, &[]);
    let (leader, http) = c.leader_and_follower_http();
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2, "distance": "euclidean"}),
        Duration::from_secs(20),
    )
    .expect("collection");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.needle");
    let f = file.to_str().unwrap();
    needle([
        "create",
        f,
        "items",
        "--dim",
        "2",
        "--distance",
        "euclidean",
    ])
    .ok();

    // Inserts, sent to a follower: the CLI follows `not_leader` to the leader.
    for i in 0..8 {
        let id = format!("r {i}/x"); // a space and a slash: the id is percent-encoded
        let vector = format!("[{i}.0, 1.0]");
        let meta = format!(r#"{{"i": {i}}}"#);
        let (l, r) = both(
            "insert",
            f,
            &http,
            &["items", &id, "--vector", &vector, "--metadata", &meta],
        );
        assert_eq!(l, r);
    }
    let (l, r) = both("get", f, &http, &["items", "r 3/x"]);
    assert_eq!(l, r);
    let (l, r) = both("count", f, &http, &["items"]);
    assert_eq!((l.as_str(), r.as_str()), ("8\n", "8\n"));
    let search = ["items", "--vector", "[2.2, 1.0]", "-k", "3", "--json"];
    let (l, r) = both("search", f, &http, &search);
    assert_eq!(untimed(&l), untimed(&r));
    assert_eq!(untimed(&r)["results"][0]["id"], "r 2/x");
    let (l, r) = both("delete", f, &http, &["items", "r 1/x", "nope"]);
    assert_eq!(l, r);
    assert!(r.contains("deleted 1 of 2"), "{r}");
    needle(["get", "--http", &http, "items", "r 1/x"]).fails(1, &["no record with id 'r 1/x'"]);
    needle(["count", "--http", &http, "nothing"]).fails(1, &["'nothing' does not exist"]);
    // A FILE with --http is a usage error, before anything is sent.
    needle(["count", "--http", &http, f, "items"]).fails(2, &["no FILE"]);

    // The leader dies; an insert sent to the follower right away is retried through the
    // election and taken by the new leader, once.
    c.kill(leader);
    let out = needle([
        "insert",
        "--http",
        &http,
        "items",
        "late",
        "--vector",
        "[9.0, 9.0]",
        "--json",
    ]);
    assert_eq!(out.json()["inserted"], "late");
    let got = needle(["--json", "get", "--http", &http, "items", "late"]).json();
    assert_eq!(got["vector"], json!([9.0, 9.0]));
    let count = needle(["--json", "count", "--http", &http, "items"]).json();
    assert_eq!(count["count"], 8);
}

#[test]
fn count_scroll_export_and_delete_by_filter_on_a_cluster_print_what_they_print_on_a_file() {
    let c = Cluster::start(3, &[]);
    let (leader, http) = c.leader_and_follower_http();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.needle");
    let f = file.to_str().unwrap();
    needle([
        "create",
        f,
        "items",
        "--dim",
        "2",
        "--distance",
        "euclidean",
    ])
    .ok();
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2, "distance": "euclidean"}),
        Duration::from_secs(20),
    )
    .expect("collection");
    // 2500 records: the export crosses pages of 1000.
    let batch: Vec<Value> = (0..2500)
        .map(|i| json!({"id": format!("r{i:04}"), "vector": [i as f32 * 0.5, 1.25], "metadata": {"g": i % 5}}))
        .collect();
    c.write(
        leader,
        "/v1/collections/items/records/batch",
        &json!({ "records": batch }),
        Duration::from_secs(60),
    )
    .expect("batch on the cluster");
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(
        &jsonl,
        batch
            .iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    needle(["import", f, "items", jsonl.to_str().unwrap()]).ok();

    let filter = r#"{"g": {"$in": [1, 3]}}"#;
    let (l, r) = both("count", f, &http, &["items", "--filter", filter]);
    assert_eq!((l.as_str(), r.as_str()), ("1000\n", "1000\n"));
    for rest in [
        &["items", "--filter", filter, "--limit", "7"][..],
        &[
            "items", "--filter", filter, "--limit", "7", "--cursor", "r0100",
        ],
        &["items", "--limit", "3", "--json"],
        &["items", "--cursor", "r2497", "--json"],
    ] {
        let (l, r) = both("scroll", f, &http, rest);
        assert_eq!(l, r, "scroll {rest:?}");
    }
    let (l, r) = both("export", f, &http, &["items"]);
    assert_eq!(l.lines().count(), 2500);
    assert_eq!(l, r);
    let (l, r) = both("export", f, &http, &["items", "--filter", filter]);
    assert_eq!(l.lines().count(), 1000);
    assert_eq!(l, r);
    // -o: a new file, the same bytes as on stdout.
    let out = dir.path().join("remote.jsonl");
    needle([
        "export",
        "--http",
        &http,
        "items",
        "-o",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        needle(["export", f, "items"]).ok()
    );

    // delete --filter, sent to a follower: one keyed write through the leader.
    let (l, r) = both("delete", f, &http, &["items", "--filter", r#"{"g": 3}"#]);
    assert_eq!(l, r);
    assert!(r.contains("deleted 500 records"), "{r}");
    let (l, r) = both("count", f, &http, &["items", "--filter", filter]);
    assert_eq!((l.as_str(), r.as_str()), ("500\n", "500\n"));
    // A bad filter is refused before anything is sent; a missing collection is the node's error.
    needle([
        "delete",
        "--http",
        &http,
        "items",
        "--filter",
        r#"{"g": {"$nope": 1}}"#,
    ])
    .fails(1, &["$nope"]);
    needle(["scroll", "--http", &http, "nothing"]).fails(1, &["'nothing' does not exist"]);
    needle(["export", "--http", &http, "nothing"]).fails(1, &["'nothing' does not exist"]);
    needle(["scroll", "--http", &http, "items", "--limit", "20000"]).fails(1, &["10000"]);
    let count = needle(["--json", "count", "--http", &http, "items"]).json();
    assert_eq!(count["count"], 2000);
}
