//! Restore (issue 13): `needle serve --from FILE` founds a new cluster from a `.needle` file.
//! Round trip: a running cluster's backup, restored into a new cluster, has the old cluster's
//! state checksum, on the founder and on a node that joins afterwards (which can only get the
//! restored state through the founder's Raft snapshot). `--from` on a data directory that
//! already holds a node, or with `--peers`, is refused and changes nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Node, TIMINGS, free_ports};
use common::needle;
use serde_json::json;

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn checksum_when_applied(c: &Cluster, id: u64, at_least: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = c.status(id, true)
            && s["applied"].as_u64().unwrap_or(0) >= at_least
        {
            return s["state_checksum"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "node {id} never applied index {at_least}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_backup_restored_with_serve_from_founds_a_cluster_with_the_same_state() {
    // The old cluster, with a collection, an index, 60 records and a delete.
    let old = Cluster::start(3, &[]);
    let long = Duration::from_secs(20);
    let mut leader = old.wait_leader(Duration::from_secs(30));
    old.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 3, "distance": "cosine"}),
        long,
    )
    .expect("collection");
    let batch: Vec<_> = (0..60)
        .map(|i| json!({"id": format!("r{i}"), "vector": [1.0, i as f32, 0.5], "metadata": {"g": i % 4}}))
        .collect();
    leader = old
        .write(
            leader,
            "/v1/collections/items/records/batch",
            &json!({ "records": batch }),
            long,
        )
        .expect("batch")
        .1;
    assert!(
        old.client(leader)
            .delete("/v1/collections/items/records/r5")
            .unwrap()
            .is_success()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.needle");
    let backup = needle([
        "backup",
        "--http",
        &old.node(leader).http.to_string(),
        file.to_str().unwrap(),
        "--json",
    ])
    .json();
    let want = backup["state_checksum"].as_str().unwrap().to_string();
    drop(old);

    // The new cluster: one founder from the file.
    let from = file.to_str().unwrap().to_string();
    let mut c = Cluster::start_with(1, &[], |_| vec!["--from".into(), from.clone()]);
    c.wait_leader(Duration::from_secs(30));
    let s = c.status(1, true).expect("status");
    assert_eq!(s["state_checksum"], want.as_str(), "{s}");
    let hits = c
        .client(1)
        .get("/v1/collections/items/records/r7")
        .expect("get");
    assert!(hits.is_success(), "{hits:?}");
    assert_eq!(hits.body["metadata"]["g"], 3, "{hits:?}");
    let gone = c
        .client(1)
        .get("/v1/collections/items/records/r5")
        .expect("get");
    assert_eq!(
        gone.status, 404,
        "the delete is in the restored state: {gone:?}"
    );

    // A node that joins gets the restored state (through the founder's snapshot) and the writes
    // after it.
    c.nodes.push(Node::new(2, free_ports(2), dir.path()));
    let mut cmd = c.command(2);
    cmd.arg("--join");
    let log = std::fs::File::create(&c.node(2).log).unwrap();
    let child = cmd.stderr(Stdio::from(log)).spawn().expect("start node 2");
    c.adopt(2, child);
    c.wait_http(2);
    let n2 = c.node(2);
    c.write(
        1,
        "/v1/cluster/nodes",
        &json!({"id": 2, "raft": n2.raft, "http": n2.http}),
        Duration::from_secs(60),
    )
    .expect("node 2 added");
    c.write(
        1,
        "/v1/collections/items/records",
        &json!({"id": "after", "vector": [0.0, 1.0, 0.0]}),
        long,
    )
    .expect("a write to the restored cluster");
    let applied = c.status(1, false).unwrap()["applied"].as_u64().unwrap();
    let at1 = checksum_when_applied(&c, 1, applied);
    assert_ne!(at1, want, "the write after the restore changed the state");
    assert_eq!(checksum_when_applied(&c, 2, applied), at1);
    // The founder streamed its snapshot to the joiner, and /metrics counted it on both sides.
    let metric = |id: u64, name: &str| -> f64 {
        let r = c.client(id).get("/metrics").expect("metrics");
        let text = r.body.as_str().expect("metrics text").to_string();
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} on node {id}: {text}"))
    };
    assert!(metric(1, "needle_raft_snapshots_sent_total") >= 1.0);
    assert!(metric(1, "needle_raft_snapshot_bytes_sent_total") > 0.0);
    assert!(metric(2, "needle_raft_snapshots_received_total") >= 1.0);
    assert!(metric(2, "needle_raft_snapshot_bytes_received_total") > 0.0);
    assert_eq!(metric(2, "needle_raft_snapshots_sent_total"), 0.0);
    let count = c
        .client(2)
        .get("/v1/collections/items/ids")
        .expect("ids")
        .body;
    assert_eq!(count["ids"].as_array().map(Vec::len), Some(60), "{count}");

    // --from again on node 1's data directory (it holds a node now): refused, nothing changed.
    c.kill(1);
    let node1 = c.node(1);
    let before = tree(&node1.data);
    let ports = free_ports(2);
    let serve = |data: &Path, from: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--id".into(),
            "1".into(),
            "--data".into(),
            data.display().to_string(),
            "--raft".into(),
            format!("127.0.0.1:{}", ports[0]),
            "--http".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--secret-file".into(),
            c.secret.display().to_string(),
            "--from".into(),
            from.to_string(),
        ];
        args.extend(TIMINGS.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        needle(args)
    };
    serve(&node1.data, &from, &[]).fails(1, &["already holds a node", "nothing was changed"]);
    assert_eq!(
        tree(&node1.data),
        before,
        "the refused restore changed the data directory"
    );

    // With --peers, with --join, from a missing file: refused before the data directory is
    // even created.
    let fresh = dir.path().join("fresh");
    serve(&fresh, &from, &["--peers", "2=127.0.0.1:1"]).fails(1, &["--from", "--peers"]);
    serve(&fresh, &from, &["--join"]).fails(1, &["--from", "--join"]);
    let missing = dir.path().join("missing.needle");
    serve(&fresh, missing.to_str().unwrap(), &[]).fails(1, &["missing.needle", "does not exist"]);
    assert!(!fresh.exists());
}
