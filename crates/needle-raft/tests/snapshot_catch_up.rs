//! A follower that falls behind the leader's compacted log catches up by a snapshot streamed in
//! many chunks (through drops, duplicates and reordering), and ends byte-identical: a small one
//! in 1 KiB chunks, and a database of over 20 MB.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, test_config};
use needle_core::{CollectionConfig, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn follower_catches_up_by_snapshot_after_compaction() {
    let config = test_config()
        .snapshot_threshold(50)
        .log_retain_entries(0)
        .snapshot_chunk_size(1024); // many chunks per snapshot
    let seed = common::seed("follower_catches_up_by_snapshot_after_compaction");
    let c = Cluster::with_config(3, seed, config);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagger = c.founders.iter().copied().find(|&i| i != leader).unwrap();
    c.node(leader).create_collection("c", 8).unwrap();
    c.crash(lagger);
    for b in 0..6 {
        let records: Vec<needle_core::Record> = (0..40)
            .map(|i| needle_core::Record {
                id: format!("r{b}-{i}"),
                vector: (0..8).map(|d| (b * 40 + i + d) as f32).collect(),
                metadata: Some(serde_json::json!({"b": b, "i": i, "pad": "x".repeat(64)})),
            })
            .collect();
        c.on_leader(Duration::from_secs(5), |l| {
            l.insert_batch("c", records.clone())
        });
        for i in 0..20 {
            c.on_leader(Duration::from_secs(5), |l| {
                l.insert("c", &format!("s{b}-{i}"), vec![1.0; 8], None)
            });
        }
    }
    let l = c.node(c.wait_leader(Duration::from_secs(5)));
    let st = l.status().unwrap();
    assert!(st.first_index > 10, "the leader compacted its log: {st:?}");
    // Faults while the snapshot streams.
    c.net.set_drop_rate(0.05);
    c.net.set_duplicate_rate(0.1);
    c.net.set_reorder_rate(0.2);
    c.restart(lagger);
    c.wait_converged(Duration::from_secs(30));
    c.net.heal_all();
    let s = c.node(lagger).status().unwrap();
    assert!(
        s.snapshot_index > 0,
        "the lagger installed a snapshot: {s:?}"
    );
    let snap_bytes = common::snapshot_bytes(&c, lagger);
    eprintln!(
        "follower_catches_up_by_snapshot_after_compaction: snapshot {snap_bytes} bytes, chunks of 1024"
    );
    assert!(snap_bytes > 10 * 1024, "the snapshot spans many chunks");
    assert_eq!(
        c.on_leader(Duration::from_secs(5), |l| l.count("c")),
        6 * 60
    );
}

/// 20 000 vectors of 256 dimensions: a database of over 20 MB, streamed in 256 KiB chunks from a
/// file handle and written chunk by chunk to disk on the follower, through 5 % drops, duplicates
/// and reordering.
#[test]
fn follower_catches_up_by_a_20_mb_snapshot() {
    const DIM: usize = 256;
    const RECORDS: usize = 20_000;
    const BATCH: usize = 500;
    let config = test_config()
        .snapshot_threshold(10)
        .log_retain_entries(0)
        .snapshot_chunk_size(256 * 1024)
        .proposal_timeout(Duration::from_secs(10));
    let seed = common::seed("follower_catches_up_by_a_20_mb_snapshot");
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Cluster::with_config(3, seed, config);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagger = c.founders.iter().copied().find(|&i| i != leader).unwrap();
    let hnsw = CollectionConfig {
        m: 8,
        ef_construction: 32,
        ..Default::default()
    };
    c.on_leader(Duration::from_secs(5), |l| {
        l.create_collection_with_config("big", DIM, hnsw.clone())
    });
    c.crash(lagger);
    let started = Instant::now();
    for b in 0..RECORDS / BATCH {
        let records: Vec<Record> = (0..BATCH)
            .map(|i| Record {
                id: format!("v{}", b * BATCH + i),
                vector: (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                metadata: None,
            })
            .collect();
        c.on_leader(Duration::from_secs(30), |l| {
            l.insert_batch("big", records.clone())
        });
    }
    eprintln!(
        "follower_catches_up_by_a_20_mb_snapshot: {RECORDS} x {DIM} inserted in {:?}",
        started.elapsed()
    );
    let l = c.node(c.wait_leader(Duration::from_secs(5)));
    let term = l.term();
    let started = Instant::now();
    l.trigger_snapshot().unwrap();
    eprintln!(
        "follower_catches_up_by_a_20_mb_snapshot: snapshot made in the background in {:?}; term {term} -> {}",
        started.elapsed(),
        l.term()
    );
    let st = l.status().unwrap();
    assert!(st.first_index > 2, "the leader compacted its log: {st:?}");
    let leader_bytes = common::snapshot_bytes(&c, l.node_id());
    assert!(
        leader_bytes > 20_000_000,
        "the snapshot is over 20 MB: {leader_bytes}"
    );
    c.net.set_drop_rate(0.05);
    c.net.set_duplicate_rate(0.05);
    c.net.set_reorder_rate(0.2);
    let started = Instant::now();
    c.restart(lagger);
    c.wait_converged(Duration::from_secs(60));
    eprintln!(
        "follower_catches_up_by_a_20_mb_snapshot: snapshot of {leader_bytes} bytes in 256 KiB chunks installed and converged in {:?}",
        started.elapsed()
    );
    c.net.heal_all();
    let s = c.node(lagger).status().unwrap();
    assert!(
        s.snapshot_index > 0,
        "the lagger installed a snapshot: {s:?}"
    );
    assert!(common::snapshot_bytes(&c, lagger) > 20_000_000);
    assert_eq!(
        c.on_leader(Duration::from_secs(5), |l| l.count("big")),
        RECORDS
    );
}
