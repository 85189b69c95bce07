//! Needle's main job on an embedded default: build a `.needle` file from real word embeddings,
//! search it (plain and with a metadata filter), delete, reopen the file and search again.
//!
//! Reads `../shared/data/words-minilm` when it exists, else the committed subset
//! `testdata/words-minilm-4k`. Run it with:
//!
//! ```sh
//! cargo run --release -p needle-core --example quickstart [-- FILE.needle]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use needle_core::{Database, Filter, Record, SearchOptions};
use serde_json::json;

fn read_fvecs(path: &Path) -> std::io::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= bytes.len() {
        let dim = i32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        pos += 4;
        let Some(row) = bytes.get(pos..pos + 4 * dim) else {
            break;
        };
        out.push(
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
        pos += 4 * dim;
    }
    Ok(out)
}

fn data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = root.join("../shared/data/words-minilm");
    if shared.join("base.fvecs").exists() {
        shared
    } else {
        root.join("testdata/words-minilm-4k")
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("needle-quickstart.needle"));
    for suffix in ["", "-wal", "-lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let dir = data_dir();
    let vectors = read_fvecs(&dir.join("base.fvecs"))?;
    let words: Vec<String> = std::fs::read_to_string(dir.join("base_words.txt"))?
        .lines()
        .map(String::from)
        .collect();
    println!(
        "data: {} words × {} dims from {}",
        vectors.len(),
        vectors[0].len(),
        dir.display()
    );

    let t = Instant::now();
    let db = Database::open(&file)?;
    db.create_collection("words", vectors[0].len())?;
    let records: Vec<Record> = vectors
        .iter()
        .zip(&words)
        .map(|(v, w)| {
            Record::new(
                w.clone(),
                v.clone(),
                Some(json!({"length": w.len(), "initial": &w[..1]})),
            )
        })
        .collect();
    for chunk in records.chunks(5_000) {
        db.insert_batch("words", chunk.to_vec())?;
    }
    db.checkpoint()?;
    println!(
        "built {} in {:.2?}: {} records, {} bytes",
        file.display(),
        t.elapsed(),
        db.count("words")?,
        std::fs::metadata(&file)?.len()
    );

    let show = |title: &str,
                db: &Database,
                word: &str,
                opts: &SearchOptions|
     -> Result<(), Box<dyn std::error::Error>> {
        let query = db.get("words", word)?.ok_or("word not in the data")?.vector;
        let t = Instant::now();
        let hits = db.search_with("words", &query, 6, opts)?;
        let list: Vec<String> = hits
            .iter()
            .filter(|h| h.id != word)
            .take(5)
            .map(|h| format!("{} ({:.3})", h.id, h.distance))
            .collect();
        println!("{title} [{:.2?}]: {}", t.elapsed(), list.join(", "));
        Ok(())
    };
    let word = if words.iter().any(|w| w == "king") {
        "king"
    } else {
        words[0].as_str()
    };
    show(
        &format!("nearest to '{word}'"),
        &db,
        word,
        &SearchOptions::new(),
    )?;
    let filter = Filter::parse(&json!({"length": {"$gte": 7}}))?;
    show(
        &format!("nearest to '{word}' with length >= 7"),
        &db,
        word,
        &SearchOptions::new().with_filter(filter),
    )?;

    let nearest = db.search("words", &db.get("words", word)?.ok_or("missing")?.vector, 2)?;
    let victim = nearest
        .iter()
        .find(|h| h.id != word)
        .map(|h| h.id.clone())
        .ok_or("no neighbour")?;
    db.delete("words", &victim)?;
    println!("deleted '{victim}'");
    drop(db);

    let t = Instant::now();
    let db = Database::open(&file)?;
    println!(
        "reopened in {:.2?} ({} records; the graph is loaded, not rebuilt)",
        t.elapsed(),
        db.count("words")?
    );
    show(
        &format!("nearest to '{word}' after reopening"),
        &db,
        word,
        &SearchOptions::new(),
    )?;
    Ok(())
}
