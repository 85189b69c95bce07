//! Exact nearest neighbours by brute force, and recall@k against them.

use crate::dataset::Metric;
use crate::error::{BenchError, Result};
use crate::vecs::Vecs;

/// Mean over queries of `|found[q][..k] ∩ truth[q][..k]| / k`: the recall@k of peers.py and
/// ann-benchmarks. A query with fewer than `k` results simply scores fewer hits.
///
/// ```
/// use needle_benches::{Vecs, recall_at_k};
/// let truth = Vecs::from_rows(&[[1, 2, 3], [4, 5, 6]]).unwrap();
/// let found = vec![vec![2, 1], vec![4, 9]];
/// assert_eq!(recall_at_k(&found, &truth, 2).unwrap(), 0.75);
/// ```
pub fn recall_at_k<R: AsRef<[i32]>>(found: &[R], truth: &Vecs<i32>, k: usize) -> Result<f64> {
    if found.len() != truth.len() {
        return Err(BenchError::Invalid(format!(
            "{} result lists for {} ground-truth rows",
            found.len(),
            truth.len()
        )));
    }
    if k == 0 || k > truth.dim() {
        return Err(BenchError::Invalid(format!(
            "recall@{k} needs 1 <= k <= {} (ids per ground-truth row)",
            truth.dim()
        )));
    }
    if found.is_empty() {
        return Err(BenchError::Invalid("recall of zero queries".into()));
    }
    let hits: usize = found
        .iter()
        .zip(truth.rows())
        .map(|(f, t)| {
            let f = f.as_ref();
            let t = &t[..k];
            f[..f.len().min(k)]
                .iter()
                .filter(|id| t.contains(id))
                .count()
        })
        .sum();
    Ok(hits as f64 / (found.len() * k) as f64)
}

/// The exact `k` nearest base rows of every query, nearest first, by `metric` computed in `f64`,
/// ties broken by the smaller id: the ground truth of `make.py` and `testdata/make_subsets.py`.
/// O(queries × base × dim): for small sets (tests, subsets).
pub fn exact_knn(
    base: &Vecs<f32>,
    queries: &Vecs<f32>,
    k: usize,
    metric: Metric,
) -> Result<Vecs<i32>> {
    if base.dim() != queries.dim() {
        return Err(BenchError::Invalid(format!(
            "queries have dimension {}, base vectors {}",
            queries.dim(),
            base.dim()
        )));
    }
    if k == 0 || k > base.len() {
        return Err(BenchError::Invalid(format!(
            "k = {k} must be in 1..={} (the base rows)",
            base.len()
        )));
    }
    let to64 = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| f64::from(x)).collect() };
    let unit = |v: Vec<f64>| -> Vec<f64> {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            v.into_iter().map(|x| x / norm).collect()
        } else {
            v
        }
    };
    let prep = |v: &[f32]| match metric {
        Metric::Cosine => unit(to64(v)),
        Metric::L2 | Metric::InnerProduct => to64(v),
    };
    let base64: Vec<Vec<f64>> = base.rows().map(prep).collect();
    let mut out = Vec::with_capacity(queries.len() * k);
    let mut scored: Vec<(f64, i32)> = Vec::with_capacity(base.len());
    for q in queries.rows() {
        let q = prep(q);
        scored.clear();
        for (id, b) in base64.iter().enumerate() {
            let d = match metric {
                Metric::Cosine => 1.0 - dot(&q, b),
                Metric::InnerProduct => -dot(&q, b),
                Metric::L2 => q.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
            };
            let id = i32::try_from(id)
                .map_err(|_| BenchError::Invalid("more base rows than i32 ids".into()))?;
            scored.push((d, id));
        }
        scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.extend(scored[..k].iter().map(|&(_, id)| id));
    }
    Ok(Vecs::from_flat(k, out)?)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_hits_in_the_first_k() {
        let truth = Vecs::from_rows(&[[1, 2, 3, 4], [5, 6, 7, 8]]).unwrap();
        assert_eq!(
            recall_at_k(&[vec![1, 2], vec![6, 5]], &truth, 2).unwrap(),
            1.0
        );
        // Only the first k of the found ids and of the truth count.
        assert_eq!(
            recall_at_k(&[vec![3, 1, 2], vec![7, 8, 5]], &truth, 2).unwrap(),
            0.25
        );
        // Short result lists score fewer hits.
        assert_eq!(recall_at_k(&[vec![1], vec![]], &truth, 2).unwrap(), 0.25);
        assert!(recall_at_k(&[vec![1]], &truth, 2).is_err());
        assert!(recall_at_k(&[vec![1], vec![5]], &truth, 5).is_err());
        assert!(recall_at_k(&[vec![1], vec![5]], &truth, 0).is_err());
    }

    #[test]
    fn exact_knn_ranks_by_metric_and_breaks_ties_by_id() {
        let base = Vecs::from_rows(&[[1.0f32, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]]).unwrap();
        let q = Vecs::from_rows(&[[1.0f32, 0.1]]).unwrap();
        // Cosine: rows 0 and 2 point the same way (a tie, smaller id first).
        let gt = exact_knn(&base, &q, 4, Metric::Cosine).unwrap();
        assert_eq!(gt.row(0), &[0, 2, 1, 3]);
        let gt = exact_knn(&base, &q, 2, Metric::L2).unwrap();
        assert_eq!(gt.row(0), &[0, 2]);
        let gt = exact_knn(&base, &q, 2, Metric::InnerProduct).unwrap();
        assert_eq!(gt.row(0), &[2, 0]);
        assert!(exact_knn(&base, &q, 5, Metric::L2).is_err());
    }
}
