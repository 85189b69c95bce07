//! Every local command end to end, the `needle` binary run as a process and its output checked:
//! create, import (JSON Lines, fvecs with and without an ids file, npy), search (by vector, by
//! id, with a filter, k and ef), get, delete, info, compact, check and export, in table and
//! `--json` form.

mod common;

use common::{needle, testdata, vectors, write_fvecs, write_jsonl, write_npy};
use serde_json::json;

#[test]
fn create_then_info_shows_the_collection_and_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let out = needle([
        db.to_str().unwrap(),
        "create",
        "docs",
        "--dim",
        "3",
        "--distance",
        "euclidean",
        "--m",
        "8",
        "--ef-search",
        "40",
    ]);
    // The file comes first after the subcommand; a misplaced one is a usage error.
    out.fails(2, &["unrecognized subcommand"]);

    let out = needle([
        "create",
        db.to_str().unwrap(),
        "docs",
        "--dim",
        "3",
        "--distance",
        "euclidean",
        "--m",
        "8",
        "--ef-search",
        "40",
    ]);
    assert!(
        out.ok().contains("created collection 'docs'"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(new file)"));
    needle(["create", db.to_str().unwrap(), "more", "--dim", "5"]).ok();

    let table = needle(["info", db.to_str().unwrap()]);
    let text = table.ok();
    assert!(text.contains("2 collections"), "{text}");
    let docs = text
        .lines()
        .find(|l| l.starts_with("docs"))
        .expect("a docs row");
    let cells: Vec<&str> = docs.split_whitespace().collect();
    assert_eq!(
        cells,
        ["docs", "3", "euclidean", "0", "0", "8", "200", "40"]
    );

    let info = needle(["info", db.to_str().unwrap(), "--json"]).json();
    assert_eq!(info["collections"][0]["name"], "docs");
    assert_eq!(info["collections"][0]["distance"], "euclidean");
    assert_eq!(info["collections"][0]["m"], 8);
    assert_eq!(info["collections"][1]["name"], "more");
    assert_eq!(info["collections"][1]["dimensions"], 5);
    assert_eq!(info["collections"][1]["distance"], "cosine");
    assert!(info["file_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn jsonl_import_search_get_delete_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let db = db.to_str().unwrap();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, 60, 4);

    let out = needle(["import", db, "items", input.to_str().unwrap()]);
    let text = out.ok();
    assert!(text.contains("imported 60 records (4 dims)"), "{text}");
    assert!(text.contains("(new collection)"), "{text}");

    // By vector: the nearest to r7's own vector is r7 (cosine distance 0).
    let v7 = vectors(60, 4)[7].clone();
    let hits = needle([
        "--json",
        "search",
        db,
        "items",
        "--vector",
        &serde_json::to_string(&v7).unwrap(),
        "-k",
        "3",
    ])
    .json();
    let results = hits["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], "r7");
    assert!(results[0]["distance"].as_f64().unwrap().abs() < 1e-5);
    assert_eq!(results[0]["metadata"], json!({"group": 1, "i": 7}));

    // By id, with a filter and ef: every result matches the filter.
    let hits = needle([
        "search",
        db,
        "items",
        "--id",
        "r7",
        "-k",
        "5",
        "--ef",
        "100",
        "--filter",
        r#"{"group": 2}"#,
        "--json",
    ])
    .json();
    let results = hits["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["metadata"]["group"] == 2));

    // The table form: a header, ranks, and a summary line.
    let table = needle(["search", db, "items", "--id", "r7", "-k", "2"]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("rank") && lines[0].contains("distance"));
    assert!(lines[1].trim_start().starts_with("1  r7"), "{}", lines[1]);
    assert!(lines[3].starts_with("2 results in"), "{}", lines[3]);

    let got = needle(["get", db, "items", "r7", "--json"]).json();
    assert_eq!(got["id"], "r7");
    assert_eq!(got["vector"].as_array().unwrap().len(), 4);
    assert_eq!(got["metadata"]["i"], 7);
    let got = needle(["get", db, "items", "r7"]);
    assert!(
        got.ok().contains("metadata  {\"group\":1,\"i\":7}"),
        "{}",
        got.stdout
    );

    let del = needle(["delete", db, "items", "r7", "nope"]);
    assert_eq!(del.ok(), "deleted 1 of 2 from 'items'; not found: nope\n");
    needle(["get", db, "items", "r7"]).fails(1, &["no record with id 'r7'"]);
    let del = needle(["delete", db, "items", "r8", "--json"]).json();
    assert_eq!(del, json!({"deleted": ["r8"], "not_found": []}));

    // Export, then import the export into a new file: the same records come back.
    let exported = needle(["export", db, "items"]);
    let lines: Vec<&str> = exported.ok().lines().collect();
    assert_eq!(lines.len(), 58);
    let out_path = dir.path().join("out.jsonl");
    needle([
        "export",
        db,
        "items",
        "--output",
        out_path.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        exported.stdout,
        "--output writes what stdout shows"
    );
    let copy = dir.path().join("copy.needle");
    let copy = copy.to_str().unwrap();
    needle(["import", copy, "items", out_path.to_str().unwrap()]).ok();
    let info = needle(["info", copy, "--json"]).json();
    assert_eq!(info["collections"][0]["count"], 58);
    for id in ["r0", "r30", "r59"] {
        let a = needle(["get", db, "items", id, "--json"]).json();
        let b = needle(["get", copy, "items", id, "--json"]).json();
        assert_eq!(a, b, "record {id} survives export and import");
    }
}

#[test]
fn fvecs_and_npy_imports_agree_on_real_glove_rows() {
    // The first 300 rows of the committed GloVe subset, with their words as ids.
    let dir = tempfile::tempdir().unwrap();
    let base = testdata("glove50-10k");
    let all = std::fs::read(base.join("base.fvecs")).unwrap();
    let rows: Vec<Vec<f32>> = all
        .chunks_exact(4 + 50 * 4)
        .take(300)
        .map(|r| {
            r[4..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect();
    let words: Vec<String> = std::fs::read_to_string(base.join("base_words.txt"))
        .unwrap()
        .lines()
        .take(300)
        .map(String::from)
        .collect();
    let fvecs = dir.path().join("g.fvecs");
    let npy = dir.path().join("g.npy");
    let ids = dir.path().join("words.txt");
    write_fvecs(&fvecs, &rows);
    write_npy(&npy, &rows);
    std::fs::write(&ids, words.join("\n") + "\n").unwrap();

    let db = dir.path().join("g.needle");
    let db = db.to_str().unwrap();
    let out = needle([
        "import",
        db,
        "by_word",
        fvecs.to_str().unwrap(),
        "--ids",
        ids.to_str().unwrap(),
        "--batch-size",
        "64",
    ]);
    assert!(
        out.ok().contains("imported 300 records (50 dims)"),
        "{}",
        out.stdout
    );
    let out = needle([
        "import",
        db,
        "from_npy",
        npy.to_str().unwrap(),
        "--ids",
        ids.to_str().unwrap(),
        "--json",
    ])
    .json();
    assert_eq!(out["imported"], 300);
    assert_eq!(out["created_collection"], true);
    // Without --ids, the ids are row numbers.
    needle(["import", db, "by_row", fvecs.to_str().unwrap()]).ok();

    let word = words[42].as_str();
    let a = needle(["search", db, "by_word", "--id", word, "--json"]).json();
    let b = needle(["search", db, "from_npy", "--id", word, "--json"]).json();
    assert_eq!(
        a["results"], b["results"],
        "the same vectors give the same answers"
    );
    assert_eq!(a["results"][0]["id"], word);
    let c = needle(["search", db, "by_row", "--id", "42", "--json"]).json();
    let ids_by_row: Vec<String> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| words[r["id"].as_str().unwrap().parse::<usize>().unwrap()].to_string())
        .collect();
    let ids_by_word: Vec<String> = a["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids_by_row, ids_by_word);

    // A second import into an existing collection upserts: the count stays.
    needle([
        "import",
        db,
        "by_word",
        npy.to_str().unwrap(),
        "--ids",
        ids.to_str().unwrap(),
    ])
    .ok();
    let info = needle(["info", db, "--json"]).json();
    let by_word = info["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "by_word")
        .unwrap();
    assert_eq!(by_word["count"], 300);
    assert_eq!(by_word["deleted"], 300, "replaced records wait for compact");
}

#[test]
fn compact_reclaims_deleted_records_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let db = db.to_str().unwrap();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, 200, 16);
    needle(["import", db, "items", input.to_str().unwrap()]).ok();
    let ids: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let mut args = vec!["delete".to_string(), db.into(), "items".into()];
    args.extend(ids);
    needle(&args).ok();
    let before = needle(["info", db, "--json"]).json();
    assert_eq!(before["collections"][0]["count"], 100);
    assert_eq!(before["collections"][0]["deleted"], 100);

    let out = needle(["compact", db]);
    assert!(
        out.ok().contains("compacted 'items': removed 100 deleted"),
        "{}",
        out.stdout
    );
    let after = needle(["info", db, "--json"]).json();
    assert_eq!(after["collections"][0]["count"], 100);
    assert_eq!(after["collections"][0]["deleted"], 0);
    let size = |v: &serde_json::Value| {
        v["file_bytes"].as_u64().unwrap() + v["wal_bytes"].as_u64().unwrap()
    };
    assert!(size(&after) < size(&before), "{after} vs {before}");
    // Searching still works after the rebuild.
    let hits = needle(["search", db, "items", "--id", "r150", "--json"]).json();
    assert_eq!(hits["results"][0]["id"], "r150");
    let out = needle(["compact", db, "items", "--json"]).json();
    assert_eq!(out["collections"][0]["removed"], 0);
}

#[test]
fn check_verifies_a_good_file_and_names_the_offset_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.needle");
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, 100, 8);
    needle([
        "import",
        db.to_str().unwrap(),
        "items",
        input.to_str().unwrap(),
    ])
    .ok();
    needle(["delete", db.to_str().unwrap(), "items", "r1"]).ok();

    let out = needle(["check", db.to_str().unwrap()]);
    let text = out.ok();
    assert!(text.starts_with("ok: "), "{text}");
    assert!(text.contains("every checksum verified"), "{text}");
    assert!(text.contains("1 collection, 99 records"), "{text}");
    let report = needle(["check", db.to_str().unwrap(), "--json"]).json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["records"], 99);

    // Flip one byte in the middle of the checkpoint: check names the file and an offset.
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&db, &bytes).unwrap();
    let err = needle(["check", db.to_str().unwrap()]);
    err.fails(1, &["corrupted file", "t.needle", "at offset"]);
    let json = needle(["check", db.to_str().unwrap(), "--json"]);
    assert_eq!(json.code, 1);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["offset"].as_u64().unwrap() <= bytes.len() as u64);

    // Other commands refuse the damaged file the same way, and do not repair it silently.
    needle(["info", db.to_str().unwrap()]).fails(1, &["corrupted file", "at offset"]);
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[test]
fn help_lists_every_command() {
    let out = needle(["--help"]);
    let text = out.ok();
    for cmd in [
        "demo", "create", "import", "search", "get", "delete", "info", "compact", "check", "export",
    ] {
        assert!(text.contains(cmd), "help lacks {cmd}: {text}");
    }
    assert!(needle(["--version"]).ok().starts_with("needle "));
}
