//! A cluster of `needle serve` processes on loopback for the tests: each node with its own data
//! directory and log file under one temporary directory. Every wait is bounded; dropping the
//! cluster SIGKILLs whatever still runs, and a failing test prints the nodes' logs.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use needle_cli::client::{Client, Response};
use serde_json::Value;

/// Test timings: 10 ms ticks, heartbeats every 30 ms, elections after 300–600 ms.
pub const TIMINGS: [&str; 6] = [
    "--tick-ms",
    "10",
    "--heartbeat-ms",
    "30",
    "--election-timeout-ms",
    "300",
];

pub struct Node {
    pub id: u64,
    pub raft: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// A node description (not started) on loopback ports `[raft, http]`, under `dir`.
    pub fn new(id: u64, ports: Vec<u16>, dir: &std::path::Path) -> Node {
        Node {
            id,
            raft: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            http: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            data: dir.join(format!("node{id}")),
            log: dir.join(format!("node{id}.log")),
            child: None,
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub secret: PathBuf,
    /// Extra flags for every node (e.g. a token file or a body limit).
    pub extra: Vec<String>,
    /// Extra flags for one node (e.g. its own TLS certificate).
    pub node_extra: std::collections::BTreeMap<u64, Vec<String>>,
    pub token: Option<String>,
    /// How the test's clients speak HTTPS to the nodes (None: plain HTTP).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// `n` loopback ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl Cluster {
    /// Starts `n` nodes sharing one secret, with `extra` flags each.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, |_| Vec::new())
    }

    /// As [`Cluster::start`], with more flags for each node from `per_node(id)`.
    pub fn start_with(n: u64, extra: &[&str], per_node: impl Fn(u64) -> Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "the right secret for this test cluster").expect("write secret");
        let ports = free_ports(2 * n as usize);
        let nodes = (1..=n)
            .map(|id| {
                let i = (id - 1) as usize;
                Node {
                    id,
                    raft: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    http: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    data: dir.path().join(format!("node{id}")),
                    log: dir.path().join(format!("node{id}.log")),
                    child: None,
                }
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            secret,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            node_extra: (1..=n).map(|id| (id, per_node(id))).collect(),
            token: None,
            tls: None,
        };
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// The command line of node `id` (without starting it).
    pub fn command(&self, id: u64) -> Command {
        let node = self.node(id);
        let others = |f: fn(&Node) -> SocketAddr| {
            self.nodes
                .iter()
                .filter(|n| n.id != id)
                .map(|n| format!("{}={}", n.id, f(n)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_needle"));
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data")
            .arg(&node.data)
            .args(["--raft", &node.raft.to_string()])
            .args(["--http", &node.http.to_string()])
            .arg("--secret-file")
            .arg(&self.secret)
            .args(TIMINGS)
            .args(&self.extra)
            .args(self.node_extra.get(&id).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // A single node has no peers (an empty `--peers` is a usage error).
        if self.nodes.len() > 1 {
            cmd.args(["--peers", &others(|n| n.raft)])
                .args(["--peer-http", &others(|n| n.http)]);
        }
        cmd
    }

    /// Starts (or restarts) node `id`, appending to its log file.
    pub fn spawn(&mut self, id: u64) {
        let mut cmd = self.command(id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.node(id).log)
            .expect("open node log");
        cmd.stderr(log);
        let child = cmd.spawn().expect("start needle serve");
        self.node_mut(id).child = Some(child);
    }

    /// Takes charge of a process started by hand for node `id` (killed on drop).
    pub fn adopt(&mut self, id: u64, child: Child) {
        self.node_mut(id).child = Some(child);
    }

    /// SIGKILLs node `id` and waits for it to be gone.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.node_mut(id).child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn client(&self, id: u64) -> Client {
        Client::new(self.node(id).http)
            .with_token(self.token.clone())
            .with_tls(self.tls.clone())
            .with_timeout(Duration::from_secs(10))
    }

    pub fn status(&self, id: u64, checksum: bool) -> Option<Value> {
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

    /// Waits (bounded) until node `id` answers HTTP at all (any status).
    pub fn wait_http(&self, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.client(id).get("/v1/status").is_err() {
            assert!(Instant::now() < deadline, "node {id} never answered HTTP");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until a running node leads and a majority follows it.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let statuses: Vec<Value> = self
                .running()
                .into_iter()
                .filter_map(|id| self.status(id, false))
                .collect();
            if let Some(l) = statuses.iter().find(|s| s["role"] == "leader") {
                let id = l["id"].as_u64().expect("id");
                let majority = self.nodes.len() / 2 + 1;
                if statuses.iter().filter(|s| s["leader"] == id).count() >= majority {
                    return id;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no leader within {timeout:?}");
    }

    /// POSTs a write to `guess`, following `not_leader` and skipping dead nodes, until it is
    /// acknowledged (returns the answer and the node that took it) or `timeout` passes (None).
    pub fn write(
        &self,
        guess: u64,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Option<(Response, u64)> {
        let deadline = Instant::now() + timeout;
        let mut target = guess;
        while Instant::now() < deadline {
            match self.client(target).post(path, body) {
                Ok(r) if r.is_success() => return Some((r, target)),
                Ok(r) if r.error_code() == Some("not_leader") => {
                    if let Some(l) = r.body["error"]["leader_id"]
                        .as_u64()
                        .filter(|l| *l != target && self.running().contains(l))
                    {
                        target = l;
                        continue;
                    }
                }
                Ok(r) if r.status < 500 => panic!("write refused: {} {}", r.status, r.body),
                _ => {}
            }
            let running = self.running();
            let i = running
                .iter()
                .position(|&n| n == target)
                .map_or(0, |i| i + 1);
            target = running[i % running.len()];
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "---- node {} ----\n{}",
                    n.id,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
