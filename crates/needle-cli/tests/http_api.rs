//! The HTTP API of a three-node cluster, end to end through real processes: every endpoint's
//! happy path, typed errors with the right status codes (400, 401, 404, 409, 413, 415, 421),
//! a write to a follower naming the leader's HTTP address, bad writes changing nothing,
//! follower reads, leadership transfer, and `needle cluster status`.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::needle;
use serde_json::{Value, json};

#[test]
fn the_api_answers_every_endpoint_and_every_error_with_typed_json() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut c = Cluster::start(
        3,
        &[
            "--max-body",
            "4096",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    c.wait_http(1);
    // Without the token: 401.
    let anonymous = needle_cli::client::Client::new(c.node(1).http);
    let r = anonymous.get("/v1/status").unwrap();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.error_code(), Some("unauthorized"));
    c.token = Some("s3cret-token".into());

    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let l = c.client(leader);
    let f = c.client(follower);
    // A member's status: `removed` is null (set when a member told a removed node).
    let r = f.get("/v1/status").unwrap();
    assert_eq!(r.body.get("removed"), Some(&json!(null)), "{r:?}");

    // Collections.
    let r = l
        .post(
            "/v1/collections",
            &json!({"name": "docs", "dimensions": 3, "distance": "euclidean", "m": 8}),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["collection"]["distance"], "euclidean");
    let r = l
        .post("/v1/collections", &json!({"name": "docs", "dimensions": 3}))
        .unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("collection_exists")));
    let r = l
        .post(
            "/v1/collections",
            &json!({"name": "bad name", "dimensions": 3}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_collection_name"))
    );
    let r = l
        .post("/v1/collections", &json!({"name": "x", "dimensions": 0}))
        .unwrap();
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_argument")));
    let r = l
        .post("/v1/collections", &json!({"name": "x", "dims": 3}))
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("bad_request")),
        "{r:?}"
    );

    // A write to a follower: 421 naming the leader's id and HTTP address; nothing written.
    let r = f
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "a", "vector": [1, 0, 0]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (421, Some("not_leader")),
        "{r:?}"
    );
    assert_eq!(r.body["error"]["leader_id"], leader);
    assert_eq!(r.leader_http(), Some(c.node(leader).http));

    // Records: insert, batch, get, update, delete.
    let r = l
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "a", "vector": [1, 0, 0], "metadata": {"n": 1}}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert!(r.body["applied_index"].as_u64().unwrap() > 0);
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("b{i}"), "vector": [i as f32, 1.0, 0.5], "metadata": {"n": i}}))
        .collect();
    let r = l
        .post(
            "/v1/collections/docs/records/batch",
            &json!({ "records": batch }),
        )
        .unwrap();
    assert_eq!(r.body["inserted"], 20, "{r:?}");
    let r = l
        .patch(
            "/v1/collections/docs/records/a",
            &json!({"metadata": {"n": 100}}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let r = l
        .patch("/v1/collections/docs/records/zz", &json!({"metadata": {}}))
        .unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("record_not_found")));
    let r = f.get("/v1/collections/docs/records/a").unwrap();
    assert_eq!(
        r.body["metadata"]["n"], 100,
        "linearizable read on a follower: {r:?}"
    );
    assert_eq!(r.body["vector"], json!([1.0, 0.0, 0.0]));
    let r = l.delete("/v1/collections/docs/records/b0").unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["existed"], true);
    let r = l.delete("/v1/collections/docs/records/b0").unwrap();
    assert_eq!(
        r.body["existed"], false,
        "deleting twice is not an error: {r:?}"
    );
    let r = l.get("/v1/collections/docs/records/b0").unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("record_not_found")));

    // Bad writes change nothing.
    let count = |c: &needle_cli::client::Client| {
        c.get("/v1/collections/docs").unwrap().body["count"]
            .as_u64()
            .unwrap()
    };
    let before = count(&l);
    assert_eq!(before, 20);
    let r = l
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "w", "vector": [1, 2]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("dimension_mismatch")),
        "{r:?}"
    );
    let r = l
        .post(
            "/v1/collections/docs/records/batch",
            &json!({"records": [{"id": "ok", "vector": [1, 2, 3]}, {"id": "bad", "vector": [1]}]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("dimension_mismatch"))
    );
    assert_eq!(r.body["error"]["record"], 1);
    let r = l
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "", "vector": [1, 2, 3]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_id")),
        "{r:?}"
    );
    let r = l
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "m", "vector": [1, 2, 3], "metadata": [1]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_metadata")),
        "{r:?}"
    );
    let r = l
        .request(
            "POST",
            "/v1/collections/docs/records",
            Some(b"{\"id\": \"x\", "),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("bad_request")),
        "{r:?}"
    );
    let big = json!({"id": "big", "vector": vec![0.5f32; 5000]});
    let r = l.post("/v1/collections/docs/records", &big).unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (413, Some("payload_too_large")),
        "{r:?}"
    );
    let r = l
        .post(
            "/v1/collections/nothere/records",
            &json!({"id": "a", "vector": [1, 2, 3]}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (404, Some("collection_not_found"))
    );
    assert_eq!(count(&l), before);
    assert_eq!(count(&f), before);

    // A body without a JSON content type: 415 (sent by hand).
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(c.node(leader).http).unwrap();
        let body = r#"{"vector":[1,0,0]}"#;
        write!(
            s,
            "POST /v1/collections/docs/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 415"), "{out}");
        assert!(out.contains("unsupported_media_type"), "{out}");
    }

    // Search: by vector and by id, filter, k, ef, follower consistency; bad filters.
    let r = l
        .post(
            "/v1/collections/docs/search",
            &json!({"vector": [1, 0, 0], "k": 3}),
        )
        .unwrap();
    assert_eq!(r.body["results"][0]["id"], "a", "{r:?}");
    let r = f
        .post(
            "/v1/collections/docs/search",
            &json!({"id": "b5", "k": 4, "ef": 50, "filter": {"n": {"$gte": 10}}, "consistency": "follower", "include_vectors": true}),
        )
        .unwrap();
    let hits = r.body["results"].as_array().unwrap();
    assert_eq!(hits.len(), 4, "{r:?}");
    assert!(
        hits.iter()
            .all(|h| h["metadata"]["n"].as_u64().unwrap() >= 10)
    );
    assert_eq!(hits[0]["vector"].as_array().unwrap().len(), 3);
    let r = l
        .post(
            "/v1/collections/docs/search",
            &json!({"vector": [1, 0, 0], "filter": {"n": {"$gt": [1]}}}),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("invalid_filter")),
        "{r:?}"
    );
    let r = l
        .post(
            "/v1/collections/docs/search",
            &json!({"vector": [1, 0, 0], "id": "a"}),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    let r = l
        .post("/v1/collections/docs/search", &json!({"vector": [1, 0]}))
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("dimension_mismatch"))
    );

    // Listing, ids, compaction, unknown endpoints.
    let r = f.get("/v1/collections?consistency=follower").unwrap();
    assert_eq!(r.body["collections"][0]["name"], "docs", "{r:?}");
    let r = f.get("/v1/collections/docs/ids").unwrap();
    assert_eq!(r.body["count"], 20);
    let r = l.post("/v1/collections/docs/compact", &json!({})).unwrap();
    assert!(r.is_success(), "{r:?}");
    let r = l.get("/v1/nothing").unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("no_such_endpoint")));

    // `needle cluster status` (a process) shows three nodes and one leader.
    let out = needle([
        "cluster",
        "status",
        "--http",
        &c.node(follower).http.to_string(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let text = out.ok();
    let roles: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{text}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "follower").count(),
        2,
        "{text}"
    );
    let json = needle([
        "cluster",
        "status",
        "--json",
        "--http",
        &c.node(leader).http.to_string(),
        "--token-file",
        token_file.to_str().unwrap(),
    ])
    .json();
    assert_eq!(json["nodes"].as_array().unwrap().len(), 3);

    // Leadership transfer to the follower; then the old leader answers writes with 421.
    let r = l
        .post("/v1/cluster/leader", &json!({"to": follower}))
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(c.wait_leader(Duration::from_secs(30)), follower);
    let r = l
        .post(
            "/v1/collections/docs/records",
            &json!({"id": "late", "vector": [1, 1, 1]}),
        )
        .unwrap();
    assert_eq!(r.error_code(), Some("not_leader"), "{r:?}");
    assert_eq!(r.body["error"]["leader_id"], follower);

    // A node down: cluster status reports it unreachable rather than failing.
    c.kill(leader);
    let out = needle([
        "cluster",
        "status",
        "--http",
        &c.node(follower).http.to_string(),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.ok().contains("unreachable"), "{}", out.stdout);
    // An unreachable first node is an error.
    c.kill(follower);
    needle([
        "cluster",
        "status",
        "--http",
        &c.node(follower).http.to_string(),
    ])
    .fails(1, &["cannot reach"]);
}

#[test]
fn membership_add_and_remove_a_node_over_http() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    c.write(
        leader,
        "/v1/collections",
        &json!({"name": "m", "dimensions": 2}),
        Duration::from_secs(20),
    )
    .expect("create");
    for i in 0..20 {
        c.write(
            leader,
            "/v1/collections/m/records",
            &json!({"id": format!("x{i}"), "vector": [1.0, i as f32]}),
            Duration::from_secs(20),
        )
        .expect("write");
    }
    // A fourth node: started with no founders of its own, then added through the leader.
    let ports = common::cluster::free_ports(2);
    let node = common::cluster::Node::new(4, ports, c.dir.path());
    c.nodes.push(node);
    let mut cmd = c.command(4);
    cmd.arg("--join");
    let log = std::fs::File::create(&c.node(4).log).unwrap();
    c.adopt(4, cmd.stderr(log).spawn().expect("start node 4"));
    let leader = c.wait_leader(Duration::from_secs(30));
    let n4 = c.node(4);
    let r = c
        .client(leader)
        .post(
            "/v1/cluster/nodes",
            &json!({"id": 4, "raft": n4.raft.to_string(), "http": n4.http.to_string()}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["voters"], json!([1, 2, 3, 4]));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .client(4)
            .get("/v1/collections/m?consistency=follower")
            .unwrap();
        if r.body["count"] == 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never caught up: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = c.client(leader).delete("/v1/cluster/nodes/4").unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.body["voters"], json!([1, 2, 3]));
    // The removed node serves nothing once it applies its removal: a typed 503 `stopped` that
    // says why (not a 500), so that a client goes to another node.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .client(4)
            .get("/v1/collections/m?consistency=linearizable")
            .unwrap();
        if (r.status, r.error_code()) == (503, Some("stopped")) {
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("removed"), "{r:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 4 never said it stopped: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
