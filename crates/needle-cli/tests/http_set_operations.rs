//! The set operations and payload indexes through the HTTP API (issue 11): count, scroll with a
//! cursor, records/get, records/delete and delete-by-filter with the count the apply deleted,
//! index create / list / drop, and `score_threshold` on search; bad input is a typed 400 (or
//! 404 / 409) that changes nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::Cluster;
use serde_json::{Value, json};

fn tenant(i: usize) -> usize {
    i % 10
}

#[test]
fn set_operations_and_indexes_over_http() {
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
    let records: Vec<Value> = (0..100)
        .map(|i| {
            json!({"id": format!("r{i:03}"), "vector": [1.0, i as f32],
                   "metadata": {"tenant": tenant(i), "tags": if i % 4 == 0 { json!(["a", "b"]) } else { json!(["b"]) }}})
        })
        .collect();
    let r = n
        .post(
            "/v1/collections/items/records/batch",
            &json!({ "records": records }),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");

    // Indexes: create, list, refuse a duplicate, an unknown kind and a bad path.
    let idx = "/v1/collections/items/indexes";
    let r = n
        .post(idx, &json!({"path": "tenant", "kind": "integer"}))
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["index"]["indexed"], 100);
    let r = n
        .post(idx, &json!({"path": "tags", "kind": "keyword"}))
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let before = n.get(idx).unwrap();
    assert_eq!(
        before.body["indexes"].as_array().unwrap().len(),
        2,
        "{before:?}"
    );
    // The collection's info shows the same indexes and the int8 codes' memory.
    let info = n.get("/v1/collections/items").unwrap();
    assert_eq!(info.body["indexes"], before.body["indexes"], "{info:?}");
    assert!(before.body["index_codes_bytes"].as_u64().unwrap() >= 100 * 64);
    assert_eq!(
        info.body["index_codes_bytes"],
        before.body["index_codes_bytes"]
    );
    let r = n
        .post(idx, &json!({"path": "tenant", "kind": "float"}))
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (409, Some("index_exists")),
        "{r:?}"
    );
    let r = n.post(idx, &json!({"path": "x", "kind": "text"})).unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_argument")),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["field"], "kind");
    let r = n
        .post(idx, &json!({"path": "$and", "kind": "keyword"}))
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_argument")),
        "{r:?}"
    );
    let r = n.post(idx, &json!({"path": "x"})).unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let r = n.delete("/v1/collections/items/indexes/nope").unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some("index_not_found")),
        "{r:?}"
    );
    assert_eq!(
        n.get(idx).unwrap().body["indexes"],
        before.body["indexes"],
        "nothing changed"
    );

    // Count.
    let count = |filter: Value| {
        let r = n
            .post("/v1/collections/items/count", &json!({ "filter": filter }))
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        r.body["count"].as_u64().unwrap()
    };
    assert_eq!(count(json!({"tenant": 3})), 10);
    assert_eq!(count(json!({"tags": "a"})), 25);
    assert_eq!(
        count(json!({"$and": [{"tags": "a"}, {"unindexed": {"$exists": false}}]})),
        25
    );
    let r = n.post("/v1/collections/items/count", &json!({})).unwrap();
    assert_eq!(r.body["count"], 100);
    let r = n
        .post(
            "/v1/collections/items/count",
            &json!({"filter": {"tenant": {"$bad": 1}}}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_filter")),
        "{r:?}"
    );
    let r = n.post("/v1/collections/nope/count", &json!({})).unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some("collection_not_found")),
        "{r:?}"
    );

    // Scroll: every match once, in id order, page by page.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut body = json!({"filter": {"tenant": {"$lt": 3}}, "limit": 7});
        if !cursor.is_null() {
            body["cursor"] = cursor.clone();
        }
        let r = n.post("/v1/collections/items/scroll", &body).unwrap();
        assert!(r.is_success(), "{r:?}");
        for rec in r.body["records"].as_array().unwrap() {
            seen.push(rec["id"].as_str().unwrap().to_string());
        }
        cursor = r.body["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let want: Vec<String> = (0..100)
        .filter(|&i| tenant(i) < 3)
        .map(|i| format!("r{i:03}"))
        .collect();
    assert_eq!(seen, want);
    for limit in [0, 10_001] {
        let r = n
            .post("/v1/collections/items/scroll", &json!({ "limit": limit }))
            .unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (400, Some("invalid_argument")),
            "{r:?}"
        );
        assert_eq!(r.body["error"]["field"], "limit");
    }

    // records/get: one entry per id, null where missing.
    let r = n
        .post(
            "/v1/collections/items/records/get",
            &json!({"ids": ["r001", "nope", "r002"]}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let got = r.body["records"].as_array().unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["id"], "r001");
    assert!(got[1].is_null());
    assert_eq!(got[2]["metadata"]["tenant"], 2);
    let r = n
        .post("/v1/collections/items/records/get", &json!({"ids": "r001"}))
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");

    // score_threshold: only hits at most that far.
    let r = n
        .post(
            "/v1/collections/items/search",
            &json!({"vector": [1.0, 50.0], "k": 100, "score_threshold": 0.01}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let hits = r.body["results"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() < 100, "{r:?}");
    assert!(
        hits.iter().all(|h| h["distance"].as_f64().unwrap() <= 0.01),
        "{r:?}"
    );
    let r = n
        .post(
            "/v1/collections/items/search",
            &json!({"vector": [1.0, 0.0], "score_threshold": "x"}),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");

    // records/delete and delete-by-filter answer the number the apply deleted.
    let r = n
        .post(
            "/v1/collections/items/records/delete",
            &json!({"ids": ["r001", "r001x", "r002"]}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["deleted_count"], 2);
    let r = n
        .post(
            "/v1/collections/items/delete-by-filter",
            &json!({"filter": {"tenant": {"$bad": 1}}}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_filter")),
        "{r:?}"
    );
    assert_eq!(
        count(json!({"tenant": {"$gte": 0}})),
        98,
        "a bad filter deleted nothing"
    );
    let doomed = count(json!({"tags": "a"}));
    let r = n
        .post_with_key(
            "/v1/collections/items/delete-by-filter",
            &json!({"filter": {"tags": "a"}}),
            "dbf-1",
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["deleted_count"].as_u64(), Some(doomed));
    // A retry with the same key is answered with the first apply's count, deleting nothing more.
    let r = n
        .post_with_key(
            "/v1/collections/items/delete-by-filter",
            &json!({"filter": {"tags": "a"}}),
            "dbf-1",
        )
        .unwrap();
    assert_eq!(r.body["deleted_count"].as_u64(), Some(doomed), "{r:?}");
    assert_eq!(count(json!({"tags": "a"})), 0);
    assert_eq!(count(json!({})), 98 - doomed);

    // Drop an index: filters on the path still answer the same.
    let by_tenant = count(json!({"tenant": 5}));
    let r = n.delete("/v1/collections/items/indexes/tenant").unwrap();
    assert!(r.is_success(), "{r:?}");
    let paths: BTreeSet<String> = n.get(idx).unwrap().body["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, BTreeSet::from(["tags".to_string()]));
    assert_eq!(count(json!({"tenant": 5})), by_tenant);
}
