//! Safe retries over HTTP (issue 13): the `Idempotency-Key` header of a write becomes its Raft
//! request id, so a retry with the same key is applied at most once; and `--forward-writes`
//! sends a write from a follower on to the leader, key and all.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use needle_cli::client::{Client, Response};
use serde_json::{Value, json};

fn post(c: &Client, path: &str, body: &Value, key: &str) -> Response {
    c.post_with_key(path, body, key).expect("the node answers")
}

fn metadata_of(c: &Client, id: &str) -> Value {
    let r = c
        .get(&format!("/v1/collections/items/records/{id}"))
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    r.body["metadata"].clone()
}

#[test]
fn a_retry_with_the_same_idempotency_key_is_applied_once_and_forwarding_keeps_the_key() {
    let c = Cluster::start(3, &["--forward-writes"]);
    let leader = c.wait_leader(Duration::from_secs(30));
    let l = c.client(leader);
    let followers: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();

    // Creating a collection twice with one key: both answers are the first one (created).
    let create = json!({"name": "items", "dimensions": 2});
    let r = post(&l, "/v1/collections", &create, "create-items");
    assert_eq!(r.status, 201, "{r:?}");
    let r = post(&l, "/v1/collections", &create, "create-items");
    assert_eq!(
        r.status, 201,
        "the retry is answered with the first outcome: {r:?}"
    );
    // Without the key it is a new request, and the collection exists.
    let r = l.post("/v1/collections", &create).unwrap();
    assert_eq!(r.error_code(), Some("collection_exists"), "{r:?}");

    // An insert retried after a later update: the retry must not apply again.
    let records = "/v1/collections/items/records";
    let a1 = json!({"id": "a", "vector": [1.0, 0.0], "metadata": {"v": 1}});
    assert!(post(&l, records, &a1, "insert-a").is_success());
    let r = l
        .patch(
            "/v1/collections/items/records/a",
            &json!({"metadata": {"v": 2}}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let r = post(&l, records, &a1, "insert-a");
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        metadata_of(&l, "a"),
        json!({"v": 2}),
        "the retry was applied again"
    );

    // A batch retried after one of its records was deleted: still deleted.
    let batch = json!({"records": [
        {"id": "b0", "vector": [0.0, 1.0]},
        {"id": "b1", "vector": [0.5, 1.0]},
        {"id": "b2", "vector": [1.0, 1.0]},
    ]});
    let path = "/v1/collections/items/records/batch";
    assert!(post(&l, path, &batch, "batch-b").is_success());
    assert!(
        l.delete("/v1/collections/items/records/b1")
            .unwrap()
            .is_success()
    );
    assert!(post(&l, path, &batch, "batch-b").is_success());
    let r = l.get("/v1/collections/items/records/b1").unwrap();
    assert_eq!(r.error_code(), Some("record_not_found"), "{r:?}");

    // A delete retried after the record came back: the record stays.
    let del = |key: &str| {
        l.request_with_headers(
            "DELETE",
            "/v1/collections/items/records/b0",
            None,
            &[("Idempotency-Key", key)],
        )
        .unwrap()
    };
    let first = del("delete-b0");
    assert_eq!(first.body["existed"], true, "{first:?}");
    assert!(
        l.post(records, &json!({"id": "b0", "vector": [0.0, 1.0]}))
            .unwrap()
            .is_success()
    );
    assert!(del("delete-b0").is_success());
    assert!(
        l.get("/v1/collections/items/records/b0")
            .unwrap()
            .is_success()
    );

    // Keys that are not 1–255 visible ASCII characters are refused, and nothing is written.
    for bad in ["", "with space", &"x".repeat(256)] {
        let r = l
            .request_with_headers(
                "POST",
                records,
                Some(
                    json!({"id": "bad", "vector": [1.0, 1.0]})
                        .to_string()
                        .as_bytes(),
                ),
                &[("Idempotency-Key", bad)],
            )
            .unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (400, Some("bad_request")),
            "{bad:?}: {r:?}"
        );
    }
    assert_eq!(
        l.get("/v1/collections/items/records/bad")
            .unwrap()
            .error_code(),
        Some("record_not_found")
    );

    // --forward-writes: a write sent to a follower is forwarded to the leader, key and all; a
    // retry of it through the other follower is not applied again.
    let f1 = c.client(followers[0]);
    let f2 = c.client(followers[1]);
    let c1 = json!({"id": "c", "vector": [0.3, 0.3], "metadata": {"v": 1}});
    let r = post(&f1, records, &c1, "insert-c");
    assert!(r.is_success(), "forwarded write: {r:?}");
    assert_eq!(metadata_of(&l, "c"), json!({"v": 1}));
    assert!(
        l.patch(
            "/v1/collections/items/records/c",
            &json!({"metadata": {"v": 2}})
        )
        .unwrap()
        .is_success()
    );
    let r = post(&f2, records, &c1, "insert-c");
    assert!(r.is_success(), "{r:?}");
    assert_eq!(
        metadata_of(&l, "c"),
        json!({"v": 2}),
        "the forwarded retry applied again"
    );
    // An unkeyed write is forwarded too; a search on a follower is not a write.
    let r = f2
        .post(records, &json!({"id": "d", "vector": [0.1, 0.9]}))
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let r = f2
        .post(
            "/v1/collections/items/search",
            &json!({"id": "d", "k": 1, "consistency": "linearizable"}),
        )
        .unwrap();
    assert_eq!(r.body["node"], followers[1], "{r:?}");
    assert_eq!(r.body["results"][0]["id"], "d");

    // Forwarding cannot loop: a write that was already forwarded once (it carries
    // `needle-forwarded-by`) and reaches a node that is not the leader — two followers that
    // each believe the other leads, or a leader that lost its role while the write was on its
    // way — is not forwarded again: it is answered `not_leader` (one hop at most), and nothing
    // is applied.
    for &f in &followers {
        let r = c
            .client(f)
            .request_with_headers(
                "POST",
                records,
                Some(
                    json!({"id": "looped", "vector": [0.5, 0.5]})
                        .to_string()
                        .as_bytes(),
                ),
                &[("needle-forwarded-by", "99"), ("Idempotency-Key", "loop")],
            )
            .unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (421, Some("not_leader")),
            "node {f} forwarded an already forwarded write: {r:?}"
        );
        assert_eq!(r.body["error"]["leader_id"], leader, "{r:?}");
    }
    assert_eq!(
        l.get("/v1/collections/items/records/looped")
            .unwrap()
            .error_code(),
        Some("record_not_found")
    );
}

#[test]
fn a_retry_of_a_failed_write_is_answered_with_the_same_error() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    let l = c.client(leader);
    let create = json!({"name": "items", "dimensions": 2});
    assert_eq!(l.post("/v1/collections", &create).unwrap().status, 201);
    // The first attempt fails in the state machine (the collection exists) ...
    let r = post(&l, "/v1/collections", &create, "dup");
    assert_eq!(r.error_code(), Some("collection_exists"), "{r:?}");
    // ... and after the collection is dropped, a retry with the key is answered with that
    // first rejection (409 `rejected`, naming it); it is the same request, not applied now.
    assert!(l.delete("/v1/collections/items").unwrap().is_success());
    let r = post(&l, "/v1/collections", &create, "dup");
    assert_eq!((r.status, r.error_code()), (409, Some("rejected")), "{r:?}");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{r:?}"
    );
    assert_eq!(
        l.get("/v1/collections/items").unwrap().error_code(),
        Some("collection_not_found")
    );
}
