//! A Needle collection holding the rows of a [`Vecs`]: the id of row `i` is the string `"i"`,
//! so search results map back to row numbers (what ground-truth files and peers.py use).

use needle_core::{CollectionConfig, Database, Record, SearchResult};

use crate::dataset::Metric;
use crate::error::{BenchError, Result};
use crate::vecs::Vecs;

/// The collection name the benchmarks use.
pub const COLLECTION: &str = "bench";

/// Rows per `insert_batch` call in [`insert_rows`]: big enough to amortise the call, small
/// enough that the temporary records stay a small part of the memory measured.
pub const CHUNK: usize = 1_000;

/// A collection config for `metric` with HNSW `m` and `ef_construction` (the rest default).
pub fn config(metric: Metric, m: usize, ef_construction: usize) -> CollectionConfig {
    CollectionConfig {
        distance: metric.distance(),
        m,
        ef_construction,
        ..CollectionConfig::default()
    }
}

/// The id of row `row`.
pub fn row_id(row: usize) -> String {
    row.to_string()
}

/// The row number of an id made by [`row_id`].
pub fn parse_row_id(id: &str) -> Result<i32> {
    id.parse::<i32>()
        .ok()
        .filter(|&r| r >= 0)
        .ok_or_else(|| BenchError::Invalid(format!("id {id:?} is not a row number")))
}

/// The records for rows `start..end` of `base` (no metadata).
pub fn records(base: &Vecs<f32>, start: usize, end: usize) -> Vec<Record> {
    (start..end.min(base.len()))
        .map(|i| Record {
            id: row_id(i),
            vector: base.row(i).to_vec(),
            metadata: None,
        })
        .collect()
}

/// Inserts every row of `base` into `collection` with `insert_batch`, `chunk` rows per call
/// (`usize::MAX`: one call). Whatever parallelism `insert_batch` has comes from the rayon pool
/// the caller runs this in (`pool.install`).
pub fn insert_rows(db: &Database, collection: &str, base: &Vecs<f32>, chunk: usize) -> Result<()> {
    let chunk = chunk.max(1);
    let mut start = 0;
    while start < base.len() {
        let end = start.saturating_add(chunk).min(base.len());
        db.insert_batch(collection, records(base, start, end))?;
        start = end;
    }
    Ok(())
}

/// The row numbers of search results, nearest first.
pub fn result_rows(hits: &[SearchResult]) -> Result<Vec<i32>> {
    hits.iter().map(|h| parse_row_id(&h.id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_round_trip_and_reject_strangers() {
        assert_eq!(parse_row_id(&row_id(0)).unwrap(), 0);
        assert_eq!(parse_row_id(&row_id(199_999)).unwrap(), 199_999);
        for bad in ["", "-1", "x", "1.5", "99999999999"] {
            assert!(parse_row_id(bad).is_err(), "{bad:?}");
        }
    }
}
