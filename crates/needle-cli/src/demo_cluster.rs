//! `needle demo --cluster`: the tour on a three-node cluster of local `needle serve` processes
//! talking Raft over TCP on loopback. It inserts words (one at a time, then in batches) through
//! the HTTP API, searches through a follower and the leader, SIGKILLs the leader, measures the
//! write gap until the new leader acknowledges a write, restarts the killed node and waits for
//! it to catch up, checks that every acknowledged write is on every node with equal database
//! checksums, and stops everything it started (also on error: the processes are killed on drop).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::client::{Client, Response};
use crate::demo;
use crate::error::{CliError, Result};
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

/// One `needle serve` process of the demo.
struct Node {
    id: u64,
    raft: SocketAddr,
    http: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

/// The demo's processes; dropping it kills whatever still runs.
struct Cluster {
    exe: PathBuf,
    root: PathBuf,
    nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    fn new(root: &Path) -> Result<Cluster> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::io("finding the needle executable", e))?;
        let ports = free_ports(2 * NODES as usize)?;
        let nodes = (1..=NODES)
            .map(|id| {
                let i = (id - 1) as usize;
                Node {
                    id,
                    raft: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    http: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    dir: root.join(format!("node{id}")),
                    child: None,
                }
            })
            .collect();
        let secret = root.join("secret");
        std::fs::write(&secret, random_secret())
            .map_err(|e| CliError::io("writing the cluster secret", e))?;
        Ok(Cluster {
            exe,
            root: root.to_path_buf(),
            nodes,
        })
    }

    fn start(&mut self, id: u64) -> Result<()> {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| format!("{}={}", n.id, n.raft))
            .collect();
        let peer_http: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| format!("{}={}", n.id, n.http))
            .collect();
        let log_path = self.root.join(format!("node{id}.log"));
        let (dir, raft, http) = {
            let n = self.node_mut(id);
            (n.dir.clone(), n.raft, n.http)
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| CliError::io(format!("opening {}", log_path.display()), e))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data")
            .arg(&dir)
            .args(["--raft", &raft.to_string()])
            .args(["--http", &http.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--peer-http", &peer_http.join(",")])
            .arg("--secret-file")
            .arg(self.root.join("secret"))
            .args(TIMINGS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| CliError::io("starting `needle serve`", e))?;
        self.node_mut(id).child = Some(child);
        Ok(())
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        let i = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node id");
        &mut self.nodes[i]
    }

    fn client(&self, id: u64) -> Client {
        let n = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("known node id");
        Client::new(n.http).with_timeout(Duration::from_secs(10))
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    fn status(&self, id: u64, checksum: bool) -> Option<Value> {
        let path = if checksum {
            "/v1/status?checksum=true"
        } else {
            "/v1/status"
        };
        self.client(id)
            .with_timeout(Duration::from_secs(2))
            .get(path)
            .ok()
            .filter(Response::is_success)
            .map(|r| r.body)
    }

    /// Waits until a running node leads and the others follow it; returns (leader, term).
    fn wait_for_leader(&self, timeout: Duration) -> Result<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let statuses: Vec<Value> = self
                .running()
                .into_iter()
                .filter_map(|id| self.status(id, false))
                .collect();
            if let Some(l) = statuses.iter().find(|s| s["role"] == "leader") {
                let id = l["id"].as_u64().unwrap_or(0);
                if statuses.iter().filter(|s| s["leader"] == id).count() >= 2 {
                    return Ok((id, l["term"].as_u64().unwrap_or(0)));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.failure("no leader was elected"))
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
        let deadline = Instant::now() + timeout;
        let mut target = guess;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.client(target).post(path, body) {
                Ok(r) if r.is_success() => return Ok((r.body, target)),
                Ok(r) if r.error_code() == Some("not_leader") => {
                    let leader = r.body["error"]["leader_id"].as_u64();
                    match leader.filter(|l| self.running().contains(l)) {
                        Some(l) if l != target => {
                            target = l;
                            continue;
                        }
                        _ => last = format!("node {target}: {}", r.body["error"]["message"]),
                    }
                }
                Ok(r) if r.status >= 500 => {
                    last = format!("node {target}: {}", r.body["error"]["message"]);
                }
                Ok(r) => {
                    return Err(CliError::Http(format!(
                        "node {target} refused the write ({}): {}",
                        r.status, r.body["error"]["message"]
                    )));
                }
                Err(e) => last = format!("node {target}: {e}"),
            }
            let running = self.running();
            let next = running
                .iter()
                .position(|&n| n == target)
                .map_or(0, |i| i + 1);
            target = running[next % running.len()];
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(self.failure(&format!(
            "a write was not acknowledged in {timeout:?}: {last}"
        )))
    }

    fn kill(&mut self, id: u64) -> Result<()> {
        if let Some(mut c) = self.node_mut(id).child.take() {
            // `Child::kill` is SIGKILL on Unix: no chance to flush or say goodbye.
            c.kill()
                .map_err(|e| CliError::io(format!("killing node {id}"), e))?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// Stops every node through its API and waits for the processes to exit.
    fn stop(&mut self) {
        for id in self.running() {
            let _ = self
                .client(id)
                .with_timeout(Duration::from_secs(2))
                .post("/v1/admin/shutdown", &json!({}));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// An error that points at the nodes' logs.
    fn failure(&self, what: &str) -> CliError {
        CliError::Http(format!(
            "{what} (node logs: {}/node*.log)",
            self.root.display()
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

/// Loopback ports the OS says are free now (they could be taken before a node binds them; the
/// node would then fail to start and the demo say so).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| CliError::io("finding free loopback ports", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| CliError::io("finding free loopback ports", e))
}

/// 32 random hex characters.
fn random_secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
