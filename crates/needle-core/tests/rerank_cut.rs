//! sq8 re-ranking stops early ([`needle_core`]'s `RERANK_SIGMAS`: a candidate whose int8
//! distance is four standard deviations of the quantization error past the k-th exact distance
//! is not read): the results are those of re-ranking every candidate, for cosine and Euclidean
//! collections. Alone in its binary: it flips a process-wide switch
//! (`__private::set_rerank_sigma_tenths`).

mod common;

use common::{read_fvecs, testdata};
use needle_core::{CollectionConfig, Database, Distance, Quantization, Record, SearchOptions};

#[test]
fn stopping_the_rerank_early_returns_what_reranking_everything_does() {
    let dir = testdata("glove50-10k");
    let base = read_fvecs(&dir.join("base.fvecs"));
    let queries = read_fvecs(&dir.join("query.fvecs"));
    let db = Database::in_memory();
    for (name, distance) in [("cos", Distance::Cosine), ("l2", Distance::Euclidean)] {
        let config = CollectionConfig {
            quantization: Quantization::Sq8,
            distance,
            ..CollectionConfig::default()
        };
        db.create_collection_with_config(name, base[0].len(), config)
            .unwrap();
        let records = base
            .iter()
            .take(4_000)
            .enumerate()
            .map(|(i, v)| Record::new(i.to_string(), v.clone(), None))
            .collect();
        db.insert_batch(name, records).unwrap();
    }
    let run = |name: &str, ef: usize| -> Vec<Vec<(String, u32)>> {
        let opts = SearchOptions::new().with_ef_search(ef);
        queries
            .iter()
            .map(|q| {
                db.search_with(name, q, 10, &opts)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.id, h.distance.to_bits()))
                    .collect()
            })
            .collect()
    };
    // Vectors written after training that lie outside its ranges (component 0 far past
    // anything trained on), and queries near them: their errors are unknown, so they are
    // always re-ranked.
    let config = CollectionConfig {
        quantization: Quantization::Sq8,
        ..CollectionConfig::default()
    };
    db.create_collection_with_config("out", base[0].len(), config)
        .unwrap();
    let records = base
        .iter()
        .take(1_500)
        .enumerate()
        .map(|(i, v)| Record::new(i.to_string(), v.clone(), None))
        .collect();
    db.insert_batch("out", records).unwrap();
    let far = |v: &[f32]| {
        let mut v = v.to_vec();
        v[0] = 40.0;
        v
    };
    let records = base[1_500..2_500]
        .iter()
        .enumerate()
        .map(|(i, v)| Record::new(format!("far{i}"), far(v), None))
        .collect();
    db.insert_batch("out", records).unwrap();
    let far_queries: Vec<Vec<f32>> = queries.iter().map(|q| far(q)).collect();
    let opts = SearchOptions::new().with_ef_search(40);
    let search = |q: &[f32]| -> Vec<(String, u32)> {
        db.search_with("out", q, 10, &opts)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.distance.to_bits()))
            .collect()
    };
    needle_core::__private::set_rerank_sigma_tenths(0);
    let everything: Vec<_> = far_queries.iter().map(|q| search(q)).collect();
    needle_core::__private::set_rerank_sigma_tenths(u32::MAX);
    let stopped: Vec<_> = far_queries.iter().map(|q| search(q)).collect();
    assert_eq!(everything, stopped, "vectors outside the trained ranges");
    for name in ["cos", "l2"] {
        for ef in [10, 40] {
            needle_core::__private::set_rerank_sigma_tenths(0);
            let everything = run(name, ef);
            needle_core::__private::set_rerank_sigma_tenths(u32::MAX);
            let stopped = run(name, ef);
            let differ = everything
                .iter()
                .zip(&stopped)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differ,
                0,
                "{name} ef {ef}: {differ} of {} queries differ",
                queries.len()
            );
        }
    }
}
