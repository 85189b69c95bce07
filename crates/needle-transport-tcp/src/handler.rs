//! [`TcpMessageHandler`]: the `MessageHandler` a node gives to `ReplicatedDatabase`. It owns
//! the listener, the outgoing peers and the inbound channel, and shuts all of them down.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use needle_raft::{MessageHandler, NeedleError, NodeId, RaftMessage};

use crate::config::TcpConfig;
use crate::error::TcpError;
use crate::handshake::Identity;
use crate::inbound::{self, Connections};
use crate::metrics::{Counters, TcpMetrics, bump};
use crate::peer::{Peer, PeerStats};

/// What the handler's threads share.
pub(crate) struct Shared {
    pub node_id: NodeId,
    pub config: TcpConfig,
    pub counters: Counters,
    stopped: AtomicBool,
    pub inbound_tx: Sender<(NodeId, RaftMessage)>,
    connections: Mutex<Connections>,
}

impl Shared {
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn identity(&self) -> Identity<'_> {
        Identity {
            cluster_id: self.config.cluster_id,
            secret: &self.config.cluster_secret,
            node_id: self.node_id,
        }
    }

    pub fn lock_connections(&self) -> MutexGuard<'_, Connections> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`MessageHandler`] over TCP. Cloning gives another handle to the same handler (keep one
/// to call [`TcpMessageHandler::add_peer`] or read metrics after handing a clone to
/// `ReplicatedDatabase`); the handler shuts down when [`TcpMessageHandler::shutdown`] is
/// called or the last handle is dropped.
///
/// Every node listens on one address and opens one outgoing connection per peer, so a pair of
/// nodes talks over two connections, one per direction; messages on each keep their order.
/// Incoming connections are accepted from any node that proves the cluster secret, peer or not.
///
/// ```
/// use std::time::Duration;
/// use needle_raft::{MessageHandler, RaftMessage, RaftProtoMessage};
/// use needle_transport_tcp::{TcpConfig, TcpMessageHandler};
///
/// let config = TcpConfig::new(1, b"shared secret".to_vec());
/// let loopback = "127.0.0.1:0".parse().unwrap();
/// let a = TcpMessageHandler::new(1, loopback, vec![], config.clone())?;
/// let b = TcpMessageHandler::new(2, loopback, vec![(1, a.local_addr())], config)?;
/// a.add_peer(2, b.local_addr())?;
///
/// let m = RaftMessage::Raft(RaftProtoMessage { from: 2, to: 1, term: 5, ..Default::default() });
/// b.send(1, m.clone())?;
/// let (from, got) = a.receive_timeout(Duration::from_secs(5))?.expect("delivered");
/// assert_eq!((from, got), (2, m));
/// # Ok::<(), needle_raft::NeedleError>(())
/// ```
#[derive(Clone)]
pub struct TcpMessageHandler {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    peers: RwLock<HashMap<NodeId, Peer>>,
    inbound_rx: Receiver<(NodeId, RaftMessage)>,
    /// The accept loop, and writers of removed or replaced peers, joined at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpMessageHandler {
    /// Listens on `listen_addr` (port 0 picks a free port: see [`Self::local_addr`]) as node
    /// `node_id`, and starts connecting to `peers`.
    pub fn new(
        node_id: NodeId,
        listen_addr: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
        config: TcpConfig,
    ) -> Result<Self, TcpError> {
        config.validate()?;
        if node_id == 0 {
            return Err(TcpError::InvalidConfig {
                reason: "node id 0 is reserved".into(),
            });
        }
        let listener = TcpListener::bind(listen_addr).map_err(|source| TcpError::Bind {
            addr: listen_addr,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| TcpError::Io {
            context: format!("reading the address bound for {listen_addr}"),
            source,
        })?;
        let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(config.inbound_capacity);
        let shared = Arc::new(Shared {
            node_id,
            config,
            counters: Counters::default(),
            stopped: AtomicBool::new(false),
            inbound_tx,
            connections: Mutex::new(Connections::default()),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("needle-tcp-{node_id}-accept"))
            .spawn(move || inbound::accept_loop(accept_shared, listener))
            .map_err(|source| TcpError::Io {
                context: "spawning the accept thread".into(),
                source,
            })?;
        let handler = TcpMessageHandler {
            inner: Arc::new(Inner {
                shared,
                local_addr,
                peers: RwLock::new(HashMap::new()),
                inbound_rx,
                threads: Mutex::new(vec![accept]),
            }),
        };
        for (id, addr) in peers {
            handler.add_peer(id, addr)?;
        }
        Ok(handler)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.shared.node_id
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Adds a peer, or moves an existing one to a new address (its queue is dropped). Does not
    /// block: connecting happens on the peer's writer thread.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), TcpError> {
        let shared = &self.inner.shared;
        if id == 0 || id == shared.node_id {
            return Err(TcpError::InvalidPeer {
                peer: id,
                reason: if id == 0 {
                    "node id 0 is reserved".into()
                } else {
                    "a node is not its own peer".into()
                },
            });
        }
        let mut peers = self.inner.write_peers();
        // Checked under the lock: shutdown sets the flag, then drains the peers under it.
        if shared.is_stopped() {
            return Err(TcpError::Shutdown);
        }
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return Ok(());
        }
        let peer = Peer::spawn(shared.clone(), id, addr)?;
        if let Some(old) = peers.insert(id, peer) {
            self.inner.retire(old);
        }
        Ok(())
    }

    /// Forgets a peer: its queue is dropped and its connection closed. Returns whether it was
    /// a peer. Incoming connections from it stay open (Raft ignores a removed node).
    pub fn remove_peer(&self, id: NodeId) -> bool {
        let removed = self.inner.write_peers().remove(&id);
        match removed {
            Some(p) => {
                self.inner.retire(p);
                true
            }
            None => false,
        }
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> TcpMetrics {
        self.inner.shared.counters.snapshot()
    }

    /// What is known of one peer now, if it is a peer.
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        self.inner.read_peers().get(&id).map(Peer::stats)
    }

    /// The nodes with an authenticated incoming connection open now, sorted (a node may
    /// appear twice for a moment while an old connection closes).
    pub fn connected_from(&self) -> Vec<NodeId> {
        self.inner.shared.lock_connections().authenticated()
    }

    /// Stops listening, closes every connection and joins every thread; afterwards the port is
    /// free, `send` and `receive` return `Shutdown`. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn read_peers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, Peer>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_peers(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, Peer>> {
        self.peers.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops a peer's writer without waiting for it (it may be inside a connect).
    fn retire(&self, peer: Peer) {
        if let Some(t) = peer.stop() {
            let mut threads = self.lock_threads();
            threads.retain(|t| !t.is_finished());
            threads.push(t);
        }
    }

    fn shutdown(&self) {
        let shared = &self.shared;
        if shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let peers: Vec<Peer> = self.write_peers().drain().map(|(_, p)| p).collect();
        let mut threads: Vec<JoinHandle<()>> = peers.into_iter().filter_map(Peer::stop).collect();
        threads.extend(self.lock_threads().drain(..));
        threads.extend(shared.lock_connections().close_all());
        for t in threads {
            let _ = t.join();
        }
        // Readers admitted while the others were being joined close on their own; collect them.
        for t in shared.lock_connections().close_all() {
            let _ = t.join();
        }
        log::info!("node {}: TCP transport shut down", shared.node_id);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for TcpMessageHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpMessageHandler")
            .field("node_id", &self.inner.shared.node_id)
            .field("local_addr", &self.inner.local_addr)
            .field("peers", &self.peers())
            .finish()
    }
}

impl MessageHandler for TcpMessageHandler {
    fn send(&self, to: NodeId, message: RaftMessage) -> needle_raft::Result<()> {
        let shared = &self.inner.shared;
        if shared.is_stopped() {
            return Err(NeedleError::Shutdown);
        }
        let payload = message.encode();
        let max = shared.config.max_frame_size;
        if payload.len() > max as usize {
            bump(&shared.counters.dropped_oversized);
            return Err(TcpError::MessageTooLarge {
                peer: to,
                size: payload.len(),
                max,
            }
            .into());
        }
        let peers = self.inner.read_peers();
        let Some(peer) = peers.get(&to) else {
            bump(&shared.counters.dropped_unknown_peer);
            return Err(TcpError::UnknownPeer { peer: to }.into());
        };
        peer.try_send(to, payload, shared.config.queue_max_bytes)
            .inspect_err(|_| bump(&shared.counters.dropped_queue_full))
            .map_err(NeedleError::from)
    }

    fn receive(&self) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        if self.inner.shared.is_stopped() {
            return Err(NeedleError::Shutdown);
        }
        Ok(self.inner.inbound_rx.try_recv().ok())
    }

    fn peers(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.inner.read_peers().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> needle_raft::Result<Option<(NodeId, RaftMessage)>> {
        if self.inner.shared.is_stopped() {
            return Err(NeedleError::Shutdown);
        }
        match self.inner.inbound_rx.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(NeedleError::Shutdown),
        }
    }
}
