//! `needle index create|drop`, `needle count`, `needle scroll`, `needle delete --filter` and
//! `needle export --filter`, run as a process: the same answers with and without an index, bad
//! input refused before anything changes.

mod common;

use common::{needle, write_jsonl};

#[test]
fn count_scroll_delete_and_export_by_filter() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let db = db.to_str().unwrap();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, 60, 4);
    needle(["import", db, "items", input.to_str().unwrap()]).ok();

    let group2 = r#"{"group": 2}"#;
    let count = |filter: &str| {
        needle(["--json", "count", db, "items", "--filter", filter]).json()["count"].clone()
    };
    assert_eq!(count(group2), 20);
    needle(["index", "create", db, "items", "group", "integer"]).ok();
    assert_eq!(count(group2), 20, "an index changes no answer");
    let info = needle(["--json", "index", "create", db, "items", "i", "integer"]).json();
    assert_eq!(info["indexed"], 60);
    // `needle info` lists the indexes and what they and the filtered searches' codes cost.
    let shown = needle(["--json", "info", db]).json();
    let c = &shown["collections"][0];
    let paths: Vec<&str> = c["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["group", "i"]);
    assert_eq!(c["indexes"][0]["kind"], "integer");
    assert_eq!(c["indexes"][0]["indexed"], 60);
    assert!(c["indexes"][0]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(c["index_codes_bytes"].as_u64().unwrap() >= 60 * 64);
    let text = needle(["info", db]).ok().to_string();
    assert!(
        text.contains("group (integer): 3 values, 60 records indexed"),
        "{text}"
    );
    assert!(text.contains("int8 codes for filtered searches"), "{text}");

    // Bad input: an unknown kind, an index that exists, a bad filter; nothing changes.
    needle(["index", "create", db, "items", "x", "text"]).fails(1, &["unknown kind 'text'"]);
    needle(["index", "create", db, "items", "group", "keyword"]).fails(1, &["already has"]);
    needle([
        "count",
        db,
        "items",
        "--filter",
        r#"{"group": {"$gt": true}}"#,
    ])
    .fails(1, &["group.$gt"]);
    needle(["index", "drop", db, "items", "nope"]).fails(1, &["no index on 'nope'"]);

    // Scroll: pages in id order, the cursor continues.
    let page = needle([
        "--json", "scroll", db, "items", "--filter", group2, "--limit", "15",
    ])
    .json();
    let ids: Vec<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 15);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = needle([
        "--json", "scroll", db, "items", "--filter", group2, "--cursor", &cursor,
    ])
    .json();
    assert_eq!(rest["records"].as_array().unwrap().len(), 5);
    assert!(rest["next_cursor"].is_null());

    let out = dir.path().join("g2.jsonl");
    needle([
        "export",
        db,
        "items",
        "--filter",
        group2,
        "-o",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 20);

    let del = needle(["--json", "delete", db, "items", "--filter", group2]).json();
    assert_eq!(del["deleted_count"], 20);
    assert_eq!(count(group2), 0);
    assert_eq!(needle(["--json", "count", db, "items"]).json()["count"], 40);
    needle(["index", "drop", db, "items", "group"]).ok();
    assert_eq!(count(r#"{"group": 1}"#), 20);
}
