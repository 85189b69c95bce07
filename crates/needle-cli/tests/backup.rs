//! Backup (issue 13): `GET /v1/snapshot` is a consistent snapshot with its Raft term, index and
//! state checksum in the headers; `needle backup --http ADDR FILE` writes it as a `.needle` file
//! that the local commands open, with the cluster's state checksum.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::needle;
use serde_json::json;

#[test]
fn a_backup_of_a_running_cluster_is_a_needle_file_with_the_clusters_checksum() {
    let c = Cluster::start(3, &[]);
    let mut leader = c.wait_leader(Duration::from_secs(30));
    let long = Duration::from_secs(20);
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2, "distance": "euclidean"}),
        long,
    )
    .expect("collection");
    let batch: Vec<_> = (0..50)
        .map(|i| json!({"id": format!("r{i}"), "vector": [i as f32, 1.0], "metadata": {"i": i}}))
        .collect();
    let (_, at) = c
        .write(
            leader,
            "/v1/collections/items/records/batch",
            &json!({ "records": batch }),
            long,
        )
        .expect("batch");
    leader = at;
    assert!(
        c.client(leader)
            .delete("/v1/collections/items/records/r7")
            .unwrap()
            .is_success()
    );

    // The endpoint itself: headers, and the bytes decode with that checksum.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let r = c.client(follower).get_raw("/v1/snapshot").unwrap();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let index: u64 = r.header("needle-raft-index").unwrap().parse().unwrap();
    let term: u64 = r.header("needle-raft-term").unwrap().parse().unwrap();
    assert!(term >= 1);
    let s = c.status(leader, true).unwrap();
    assert!(
        index >= 3 && index <= s["applied"].as_u64().unwrap(),
        "{index} {s}"
    );
    assert_eq!(
        r.header("needle-state-checksum").unwrap(),
        s["state_checksum"]
    );

    // needle backup: a .needle file the local commands open.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.needle");
    let f = file.to_str().unwrap();
    let out = needle([
        "backup",
        "--http",
        &c.node(follower).http.to_string(),
        f,
        "--json",
    ])
    .json();
    assert_eq!(out["state_checksum"], s["state_checksum"], "{out}");
    let check = needle(["check", f, "--json"]).json();
    assert_eq!(check["ok"], true);
    assert_eq!(check["records"], 49);
    let hits = needle(["search", f, "items", "--id", "r3", "-k", "2", "--json"]).json();
    assert_eq!(hits["results"][0]["id"], "r3");
    assert_eq!(hits["results"][0]["metadata"]["i"], 3);
    assert!(
        needle(["get", f, "items", "r7"]).code != 0,
        "the delete is in the backup"
    );

    // It never overwrites: a second backup to the same file is refused, the file unchanged.
    let before = std::fs::read(&file).unwrap();
    needle(["backup", "--http", &c.node(leader).http.to_string(), f]).fails(1, &["exists"]);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}
