//! Replicated insert throughput on the mem transport, with and without batching. A measurement,
//! not a pass/fail test: run with `cargo test -p needle-raft --test throughput -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

fn vector(i: usize) -> Vec<f32> {
    (0..32).map(|d| ((i * 31 + d) % 97) as f32 + 1.0).collect()
}

#[test]
#[ignore = "a measurement; run explicitly"]
fn replicated_insert_throughput() {
    let c = Cluster::new(3, common::seed("replicated_insert_throughput"));
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("c", 32));
    let leader = c.node(c.wait_leader(Duration::from_secs(5)));

    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        leader
            .insert("c", &format!("s{i}"), vector(i), None)
            .unwrap();
    }
    let single = n as f64 / t.elapsed().as_secs_f64();

    let clients = 8;
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..clients {
            let leader = &leader;
            s.spawn(move || {
                for i in 0..n / clients {
                    leader
                        .insert("c", &format!("p{k}-{i}"), vector(i), None)
                        .unwrap();
                }
            });
        }
    });
    let concurrent = n as f64 / t.elapsed().as_secs_f64();

    let batch = 100;
    let t = Instant::now();
    for b in 0..(n * 5) / batch {
        let records = (0..batch)
            .map(|i| needle_core::Record {
                id: format!("b{b}-{i}"),
                vector: vector(i),
                metadata: None,
            })
            .collect();
        leader.insert_batch("c", records).unwrap();
    }
    let batched = (n * 5) as f64 / t.elapsed().as_secs_f64();
    c.wait_converged(Duration::from_secs(30));
    eprintln!(
        "throughput (3 nodes, mem transport, 32-dim): sequential inserts {single:.0}/s, \
         {clients} concurrent clients {concurrent:.0}/s, insert_batch of {batch} {batched:.0} records/s"
    );
}
