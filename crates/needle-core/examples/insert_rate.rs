//! Measures insert throughput into a file-backed database with the default synced log:
//! one record per call (one fsync each) and batches (one fsync per batch).
//!
//! ```sh
//! cargo run --release -p needle-core --example insert_rate [-- N_SINGLE N_BATCH BATCH_SIZE DIM]
//! ```

use std::time::Instant;

use needle_core::{Database, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n_single, n_batch, batch, dim) = match args[..] {
        [a, b, c, d] => (a, b, c, d),
        _ => (2_000, 50_000, 1_000, 128),
    };
    let dir = std::env::temp_dir().join(format!("needle-insert-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut vector = move || -> Vec<f32> {
        (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    let db = Database::open(dir.join("single.needle"))?;
    db.create_collection("c", dim)?;
    let t = Instant::now();
    for i in 0..n_single {
        db.insert("c", &format!("s{i}"), vector(), None)?;
    }
    let single = t.elapsed();
    println!(
        "single inserts (fsync each): {n_single} in {single:.2?} = {:.0}/s",
        n_single as f64 / single.as_secs_f64()
    );
    drop(db);

    let db = Database::open(dir.join("batch.needle"))?;
    db.create_collection("c", dim)?;
    let t = Instant::now();
    for b in 0..n_batch / batch {
        let records = (0..batch)
            .map(|i| Record::new(format!("b{b}-{i}"), vector(), None))
            .collect();
        db.insert_batch("c", records)?;
    }
    let batched = t.elapsed();
    println!(
        "batched inserts ({batch} per batch, one fsync each, {} rayon threads): {n_batch} in {batched:.2?} = {:.0}/s",
        rayon::current_num_threads(),
        n_batch as f64 / batched.as_secs_f64()
    );
    let t = Instant::now();
    db.checkpoint()?;
    println!("checkpoint of {n_batch} × {dim}: {:.2?}", t.elapsed());
    drop(db);
    let t = Instant::now();
    let db = Database::open(dir.join("batch.needle"))?;
    println!("open: {:.2?} ({} records)", t.elapsed(), db.count("c")?);
    drop(db);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
