//! Configuration values a caller passes in: per collection (`CollectionConfig`), per search
//! (`SearchOptions`) and per database (`DatabaseOptions`). Validation lives here too, so the
//! inside of the crate only ever sees valid values.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::Filter;

/// How distance between two vectors is measured. Smaller is always nearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// `1 - cos(a, b)`. Vectors are normalised to unit length when stored.
    #[default]
    Cosine,
    /// Squared Euclidean distance `|a - b|²`.
    Euclidean,
    /// Negated inner product `-(a · b)`.
    DotProduct,
}

impl Distance {
    pub(crate) fn code(self) -> u8 {
        match self {
            Distance::Cosine => 0,
            Distance::Euclidean => 1,
            Distance::DotProduct => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Distance::Cosine),
            1 => Some(Distance::Euclidean),
            2 => Some(Distance::DotProduct),
            _ => None,
        }
    }
}

/// How a collection keeps a second, compact copy of its vectors for the graph walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// Searches use the f32 vectors only.
    #[default]
    None,
    /// 8-bit scalar quantization: one `i8` per component, with ranges trained from the data.
    /// The graph walk compares int8 codes, and the best `max(k, ef)` candidates it finds are
    /// re-ranked by their exact f32 distances. See `docs/benchmarks.md` for recall and speed.
    Sq8,
}

impl Quantization {
    pub(crate) fn code(self) -> u8 {
        match self {
            Quantization::None => 0,
            Quantization::Sq8 => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Quantization::None),
            1 => Some(Quantization::Sq8),
            _ => None,
        }
    }

    /// The name used by the CLI and the HTTP API: `none` or `sq8`.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
        }
    }

    /// Parses [`Quantization::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Quantization::None),
            "sq8" => Some(Quantization::Sq8),
            _ => None,
        }
    }
}

/// The parameters of one collection, named after Malkov & Yashunin's HNSW paper.
///
/// ```
/// use needle_core::{CollectionConfig, Distance};
/// let config = CollectionConfig { distance: Distance::Euclidean, m: 32, ..Default::default() };
/// assert_eq!(config.ef_construction, 200);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionConfig {
    /// The distance function.
    pub distance: Distance,
    /// `M`: links per node on the upper layers; layer 0 keeps `2·M`.
    pub m: usize,
    /// `efConstruction`: the candidate list size while inserting.
    pub ef_construction: usize,
    /// `ef`: the default candidate list size while searching (raised to `k` when smaller).
    pub ef_search: usize,
    /// Seeds the level of each record (a hash of the seed and the id), so graphs are reproducible.
    pub seed: u64,
    /// A quantized copy of the vectors for searching ([`Quantization::None`] by default).
    pub quantization: Quantization,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        CollectionConfig {
            distance: Distance::Cosine,
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0x6e65_6564_6c65, // "needle"
            quantization: Quantization::None,
        }
    }
}

impl CollectionConfig {
    /// Checks that the values can build a working graph.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if !(2..=128).contains(&self.m) {
            return bad(format!("m must be in 2..=128, got {}", self.m));
        }
        if self.ef_construction == 0 || self.ef_construction > 10_000 {
            return bad(format!(
                "ef_construction must be in 1..=10000, got {}",
                self.ef_construction
            ));
        }
        if self.ef_search == 0 || self.ef_search > 10_000 {
            return bad(format!(
                "ef_search must be in 1..=10000, got {}",
                self.ef_search
            ));
        }
        Ok(())
    }
}

/// Per-query options for [`Database::search_with`](crate::Database::search_with).
///
/// `SearchOptions::default()` and `SearchOptions::new()` are the same: metadata included, no
/// vectors, no filter, no threshold, the collection's `ef_search`.
///
/// ```
/// use needle_core::SearchOptions;
/// let opts = SearchOptions::default().with_ef_search(128);
/// assert_eq!(opts.ef_search, Some(128));
/// assert!(opts.include_metadata && !opts.include_vectors);
/// ```
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Only records whose metadata matches are returned.
    pub filter: Option<Filter>,
    /// Overrides the collection's `ef_search` for this query.
    pub ef_search: Option<usize>,
    /// Return the stored vector with each result.
    pub include_vectors: bool,
    /// Return the metadata with each result (on by default).
    pub include_metadata: bool,
    /// Only results at most this far from the query (in the distance `SearchResult` reports:
    /// smaller is nearer). `None` returns the k nearest whatever their distance.
    pub score_threshold: Option<f32>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            filter: None,
            ef_search: None,
            include_vectors: false,
            include_metadata: true,
            score_threshold: None,
        }
    }
}

impl SearchOptions {
    /// The same as [`SearchOptions::default`]: metadata included, no filter, the collection's
    /// `ef_search`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets `ef_search` for this query.
    pub fn with_ef_search(mut self, ef: usize) -> Self {
        self.ef_search = Some(ef);
        self
    }

    /// Returns only results whose distance is at most `threshold`.
    pub fn with_score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = Some(threshold);
        self
    }

    /// Asks for the stored vectors in the results.
    pub fn with_vectors(mut self, include: bool) -> Self {
        self.include_vectors = include;
        self
    }
}

/// How the write-ahead log makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalMode {
    /// Every acknowledged write (or batch) is fsynced before it returns. The default.
    #[default]
    Synced,
    /// Writes go to the log but are not fsynced: a crash of the machine may lose recent writes.
    Unsynced,
    /// No log: only checkpoints persist. For when another log (Raft's) provides durability.
    Off,
}

/// Options for [`Database::open_with`](crate::Database::open_with).
#[derive(Debug, Clone, Default)]
pub struct DatabaseOptions {
    /// How the write-ahead log is used.
    pub wal: WalMode,
}
