//! A benchmark data set on disk: a folder with `base.fvecs`, `query.fvecs`, `gt.ivecs` and
//! `meta.json` (the layout of `../shared/data/*` and `testdata/*`), and its metric.

use std::path::{Path, PathBuf};

use needle_core::Distance;

use crate::error::{BenchError, Result};
use crate::vecs::{Vecs, read_fvecs, read_ivecs};

/// The metric a data set's ground truth was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `1 - cos`: `"cosine"` (vectors need not be unit length).
    Cosine,
    /// Euclidean distance: `"l2"`.
    L2,
    /// Largest inner product: `"ip"` (not used by peers.py; for other data sets).
    InnerProduct,
}

impl Metric {
    /// Parses `"cosine"`, `"l2"` (or `"euclidean"`) and `"ip"` (or `"dot"`), in any case.
    pub fn parse(s: &str) -> Option<Metric> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cosine" | "cos" | "angular" => Some(Metric::Cosine),
            "l2" | "euclidean" => Some(Metric::L2),
            "ip" | "dot" | "inner_product" => Some(Metric::InnerProduct),
            _ => None,
        }
    }

    /// The name used in `meta.json` and by peers.py.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
        }
    }

    /// Needle's distance with the same ranking.
    pub fn distance(self) -> Distance {
        match self {
            Metric::Cosine => Distance::Cosine,
            Metric::L2 => Distance::Euclidean,
            Metric::InnerProduct => Distance::DotProduct,
        }
    }
}

/// The `"metric"` of `dir/meta.json`.
pub fn metric_of_dir(dir: &Path) -> Result<Metric> {
    let path = dir.join("meta.json");
    let meta_err = |reason: String| BenchError::Meta {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| meta_err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| meta_err(format!("not JSON: {e}")))?;
    let name = value
        .get("metric")
        .and_then(|m| m.as_str())
        .ok_or_else(|| meta_err("no string \"metric\" key".into()))?;
    Metric::parse(name).ok_or_else(|| meta_err(format!("metric {name:?} is not cosine, l2 or ip")))
}

/// The metric for the data set whose base vectors are at `base`, as peers.py's protocol says:
/// `$PEERS_METRIC` if set, else the `meta.json` in the folder of `base`.
pub fn metric_for_base(base: &Path) -> Result<Metric> {
    if let Some(name) = std::env::var("PEERS_METRIC")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return Metric::parse(&name).ok_or_else(|| BenchError::Meta {
            path: PathBuf::from("$PEERS_METRIC"),
            reason: format!("metric {name:?} is not cosine, l2 or ip"),
        });
    }
    metric_of_dir(base.parent().unwrap_or(Path::new(".")))
}

/// A data set loaded into memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder's name (e.g. `glove50`).
    pub name: String,
    /// The vectors to index; ids are row numbers.
    pub base: Vecs<f32>,
    /// The queries.
    pub queries: Vecs<f32>,
    /// Per query, the ids of its exact nearest base vectors, nearest first.
    pub gt: Vecs<i32>,
    /// The metric of the ground truth.
    pub metric: Metric,
}

impl Dataset {
    /// Loads `dir/{base.fvecs, query.fvecs, gt.ivecs, meta.json}` and checks they fit together.
    pub fn load(dir: &Path) -> Result<Dataset> {
        let metric = metric_of_dir(dir)?;
        Self::from_files(
            &dir.join("base.fvecs"),
            &dir.join("query.fvecs"),
            &dir.join("gt.ivecs"),
            metric,
        )
    }

    /// Loads the three files and checks they fit together: the same dimension, one ground-truth
    /// row per query, ids within the base.
    pub fn from_files(base: &Path, queries: &Path, gt: &Path, metric: Metric) -> Result<Dataset> {
        let name = base
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "data".to_string(), |n| n.to_string_lossy().into_owned());
        let base_v = read_fvecs(base)?;
        let queries_v = read_fvecs(queries)?;
        let gt_v = read_ivecs(gt)?;
        if queries_v.dim() != base_v.dim() {
            return Err(BenchError::Invalid(format!(
                "{}: queries have dimension {}, base vectors {}",
                queries.display(),
                queries_v.dim(),
                base_v.dim()
            )));
        }
        if gt_v.len() != queries_v.len() {
            return Err(BenchError::Invalid(format!(
                "{}: {} ground-truth rows for {} queries",
                gt.display(),
                gt_v.len(),
                queries_v.len()
            )));
        }
        let n = base_v.len();
        if let Some(bad) = gt_v
            .as_flat()
            .iter()
            .find(|&&id| id < 0 || id as usize >= n)
        {
            return Err(BenchError::Invalid(format!(
                "{}: id {bad} is not a row of the {n} base vectors",
                gt.display()
            )));
        }
        Ok(Dataset {
            name,
            base: base_v,
            queries: queries_v,
            gt: gt_v,
            metric,
        })
    }
}
