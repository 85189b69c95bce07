//! Acknowledged means durable: a child process writes to a database and reports each write as
//! soon as the call returns; the parent kills it with SIGKILL at a random moment, reopens the
//! file, and checks that every acknowledged write is there (and every acknowledged delete gone).
//! Repeated many times on the same file, so recovery also runs on top of earlier recoveries.
//!
//! `NEEDLE_CRASH_KILLS=N` sets the number of kills (default 25); `NEEDLE_SEED` replays a run.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use needle_core::{Database, Record};
use serde_json::json;

const DIM: usize = 8;

fn vector_for(id: &str) -> Vec<f32> {
    let mut rng = common::Rng(
        id.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    (0..DIM).map(|_| rng.f32() + 0.01).collect()
}

/// The child: runs only when the parent starts this test binary with NEEDLE_CRASH_CHILD set.
#[test]
#[ignore = "run by crash_recovery_keeps_every_acknowledged_write as a child process"]
fn crash_child() {
    let Ok(path) = std::env::var("NEEDLE_CRASH_CHILD") else {
        return;
    };
    let round: u64 = std::env::var("NEEDLE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = common::Rng(round.wrapping_mul(0x1234_5678_9abc_def1));
    let db = Database::open(&path).unwrap_or_else(|e| panic!("child opens the database: {e}"));
    if db.list_collections().is_empty() {
        db.create_collection("c", DIM).unwrap();
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut acked: Vec<String> = Vec::new();
    for i in 0.. {
        let roll = rng.below(100);
        if roll < 60 {
            let id = format!("r{round}-{i}");
            db.insert("c", &id, vector_for(&id), Some(json!({"round": round})))
                .unwrap();
            writeln!(out, "ACK {id}").unwrap();
            acked.push(id);
        } else if roll < 80 {
            let ids: Vec<String> = (0..1 + rng.below(20))
                .map(|j| format!("r{round}-{i}-b{j}"))
                .collect();
            let records = ids
                .iter()
                .map(|id| Record::new(id.clone(), vector_for(id), None))
                .collect();
            db.insert_batch("c", records).unwrap();
            for id in ids {
                writeln!(out, "ACK {id}").unwrap();
                acked.push(id);
            }
        } else if roll < 92 && !acked.is_empty() {
            let id = acked.swap_remove(rng.below(acked.len() as u64) as usize);
            // Announced first: a kill between the delete and its acknowledgement leaves the
            // record present or absent, and the parent must accept either.
            writeln!(out, "TRY-DEL {id}").unwrap();
            out.flush().unwrap();
            db.delete("c", &id).unwrap();
            writeln!(out, "DEL {id}").unwrap();
        } else if roll < 95 {
            db.checkpoint().unwrap();
        } else {
            db.compact("c").unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn crash_recovery_keeps_every_acknowledged_write() {
    let seed = common::seed("crash_recovery_keeps_every_acknowledged_write");
    let kills = needle_testkit::knob("NEEDLE_CRASH_KILLS", 25);
    let mut rng = common::Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.needle");
    let exe = std::env::current_exe().unwrap();
    // What must be there, and what must not, after every kill.
    let mut present: HashSet<String> = HashSet::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut total_acks = 0usize;
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NEEDLE_CRASH_CHILD", &path)
            .env("NEEDLE_CRASH_ROUND", (seed.wrapping_add(round)).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements, or a random time, whichever first.
        let target = 1 + rng.below(300) as usize;
        let deadline = Instant::now() + Duration::from_millis(30 + rng.below(700));
        let mut lines = Vec::new();
        while lines.len() < target && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(l) => lines.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter()); // printed before the kill: acknowledged too
        for line in &lines {
            if let Some(id) = line.strip_prefix("ACK ") {
                present.insert(id.to_string());
                total_acks += 1;
            } else if let Some(id) = line.strip_prefix("TRY-DEL ") {
                present.remove(id);
            } else if let Some(id) = line.strip_prefix("DEL ") {
                deleted.insert(id.to_string());
            }
        }
        let db =
            Database::open(&path).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let mut missing = Vec::new();
        for id in &present {
            match db.get("c", id).unwrap() {
                Some(r) => assert_eq!(r.vector.len(), DIM),
                None => missing.push(id.clone()),
            }
        }
        assert!(
            missing.is_empty(),
            "round {round} (seed {seed}): acknowledged writes lost: {missing:?}"
        );
        for id in &deleted {
            assert!(
                db.get("c", id).unwrap().is_none(),
                "round {round}: acknowledged delete of {id} undone"
            );
        }
        // The graph still finds records after recovery.
        if let Some(id) = present.iter().next() {
            let hits = db.search("c", &vector_for(id), 5).unwrap();
            assert!(!hits.is_empty());
        }
    }
    let counts: HashMap<&str, usize> = [
        ("kills", kills as usize),
        ("acks", total_acks),
        ("present", present.len()),
    ]
    .into();
    eprintln!("crash test: {counts:?}");
    assert!(total_acks > 0, "the child never acknowledged a write");
}

/// The lock holds across processes too: a child that opens a file this process has open fails
/// with the "already open" error.
#[test]
fn second_process_cannot_open_a_locked_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.needle");
    let _db = Database::open(&path).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NEEDLE_CRASH_CHILD", &path)
        .env("NEEDLE_CRASH_ROUND", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the second process opened a locked database"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already open"), "child said: {stderr}");
}
