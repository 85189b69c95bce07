//! A huge `k` or `ef` never aborts the process (issue 9, item 4): the CLI clamps both to the
//! collection's size, and the HTTP API refuses values over its documented caps with a typed 400
//! and goes on serving.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{needle, write_jsonl};
use serde_json::json;

const HUGE: &str = "1099511627776";

#[test]
fn the_cli_clamps_a_huge_k_and_ef_to_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, 60, 8);
    let d = db.to_str().unwrap();
    needle(["import", d, "items", input.to_str().unwrap()]).ok();
    needle(["delete", d, "items", "r5"]).ok();

    let hits = needle(["search", d, "items", "--id", "r1", "-k", HUGE, "--json"]).json();
    let results = hits["results"].as_array().unwrap();
    assert_eq!(results.len(), 59, "every live record, once");
    assert_eq!(results[0]["id"], "r1");

    let hits = needle([
        "search", d, "items", "--id", "r1", "-k", "3", "--ef", HUGE, "--json",
    ])
    .json();
    assert_eq!(hits["results"].as_array().unwrap().len(), 3);

    // A filtered search: both huge.
    let hits = needle([
        "search",
        d,
        "items",
        "--id",
        "r1",
        "-k",
        HUGE,
        "--ef",
        HUGE,
        "--filter",
        r#"{"group": 1}"#,
        "--json",
    ])
    .json();
    let results = hits["results"].as_array().unwrap();
    assert_eq!(results.len(), 20, "{hits}");
    assert!(results.iter().all(|h| h["metadata"]["group"] == 1));

    // k = 0 and ef = 0 are still refused, naming the argument.
    needle(["search", d, "items", "--id", "r1", "-k", "0"]).fails(1, &["k"]);
    needle(["search", d, "items", "--id", "r1", "--ef", "0"]).fails(1, &["ef"]);
}

#[test]
fn the_http_api_refuses_k_and_ef_over_its_caps_and_keeps_serving() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    let n = c.client(leader);
    let r = n
        .post(
            "/v1/collections",
            &json!({"name": "items", "dimensions": 2}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let records: Vec<_> = (0..5)
        .map(|i| json!({"id": format!("r{i}"), "vector": [1.0, i as f32], "metadata": {"i": i}}))
        .collect();
    let r = n
        .post(
            "/v1/collections/items/records/batch",
            &json!({ "records": records }),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");

    let search = "/v1/collections/items/search";
    let huge: u64 = HUGE.parse().unwrap();
    for (body, field) in [
        (json!({"id": "r1", "k": huge}), "k"),
        (json!({"id": "r1", "k": 10_001}), "k"),
        (json!({"id": "r1", "ef": huge}), "ef"),
        (
            json!({"id": "r1", "k": 2, "ef": huge, "filter": {"i": {"$gte": 1}}}),
            "ef",
        ),
        (
            json!({"vector": [1.0, 0.0], "k": huge, "consistency": "follower"}),
            "k",
        ),
    ] {
        let r = n.post(search, &body).unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (400, Some("invalid_argument")),
            "{body}: {r:?}"
        );
        assert_eq!(r.body["error"]["field"], field);
        assert_eq!(r.body["error"]["max"], 10_000);
    }
    // The node is alive and answers within the caps: k at the cap returns every record.
    let r = n
        .post(search, &json!({"id": "r1", "k": 10_000, "ef": 10_000}))
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["results"].as_array().unwrap().len(), 5);
    let s = c.status(leader, false).expect("the node still answers");
    assert_eq!(s["role"], "leader");
}
