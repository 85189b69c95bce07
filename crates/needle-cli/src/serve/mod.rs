//! `needle serve`: one node of a replicated cluster. A `needle_core::Database` (WAL off: the Raft
//! log is the log) driven by a `needle_raft::ReplicatedDatabase` over a
//! `needle_transport_tcp::TcpMessageHandler`, with an HTTP JSON API (`http`) in front.
//!
//! Everything is checked before anything starts: the secret and token files, the addresses (HTTP
//! on loopback unless `--http-public`, which then needs a token), the Raft timings. The node
//! prints one line per role change on stderr, and transport refusals with their reason.
//! It stops on SIGINT, SIGTERM or `POST /v1/admin/shutdown`: HTTP stops accepting, the Raft
//! thread syncs its log and exits, the transport closes.

mod api_error;
mod http;
mod logger;
mod metrics;
mod observed;
mod restore;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use needle_raft::{DatabaseReader, NodeId, ReplicatedDatabase, ReplicatedDatabaseConfig, Role};
use needle_transport_tcp::{TcpConfig, TcpMessageHandler, TlsConfig};

use crate::cli::ServeArgs;
use crate::error::{CliError, Result};

/// The secret used when `--secret-file` is not given; only allowed with Raft on loopback.
const DEV_SECRET: &[u8] = b"needle development secret: loopback only";

/// What the HTTP handlers share.
pub struct App {
    pub id: NodeId,
    pub node: ReplicatedDatabase,
    /// The same database the node drives, for local reads after a read barrier.
    pub db: DatabaseReader,
    pub transport: TcpMessageHandler,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// Every node's HTTP address that this node knows, itself included.
    pub http_peers: RwLock<BTreeMap<NodeId, SocketAddr>>,
    /// Every other node's Raft address that this node knows.
    pub raft_peers: RwLock<BTreeMap<NodeId, SocketAddr>>,
    pub token: Option<String>,
    pub shutdown: tokio::sync::Notify,
    /// `--forward-writes`: a follower sends writes on to the leader instead of answering 421.
    pub forward_writes: bool,
    /// `--max-body`.
    pub max_body: usize,
    /// Request counters and latency histograms for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Set once a linearizable read barrier has succeeded here: this node has applied what was
    /// committed when it started (`/readyz`).
    pub caught_up: std::sync::atomic::AtomicBool,
    /// `--tls-cert`/`--tls-key`: the HTTP API's TLS configuration.
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    /// `--tls-ca`: how this node calls other nodes' HTTP APIs (adding a node, forwarding).
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("http_addr", &self.http_addr)
            .field("raft_addr", &self.raft_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The HTTP address of node `id`, if known.
    pub fn http_of(&self, id: NodeId) -> Option<String> {
        self.http_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(ToString::to_string)
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let secret = match &args.secret_file {
        Some(path) => read_secret(path, "secret")?,
        None if args.raft.ip().is_loopback()
            && args.peers.iter().all(|(_, a)| a.ip().is_loopback()) =>
        {
            eprintln!(
                "node {}: warning: no --secret-file; using the development secret (loopback only)",
                args.id
            );
            DEV_SECRET.to_vec()
        }
        None => {
            return Err(CliError::Usage(
                "--secret-file is required when Raft listens on or talks to a non-loopback address"
                    .into(),
            ));
        }
    };
    let token = match &args.token_file {
        Some(path) => Some(String::from_utf8(read_secret(path, "token")?).map_err(|_| {
            CliError::Usage(format!("token file {} is not UTF-8 text", path.display()))
        })?),
        None => None,
    };
    if !args.http.ip().is_loopback() {
        if !args.http_public {
            return Err(CliError::Usage(format!(
                "--http {} is not a loopback address: pass --http-public (with --token-file) to serve HTTP beyond this machine",
                args.http
            )));
        }
        if token.is_none() {
            return Err(CliError::Usage(
                "--http-public requires --token-file: a public API needs a bearer token".into(),
            ));
        }
    }
    for (id, addr) in args.peers.iter().chain(&args.peer_http) {
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(CliError::Usage(format!(
                "node {id}'s address {addr} cannot be connected to: give the IP and port it listens on"
            )));
        }
    }
    if args.peers.iter().any(|(id, _)| *id == args.id) {
        return Err(CliError::Usage(format!(
            "--peers lists node {} itself; list the other nodes only",
            args.id
        )));
    }
    let raft_config = ReplicatedDatabaseConfig::default()
        .tick_interval(Duration::from_millis(args.tick_ms))
        .heartbeat_interval(Duration::from_millis(args.heartbeat_ms))
        .election_timeout_min(Duration::from_millis(args.election_timeout_ms))
        .election_timeout_max(Duration::from_millis(args.election_timeout_ms * 2))
        .max_staleness(Duration::from_millis(args.max_staleness_ms))
        .data_dir(args.data.join("raft"))
        .initial_members(if args.join {
            Vec::new()
        } else {
            std::iter::once(args.id)
                .chain(args.peers.iter().map(|(id, _)| *id))
                .collect()
        });
    raft_config.validate()?;
    let mut tcp_config = TcpConfig::new(args.cluster_id, secret);
    let (http_tls, client_tls) = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (None, None, None) => (None, None),
        (Some(cert), Some(key), Some(ca)) => {
            tcp_config.tls = Some(TlsConfig::from_files(cert, key, ca)?);
            let ca_pem = needle_transport_tcp::read_pem(ca, "CA file (--tls-ca)")?;
            (
                Some(tls::http_server_config(cert, key)?),
                Some(
                    crate::client::tls_client_config(&ca_pem)
                        .map_err(|e| CliError::Usage(format!("--tls-ca {}: {e}", ca.display())))?,
                ),
            )
        }
        _ => {
            return Err(CliError::Usage(
                "--tls-cert, --tls-key and --tls-ca go together: give all three or none".into(),
            ));
        }
    };
    tcp_config.validate()?;
    let restore = match &args.from {
        Some(from) => Some(restore::check(args, from)?),
        None => None,
    };

    logger::install(args.id);
    // Both addresses are bound before the data directory is touched: a port in use changes
    // nothing on disk.
    let http_listener = std::net::TcpListener::bind(args.http)
        .map_err(|e| CliError::io(format!("cannot listen for HTTP on {}", args.http), e))?;
    http_listener
        .set_nonblocking(true)
        .map_err(|e| CliError::io("configuring the HTTP listener", e))?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|e| CliError::io("reading the HTTP address", e))?;
    let transport = TcpMessageHandler::new(args.id, args.raft, args.peers.clone(), tcp_config)?;
    std::fs::create_dir_all(&args.data)
        .map_err(|e| CliError::io(format!("creating {}", args.data.display()), e))?;
    if let Some(r) = &restore {
        r.install(&args.data)?;
    }
    // The Raft log and the database file on the OS disk with every fsync timed, the transport
    // with snapshot chunks counted: both for /metrics.
    let metrics = metrics::Metrics::default();
    let disk = metrics.timed_disk();
    let database = needle_core::Database::open_on(
        disk.clone(),
        args.data.join("node.needle"),
        needle_core::DatabaseOptions {
            wal: needle_core::WalMode::Off,
        },
    )?;
    let node = ReplicatedDatabase::open_on(
        disk,
        args.id,
        database,
        Box::new(observed::CountingHandler::new(
            transport.clone(),
            metrics.snapshots.clone(),
        )),
        raft_config,
    )?;
    let db = node.reader();
    if let Some(r) = &restore {
        let got = db.state_checksum();
        if got != r.checksum {
            // Nothing was acknowledged yet: stop before serving a state that is not the file's.
            let _ = node.shutdown();
            transport.shutdown();
            return Err(CliError::Damaged(format!(
                "the restored node's state checksum is {got:016x}, the file's {:016x}",
                r.checksum
            )));
        }
        eprintln!(
            "node {}: founded a new cluster from {} ({} collection{}, state checksum {got:016x})",
            args.id,
            args.from.as_deref().unwrap_or(Path::new("")).display(),
            r.collections,
            if r.collections == 1 { "" } else { "s" },
        );
    }

    let mut http_peers: BTreeMap<NodeId, SocketAddr> = args.peer_http.iter().copied().collect();
    http_peers.insert(args.id, http_addr);
    let app = Arc::new(App {
        id: args.id,
        node,
        db,
        raft_addr: transport.local_addr(),
        transport,
        http_addr,
        http_peers: RwLock::new(http_peers),
        raft_peers: RwLock::new(args.peers.iter().copied().collect()),
        token,
        shutdown: tokio::sync::Notify::new(),
        forward_writes: args.forward_writes,
        max_body: args.max_body,
        metrics,
        caught_up: std::sync::atomic::AtomicBool::new(false),
        http_tls,
        client_tls,
    });
    eprintln!(
        "node {}: serving HTTP on http://{http_addr}, Raft on {}, data in {}",
        args.id,
        app.raft_addr,
        args.data.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    let watcher = runtime.spawn(watch_role(app.clone()));
    let served = runtime.block_on(http::serve(app.clone(), http_listener, args.max_body));
    watcher.abort();
    eprintln!("node {}: stopping", args.id);
    let stopped = app.node.shutdown();
    app.transport.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(2));
    served?;
    stopped?;
    Ok(())
}

/// Reads a secret or token file: it must exist and hold something besides whitespace.
fn read_secret(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::io(format!("reading {what} file {}", path.display()), e))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(CliError::Usage(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(trimmed.to_vec())
}

/// Prints a line on stderr whenever this node's role or leader changes, and when a peer's
/// connection comes up or goes down (a peer still unreachable 5 s after start is reported too).
async fn watch_role(app: Arc<App>) {
    let mut last: Option<(Role, Option<NodeId>)> = None;
    let mut connected: BTreeMap<NodeId, bool> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut warned_unreachable = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let peers: Vec<(NodeId, SocketAddr)> = app
            .raft_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, a)| (*id, *a))
            .collect();
        for (id, addr) in peers {
            let up = app.transport.peer_stats(id).is_some_and(|s| s.connected);
            let was = connected.insert(id, up);
            match (was, up) {
                (Some(false) | None, true) => {
                    eprintln!("node {}: connected to node {id} at {addr}", app.id)
                }
                (Some(true), false) => eprintln!(
                    "node {}: lost the connection to node {id} at {addr}; reconnecting",
                    app.id
                ),
                _ => {}
            }
        }
        if !warned_unreachable && started.elapsed() > Duration::from_secs(5) {
            warned_unreachable = true;
            for (id, up) in &connected {
                if !up {
                    eprintln!(
                        "node {}: cannot reach node {id} yet (still retrying with backoff)",
                        app.id
                    );
                }
            }
        }
        let now = (app.node.role(), app.node.leader());
        if last == Some(now) {
            continue;
        }
        last = Some(now);
        let term = app.node.term();
        match now {
            (Role::Leader, _) => eprintln!("node {}: leader in term {term}", app.id),
            (_, Some(l)) => eprintln!("node {}: follower of node {l} in term {term}", app.id),
            (role, None) => eprintln!(
                "node {}: {} in term {term}, no leader",
                app.id,
                format!("{role:?}").to_lowercase()
            ),
        }
        if let Some(reason) = app.node.fatal_error() {
            eprintln!("node {}: the Raft thread stopped: {reason}", app.id);
        }
    }
}
