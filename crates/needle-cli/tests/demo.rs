//! `needle demo` on the committed word embeddings (testdata/words-minilm-4k): it builds, searches
//! by word, filters, deletes, reopens and searches again, and leaves a file that the other
//! commands read.

mod common;

use common::{needle, testdata};

#[test]
fn demo_runs_on_the_committed_words_and_leaves_a_usable_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("words.needle");
    let data = testdata("words-minilm-4k");
    let out = needle([
        "demo",
        "--data",
        data.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ]);
    let text = out.ok();
    for expected in [
        "data     4000 words as 384-dim",
        "4000 records with metadata",
        "recall   ",
        "search   nearest to 'royal'",
        "where {\"length\":{\"$gte\":8}}",
        "where {\"initial\":\"r\",\"length\":{\"$lte\":6}}",
        "delete   '",
        "reopen   ",
        "3999 records, graph loaded (not rebuilt), 1 log record replayed",
        "is gone",
        "done in",
        "next     needle info",
    ] {
        assert!(
            text.contains(expected),
            "demo output lacks {expected:?}:\n{text}"
        );
    }
    // Every step reports its time in brackets.
    let timed = text.lines().filter(|l| l.trim_end().ends_with(']')).count();
    assert!(timed >= 8, "{text}");
    // Recall against the exact ground truth is printed and high.
    let recall: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("recall   "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a recall figure");
    assert!(recall > 0.9, "recall {recall}");

    // The deleted word is the first hit of the first search; it is gone from the file.
    let victim = text
        .lines()
        .find_map(|l| l.strip_prefix("delete   '"))
        .and_then(|l| l.split('\'').next())
        .expect("the deleted word");
    needle(["get", file.to_str().unwrap(), "words", victim]).fails(1, &["no record"]);
    let info = needle(["info", file.to_str().unwrap(), "--json"]).json();
    assert_eq!(info["collections"][0]["count"], 3999);
    assert!(
        needle(["check", file.to_str().unwrap()])
            .ok()
            .starts_with("ok: ")
    );
    let hits = needle([
        "search",
        file.to_str().unwrap(),
        "words",
        "--id",
        "queens",
        "-k",
        "3",
        "--json",
    ])
    .json();
    assert_eq!(hits["results"][0]["id"], "queens");
}

#[test]
fn demo_refuses_an_existing_file_and_an_unknown_word() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.needle");
    std::fs::write(&file, "precious").unwrap();
    let data = testdata("words-minilm-4k");
    needle([
        "demo",
        "--data",
        data.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ])
    .fails(1, &["mine.needle already exists"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    needle(["demo", "--data", data.to_str().unwrap(), "--word", "zzzzqx"])
        .fails(1, &["'zzzzqx' is not among the 4200 words"]);
    needle(["demo", "--data", dir.path().to_str().unwrap()]).fails(1, &["base.fvecs"]);
}

#[test]
fn cluster_demo_kills_the_leader_and_loses_nothing() {
    let data = testdata("words-minilm-4k");
    let out = needle([
        "demo",
        "--cluster",
        "--data",
        data.to_str().unwrap(),
        "--records",
        "600",
    ]);
    let text = out.ok();
    for expected in [
        "cluster  3 `needle serve` processes",
        "elect    node ",
        "insert   200 records one per request",
        "insert   400 records in batches of 500",
        "search   nearest to 'royal'",
        "latency  200 searches",
        "with SIGKILL; node ",
        "first write acknowledged",
        "restart  node ",
        "verify   all 701 acknowledged writes are on each of the 3 nodes; state checksums equal",
        "stop     every node shut down",
    ] {
        assert!(
            text.contains(expected),
            "cluster demo output lacks {expected:?}:\n{text}"
        );
    }
}
