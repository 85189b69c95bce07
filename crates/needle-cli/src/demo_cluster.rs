//! `needle demo --cluster`: the tour on a three-node cluster of local `needle serve` processes
//! talking Raft over TCP on loopback. It inserts words (one at a time, then in batches) through
//! the HTTP API, searches through a follower and the leader, SIGKILLs the leader, measures the
//! write gap until the new leader acknowledges a write, restarts the killed node and waits for
//! it to catch up, checks that every acknowledged write is on every node with equal database
//! checksums, and stops everything it started (also on error: the processes are killed on drop).

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::demo;
use crate::error::{CliError, Result};
use crate::process_cluster::{ProcessCluster, WriteFailure};
use crate::{output, progress};

const COLLECTION: &str = "words";
const NODES: u64 = 3;
const SINGLE_WRITES: usize = 200;
const BATCH: usize = 500;
/// Raft timings for the demo: 10 ms ticks, heartbeats every 50 ms, elections after 500–1000 ms.
const TIMINGS: [&str; 6] = [
    "--tick-ms",
    "10",
    "--heartbeat-ms",
    "50",
    "--election-timeout-ms",
    "500",
];

/// The demo's processes: the one process cluster (`crate::process_cluster`, which the CLI's
/// tests run too) with the demo's errors. Dropping it kills whatever still runs.
struct Cluster(ProcessCluster);

impl Deref for Cluster {
    type Target = ProcessCluster;
    fn deref(&self) -> &ProcessCluster {
        &self.0
    }
}

impl Cluster {
    fn new(root: &Path) -> Result<Cluster> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::io("finding the needle executable", e))?;
        ProcessCluster::new(exe, root, NODES, &random_secret(), &TIMINGS)
            .map(Cluster)
            .map_err(|e| CliError::io("preparing the cluster (free ports, secret file)", e))
    }

    fn start(&mut self, id: u64) -> Result<()> {
        self.0
            .spawn(id)
            .map_err(|e| CliError::io("starting `needle serve`", e))
    }

    /// Waits until a running node leads and the others follow it; returns (leader, term).
    fn wait_for_leader(&self, timeout: Duration) -> Result<(u64, u64)> {
        self.0
            .wait_leader(timeout)
            .ok_or_else(|| self.failure("no leader was elected"))
    }

    /// Sends a write to `guess` first, following `not_leader` answers and skipping nodes that
    /// are down, until it is acknowledged or `timeout` passes. Returns the answer and the node.
    fn write(
        &self,
        guess: u64,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(Value, u64)> {
        match self.0.write(guess, path, body, timeout) {
            Ok((r, at)) => Ok((r.body, at)),
            Err(e @ WriteFailure::Refused { .. }) => Err(CliError::Http(e.to_string())),
            Err(e @ WriteFailure::TimedOut { .. }) => Err(self.failure(&e.to_string())),
        }
    }

    /// SIGKILLs node `id`: no chance to flush or say goodbye.
    fn kill(&mut self, id: u64) -> Result<()> {
        self.0
            .kill(id)
            .map_err(|e| CliError::io(format!("killing node {id}"), e))
    }

    /// Stops every node through its API and waits for the processes to exit.
    fn stop(&mut self) {
        self.0.stop();
    }

    /// An error that points at the nodes' logs.
    fn failure(&self, what: &str) -> CliError {
        CliError::Http(format!(
            "{what} (node logs: {}/node*.log)",
            self.0.root.display()
        ))
    }
}

pub fn run(args: &DemoArgs) -> Result<()> {
    if args.file.is_some() {
        return Err(CliError::Usage(
            "--file applies to the local demo; the cluster demo works in a temporary directory"
                .into(),
        ));
    }
    let total = Instant::now();
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => demo::default_data_dir()?,
    };
    let data = demo::load(&dir)?;
    let word = demo::pick_word(&data, args.word.as_deref())?;
    let query = demo::lookup(&data, &word).expect("pick_word returns a word the data has");
    let n = args
        .records
        .unwrap_or(5_000)
        .clamp(SINGLE_WRITES + 1, data.words.len().max(SINGLE_WRITES + 1))
        .min(data.words.len());
    let dim = data.vectors[0].len();

    let temp = tempfile::Builder::new()
        .prefix("needle-cluster-demo-")
        .tempdir()
        .map_err(|e| CliError::io("creating a temporary directory", e))?;
    let mut cluster = Cluster::new(temp.path())?;
    let t = Instant::now();
    for id in 1..=NODES {
        cluster.start(id)?;
    }
    let (mut leader, term) = cluster.wait_for_leader(Duration::from_secs(30))?;
    say(&format!(
        "cluster  {NODES} `needle serve` processes on loopback (Raft over TCP with a shared secret, HTTP API): {}",
        cluster
            .nodes
            .iter()
            .map(|n| format!("node {} http://{}", n.id, n.http))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    say(&format!(
        "elect    node {leader} leads term {term}  [{}]",
        output::duration(t.elapsed())
    ))?;

    let (_, _) = cluster.write(
        leader,
        "/v1/collections",
        &json!({"name": COLLECTION, "dimensions": dim, "ef_construction": 64}),
        Duration::from_secs(10),
    )?;
    let mut acked: Vec<String> = Vec::new();
    let path = format!("/v1/collections/{COLLECTION}/records");
    let record = |i: usize| json!({"id": data.words[i], "vector": data.vectors[i], "metadata": demo::metadata(&data.words[i])});

    // Single writes: each one a Raft round trip, acknowledged when a majority has it.
    let t = Instant::now();
    for i in 0..SINGLE_WRITES {
        let (_, at) = cluster.write(leader, &path, &record(i), Duration::from_secs(10))?;
        leader = at;
        acked.push(data.words[i].clone());
    }
    let single = t.elapsed();
    say(&format!(
        "insert   {SINGLE_WRITES} records one per request through node {leader}  [{}, {:.0} writes/s]",
        output::duration(single),
        SINGLE_WRITES as f64 / single.as_secs_f64()
    ))?;

    // Batches: one Raft entry each.
    let t = Instant::now();
    let bar = progress::records((n - SINGLE_WRITES) as u64, "replicating");
    let batch_path = format!("/v1/collections/{COLLECTION}/records/batch");
    for start in (SINGLE_WRITES..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let records: Vec<Value> = (start..end).map(record).collect();
        let (_, at) = cluster.write(
            leader,
            &batch_path,
            &json!({ "records": records }),
            Duration::from_secs(30),
        )?;
        leader = at;
        acked.extend(data.words[start..end].iter().cloned());
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let batched = t.elapsed();
    say(&format!(
        "insert   {} records in batches of {BATCH} through node {leader}  [{}, {:.0} records/s]",
        n - SINGLE_WRITES,
        output::duration(batched),
        (n - SINGLE_WRITES) as f64 / batched.as_secs_f64()
    ))?;

    // Reads: linearizable through the leader, then a bounded-staleness read on a follower.
    let follower = (1..=NODES).find(|&i| i != leader).unwrap_or(leader);
    for (node, consistency) in [(leader, "linearizable"), (follower, "follower")] {
        let t = Instant::now();
        let r = cluster
            .client(node)
            .post(
                &format!("/v1/collections/{COLLECTION}/search"),
                &json!({"vector": query, "k": 6, "consistency": consistency}),
            )
            .map_err(|e| CliError::Http(format!("search on node {node}: {e}")))?;
        let took = t.elapsed();
        let list: Vec<String> = r.body["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h["id"] != word.as_str())
                    .take(5)
                    .map(|h| {
                        format!(
                            "{} ({:.3})",
                            h["id"].as_str().unwrap_or("?"),
                            h["distance"].as_f64().unwrap_or(f64::NAN)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        say(&format!(
            "search   nearest to '{word}' on node {node} ({consistency})  [{} over HTTP]\n         {}",
            output::duration(took),
            list.join(", ")
        ))?;
    }

    // Search latency through HTTP: the held-out query words (or base words), k = 10.
    let queries: Vec<&Vec<f32>> = if data.query_vectors.is_empty() {
        data.vectors.iter().take(200).collect()
    } else {
        data.query_vectors.iter().take(200).collect()
    };
    for (node, consistency) in [(leader, "linearizable"), (follower, "follower")] {
        let mut times = Vec::with_capacity(queries.len());
        for q in &queries {
            let t = Instant::now();
            let r = cluster
                .client(node)
                .post(
                    &format!("/v1/collections/{COLLECTION}/search"),
                    &json!({"vector": q, "k": 10, "consistency": consistency}),
                )
                .map_err(|e| CliError::Http(format!("search on node {node}: {e}")))?;
            if !r.is_success() {
                return Err(CliError::Http(format!("search on node {node}: {}", r.body)));
            }
            times.push(t.elapsed());
        }
        times.sort();
        say(&format!(
            "latency  {} searches (k=10) on node {node} ({consistency}) over HTTP: median {}, p99 {}",
            times.len(),
            output::duration(times[times.len() / 2]),
            output::duration(times[times.len() * 99 / 100])
        ))?;
    }

    // Kill the leader, measure the gap, restart, catch up.
    let mut gaps = Vec::new();
    let mut next = n;
    for round in 1..=args.rounds {
        let victim = leader;
        let killed_at = Instant::now();
        cluster.kill(victim)?;
        // The first acknowledged write after the SIGKILL, through whichever node leads now.
        let probe_id = format!("probe-{round}");
        let probe = json!({"id": probe_id, "vector": data.vectors[round as usize % n], "metadata": {"probe": round}});
        let survivor = cluster.running()[0];
        let (_, at) = cluster.write(survivor, &path, &probe, Duration::from_secs(30))?;
        let gap = killed_at.elapsed();
        gaps.push(gap);
        acked.push(probe_id);
        leader = at;
        let term = cluster
            .status(leader, false)
            .and_then(|s| s["term"].as_u64())
            .unwrap_or(0);
        say(&format!(
            "kill     node {victim} (the leader) with SIGKILL; node {leader} elected in term {term}; first write acknowledged {} after the kill",
            output::duration(gap)
        ))?;
        // More writes while the old leader is down.
        let extra = 100.min(data.words.len().saturating_sub(next));
        if extra > 0 {
            let records: Vec<Value> = (next..next + extra).map(record).collect();
            let (_, at) = cluster.write(
                leader,
                &batch_path,
                &json!({ "records": records }),
                Duration::from_secs(30),
            )?;
            leader = at;
            acked.extend(data.words[next..next + extra].iter().cloned());
            next += extra;
        }
        let t = Instant::now();
        cluster.start(victim)?;
        let target = cluster
            .status(leader, false)
            .and_then(|s| s["commit"].as_u64())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let applied = cluster
                .status(victim, false)
                .and_then(|s| s["applied"].as_u64())
                .unwrap_or(0);
            if applied >= target {
                break;
            }
            if Instant::now() > deadline {
                return Err(cluster.failure(&format!(
                    "node {victim} did not catch up to index {target} (at {applied})"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        say(&format!(
            "restart  node {victim}: caught up to index {target} (the writes it missed came from the new leader)  [{}]",
            output::duration(t.elapsed())
        ))?;
    }

    // Every acknowledged write on every node, and equal checksums at equal applied index.
    let t = Instant::now();
    let expected: BTreeSet<&str> = acked.iter().map(String::as_str).collect();
    let commit = cluster
        .status(leader, false)
        .and_then(|s| s["commit"].as_u64())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut checksums = Vec::new();
    while checksums.is_empty() || checksums.iter().any(|c| *c != checksums[0]) {
        if Instant::now() > deadline {
            return Err(cluster.failure(&format!(
                "the nodes did not converge on one state: {checksums:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
        checksums = (1..=NODES)
            .map(|id| {
                cluster
                    .status(id, true)
                    .filter(|s| s["checksum_applied"].as_u64() >= Some(commit))
                    .map(|s| (s["checksum_applied"].clone(), s["state_checksum"].clone()))
                    .unwrap_or((Value::Null, json!(id)))
            })
            .collect();
    }
    for id in 1..=NODES {
        let r = cluster
            .client(id)
            .get(&format!(
                "/v1/collections/{COLLECTION}/ids?consistency=follower"
            ))
            .map_err(|e| CliError::Http(format!("listing ids on node {id}: {e}")))?;
        let ids: BTreeSet<&str> = r.body["ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let missing: Vec<&&str> = expected.difference(&ids).take(5).collect();
        if !missing.is_empty() {
            return Err(cluster.failure(&format!(
                "node {id} lacks acknowledged writes, e.g. {missing:?}"
            )));
        }
    }
    say(&format!(
        "verify   all {} acknowledged writes are on each of the {NODES} nodes; state checksums equal ({}) at index {}  [{}]",
        expected.len(),
        checksums[0].1.as_str().unwrap_or("?"),
        checksums[0].0,
        output::duration(t.elapsed())
    ))?;
    if gaps.len() > 1 {
        let mut sorted = gaps.clone();
        sorted.sort();
        say(&format!(
            "gaps     write gap after the leader's SIGKILL over {} rounds: median {}, max {}, min {}",
            sorted.len(),
            output::duration(sorted[sorted.len() / 2]),
            output::duration(sorted[sorted.len() - 1]),
            output::duration(sorted[0])
        ))?;
    }
    let t = Instant::now();
    cluster.stop();
    say(&format!(
        "stop     every node shut down through POST /v1/admin/shutdown  [{}]",
        output::duration(t.elapsed())
    ))?;
    say(&format!("done in {}.", output::duration(total.elapsed())))
}

fn say(line: &str) -> Result<()> {
    output::print(&format!("{line}\n"))
}

/// 32 random hex characters.
fn random_secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
