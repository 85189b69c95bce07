//! `needle-ann` speaks peers.py's external-engine protocol: run it on a 2,000-row subset of
//! `testdata/glove50-10k` (ground truth recomputed for the subset) and check what peers.py checks.

use std::path::Path;
use std::process::Command;

use needle_benches::vecs::read_vecs_head;
use needle_benches::{Metric, Vecs, exact_knn, read_ivecs, recall_at_k, write_fvecs, write_ivecs};

const N_BASE: usize = 2_000;
const N_QUERY: usize = 50;
const K: usize = 10;

/// A data set folder: the first 2,000 base rows and 50 queries of glove50-10k, exact top 10.
fn write_subset(dir: &Path) -> Vecs<i32> {
    let src = needle_benches::testdata_dir().join("glove50-10k");
    let base: Vecs<f32> = read_vecs_head(src.join("base.fvecs"), N_BASE).expect("testdata base");
    let queries: Vecs<f32> =
        read_vecs_head(src.join("query.fvecs"), N_QUERY).expect("testdata queries");
    assert_eq!((base.len(), queries.len()), (N_BASE, N_QUERY));
    let gt = exact_knn(&base, &queries, K, Metric::Cosine).expect("ground truth");
    write_fvecs(dir.join("base.fvecs"), &base).unwrap();
    write_fvecs(dir.join("query.fvecs"), &queries).unwrap();
    write_ivecs(dir.join("gt.ivecs"), &gt).unwrap();
    std::fs::write(dir.join("meta.json"), r#"{"metric": "cosine"}"#).unwrap();
    gt
}

fn run(dir: &Path, results: &Path, ef_list: &str, stop_recall: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_needle-ann"))
        .args([
            dir.join("base.fvecs").as_os_str(),
            dir.join("query.fvecs").as_os_str(),
            dir.join("gt.ivecs").as_os_str(),
        ])
        .args(["8", "64", ef_list, &K.to_string(), "1", stop_recall])
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("PEERS_METRIC")
        .env("PEERS_RESULTS_DIR", results)
        .output()
        .expect("run needle-ann");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line {last:?} is not JSON: {e}"))
}

#[test]
fn needle_ann_runs_as_a_peers_engine() {
    let data = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    let gt = write_subset(data.path());

    let rows = run(data.path(), results.path(), "10,40", "2.0");
    let rows = rows.as_array().expect("a JSON list");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, ef) in rows.iter().zip([10, 40]) {
        assert_eq!(row["ef"], ef, "{row}");
        let recall = row["recall"].as_f64().expect("numeric recall");
        assert!(recall > 0.5 && recall <= 1.0, "recall {recall} at ef {ef}");
        assert!(row["qps"].as_f64().expect("numeric qps") > 0.0);
        assert!(row["build_s"].as_f64().expect("numeric build_s") > 0.0);
        assert!(row["mem_bytes"].is_u64(), "{row}");

        // The ids written for peers.py: one row of K distinct ids in [0, N_BASE) per query,
        // giving the recall reported.
        let found = read_ivecs(results.path().join(format!("ef{ef}.ivecs"))).unwrap();
        assert_eq!((found.len(), found.dim()), (N_QUERY, K));
        for r in found.rows() {
            assert!(
                r.iter().all(|&id| (0..N_BASE as i32).contains(&id)),
                "{r:?}"
            );
            let mut sorted = r.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), K, "repeated id in {r:?}");
        }
        let rows: Vec<&[i32]> = found.rows().collect();
        let checked = recall_at_k(&rows, &gt, K).unwrap();
        assert!(
            (checked - recall).abs() <= 5e-4,
            "reported {recall}, ids give {checked}"
        );
    }
}

#[test]
fn needle_ann_stops_at_the_first_ef_reaching_stop_recall() {
    let data = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    write_subset(data.path());
    let rows = run(data.path(), results.path(), "10,20,40", "0.0");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert!(!results.path().join("ef20.ivecs").exists());
}
