//! A follower that falls behind the leader's compacted log catches up by a snapshot streamed in
//! many chunks (through drops, duplicates and reordering), and ends byte-identical.

mod common;

use std::time::Duration;

use common::{Cluster, test_config};
use needle_raft::ReplicatedDatabaseConfig;

#[test]
fn follower_catches_up_by_snapshot_after_compaction() {
    let config = ReplicatedDatabaseConfig {
        snapshot_threshold: 50,
        log_retain_entries: 0,
        snapshot_chunk_size: 1024, // many chunks per snapshot
        ..test_config()
    };
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
    let snap_bytes: u64 = std::fs::read_dir(c.dir.path().join(format!("node-{lagger}-raft")))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    eprintln!(
        "follower_catches_up_by_snapshot_after_compaction: snapshot file {snap_bytes} bytes, chunks of 1024"
    );
    assert!(snap_bytes > 10 * 1024, "the snapshot spans many chunks");
    assert_eq!(
        c.on_leader(Duration::from_secs(5), |l| l.count("c")),
        6 * 60
    );
}
