//! The load test of issue 13 (ignored: it runs for minutes; run it in release):
//!
//! ```text
//! NEEDLE_LOAD_SECS=120 cargo test --release -p needle-cli --test load -- --ignored --nocapture
//! ```
//!
//! Three `needle serve` nodes on loopback (the one process cluster, `tests/common/cluster.rs`)
//! under mixed load from `NEEDLE_LOAD_CLIENTS` (4) client threads for `NEEDLE_LOAD_SECS` (120)
//! seconds: single inserts, batch inserts of `NEEDLE_LOAD_BATCH` (10) records, deletes of one of
//! the thread's own records (whose `deleted_count` must be 1: a retry that was applied twice
//! would find nothing to delete), and searches at
//! `linearizable` and at `follower` consistency, each sent to a random node. Every
//! `NEEDLE_LOAD_KILL_SECS` (20) seconds the leader is SIGKILLed and restarted a second later.
//!
//! Every write carries its own `Idempotency-Key` and is retried with that same key (following
//! `not_leader` to the leader it names, else trying the next node) until it is acknowledged; a
//! read is retried until it succeeds. A failed attempt that was retried is an *error*, recorded
//! with its time since the last kill. At the end the test waits until the nodes converge and
//! asserts that every acknowledged write's id is present on every node, that each node holds
//! exactly the acknowledged records, and that every node's state checksum is equal. It prints
//! per operation kind the count, throughput, p50/p99 latency (of the whole attempt chain) and
//! errors, and each node's RSS at the start and at the end. It asserts that every error fell in a
//! failover window: at most `NEEDLE_LOAD_WINDOW_MS` (5000) after a kill, or, for a read sent to
//! the node just restarted (which replays its log before it serves reads), at most
//! `NEEDLE_LOAD_RESTART_WINDOW_MS` (15000) after its kill. Random choices replay from
//! `NEEDLE_SEED`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use needle_cli::client::{Client, Response};
use needle_cli::process_cluster::ProcessCluster;
use needle_testkit::{knob, seed};
use serde_json::{Value, json};

const DIM: usize = 32;
const COLLECTION: &str = "load";

/// A splitmix64 stream: the test's random choices, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIM)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Insert,
    Batch,
    SearchLinearizable,
    SearchFollower,
    Delete,
}

const KINDS: [Kind; 5] = [
    Kind::Insert,
    Kind::Batch,
    Kind::SearchLinearizable,
    Kind::SearchFollower,
    Kind::Delete,
];

/// A failed attempt that was retried: when (since the test's start), which kind, what.
#[derive(Debug, Clone)]
struct Failure {
    at: Duration,
    kind: Kind,
    /// The node the attempt went to (its id).
    node: u64,
    what: String,
}

/// What one client thread saw.
#[derive(Default)]
struct Tally {
    /// Latency of each completed operation (first attempt to success), by kind.
    latencies: Vec<(Kind, Duration)>,
    /// Every failed attempt (each was retried).
    failures: Vec<Failure>,
    /// `not_leader` answers followed to the leader they named (not errors).
    redirects: u64,
    /// The ids of every acknowledged insert whose record was not deleted since.
    acked: Vec<String>,
    /// The ids of every acknowledged delete.
    deleted: Vec<String>,
}

/// An answer after which a retry (same key) is the recipe: docs/http-api.md, "Safe retries".
fn retryable(r: &Response) -> bool {
    r.status >= 500
        || matches!(
            r.error_code(),
            Some("not_leader" | "no_leader" | "stale_read" | "proposal_dropped")
        )
}

struct Client4 {
    nodes: Vec<Client>,
    start: Instant,
    /// Whom to send the next write to first (a node index).
    leader: usize,
}

impl Client4 {
    /// POSTs `body` to `path` with `key` until a success; panics on a non-retryable refusal.
    /// `write` says whether it is a write (sent to the believed leader, following `not_leader`)
    /// or a read (sent to `first`, then the next nodes).
    fn until_success(
        &mut self,
        kind: Kind,
        path: &str,
        body: &Value,
        key: Option<&str>,
        first: usize,
        tally: &mut Tally,
    ) -> Response {
        let mut target = if key.is_some() { self.leader } else { first };
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < give_up,
                "{kind:?} {path} not done in 120 s; last failures: {:?}",
                &tally.failures[tally.failures.len().saturating_sub(5)..]
            );
            let client = &self.nodes[target];
            let answer = match key {
                Some(k) => client.post_with_key(path, body, k),
                None => client.post(path, body),
            };
            match answer {
                Ok(r) if r.is_success() => {
                    if key.is_some() {
                        self.leader = target;
                    }
                    return r;
                }
                Ok(r) if r.error_code() == Some("not_leader") => {
                    if let Some(l) = r.body["error"]["leader_id"].as_u64() {
                        tally.redirects += 1;
                        target = (l as usize - 1) % self.nodes.len();
                        continue;
                    }
                    self.fail(
                        kind,
                        target,
                        tally,
                        format!("node {}: {}", target + 1, r.body),
                    );
                }
                Ok(r) if retryable(&r) => {
                    self.fail(
                        kind,
                        target,
                        tally,
                        format!("node {}: {}", target + 1, r.body),
                    );
                }
                Ok(r) => panic!("{kind:?} {path} refused by node {}: {r:?}", target + 1),
                Err(e) => self.fail(kind, target, tally, format!("node {}: {e}", target + 1)),
            }
            target = (target + 1) % self.nodes.len();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fail(&self, kind: Kind, node: usize, tally: &mut Tally, what: String) {
        tally.failures.push(Failure {
            at: self.start.elapsed(),
            kind,
            node: node as u64 + 1,
            what,
        });
    }
}

/// One client thread: a random mix of the four operations until `stop`.
fn client_thread(
    t: usize,
    addrs: Vec<SocketAddr>,
    start: Instant,
    stop: Arc<AtomicBool>,
    seed: u64,
    batch: usize,
) -> Tally {
    let mut rng = Rng(seed ^ (t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut c = Client4 {
        nodes: addrs
            .into_iter()
            .map(|a| Client::new(a).with_timeout(Duration::from_secs(5)))
            .collect(),
        start,
        leader: 0,
    };
    let records = format!("/v1/collections/{COLLECTION}/records");
    let search = format!("/v1/collections/{COLLECTION}/search");
    let mut tally = Tally::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let kind = match KINDS[rng.below(KINDS.len())] {
            Kind::Delete if tally.acked.is_empty() => Kind::Insert,
            k => k,
        };
        let first = rng.below(c.nodes.len());
        let began = Instant::now();
        n += 1;
        let key = format!("load-{t}-{n}");
        match kind {
            Kind::Insert => {
                let id = format!("t{t}-{n}");
                let body = json!({"id": id, "vector": rng.vector(), "metadata": {"t": t, "n": n}});
                c.until_success(kind, &records, &body, Some(&key), first, &mut tally);
                tally.acked.push(id);
            }
            Kind::Batch => {
                let ids: Vec<String> = (0..batch).map(|j| format!("t{t}-{n}-{j}")).collect();
                let recs: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"id": id, "vector": rng.vector(), "metadata": {"t": t}}))
                    .collect();
                let body = json!({"records": recs});
                let path = format!("{records}/batch");
                c.until_success(kind, &path, &body, Some(&key), first, &mut tally);
                tally.acked.extend(ids);
            }
            Kind::Delete => {
                // One of this thread's records: a delete applied once says `deleted_count` 1;
                // applied twice (a retry that was not deduplicated) the answer says 0.
                let id = tally.acked.swap_remove(rng.below(tally.acked.len()));
                let path = format!("{records}/delete");
                let body = json!({"ids": [id]});
                let r = c.until_success(kind, &path, &body, Some(&key), first, &mut tally);
                assert_eq!(
                    r.body["deleted_count"], 1,
                    "the delete of {id} (key {key}) found no record: applied twice? {r:?}"
                );
                tally.deleted.push(id);
            }
            Kind::SearchLinearizable | Kind::SearchFollower => {
                let consistency = if kind == Kind::SearchLinearizable {
                    "linearizable"
                } else {
                    "follower"
                };
                let body = json!({"vector": rng.vector(), "k": 10, "consistency": consistency});
                let r = c.until_success(kind, &search, &body, None, first, &mut tally);
                assert!(r.body["results"].is_array(), "{r:?}");
            }
        }
        tally.latencies.push((kind, began.elapsed()));
    }
    tally
}

/// VmRSS of a process in KiB, from `/proc/<pid>/status` (None off Linux or when it is gone).
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a load test of minutes: NEEDLE_LOAD_SECS=120 cargo test --release -p needle-cli --test load -- --ignored --nocapture"]
fn three_nodes_under_mixed_load_with_a_leader_sigkill_every_20_s() {
    let secs = knob("NEEDLE_LOAD_SECS", 120);
    let kill_every = Duration::from_secs(knob("NEEDLE_LOAD_KILL_SECS", 20).max(1));
    let clients = knob("NEEDLE_LOAD_CLIENTS", 4) as usize;
    let batch = knob("NEEDLE_LOAD_BATCH", 10) as usize;
    let window = Duration::from_millis(knob("NEEDLE_LOAD_WINDOW_MS", 5000));
    let restart_window = Duration::from_millis(knob("NEEDLE_LOAD_RESTART_WINDOW_MS", 15000));
    let seed = seed("three_nodes_under_mixed_load_with_a_leader_sigkill_every_20_s");

    let mut c = Cluster::start(3, &[]);
    for id in 1..=3 {
        c.wait_http(id);
    }
    let leader = c.wait_leader(Duration::from_secs(30));
    let create = json!({"name": COLLECTION, "dimensions": DIM, "distance": "cosine"});
    let (r, _) = c
        .write(leader, "/v1/collections", &create, Duration::from_secs(30))
        .expect("create the collection");
    assert_eq!(r.status, 201, "{r:?}");
    let rss_start: Vec<Option<u64>> = (1..=3).map(|id| rss_kib(c.pid(id))).collect();
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<SocketAddr> = (1..=3).map(|id| c.node(id).http).collect();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            std::thread::spawn(move || client_thread(t, addrs, start, stop, seed, batch))
        })
        .collect();

    // The fault loop: SIGKILL the leader every `kill_every`, restart it a second later.
    let kills: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::default();
    let end = start + Duration::from_secs(secs);
    let mut next_kill = start + kill_every;
    while Instant::now() < end {
        if Instant::now() >= next_kill {
            if let Some((leader, term)) = ProcessCluster::wait_leader(&c, Duration::from_secs(10)) {
                kills.lock().unwrap().push((start.elapsed(), leader));
                c.kill(leader);
                eprintln!(
                    "{:>6.1} s: SIGKILLed the leader, node {leader} (term {term})",
                    start.elapsed().as_secs_f64()
                );
                std::thread::sleep(Duration::from_secs(1));
                c.spawn(leader);
            } else {
                eprintln!(
                    "{:>6.1} s: no leader to kill",
                    start.elapsed().as_secs_f64()
                );
            }
            next_kill += kill_every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread panicked"))
        .collect();
    let elapsed = start.elapsed();
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // The figures.
    let kills = kills.lock().unwrap().clone();
    println!(
        "load test: 3 nodes, {clients} clients, {:.1} s, batches of {batch}, {} leader kills, seed {seed}",
        elapsed.as_secs_f64(),
        kills.len()
    );
    println!(
        "{:<22} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "operation", "count", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    let failures: Vec<Failure> = tallies.iter().flat_map(|t| t.failures.clone()).collect();
    for kind in KINDS {
        let mut l: Vec<Duration> = tallies
            .iter()
            .flat_map(|t| &t.latencies)
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        l.sort();
        println!(
            "{:<22} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>7}",
            format!("{kind:?}"),
            l.len(),
            l.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&l, 0.50)),
            ms(percentile(&l, 0.99)),
            failures.iter().filter(|f| f.kind == kind).count()
        );
    }
    let redirects: u64 = tallies.iter().map(|t| t.redirects).sum();
    println!("not_leader redirects followed (not errors): {redirects}");
    // An error is inside a failover window when it came at most `window` after a kill, or, for
    // a read sent to the node just restarted (it replays its log and catches up before it can
    // serve a read), at most `restart_window` after its kill.
    let mut outside = Vec::new();
    let (mut in_failover, mut in_restart) = (0, 0);
    let mut worst = [Duration::ZERO; 2];
    for f in &failures {
        let read = matches!(f.kind, Kind::SearchLinearizable | Kind::SearchFollower);
        match kills.iter().rev().find(|(at, _)| *at <= f.at) {
            Some((at, _)) if f.at - *at <= window => {
                in_failover += 1;
                worst[0] = worst[0].max(f.at - *at);
            }
            Some((at, killed)) if read && *killed == f.node && f.at - *at <= restart_window => {
                in_restart += 1;
                worst[1] = worst[1].max(f.at - *at);
            }
            _ => outside.push(f.clone()),
        }
    }
    println!(
        "errors: {} in all; {in_failover} within {} ms after a kill (the latest {:.0} ms after it); \
         {in_restart} more were reads sent to the restarted node within {} ms after its kill (the \
         latest {:.0} ms after it); {} outside",
        failures.len(),
        window.as_millis(),
        ms(worst[0]),
        restart_window.as_millis(),
        ms(worst[1]),
        outside.len()
    );
    for f in failures.iter().take(5) {
        println!("  e.g. {:.0} ms: {:?}: {}", ms(f.at), f.kind, f.what);
    }
    for f in outside.iter().take(20) {
        println!("  outside a failover window: {f:?}");
    }

    // Convergence: every node at one applied index with one state checksum.
    let deadline = Instant::now() + Duration::from_secs(60);
    let statuses = loop {
        let s: Vec<Option<Value>> = (1..=3).map(|id| c.status(id, true)).collect();
        let same = s.iter().all(|x| {
            x.as_ref().is_some_and(|x| {
                s[0].as_ref().is_some_and(|y| {
                    x["state_checksum"] == y["state_checksum"]
                        && x["checksum_applied"] == y["checksum_applied"]
                })
            })
        });
        if same {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not converge in 60 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let statuses: Vec<Value> = statuses.into_iter().map(Option::unwrap).collect();
    println!(
        "converged: applied index {}, state checksum {} on every node",
        statuses[0]["checksum_applied"], statuses[0]["state_checksum"]
    );

    // Every acknowledged write is on every node, and nothing else is.
    let acked: Vec<String> = tallies.iter().flat_map(|t| t.acked.clone()).collect();
    let deleted: Vec<String> = tallies.iter().flat_map(|t| t.deleted.clone()).collect();
    let unique: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(
        unique.len(),
        acked.len(),
        "a write id was acknowledged twice"
    );
    for id in 1..=3 {
        let node = c.client(id);
        let r = node
            .post(
                &format!("/v1/collections/{COLLECTION}/count"),
                &json!({"consistency": "follower"}),
            )
            .expect("count");
        assert!(r.is_success(), "{r:?}");
        assert_eq!(
            r.body["count"].as_u64(),
            Some(acked.len() as u64),
            "node {id} holds a different number of records than were acknowledged"
        );
        let mut missing = Vec::new();
        for chunk in acked.chunks(5000) {
            let r = node
                .post(
                    &format!("/v1/collections/{COLLECTION}/records/get"),
                    &json!({"ids": chunk, "consistency": "follower"}),
                )
                .expect("get records");
            assert!(r.is_success(), "{r:?}");
            let got = r.body["records"].as_array().expect("records");
            missing.extend(
                chunk
                    .iter()
                    .zip(got)
                    .filter(|(_, rec)| rec.is_null())
                    .map(|(id, _)| id.clone()),
            );
        }
        for chunk in deleted.chunks(5000) {
            let r = node
                .post(
                    &format!("/v1/collections/{COLLECTION}/records/get"),
                    &json!({"ids": chunk, "consistency": "follower"}),
                )
                .expect("get records");
            assert!(r.is_success(), "{r:?}");
            let got = r.body["records"].as_array().expect("records");
            assert!(
                got.iter().all(Value::is_null),
                "node {id} still holds a record whose delete was acknowledged"
            );
        }
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged writes, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    println!(
        "every one of {} acknowledged records is on all 3 nodes (count and get), none of the {} acknowledged deletes' records",
        acked.len(),
        deleted.len()
    );

    let rss_end: Vec<Option<u64>> = (1..=3).map(|id| rss_kib(c.pid(id))).collect();
    let restarted: BTreeSet<u64> = kills.iter().map(|(_, id)| *id).collect();
    for id in 1..=3u64 {
        let i = id as usize - 1;
        println!(
            "node {id}: RSS {} KiB at the start, {} KiB at the end{}",
            rss_start[i].map_or("?".into(), |v| v.to_string()),
            rss_end[i].map_or("?".into(), |v| v.to_string()),
            if restarted.contains(&id) {
                " (a restarted process)"
            } else {
                ""
            }
        );
    }
    println!("load average at the start: {}", load_start.trim());
    println!("load average at the end:   {}", load_end.trim());
    assert!(
        outside.is_empty(),
        "{} errors fell outside the failover windows",
        outside.len()
    );
    c.stop();
}
