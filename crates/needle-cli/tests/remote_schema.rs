//! `needle create` and `needle index create|drop` with `--http ADDR` (issue 13): the same
//! commands on a cluster, sent to a follower (so that they follow the leader), printing what
//! the file commands print (for `create`, the same collection parameters).

mod common;

use common::cluster::Cluster;
use common::needle;

#[test]
fn create_and_index_commands_on_a_cluster_print_what_they_print_on_a_file() {
    let c = Cluster::start(3, &[]);
    let (_, http) = c.leader_and_follower_http();
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

/// `needle import --http`: the same input imported into a file and, through a follower in
/// batches, into a cluster gives the same records (`export` byte for byte); importing it again
/// replaces (upserts) rather than adds; a bad input or a contradicting flag sends nothing.
#[test]
fn import_on_a_cluster_holds_what_import_on_a_file_holds() {
    let c = Cluster::start(3, &[]);
    let (_, http) = c.leader_and_follower_http();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.needle");
    let f = file.to_str().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..1_000)
        .map(|i| {
            let v = [i as f32 * 0.01 + 0.5, 1.0, (i % 7) as f32, -0.25];
            format!(
                r#"{{"id": "r{i}", "vector": [{}, {}, {}, {}], "metadata": {{"tag": "t{}"}}}}"#,
                v[0],
                v[1],
                v[2],
                v[3],
                i % 5
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let inp = input.to_str().unwrap();

    let local = needle(["import", f, "items", inp, "--batch-size", "128"])
        .ok()
        .to_string();
    let remote = needle([
        "import",
        "--http",
        &http,
        "items",
        inp,
        "--batch-size",
        "128",
    ])
    .ok()
    .to_string();
    assert!(
        local.starts_with("imported 1000 records (4 dims)"),
        "{local}"
    );
    assert!(
        remote.starts_with("imported 1000 records (4 dims) from ")
            && remote.contains("into 'items' (new collection) on the cluster")
            && remote
                .trim_end()
                .ends_with("the collection has 1000 records"),
        "{remote}"
    );
    let export_local = needle(["export", f, "items"]).ok().to_string();
    let export_remote = needle(["export", "--http", &http, "items"])
        .ok()
        .to_string();
    assert_eq!(export_local.lines().count(), 1_000);
    // The same lines (a file exports in its own order, `--http` pages in id order).
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let (a, b) = (sorted(&export_local), sorted(&export_remote));
    if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
        panic!("the cluster holds other records:\nfile:    {x}\ncluster: {y}");
    }
    assert_eq!(a.len(), b.len());

    // Again: an upsert of the same ids, the count stays.
    let again = needle(["--json", "import", "--http", &http, "items", inp]).json();
    assert_eq!(
        (again["imported"].as_u64(), again["count"].as_u64()),
        (Some(1_000), Some(1_000))
    );
    assert_eq!(again["created_collection"], false);

    // A flag that contradicts the collection, and a bad line: refused, nothing sent.
    needle(["import", "--http", &http, "items", inp, "--m", "32"])
        .fails(1, &["--m 32 (it has 16)"]);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{}\n{{\"id\": \"x\", \"vector\": [1.0]}}\n", lines[0]),
    )
    .unwrap();
    needle(["import", "--http", &http, "other", bad.to_str().unwrap()]).fails(1, &["line 2"]);
    let count = needle(["count", "--http", &http, "items"]).ok().to_string();
    assert!(count.contains("1000"), "{count}");
    // The collection of the refused import was never created.
    needle(["count", "--http", &http, "other"]).fails(1, &["other"]);
}
