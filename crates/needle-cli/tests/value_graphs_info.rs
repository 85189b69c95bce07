//! The per-value graphs shown (issue 11, values8): `needle info` (text and `--json`), and over
//! HTTP the collection's info and `GET …/indexes`, count each index's value graphs and their
//! memory, and whether the index builds them (`--no-value-graphs`, `"value_graphs": false`).
//! The file is built in this process with the threshold lowered (the graphs are stored
//! in the checkpoint: the `needle` processes read them and build nothing).

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::needle;
use needle_core::{Database, IndexKind, Record};
use serde_json::json;

#[test]
fn info_and_http_show_the_value_graphs() {
    needle_core::__private::set_value_graph_min_records(50);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.needle");
    {
        let db = Database::open(&file).unwrap();
        db.create_collection("items", 4).unwrap();
        db.create_index("items", "t", IndexKind::Keyword).unwrap();
        db.create_index("items", "n", IndexKind::Integer).unwrap();
        // `t`: four values of 60 records each (>= 50, <= half): four graphs; `n`: 240 values.
        let records: Vec<Record> = (0..240)
            .map(|i| {
                let t = ["a", "b", "c", "d"][i % 4];
                let v = vec![i as f32, (i % 7) as f32, 1.0, (i % 3) as f32];
                Record::new(format!("r{i}"), v, Some(json!({ "t": t, "n": i })))
            })
            .collect();
        db.insert_batch("items", records).unwrap();
        db.checkpoint().unwrap();
    }
    let path = file.to_str().unwrap();
    let shown = needle(["--json", "info", path]).json();
    let idx = &shown["collections"][0]["indexes"];
    assert_eq!(idx[0]["path"], "n", "{shown}");
    assert_eq!(idx[0]["value_graphs"], 0, "{shown}");
    assert_eq!(idx[0]["value_graph_bytes"], 0, "{shown}");
    assert_eq!(idx[1]["path"], "t", "{shown}");
    assert_eq!(idx[1]["value_graphs"], 4, "{shown}");
    let bytes = idx[1]["value_graph_bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{shown}");
    assert!(idx[1]["memory_bytes"].as_u64().unwrap() > bytes, "{shown}");
    let text = needle(["info", path]).ok().to_string();
    assert!(text.contains("    4 value graphs ("), "{text}");
    assert_eq!(text.matches("value graph").count(), 1, "{text}");
    assert_eq!(idx[1]["builds_value_graphs"], true, "{shown}");

    // `--no-value-graphs`: an index that builds none, stored with it.
    let made = needle([
        "--json",
        "index",
        "create",
        path,
        "items",
        "u",
        "keyword",
        "--no-value-graphs",
    ])
    .json();
    assert_eq!(made["created"], "u", "{made}");
    assert_eq!(made["builds_value_graphs"], false, "{made}");
    assert_eq!(made["value_graphs"], 0, "{made}");
    assert_eq!(made["value_graph_bytes"], 0, "{made}");
    // Text: the figures and the value graphs (the `needle` process keeps the default threshold
    // of 8,192 records; no record has `w`).
    let text = needle(["index", "create", path, "items", "w", "integer"])
        .ok()
        .to_string();
    assert!(
        text.contains("created an integer index on 'w' in 'items': 0 records, 0 distinct values")
            && text.contains(", 0 value graphs (0.0 KB)"),
        "{text}"
    );
    let text = needle([
        "index",
        "create",
        path,
        "items",
        "x",
        "keyword",
        "--no-value-graphs",
    ])
    .ok()
    .to_string();
    assert!(
        text.contains(", no value graphs (--no-value-graphs)"),
        "{text}"
    );
    let shown = needle(["--json", "info", path]).json();
    let idx = &shown["collections"][0]["indexes"];
    assert_eq!(idx[2]["path"], "u", "{shown}");
    assert_eq!(idx[2]["builds_value_graphs"], false, "{shown}");
    assert_eq!(idx[1]["builds_value_graphs"], true, "{shown}");

    // Over HTTP: a node founded from the file.
    let from = path.to_string();
    let c = Cluster::start_with(1, &[], |_| vec!["--from".into(), from.clone()]);
    c.wait_leader(Duration::from_secs(30));
    let n = c.client(1);
    let listed = n.get("/v1/collections/items/indexes").unwrap();
    assert!(listed.is_success(), "{listed:?}");
    assert_eq!(listed.body["indexes"], *idx, "{listed:?}");
    let info = n.get("/v1/collections/items").unwrap();
    assert_eq!(info.body["indexes"], *idx, "{info:?}");

    // `"value_graphs": false` over HTTP.
    let r = n
        .post(
            "/v1/collections/items/indexes",
            &json!({"path": "m", "kind": "integer", "value_graphs": false}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["index"]["builds_value_graphs"], false, "{r:?}");
    let listed = n.get("/v1/collections/items/indexes").unwrap();
    let m = listed.body["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "m")
        .cloned();
    assert_eq!(m.unwrap()["builds_value_graphs"], false, "{listed:?}");
    let r = n
        .post(
            "/v1/collections/items/indexes",
            &json!({"path": "m2", "kind": "integer", "value_graphs": "no"}),
        )
        .unwrap();
    assert_eq!(r.status, 400, "a value_graphs that is not a bool: {r:?}");
}
