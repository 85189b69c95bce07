//! The CLI tests' cluster: the one process cluster (`needle_cli::process_cluster`, which
//! `needle demo --cluster` runs too) in a temporary directory, with test timings and waits that
//! panic at their deadline. Dropping it SIGKILLs whatever still runs, and a failing test prints
//! the nodes' logs.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use needle_cli::client::Response;
#[allow(unused_imports)] // Only the tests that add a joiner use it.
pub use needle_cli::process_cluster::Node;
use needle_cli::process_cluster::ProcessCluster;
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

/// A [`ProcessCluster`] of the test binary's `needle` under a temporary directory (`dir`). Its
/// fields and methods are the process cluster's; those below panic instead of returning errors.
pub struct Cluster {
    inner: ProcessCluster,
    /// Dropped after `inner` (declaration order): the processes are gone before their files.
    pub dir: tempfile::TempDir,
}

impl Deref for Cluster {
    type Target = ProcessCluster;
    fn deref(&self) -> &ProcessCluster {
        &self.inner
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut ProcessCluster {
        &mut self.inner
    }
}

/// `n` loopback ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    needle_cli::process_cluster::free_ports(n).expect("free loopback ports")
}

impl Cluster {
    /// Starts `n` nodes sharing one secret, with `extra` flags each.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, |_| Vec::new())
    }

    /// As [`Cluster::start`], with more flags for each node from `per_node(id)`.
    pub fn start_with(n: u64, extra: &[&str], per_node: impl Fn(u64) -> Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut inner = ProcessCluster::new(
            env!("CARGO_BIN_EXE_needle").into(),
            dir.path(),
            n,
            "the right secret for this test cluster",
            &TIMINGS,
        )
        .expect("describe the cluster");
        inner.extra = extra.iter().map(|s| s.to_string()).collect();
        inner.node_extra = (1..=n).map(|id| (id, per_node(id))).collect();
        let mut c = Cluster { inner, dir };
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// Starts (or restarts) node `id`, appending to its log file.
    pub fn spawn(&mut self, id: u64) {
        self.inner.spawn(id).expect("start needle serve");
    }

    /// SIGKILLs node `id` and waits for it to be gone.
    pub fn kill(&mut self, id: u64) {
        self.inner.kill(id).expect("SIGKILL and reap");
    }

    /// Waits (bounded) until node `id` answers HTTP at all (any status).
    pub fn wait_http(&self, id: u64) {
        assert!(
            self.inner.wait_http(id, Duration::from_secs(30)),
            "node {id} never answered HTTP"
        );
    }

    /// Waits (bounded) until a running node leads and a majority follows it.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        match self.inner.wait_leader(timeout) {
            Some((id, _term)) => id,
            None => panic!("no leader within {timeout:?}"),
        }
    }

    /// Waits (30 s at most) for a leader of a three-node cluster; returns its id and a
    /// follower's HTTP address (where the tests send the CLI's requests, so that they must
    /// follow the leader).
    pub fn leader_and_follower_http(&self) -> (u64, String) {
        let leader = self.wait_leader(Duration::from_secs(30));
        let follower = (1..=3).find(|&i| i != leader).expect("three nodes");
        (leader, self.node(follower).http.to_string())
    }

    /// POSTs a write to `guess`, following `not_leader` and skipping dead nodes, until it is
    /// acknowledged (returns the answer and the node that took it) or `timeout` passes (None).
    /// A refused write (4xx) panics.
    pub fn write(
        &self,
        guess: u64,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Option<(Response, u64)> {
        use needle_cli::process_cluster::WriteFailure;
        match self.inner.write(guess, path, body, timeout) {
            Ok(done) => Some(done),
            Err(WriteFailure::Refused { response: r, .. }) => {
                panic!("write refused: {} {}", r.status, r.body)
            }
            Err(WriteFailure::TimedOut { .. }) => None,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL first (as the process cluster's own drop would), then show the logs.
        for id in self.inner.running() {
            let _ = self.inner.kill(id);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.inner.logs());
        }
    }
}
