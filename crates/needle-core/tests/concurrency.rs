//! Writes called from inside rayon tasks finish: `insert_batch` and `compact` plan in Needle's own
//! pool while holding the database's writer lock, and must not run the caller's other queued
//! rayon tasks (which block on that lock) while they wait.

use std::sync::mpsc;
use std::time::Duration;

use needle_core::{Database, Record};
use rayon::prelude::*;

#[test]
fn insert_batch_and_compact_from_a_par_iter_finish() {
    let db = Database::in_memory();
    db.create_collection("c", 8).unwrap();
    let (tx, rx) = mpsc::channel();
    let worker = db.clone();
    std::thread::spawn(move || {
        (0..32usize).into_par_iter().for_each(|b| {
            let records = (0..300)
                .map(|i| {
                    let v = (0..8)
                        .map(|j| ((b * 300 + i) * (j + 3) % 101) as f32 + 0.5)
                        .collect();
                    Record::new(format!("b{b}-{i}"), v, None)
                })
                .collect();
            worker.insert_batch("c", records).unwrap();
            if b % 8 == 0 {
                worker.compact("c").unwrap();
            }
        });
        let _ = tx.send(worker.count("c").unwrap());
    });
    // A deadlock never sends; generous for a slow machine, and not a timing assertion on speed.
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(n) => assert_eq!(n, 32 * 300),
        Err(_) => panic!("insert_batch from rayon tasks deadlocked (no result after 300 s)"),
    }
}
