//! Helpers shared by the behaviour tests: the committed test data, seeds, brute force.
#![allow(dead_code)]

use std::path::PathBuf;

/// `testdata/<name>` at the workspace root.
pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// Reads a TEXMEX `.fvecs` file: per vector an i32 dim, then dim f32.
pub fn read_fvecs(path: &std::path::Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let dim = i32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4;
        out.push(
            bytes[pos..pos + 4 * dim]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        );
        pos += 4 * dim;
    }
    out
}

/// Reads a TEXMEX `.ivecs` file.
pub fn read_ivecs(path: &std::path::Path) -> Vec<Vec<u32>> {
    read_fvecs(path)
        .into_iter()
        .map(|row| row.into_iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// The seed of a random test: the test kit's one seed helper (`NEEDLE_SEED`, printed).
#[allow(unused_imports)] // Not every test binary is random.
pub use needle_testkit::seed;

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}

/// Exact top-k by cosine among the rows `keep` accepts; ties by smaller row.
pub fn brute_force(
    base: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut all: Vec<(f64, usize)> = (0..base.len())
        .filter(|&i| keep(i))
        .map(|i| (cosine_distance(q, &base[i]), i))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Each hit at its exact cosine distance from `q` (within 1e-4), and nearest first; `vector`
/// gives a hit's vector.
pub fn assert_exact_nearest_first<V: AsRef<[f32]>>(
    what: &str,
    q: &[f32],
    hits: &[needle_core::SearchResult],
    vector: impl Fn(&needle_core::SearchResult) -> V,
) {
    for h in hits {
        let exact = cosine_distance(q, vector(h).as_ref()) as f32;
        assert!(
            (h.distance - exact).abs() <= 1e-4,
            "{what}: {} at {} (exact {exact})",
            h.id,
            h.distance
        );
    }
    assert!(
        hits.windows(2).all(|w| w[0].distance <= w[1].distance),
        "{what}: not nearest first"
    );
}

/// Bytes before the first record of a write-ahead log (format 2): magic, version, generation,
/// salt, checksum.
#[allow(dead_code)]
pub const WAL_HEADER: usize = 32;

/// How the frames of a (format 2) write-ahead log are checksummed: bound to the salt in its
/// header and each frame's offset.
#[allow(dead_code)]
pub fn wal_seal(wal: &[u8]) -> needle_core::disk::frame::Seal {
    assert_eq!(&wal[..8], b"NEEDLWAL");
    assert_eq!(wal[8..12], 2u32.to_le_bytes(), "a format-2 log");
    needle_core::disk::frame::Seal::Bound {
        salt: u64::from_le_bytes(wal[20..28].try_into().unwrap()),
    }
}

/// The filters of the filtered tests on quantized codes (`quantization.rs`, `index_codes.rs`),
/// over the metadata of [`filter_meta`]: 1 % to 50 %, on an indexed integer (`g`), an indexed
/// keyword (`tag`) and an unindexed integer (`u`, the JSON path), alone and combined.
pub fn filters() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"g": {"$lt": 1}}),
        json!({"g": {"$in": [3, 17, 41, 77, 90]}}),
        json!({"g": {"$lt": 10}}),
        json!({"tag": "a"}),
        json!({"$and": [{"tag": "b"}, {"g": {"$lt": 40}}]}),
        json!({"g": {"$gte": 50}}),
        json!({"u": {"$lt": 30}}),
    ]
}

/// Row `i`'s metadata for [`filters`]: `g` = i·37 mod 100, `tag` one of four, `u` = i·7 mod 100.
pub fn filter_meta(i: usize) -> serde_json::Value {
    let tag = ["a", "b", "c", "d"][i % 4];
    serde_json::json!({"g": (i * 37) % 100, "tag": tag, "u": (i * 7) % 100})
}

/// An in-memory database whose collection "c" (`config`) holds `base`'s rows with the metadata
/// of [`filter_meta`] and payload indexes on two of its three paths (`g` integer, `tag`
/// keyword; `u` stays unindexed): the collection of the filtered tests on quantized codes.
pub fn filtered_collection(
    base: &[Vec<f32>],
    config: needle_core::CollectionConfig,
) -> needle_core::Database {
    use needle_core::{Database, IndexKind, Record};
    let db = Database::in_memory();
    db.create_collection_with_config("c", base[0].len(), config)
        .unwrap();
    db.create_index("c", "g", IndexKind::Integer).unwrap();
    db.create_index("c", "tag", IndexKind::Keyword).unwrap();
    let recs = (0..base.len())
        .map(|i| Record::new(i.to_string(), base[i].clone(), Some(filter_meta(i))))
        .collect();
    db.insert_batch("c", recs).unwrap();
    db
}
