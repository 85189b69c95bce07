//! `--read-only` (issue 13): a `.needle` file that another process holds open — a writer in
//! this test process, a running `needle serve` node — is readable by `info`, `search`, `get`,
//! `count`, `scroll`, `export` and `check` with `--read-only`, and no byte of any of its files
//! changes. Without the flag, the lock refuses and the error points at the flag.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::cluster::Cluster;
use common::needle;
use needle_core::Database;
use serde_json::json;

/// Every file in `dir`, name → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path().is_file().then(|| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn a_file_held_open_by_a_writer_is_read_with_read_only_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.needle");
    let file = path.to_str().unwrap();
    let writer = Database::open(&path).unwrap();
    writer.create_collection("docs", 2).unwrap();
    for i in 0..10 {
        let meta = json!({"i": i});
        writer
            .insert(
                "docs",
                &format!("r{i}"),
                vec![1.0 + i as f32, 1.0],
                Some(meta),
            )
            .unwrap();
    }
    writer.checkpoint().unwrap();
    // Some writes only in the log, after the checkpoint.
    writer.insert("docs", "late", vec![0.0, 1.0], None).unwrap();
    writer.delete("docs", "r0").unwrap();

    let before = files(dir.path());
    needle(["info", file]).fails(1, &["is open in another process", "--read-only"]);
    needle(["get", file, "docs", "late"]).fails(1, &["--read-only"]);

    let info = needle(["--json", "info", file, "--read-only"]).json();
    assert_eq!(info["collections"][0]["count"], 10, "{info}");
    let got = needle(["--json", "get", file, "docs", "late", "--read-only"]).json();
    assert_eq!(got["vector"], json!([0.0, 1.0]));
    needle(["get", file, "docs", "r0", "--read-only"]).fails(1, &["no record with id 'r0'"]);
    let hits = needle([
        "--json",
        "search",
        file,
        "docs",
        "--vector",
        "[0.0, 1.0]",
        "-k",
        "1",
        "--read-only",
    ])
    .json();
    assert_eq!(hits["results"][0]["id"], "late", "{hits}");
    let count = needle([
        "--json",
        "count",
        file,
        "docs",
        "--filter",
        r#"{"i": {"$gte": 5}}"#,
        "--read-only",
    ])
    .json();
    assert_eq!(count["count"], 5);
    let page = needle(["--json", "scroll", file, "docs", "--read-only"]).json();
    assert_eq!(page["records"].as_array().unwrap().len(), 10);
    let export = needle(["export", file, "docs", "--read-only"]);
    assert_eq!(export.ok().lines().count(), 10);
    needle(["check", file, "--read-only"]).ok();

    assert_eq!(
        files(dir.path()),
        before,
        "a --read-only command changed a file"
    );
    // The writer is unaffected and still holds its lock.
    writer
        .insert("docs", "after", vec![2.0, 2.0], None)
        .unwrap();
    needle(["info", file]).fails(1, &["--read-only"]);
}

#[test]
fn a_running_nodes_file_is_read_with_read_only() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "items", "dimensions": 2}),
        Duration::from_secs(20),
    )
    .expect("collection");
    let data = &c.node(1).data;
    let file = data.join("node.needle");
    let file_s = file.to_str().unwrap();
    needle(["info", file_s]).fails(1, &["--read-only"]);
    let before = files(data);
    let info = needle(["--json", "info", file_s, "--read-only"]).json();
    // The node's file is its last Raft snapshot (it keeps no log of its own): the checkpoint
    // tag is that snapshot's index, never past what the node applied.
    let applied = c.status(1, false).expect("status")["applied"]
        .as_u64()
        .expect("applied");
    assert!(
        info["checkpoint_tag"].as_u64().unwrap() <= applied,
        "{info}"
    );
    assert_eq!(
        files(data),
        before,
        "a --read-only command changed a node's file"
    );
}
