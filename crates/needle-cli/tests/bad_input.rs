//! Bad input gets one clear line on stderr, a non-zero exit, and changes nothing: malformed flags,
//! malformed input files (fvecs, npy, JSON Lines), wrong dimensions, invalid values, missing
//! files, records and collections. "Nothing changed" is checked byte for byte on the database's
//! checkpoint and log, and a command that would have made a new file leaves none behind.

mod common;

use std::path::Path;

use common::{fingerprint, needle, vectors, write_fvecs, write_jsonl, write_npy, write_npy_raw};

/// A database with one cosine collection `items` of 20 four-dim records.
fn seeded(dir: &Path) -> String {
    let db = dir.join("t.needle");
    let input = dir.join("seed.jsonl");
    write_jsonl(&input, 20, 4);
    needle([
        "import",
        db.to_str().unwrap(),
        "items",
        input.to_str().unwrap(),
    ])
    .ok();
    db.to_str().unwrap().to_string()
}

/// Runs `args`, expects exit `code` with `needles` in the one-line error, and checks that the
/// database's files are byte-identical afterwards.
#[track_caller]
fn refused(db: &str, args: &[&str], code: i32, needles: &[&str]) {
    let before = fingerprint(Path::new(db));
    needle(args).fails(code, needles);
    assert_eq!(
        fingerprint(Path::new(db)),
        before,
        "{args:?} changed the database"
    );
}

#[test]
fn malformed_command_lines_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded(dir.path());
    refused(
        &db,
        &["serch", &db, "items"],
        2,
        &["unrecognized subcommand 'serch'"],
    );
    refused(&db, &["create", &db, "x"], 2, &["--dim"]);
    refused(
        &db,
        &["create", &db, "x", "--dim", "three"],
        2,
        &["invalid value 'three'"],
    );
    refused(
        &db,
        &["create", &db, "x", "--dim", "3", "--distance", "l1"],
        2,
        &["possible values: cosine, euclidean, dot"],
    );
    refused(&db, &["search", &db, "items"], 2, &["--vector", "--id"]);
    refused(
        &db,
        &[
            "search",
            &db,
            "items",
            "--vector",
            "[1,2,3,4]",
            "--id",
            "r1",
        ],
        2,
        &["cannot be used with"],
    );
    refused(&db, &["delete", &db, "items"], 2, &["<IDS>"]);
    refused(
        &db,
        &["import", &db, "items", "x.jsonl", "--batch-size", "0"],
        2,
        &["--batch-size"],
    );
}

#[test]
fn create_refuses_bad_values_and_makes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.needle");
    let new = new.to_str().unwrap();
    for (args, needle_text) in [
        (vec!["--dim", "0"], "dimensions"),
        (vec!["--dim", "3", "--m", "1"], "m must be in 2..=128"),
        (vec!["--dim", "3", "--ef-search", "0"], "ef_search"),
    ] {
        let mut all = vec!["create", new, "c"];
        all.extend(args);
        needle(&all).fails(1, &[needle_text]);
        assert!(!Path::new(new).exists(), "{all:?} left a file behind");
    }
    needle(["create", new, "bad name!", "--dim", "3"]).fails(1, &["invalid collection name"]);
    assert!(!Path::new(new).exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let db = seeded(dir.path());
    refused(
        &db,
        &["create", &db, "items", "--dim", "4"],
        1,
        &["collection 'items' already exists"],
    );
}

#[test]
fn commands_on_a_missing_file_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.needle");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["search", m, "c", "--vector", "[1]"],
        vec!["get", m, "c", "x"],
        vec!["delete", m, "c", "x"],
        vec!["info", m],
        vec!["compact", m],
        vec!["check", m],
        vec!["export", m, "c"],
    ] {
        needle(&args).fails(1, &["missing.needle does not exist"]);
        assert!(!missing.exists(), "{args:?} created the file");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn wrong_dimensions_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded(dir.path());
    let f = dir.path().join("five.fvecs");
    write_fvecs(&f, &vectors(10, 5));
    refused(
        &db,
        &["import", &db, "items", f.to_str().unwrap()],
        1,
        &["five.fvecs", "row 0", "dimension 5, the collection has 4"],
    );
    // Mixed dimensions inside one file: the error names the first row that differs.
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(
        &mixed,
        "{\"id\":\"a\",\"vector\":[1,2,3,4]}\n{\"id\":\"b\",\"vector\":[1,2,3,4]}\n{\"id\":\"c\",\"vector\":[1,2,3]}\n",
    )
    .unwrap();
    refused(
        &db,
        &["import", &db, "items", mixed.to_str().unwrap()],
        1,
        &["line 3", "dimension 3"],
    );
    assert_eq!(
        needle(["get", &db, "items", "a"]).code,
        1,
        "the valid lines before the bad one were not imported"
    );
    refused(
        &db,
        &["search", &db, "items", "--vector", "[1, 2, 3]"],
        1,
        &["dimension mismatch in collection 'items': expected 4, got 3"],
    );
}

#[test]
fn malformed_input_files_name_the_line_or_offset_and_leave_no_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.needle");
    let n = new.to_str().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            file(
                "bad.jsonl",
                b"{\"id\":\"a\",\"vector\":[1,2]}\n\n{\"id\":\"b\",\"vector\":[1,2]\n",
            ),
            vec![],
            vec!["bad.jsonl: line 3", "EOF while parsing"],
        ),
        (
            file("typo.jsonl", b"{\"id\":\"a\",\"vectors\":[1,2]}\n"),
            vec![],
            vec!["line 1", "unknown field `vectors`"],
        ),
        (
            file(
                "nan.jsonl",
                b"{\"id\":\"a\",\"vector\":[1,2]}\n{\"id\":\"b\",\"vector\":[1,1e300]}\n",
            ),
            vec![],
            vec!["line 2", "number out of range"],
        ),
        (
            file("zero.jsonl", b"{\"id\":\"a\",\"vector\":[0,0]}\n"),
            vec![],
            vec!["line 1", "all zeros"],
        ),
        (
            file(
                "meta.jsonl",
                b"{\"id\":\"a\",\"vector\":[1,0],\"metadata\":[1]}\n",
            ),
            vec![],
            vec!["line 1", "metadata must be a JSON object"],
        ),
        (
            file("noid.jsonl", b"{\"id\":\"\",\"vector\":[1,0]}\n"),
            vec![],
            vec!["line 1", "id is empty"],
        ),
        (file("empty.jsonl", b"\n"), vec![], vec!["no records"]),
        (
            file("cut.fvecs", &{
                let mut b = Vec::new();
                b.extend(2i32.to_le_bytes());
                b.extend(1f32.to_le_bytes());
                b.extend(2f32.to_le_bytes());
                b.extend(2i32.to_le_bytes());
                b.extend(1f32.to_le_bytes());
                b
            }),
            vec![],
            vec!["cut.fvecs: row 1 (byte offset 12)", "ends inside the row"],
        ),
        (
            file("junk.fvecs", b"hello world, not vectors"),
            vec![],
            vec!["row 0 (byte offset 0)", "not an fvecs file?"],
        ),
        (
            file("text.npy", b"not numpy at all"),
            vec![],
            vec!["not a .npy file"],
        ),
        (
            file("what.bin", b"x"),
            vec![],
            vec!["cannot tell the format", "--format"],
        ),
        (
            file("ids.jsonl", b"{\"id\":\"a\",\"vector\":[1,0]}\n"),
            vec!["--ids", "x.txt"],
            vec!["--ids applies to fvecs and npy"],
        ),
    ];
    for (input, extra, needles) in &cases {
        let mut args = vec!["import", n, "c", input.as_str()];
        args.extend(extra);
        needle(&args).fails(1, needles);
        assert!(!new.exists(), "{args:?} left a new file behind");
    }

    // npy: other dtypes, shapes and sizes.
    let npy = |name: &str, descr: &str, shape: &str, data: &[u8]| {
        let p = dir.path().join(name);
        write_npy_raw(&p, descr, shape, data);
        p.to_str().unwrap().to_string()
    };
    let f64s = npy("f64.npy", "<f8", "(2, 2)", &[0u8; 32]);
    let one_d = npy("1d.npy", "<f4", "(4,)", &[0u8; 16]);
    let short = npy("short.npy", "<f4", "(3, 2)", &[0u8; 16]);
    needle(["import", n, "c", &f64s]).fails(1, &["'<f8' is not float32", "astype"]);
    needle(["import", n, "c", &one_d]).fails(1, &["1-D", "2-D array"]);
    needle(["import", n, "c", &short]).fails(1, &["shape (3, 2) needs 24 bytes", "has 16"]);

    // fvecs with an ids file of the wrong length.
    let f = dir.path().join("ok.fvecs");
    write_fvecs(&f, &vectors(3, 2));
    let ids = file("ids.txt", b"a\nb\n");
    needle(["import", n, "c", f.to_str().unwrap(), "--ids", &ids]).fails(
        1,
        &[
            "ids file has 2 lines, fewer than the rows",
            "row 2 has no id",
        ],
    );
    let ids = file("ids4.txt", b"a\nb\nc\nd\n");
    needle(["import", n, "c", f.to_str().unwrap(), "--ids", &ids])
        .fails(1, &["ids file has 4 lines", "has 3 rows"]);
    assert!(!new.exists());

    // The same bad inputs against an existing database change nothing in it.
    let db = seeded(dir.path());
    for (input, extra, _) in &cases {
        let mut args = vec!["import", db.as_str(), "items", input.as_str()];
        args.extend(extra);
        let before = fingerprint(Path::new(&db));
        let out = needle(&args);
        assert_eq!(out.code, 1, "{args:?} should fail: {out:?}");
        assert_eq!(
            fingerprint(Path::new(&db)),
            before,
            "{args:?} changed the database"
        );
    }
}

#[test]
fn import_refuses_flags_that_contradict_an_existing_collection() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded(dir.path());
    let input = dir.path().join("more.npy");
    write_npy(&input, &vectors(5, 4));
    refused(
        &db,
        &[
            "import",
            &db,
            "items",
            input.to_str().unwrap(),
            "--distance",
            "euclidean",
        ],
        1,
        &[
            "collection 'items' exists with another configuration",
            "--distance",
        ],
    );
    refused(
        &db,
        &["import", &db, "items", input.to_str().unwrap(), "--m", "32"],
        1,
        &["--m 32 (it has 16)"],
    );
    // Matching flags are fine.
    needle([
        "import",
        &db,
        "items",
        input.to_str().unwrap(),
        "--distance",
        "cosine",
        "--m",
        "16",
    ])
    .ok();
}

#[test]
fn bad_queries_records_and_collections_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded(dir.path());
    refused(
        &db,
        &["search", &db, "items", "--vector", "[1, 2"],
        1,
        &["--vector: not a JSON array of numbers"],
    );
    refused(
        &db,
        &[
            "search",
            &db,
            "items",
            "--id",
            "r1",
            "--filter",
            "{\"group\": {\"$gt\": [1]}}",
        ],
        1,
        &["invalid filter at 'group.$gt'"],
    );
    refused(
        &db,
        &["search", &db, "items", "--id", "r1", "--filter", "{group}"],
        1,
        &["--filter: not valid JSON"],
    );
    refused(
        &db,
        &["search", &db, "items", "--id", "r1", "-k", "0"],
        1,
        &["invalid argument"],
    );
    refused(
        &db,
        &["search", &db, "items", "--id", "nobody"],
        1,
        &["no record with id 'nobody' in collection 'items'"],
    );
    refused(
        &db,
        &["search", &db, "nothere", "--id", "r1"],
        1,
        &["collection 'nothere' does not exist"],
    );
    refused(
        &db,
        &["get", &db, "items", "nobody"],
        1,
        &["no record with id 'nobody'"],
    );
    refused(
        &db,
        &["delete", &db, "nothere", "r1"],
        1,
        &["collection 'nothere' does not exist"],
    );
    refused(
        &db,
        &["compact", &db, "nothere"],
        1,
        &["collection 'nothere' does not exist"],
    );
    refused(
        &db,
        &["export", &db, "nothere"],
        1,
        &["collection 'nothere' does not exist"],
    );
    let taken = dir.path().join("taken.jsonl");
    std::fs::write(&taken, "keep me").unwrap();
    refused(
        &db,
        &["export", &db, "items", "--output", taken.to_str().unwrap()],
        1,
        &["taken.jsonl", "exists"],
    );
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
}

#[test]
fn a_file_that_is_not_a_database_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.needle");
    std::fs::write(&notes, "shopping: eggs, milk\n").unwrap();
    for args in [
        vec!["check", notes.to_str().unwrap()],
        vec!["info", notes.to_str().unwrap()],
        vec!["create", notes.to_str().unwrap(), "c", "--dim", "3"],
    ] {
        needle(&args).fails(1, &["notes.needle", "offset 0"]);
    }
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "shopping: eggs, milk\n"
    );
}
