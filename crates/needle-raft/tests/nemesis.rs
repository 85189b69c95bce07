//! The randomised nemesis: concurrent clients write and read a few keys through random nodes
//! while a nemesis partitions, isolates, crashes and restarts nodes and drops, delays,
//! duplicates and reorders messages. Afterwards: every key's history must be linearizable
//! (Wing–Gong–Lowe, timed-out writes maybe-applied), every acknowledged append present, no
//! definitely-failed append present, and every node's checksum identical.
//!
//! A default run tries 5 seeds of 1.2 s of faults each (S, S+1, ...); `NEEDLE_SEED=S` replays from
//! S, `NEEDLE_NEMESIS_SEEDS=N` runs N seeds, and `NEEDLE_NEMESIS_MS` sets each run's length.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::linearizability::{Event, Op, check_register};
use common::{Cluster, test_config};
use needle_raft::ReadConsistency;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: u64 = 4;

#[derive(Default)]
struct History {
    per_key: BTreeMap<String, Vec<Event>>,
    acked_appends: Vec<String>,
    failed_appends: Vec<String>,
    ok_writes: Vec<(u64, u64)>, // (call, ret) of acknowledged writes
}

struct RunReport {
    gaps_ms: Vec<u64>,
    ops: usize,
    maybe: usize,
}

fn run(seed: u64, duration: Duration) -> RunReport {
    let n = 3 + 2 * (seed % 2); // 3 or 5 nodes
    let config = test_config()
        .snapshot_threshold(150)
        .log_retain_entries(20)
        .snapshot_chunk_size(4096);
    let c = Cluster::with_config(n, seed, config);
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as u64;
    c.wait_leader(Duration::from_secs(10));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("kv", 2));
    c.on_leader(Duration::from_secs(5), |l| l.create_collection("log", 2));
    let history = Mutex::new(History::default());
    let crashes = Mutex::new(Vec::<u64>::new());
    let stop = AtomicBool::new(false);
    let maybe = Mutex::new(0usize);

    std::thread::scope(|s| {
        for client in 0..3u64 {
            let (c, history, stop, maybe) = (&c, &history, &stop, &maybe);
            s.spawn(move || {
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (client + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let ids = c.live_ids();
                    if ids.is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    // Mostly through the leader, sometimes through a random node.
                    let node = match c.live().into_iter().find(|x| x.is_leader()) {
                        Some(l) if rng.random_bool(0.8) => l,
                        _ => match c.try_node(ids[rng.random_range(0..ids.len())]) {
                            Some(x) => x,
                            None => continue,
                        },
                    };
                    let key = format!("k{}", rng.random_range(0..KEYS));
                    let roll = rng.random_range(0..100);
                    let call = now();
                    if roll < 45 {
                        let v = (client << 32) | n;
                        let r = node.insert(
                            "kv",
                            &key,
                            vec![1.0, 0.0],
                            Some(serde_json::json!({ "v": v })),
                        );
                        let mut h = history.lock().unwrap();
                        match r {
                            Ok(()) => {
                                let ret = now();
                                h.per_key.entry(key).or_default().push(Event {
                                    op: Op::Write(v),
                                    call,
                                    ret: Some(ret),
                                });
                                h.ok_writes.push((call, ret));
                            }
                            Err(e) if e.may_have_been_applied() => {
                                *maybe.lock().unwrap() += 1;
                                h.per_key.entry(key).or_default().push(Event {
                                    op: Op::Write(v),
                                    call,
                                    ret: None,
                                });
                            }
                            Err(_) => {} // definitely not applied: no effect to check
                        }
                    } else if roll < 60 {
                        let id = format!("a{client}-{n}");
                        let r = node.insert("log", &id, vec![0.0, 1.0], None);
                        let mut h = history.lock().unwrap();
                        match r {
                            Ok(()) => h.acked_appends.push(id),
                            Err(e) if e.may_have_been_applied() => {}
                            Err(_) => h.failed_appends.push(id),
                        }
                    } else {
                        let r = node.get_with("kv", &key, ReadConsistency::Linearizable);
                        if let Ok(rec) = r {
                            let ret = now();
                            let v = rec.and_then(|r| r.metadata).and_then(|m| m["v"].as_u64());
                            history
                                .lock()
                                .unwrap()
                                .per_key
                                .entry(key)
                                .or_default()
                                .push(Event {
                                    op: Op::Read(v),
                                    call,
                                    ret: Some(ret),
                                });
                        }
                    }
                }
            });
        }

        // The nemesis.
        let mut rng = StdRng::seed_from_u64(seed);
        let mut down: Vec<(u64, Instant)> = Vec::new();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..300)));
            down.retain(|&(id, at)| {
                if Instant::now() >= at {
                    c.restart(id);
                    false
                } else {
                    true
                }
            });
            let max_down = ((n - 1) / 2) as usize;
            match rng.random_range(0..8) {
                0 | 1 if down.len() < max_down => {
                    // Crash the leader (measures the write gap) or a random node.
                    let leader = c
                        .live()
                        .into_iter()
                        .find(|x| x.is_leader())
                        .map(|x| x.node_id());
                    let ids = c.live_ids();
                    let victim = match leader {
                        Some(l) if rng.random_bool(0.7) => l,
                        _ => ids[rng.random_range(0..ids.len())],
                    };
                    if Some(victim) == leader {
                        crashes.lock().unwrap().push(now());
                    }
                    c.crash(victim);
                    down.push((
                        victim,
                        Instant::now() + Duration::from_millis(rng.random_range(200..800)),
                    ));
                }
                2 => {
                    let mut ids: Vec<u64> = (1..=n).collect();
                    let cut = rng.random_range(1..n as usize);
                    for i in (1..ids.len()).rev() {
                        ids.swap(i, rng.random_range(0..=i));
                    }
                    let (a, b) = ids.split_at(cut);
                    c.net.partition(&[a, b]);
                }
                3 => c.net.isolate(rng.random_range(1..=n)),
                4 => {
                    c.net.set_drop_rate(rng.random_range(0.0..0.1));
                    c.net.set_duplicate_rate(rng.random_range(0.0..0.1));
                    c.net.set_reorder_rate(rng.random_range(0.0..0.2));
                    c.net.set_delay(
                        Duration::ZERO,
                        Duration::from_millis(rng.random_range(0..5)),
                    );
                }
                _ => c.net.heal_all(),
            }
        }
        c.net.heal_all();
        for (id, _) in down.drain(..) {
            c.restart(id);
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });

    c.wait_leader(Duration::from_secs(20));
    c.wait_converged(Duration::from_secs(30));
    let mut h = history.into_inner().unwrap();
    // Final reads, after every other operation.
    for k in 0..KEYS {
        let key = format!("k{k}");
        let call = now();
        let rec = c.on_leader(Duration::from_secs(10), |l| {
            l.get_with("kv", &key, ReadConsistency::Linearizable)
        });
        let v = rec.and_then(|r| r.metadata).and_then(|m| m["v"].as_u64());
        h.per_key.entry(key).or_default().push(Event {
            op: Op::Read(v),
            call,
            ret: Some(now()),
        });
    }
    let mut ops = 0;
    for (key, events) in &h.per_key {
        ops += events.len();
        if let Err(e) = check_register(events) {
            panic!("seed {seed}: key {key}: {e}");
        }
    }
    for id in &h.acked_appends {
        let got = c.on_leader(Duration::from_secs(10), |l| l.get("log", id));
        assert!(got.is_some(), "seed {seed}: acknowledged append {id} lost");
    }
    for id in &h.failed_appends {
        let got = c.on_leader(Duration::from_secs(10), |l| l.get("log", id));
        assert!(
            got.is_none(),
            "seed {seed}: append {id} reported as not applied was applied"
        );
    }
    let sums: Vec<u64> = c.live().iter().map(|x| x.state_checksum()).collect();
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: checksums differ {sums:?}"
    );
    let gaps_ms = crashes
        .into_inner()
        .unwrap()
        .iter()
        .filter_map(|&t| {
            h.ok_writes
                .iter()
                .filter(|(call, _)| *call >= t)
                .map(|(_, ret)| ret - t)
                .min()
        })
        .map(|us| us / 1000)
        .collect();
    let maybe = *maybe.lock().unwrap();
    RunReport {
        gaps_ms,
        ops: ops + h.acked_appends.len() + h.failed_appends.len(),
        maybe,
    }
}

#[test]
fn nemesis_linearizable_under_faults() {
    let first = common::seed("nemesis_linearizable_under_faults");
    let seeds = needle_testkit::knob("NEEDLE_NEMESIS_SEEDS", 5);
    let duration = Duration::from_millis(needle_testkit::knob("NEEDLE_NEMESIS_MS", 1200));
    let mut gaps = Vec::new();
    for i in 0..seeds {
        let seed = first.wrapping_add(i);
        let r = run(seed, duration);
        eprintln!(
            "nemesis: seed {seed}: {} operations, {} maybe-applied writes, leader-crash write gaps {:?} ms",
            r.ops, r.maybe, r.gaps_ms
        );
        gaps.extend(r.gaps_ms);
    }
    gaps.sort_unstable();
    if !gaps.is_empty() {
        eprintln!(
            "nemesis: {seeds} seeds, {} leader crashes, write gap median {} ms, max {} ms",
            gaps.len(),
            gaps[gaps.len() / 2],
            gaps[gaps.len() - 1]
        );
    }
}
