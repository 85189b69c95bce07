//! `needle create` and `needle index create|drop` with `--http ADDR` (issue 13): the same
//! commands on a cluster, sent to a follower (so that they follow the leader), printing what
//! the file commands print (for `create`, the same collection parameters).

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::needle;

#[test]
fn create_and_index_commands_on_a_cluster_print_what_they_print_on_a_file() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let http = c.node(follower).http.to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.needle");
    let f = file.to_str().unwrap();

    let params = ["--dim", "2", "--distance", "euclidean", "--m", "8"];
    let local = needle(["create", f, "items"].iter().chain(&params))
        .ok()
        .to_string();
    let remote = needle(["create", "--http", &http, "items"].iter().chain(&params))
        .ok()
        .to_string();
    assert!(local.contains("2 dims, euclidean, m=8"), "{local}");
    // The same parameters; where the file command names the file, this one names the cluster.
    let after = |s: &str| s.split_once(": ").map(|(_, rest)| rest.to_string());
    assert!(
        remote.starts_with("created collection 'items' on the cluster: "),
        "{remote}"
    );
    assert_eq!(after(&remote), after(&local), "{local}{remote}");
    // Twice: the collection exists, a typed refusal, nothing else.
    needle(["create", "--http", &http, "items", "--dim", "2"]).fails(1, &["exists"]);
    // --json: the collection as the cluster has it.
    let j = needle(["--json", "create", "--http", &http, "other", "--dim", "3"]).json();
    assert_eq!(j["collection"]["dimensions"], 3, "{j}");

    for i in 0..20 {
        let (id, vector) = (format!("r{i}"), format!("[{i}.0, 1.0]"));
        let metadata = format!("{{\"lang\": \"{}\"}}", ["de", "en", "fr"][i % 3]);
        let rest = ["items", &id, "--vector", &vector, "--metadata", &metadata];
        needle(["insert", f].iter().chain(&rest)).ok();
        needle(["insert", "--http", &http].iter().chain(&rest)).ok();
    }

    let args = ["lang", "keyword"];
    let local = needle(["index", "create", f, "items"].iter().chain(&args))
        .ok()
        .to_string();
    let remote = needle(
        ["index", "create", "--http", &http, "items"]
            .iter()
            .chain(&args),
    )
    .ok()
    .to_string();
    assert!(local.contains("20 records, 3 distinct values"), "{local}");
    assert_eq!(remote, local);
    // An index already there: the same typed refusal on both.
    needle([
        "index", "create", "--http", &http, "items", "lang", "keyword",
    ])
    .fails(1, &["lang"]);
    let filtered = needle([
        "count",
        "--http",
        &http,
        "items",
        "--filter",
        r#"{"lang": "de"}"#,
    ]);
    assert!(filtered.ok().contains('7'), "{filtered:?}");

    let local = needle(["index", "drop", f, "items", "lang"])
        .ok()
        .to_string();
    let remote = needle(["index", "drop", "--http", &http, "items", "lang"])
        .ok()
        .to_string();
    assert_eq!(remote, local);
    let j = needle(["--json", "index", "drop", "--http", &http, "items", "lang"]);
    j.fails(1, &["lang"]);
    // With --http there is no FILE: a fourth positional is refused, exit 2.
    needle(["index", "drop", "--http", &http, "items", "lang", "extra"]).fails(2, &["no FILE"]);
}
