//! The one process cluster: `needle serve` nodes on loopback, each with its own data directory
//! and log file under one root directory, talking Raft over TCP with one shared secret. Used by
//! `needle demo --cluster` and by the CLI's tests (`tests/common/cluster.rs` wraps it with
//! panicking waits and a temporary directory), so that the demo and the tests start, kill -9,
//! restart and stop nodes the same way.
//!
//! Every wait is bounded. Dropping a [`ProcessCluster`] SIGKILLs whatever still runs;
//! [`ProcessCluster::stop`] shuts the nodes down through the API first.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, Response};

/// One `needle serve` process: its addresses, data directory and log file (its stderr).
#[derive(Debug)]
pub struct Node {
    /// The node's Raft id.
    pub id: u64,
    /// Its Raft (TCP transport) address.
    pub raft: SocketAddr,
    /// Its HTTP API address.
    pub http: SocketAddr,
    /// Its `--data` directory.
    pub data: PathBuf,
    /// Its stderr, appended to across restarts.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// A node description (not started) on loopback ports `[raft, http]`, with its data
    /// directory `node{id}` and log `node{id}.log` under `dir`.
    pub fn new(id: u64, ports: Vec<u16>, dir: &Path) -> Node {
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

/// `n` loopback ports the OS said were free a moment ago (another process could take one before
/// a node binds it; that node then fails to start and says so in its log).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Why [`ProcessCluster::write`] gave up.
#[derive(Debug)]
pub enum WriteFailure {
    /// A node answered with a client error (4xx other than `not_leader`): the write is wrong.
    Refused {
        /// The node that refused it.
        node: u64,
        /// Its answer.
        response: Response,
    },
    /// No node acknowledged the write before the deadline; `last` is the last failure seen.
    TimedOut {
        /// How long it tried.
        after: Duration,
        /// The last answer or error.
        last: String,
    },
}

impl fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteFailure::Refused { node, response } => write!(
                f,
                "node {node} refused the write ({}): {}",
                response.status, response.body["error"]["message"]
            ),
            WriteFailure::TimedOut { after, last } => {
                write!(f, "a write was not acknowledged in {after:?}: {last}")
            }
        }
    }
}

/// `needle serve` processes on loopback under one root directory.
pub struct ProcessCluster {
    /// The `needle` executable the nodes run.
    pub exe: PathBuf,
    /// Where the nodes' data directories, logs and the secret file are.
    pub root: PathBuf,
    /// Every node described so far (a test may push joiners).
    pub nodes: Vec<Node>,
    /// The cluster secret file every node reads.
    pub secret: PathBuf,
    /// Raft timing flags for every node (`--tick-ms`, `--heartbeat-ms`, ...).
    pub timings: Vec<String>,
    /// Extra flags for every node (e.g. a token file or a body limit).
    pub extra: Vec<String>,
    /// Extra flags for one node (e.g. its own TLS certificate).
    pub node_extra: BTreeMap<u64, Vec<String>>,
    /// The bearer token the clients send, if the nodes want one.
    pub token: Option<String>,
    /// How the clients speak HTTPS to the nodes (None: plain HTTP).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ProcessCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCluster")
            .field("root", &self.root)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl ProcessCluster {
    /// Describes `n` nodes (ids `1..=n`, not started) on free loopback ports under `root`, and
    /// writes the shared secret `secret` to `root/secret`.
    pub fn new(
        exe: PathBuf,
        root: &Path,
        n: u64,
        secret: &str,
        timings: &[&str],
    ) -> io::Result<ProcessCluster> {
        let ports = free_ports(2 * n as usize)?;
        let nodes = (1..=n)
            .map(|id| {
                let i = 2 * (id - 1) as usize;
                Node::new(id, ports[i..i + 2].to_vec(), root)
            })
            .collect();
        let secret_file = root.join("secret");
        std::fs::write(&secret_file, secret)?;
        Ok(ProcessCluster {
            exe,
            root: root.to_path_buf(),
            nodes,
            secret: secret_file,
            timings: timings.iter().map(|s| s.to_string()).collect(),
            extra: Vec::new(),
            node_extra: BTreeMap::new(),
            token: None,
            tls: None,
        })
    }

    /// The command line of node `id` (without starting it): its addresses, the other nodes as
    /// `--peers`/`--peer-http`, the secret, the timings and the extra flags. stdout is null;
    /// [`ProcessCluster::spawn`] sends stderr to the node's log.
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
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .arg("--data")
            .arg(&node.data)
            .args(["--raft", &node.raft.to_string()])
            .args(["--http", &node.http.to_string()])
            .arg("--secret-file")
            .arg(&self.secret)
            .args(&self.timings)
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

    /// Starts (or restarts) node `id`, appending its stderr to its log file.
    pub fn spawn(&mut self, id: u64) -> io::Result<()> {
        let mut cmd = self.command(id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.node(id).log)?;
        cmd.stderr(log);
        let child = cmd.spawn()?;
        self.node_mut(id).child = Some(child);
        Ok(())
    }

    /// Takes charge of a process started by hand for node `id` (killed on drop).
    pub fn adopt(&mut self, id: u64, child: Child) {
        self.node_mut(id).child = Some(child);
    }

    /// SIGKILLs node `id` (no chance to flush or say goodbye) and waits for it to be gone.
    pub fn kill(&mut self, id: u64) -> io::Result<()> {
        if let Some(mut c) = self.node_mut(id).child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// The OS process id of node `id`, if this cluster started it and has not killed it (for
    /// reading its `/proc/<pid>/status`, say).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// Node `id`'s description; panics on an id the cluster does not have.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// The ids of the nodes whose processes this cluster started and has not killed.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// An HTTP client for node `id` (the cluster's token and TLS, a 10 s timeout).
    pub fn client(&self, id: u64) -> Client {
        Client::new(self.node(id).http)
            .with_token(self.token.clone())
            .with_tls(self.tls.clone())
            .with_timeout(Duration::from_secs(10))
    }

    /// Node `id`'s `/v1/status` (with its state checksum if `checksum`), or None if it does not
    /// answer with a success within 2 s.
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

    /// Waits until node `id` answers HTTP at all (any status); false at the deadline.
    pub fn wait_http(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.client(id).get("/v1/status").is_err() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Waits until a running node leads and a majority of the described nodes follows it;
    /// returns `(leader, term)`, or None at the deadline.
    pub fn wait_leader(&self, timeout: Duration) -> Option<(u64, u64)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let statuses: Vec<Value> = self
                .running()
                .into_iter()
                .filter_map(|id| self.status(id, false))
                .collect();
            if let Some(l) = statuses.iter().find(|s| s["role"] == "leader") {
                let id = l["id"].as_u64().unwrap_or(0);
                let majority = self.nodes.len() / 2 + 1;
                if statuses.iter().filter(|s| s["leader"] == id).count() >= majority {
                    return Some((id, l["term"].as_u64().unwrap_or(0)));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// POSTs a write to `guess` first, following `not_leader` answers and skipping nodes that
    /// are down or answer 5xx, until it is acknowledged (the answer and the node that took it),
    /// refused with a 4xx, or `timeout` passes.
    pub fn write(
        &self,
        guess: u64,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(Response, u64), WriteFailure> {
        let deadline = Instant::now() + timeout;
        let mut target = guess;
        let mut last = String::from("no node answered");
        while Instant::now() < deadline {
            match self.client(target).post(path, body) {
                Ok(r) if r.is_success() => return Ok((r, target)),
                Ok(r) if r.error_code() == Some("not_leader") => {
                    if let Some(l) = r.body["error"]["leader_id"]
                        .as_u64()
                        .filter(|l| *l != target && self.running().contains(l))
                    {
                        target = l;
                        continue;
                    }
                    last = format!("node {target}: {}", r.body["error"]["message"]);
                }
                Ok(r) if r.status < 500 => {
                    return Err(WriteFailure::Refused {
                        node: target,
                        response: r,
                    });
                }
                Ok(r) => last = format!("node {target}: {}", r.body["error"]["message"]),
                Err(e) => last = format!("node {target}: {e}"),
            }
            let running = self.running();
            if running.is_empty() {
                break;
            }
            let i = running
                .iter()
                .position(|&n| n == target)
                .map_or(0, |i| i + 1);
            target = running[i % running.len()];
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(WriteFailure::TimedOut {
            after: timeout,
            last,
        })
    }

    /// Stops every running node through `POST /v1/admin/shutdown` and waits (10 s at most) for
    /// the processes to exit; whatever still runs then is SIGKILLed.
    pub fn stop(&mut self) {
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

    /// Every node's log, each under a `---- node N ----` line.
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

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
