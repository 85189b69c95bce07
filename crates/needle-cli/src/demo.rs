//! `needle demo`: a guided tour on real data. Builds a collection of English words embedded by
//! all-MiniLM-L6-v2, searches it by word, with metadata filters, deletes a record, reopens the
//! file and searches again, and says how long each step took.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use needle_core::{CollectionConfig, Database, Filter, Record, SearchOptions};
use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::error::{CliError, Result};
use crate::input::read_fvecs;
use crate::{output, progress};

/// The words the demo looks for when `--word` is not given, first one present wins (the
/// committed 4k subset has no "king").
const DEFAULT_WORDS: [&str; 3] = ["king", "royal", "music"];
const COLLECTION: &str = "words";
const BATCH: usize = 2_000;
const K: usize = 5;

/// The demo's data: base vectors with their words, plus query vectors (words not in the base)
/// when the folder has them.
pub(crate) struct Data {
    pub dir: PathBuf,
    pub words: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
    pub query_words: Vec<String>,
    pub query_vectors: Vec<Vec<f32>>,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let total = Instant::now();
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };

    let t = Instant::now();
    let data = load(&dir)?;
    let dim = data.vectors[0].len();
    say(&format!(
        "data     {} words as {dim}-dim all-MiniLM-L6-v2 embeddings from {}  [{}]",
        data.words.len(),
        data.dir.display(),
        output::duration(t.elapsed())
    ))?;

    let word = pick_word(&data, args.word.as_deref())?;
    let query = lookup(&data, &word).expect("pick_word returns a word the data has");

    let temp;
    let file = match &args.file {
        Some(f) if f.exists() => {
            return Err(CliError::Usage(format!(
                "{} already exists; the demo builds a new file: remove it or pass another --file",
                f.display()
            )));
        }
        Some(f) => f.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("needle-demo-")
                .tempdir()
                .map_err(|e| CliError::io("creating a temporary directory", e))?;
            temp.path().join("words.needle")
        }
    };

    // 1. Build.
    let t = Instant::now();
    let config = CollectionConfig {
        ef_construction: args.ef_construction,
        ..CollectionConfig::default()
    };
    // Checked first, so a bad flag leaves no file behind.
    Database::check_collection(COLLECTION, dim, &config)?;
    let db = Database::open(&file)?;
    db.create_collection_with_config(COLLECTION, dim, config.clone())?;
    let bar = progress::records(data.words.len() as u64, "inserting");
    for (words, vectors) in data.words.chunks(BATCH).zip(data.vectors.chunks(BATCH)) {
        let batch = words
            .iter()
            .zip(vectors)
            .map(|(w, v)| Record::new(w.clone(), v.clone(), Some(metadata(w))))
            .collect();
        db.insert_batch(COLLECTION, batch)?;
        bar.inc(words.len() as u64);
    }
    bar.finish_and_clear();
    let inserted = t.elapsed();
    let t = Instant::now();
    db.checkpoint()?;
    let checkpointed = t.elapsed();
    say(&format!(
        "build    {}: collection '{COLLECTION}' (cosine, HNSW m={}, ef_construction={}), {} \
         records with metadata {{length, initial}} in batches of {BATCH}  [{}, {:.0} records/s]",
        file.display(),
        config.m,
        config.ef_construction,
        db.count(COLLECTION)?,
        output::duration(inserted),
        data.words.len() as f64 / inserted.as_secs_f64().max(1e-9),
    ))?;
    say(&format!(
        "         checkpoint written: {}  [{}]",
        output::bytes(std::fs::metadata(&file).map_or(0, |m| m.len())),
        output::duration(checkpointed)
    ))?;

    if let Some(line) = recall(&db, &data)? {
        say(&line)?;
    }

    // 2. Search by word.
    let plain = SearchOptions::new();
    let (hits, took) = nearest(&db, &query, &word, &plain)?;
    show(&format!("nearest to '{word}'"), &hits, took)?;

    // 3. Filters on the metadata.
    let initial = word.chars().next().map(String::from).unwrap_or_default();
    for filter in [
        json!({"length": {"$gte": 8}}),
        json!({"initial": initial, "length": {"$lte": 6}}),
    ] {
        let opts = SearchOptions::new().with_filter(Filter::parse(&filter)?);
        let (hits, took) = nearest(&db, &query, &word, &opts)?;
        show(&format!("nearest to '{word}' where {filter}"), &hits, took)?;
    }

    // 4. Delete the nearest neighbour.
    let (hits, _) = nearest(&db, &query, &word, &plain)?;
    let victim = hits
        .first()
        .map(|(id, _)| id.clone())
        .ok_or_else(|| CliError::Usage("the search found nothing to delete".into()))?;
    let t = Instant::now();
    db.delete(COLLECTION, &victim)?;
    say(&format!(
        "delete   '{victim}' (the nearest neighbour), one fsynced log record  [{}]",
        output::duration(t.elapsed())
    ))?;
    drop(db);

    // 5. Reopen: the checkpoint's graph is mapped, the log replays the delete.
    let t = Instant::now();
    let db = Database::open(&file)?;
    let report = db.open_report();
    say(&format!(
        "reopen   {}: {} records, graph loaded (not rebuilt), {} log record replayed  [{}]",
        file.display(),
        db.count(COLLECTION)?,
        report.wal_records_replayed,
        output::duration(t.elapsed())
    ))?;
    let (hits, took) = nearest(&db, &query, &word, &plain)?;
    let gone = hits.iter().all(|(id, _)| *id != victim);
    show(
        &format!(
            "nearest to '{word}' after reopening ('{victim}' {})",
            if gone { "is gone" } else { "IS STILL THERE" }
        ),
        &hits,
        took,
    )?;
    drop(db);
    if !gone {
        return Err(CliError::Usage(format!(
            "'{victim}' was deleted but came back after reopening"
        )));
    }

    say(&format!("done in {}.", output::duration(total.elapsed())))?;
    match &args.file {
        Some(f) => say(&format!(
            "next     needle info {0}\n         needle search {0} {COLLECTION} --id {1} -k 5 \
             --filter '{{\"length\": {{\"$lte\": 5}}}}'",
            f.display(),
            data.words[0]
        )),
        None => say(
            "the file was in a temporary directory and is removed; keep one with \
             `needle demo --file words.needle`",
        ),
    }
}

fn say(line: &str) -> Result<()> {
    output::print(&format!("{line}\n"))
}

/// Metadata the filters use: the word's length and first letter.
pub(crate) fn metadata(word: &str) -> Value {
    json!({
        "length": word.chars().count(),
        "initial": word.chars().next().map(String::from).unwrap_or_default(),
    })
}

/// The `K` nearest words to `query`, leaving out `word` itself.
fn nearest(
    db: &Database,
    query: &[f32],
    word: &str,
    opts: &SearchOptions,
) -> Result<(Vec<(String, f32)>, Duration)> {
    let t = Instant::now();
    let hits = db.search_with(COLLECTION, query, K + 1, opts)?;
    let took = t.elapsed();
    let hits = hits
        .into_iter()
        .filter(|h| h.id != word)
        .take(K)
        .map(|h| (h.id, h.distance))
        .collect();
    Ok((hits, took))
}

fn show(title: &str, hits: &[(String, f32)], took: Duration) -> Result<()> {
    let list: Vec<String> = hits
        .iter()
        .map(|(id, d)| format!("{id} ({d:.3})"))
        .collect();
    say(&format!(
        "search   {title}  [{}]\n         {}",
        output::duration(took),
        if list.is_empty() {
            "(no results)".to_string()
        } else {
            list.join(", ")
        }
    ))
}

/// `../shared/data/words-minilm` beside the workspace when present, else the committed subset.
pub(crate) fn default_data_dir() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        root.join("../shared/data/words-minilm"),
        root.join("testdata/words-minilm-4k"),
    ];
    candidates
        .iter()
        .find(|d| d.join("base.fvecs").is_file() && d.join("base_words.txt").is_file())
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no demo data at {} or {}: pass --data DIR (a folder with base.fvecs and \
                 base_words.txt)",
                candidates[0].display(),
                candidates[1].display()
            ))
        })
}

pub(crate) fn load(dir: &Path) -> Result<Data> {
    let (words, vectors) = load_pair(dir, "base")?;
    let (query_words, query_vectors) = if dir.join("query.fvecs").is_file() {
        load_pair(dir, "query")?
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(q) = query_vectors
        .first()
        .filter(|q| q.len() != vectors[0].len())
    {
        return Err(CliError::bad_input(
            &dir.join("query.fvecs"),
            "row 0",
            format!(
                "dimension {} differs from the base's {}",
                q.len(),
                vectors[0].len()
            ),
        ));
    }
    Ok(Data {
        dir: dir.to_path_buf(),
        words,
        vectors,
        query_words,
        query_vectors,
    })
}

/// `{name}.fvecs` and `{name}_words.txt`, row-aligned.
fn load_pair(dir: &Path, name: &str) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let fvecs = dir.join(format!("{name}.fvecs"));
    let words_path = dir.join(format!("{name}_words.txt"));
    let vectors = read_fvecs(&fvecs)?;
    let words: Vec<String> = std::fs::read_to_string(&words_path)
        .map_err(|e| CliError::io(format!("reading {}", words_path.display()), e))?
        .lines()
        .map(str::to_string)
        .collect();
    if vectors.is_empty() || words.len() != vectors.len() {
        return Err(CliError::bad_input(
            &words_path,
            "end",
            format!(
                "{} words for {} vectors in {}; they must be row-aligned and non-empty",
                words.len(),
                vectors.len(),
                fvecs.display()
            ),
        ));
    }
    Ok((words, vectors))
}

/// Recall@10 against the exact ground truth (`gt.ivecs`) for up to `RECALL_QUERIES` queries, when
/// the data has it: how many of the true 10 nearest the graph finds.
fn recall(db: &Database, data: &Data) -> Result<Option<String>> {
    const RECALL_QUERIES: usize = 200;
    let gt_path = data.dir.join("gt.ivecs");
    if data.query_vectors.is_empty() || !gt_path.is_file() {
        return Ok(None);
    }
    let gt = read_ivecs(&gt_path)?;
    let n = RECALL_QUERIES.min(gt.len()).min(data.query_vectors.len());
    let t = Instant::now();
    let mut found = 0usize;
    for (q, truth) in data.query_vectors.iter().zip(&gt).take(n) {
        let hits = db.search(COLLECTION, q, 10)?;
        found += truth
            .iter()
            .take(10)
            .filter(|&&row| {
                data.words
                    .get(row as usize)
                    .is_some_and(|w| hits.iter().any(|h| h.id == *w))
            })
            .count();
    }
    let took = t.elapsed();
    Ok(Some(format!(
        "recall   {:.3} of the exact 10 nearest found for {n} held-out query words (gt.ivecs)  \
         [{} per query]",
        found as f64 / (n * 10) as f64,
        output::duration(took / n.max(1) as u32)
    )))
}

/// TEXMEX `.ivecs`: per row an int32 count, then that many int32.
fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>> {
    Ok(read_fvecs(path)?
        .into_iter()
        .map(|row| row.into_iter().map(f32::to_bits).collect())
        .collect())
}

/// The query vector of a word: from the base, else from the queries (not in the collection).
pub(crate) fn lookup(data: &Data, word: &str) -> Option<Vec<f32>> {
    let find = |words: &[String], vectors: &[Vec<f32>]| {
        words
            .iter()
            .position(|w| w == word)
            .map(|i| vectors[i].clone())
    };
    find(&data.words, &data.vectors).or_else(|| find(&data.query_words, &data.query_vectors))
}

pub(crate) fn pick_word(data: &Data, asked: Option<&str>) -> Result<String> {
    if let Some(w) = asked {
        return match lookup(data, w) {
            Some(_) => Ok(w.to_string()),
            None => Err(CliError::Usage(format!(
                "'{w}' is not among the {} words in {}; try one of: {}",
                data.words.len() + data.query_words.len(),
                data.dir.display(),
                data.words
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    Ok(DEFAULT_WORDS
        .iter()
        .find(|w| lookup(data, w).is_some())
        .map_or_else(|| data.words[0].clone(), |w| w.to_string()))
}
