//! One outgoing peer: a bounded queue (by messages and by bytes) that `send` fills without
//! blocking, and one writer thread that owns the connection to the peer. The writer connects,
//! runs the client handshake, writes queued frames in batches, sends keepalives when idle, and
//! on any failure closes the connection and reconnects with exponential backoff and jitter.
//! Knows nothing of incoming connections.

use std::io::{BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use crate::tls::Stream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use needle_raft::NodeId;
use rand::Rng;

use crate::error::TcpError;
use crate::frame::write_frame;
use crate::handler::Shared;
use crate::handshake::{self, HandshakeError};
use crate::metrics::bump;

/// Messages written per flush at most: a batch shares one system call.
const BATCH: usize = 64;

/// What a test or an operator can see of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The address this node connects to.
    pub addr: SocketAddr,
    /// An authenticated connection is open now.
    pub connected: bool,
    /// Messages waiting in the queue.
    pub queued: usize,
    /// Bytes waiting in the queue.
    pub queued_bytes: usize,
}

/// State shared between a peer's handle and its writer thread.
struct State {
    connected: AtomicBool,
    queued_bytes: AtomicUsize,
    /// The connection being set up or used, so that a stop can interrupt a blocked write.
    stream: Mutex<Option<TcpStream>>,
}

impl State {
    fn set_stream(&self, s: Option<TcpStream>) {
        *self.stream.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn close_stream(&self) {
        if let Some(s) = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The handle `send` uses. Dropping it (or [`Peer::stop`]) stops the writer.
pub(crate) struct Peer {
    pub addr: SocketAddr,
    queue: Sender<Vec<u8>>,
    state: Arc<State>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    pub fn spawn(shared: Arc<Shared>, id: NodeId, addr: SocketAddr) -> Result<Peer, TcpError> {
        let (queue, rx) = crossbeam_channel::bounded(shared.config.queue_capacity);
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let state = Arc::new(State {
            connected: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            stream: Mutex::new(None),
        });
        let writer = Writer {
            shared: shared.clone(),
            id,
            addr,
            rx,
            stop: stop_rx,
            state: state.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("needle-tcp-{}-to-{id}", shared.node_id))
            .spawn(move || writer.run())
            .map_err(|source| TcpError::Io {
                context: format!("spawning the writer thread for node {id}"),
                source,
            })?;
        Ok(Peer {
            addr,
            queue,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Queues one encoded message without blocking.
    pub fn try_send(&self, id: NodeId, payload: Vec<u8>, max_bytes: usize) -> Result<(), TcpError> {
        let len = payload.len();
        let before = self.state.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > max_bytes {
            self.state.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(TcpError::QueueFull { peer: id });
        }
        match self.queue.try_send(payload) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.state.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(TcpError::QueueFull { peer: id })
            }
            Err(TrySendError::Disconnected(_)) => {
                self.state.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Err(TcpError::Shutdown)
            }
        }
    }

    pub fn stats(&self) -> PeerStats {
        PeerStats {
            addr: self.addr,
            connected: self.state.connected.load(Ordering::Acquire),
            queued: self.queue.len(),
            queued_bytes: self.state.queued_bytes.load(Ordering::Acquire),
        }
    }

    /// Tells the writer to stop and interrupts any blocked write; returns its thread to join.
    pub fn stop(mut self) -> Option<JoinHandle<()>> {
        self.signal();
        self.thread.take()
    }

    fn signal(&mut self) {
        self.stop.take();
        self.state.close_stream();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.signal();
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).finish()
    }
}

struct Writer {
    shared: Arc<Shared>,
    id: NodeId,
    addr: SocketAddr,
    rx: Receiver<Vec<u8>>,
    /// Never sent on: it disconnects when the handle stops the writer.
    stop: Receiver<()>,
    state: Arc<State>,
}

enum Ended {
    Stopped,
    Broken(String),
}

impl Writer {
    fn run(self) {
        let me = self.shared.node_id;
        let mut failures: u32 = 0;
        loop {
            if self.stopping() {
                break;
            }
            match self.connect() {
                Ok(mut stream) => {
                    failures = 0;
                    bump(&self.shared.counters.connections_established);
                    log::info!("node {me}: connected to node {} at {}", self.id, self.addr);
                    self.state.connected.store(true, Ordering::Release);
                    let ended = self.pump(&mut stream);
                    self.state.connected.store(false, Ordering::Release);
                    self.state.close_stream();
                    match ended {
                        Ended::Stopped => break,
                        Ended::Broken(reason) => log::info!(
                            "node {me}: connection to node {} at {} lost: {reason}",
                            self.id,
                            self.addr
                        ),
                    }
                }
                Err(e) => {
                    self.state.close_stream();
                    if self.stopping() {
                        break;
                    }
                    failures = failures.saturating_add(1);
                    bump(&self.shared.counters.connect_failures);
                    self.discard_queued(&self.shared.counters.dropped_unreachable);
                    match &e {
                        ConnectError::Handshake(
                            h @ (HandshakeError::Refused(_) | HandshakeError::RefusedByPeer(_)),
                        ) => {
                            let reason =
                                format!("connection to node {} at {} {h}", self.id, self.addr);
                            log::warn!("node {me}: {reason}");
                            bump(&self.shared.counters.handshakes_refused);
                            self.shared.counters.set_last_refusal(reason);
                        }
                        other => log::debug!(
                            "node {me}: cannot reach node {} at {} (attempt {failures}): {other}",
                            self.id,
                            self.addr
                        ),
                    }
                }
            }
            let delay = backoff(
                self.shared.config.backoff_min,
                self.shared.config.backoff_max,
                failures,
            );
            match self.stop.recv_timeout(delay) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        self.discard_queued(&self.shared.counters.dropped_in_flight);
    }

    fn stopping(&self) -> bool {
        self.shared.is_stopped()
            || matches!(
                self.stop.try_recv(),
                Err(crossbeam_channel::TryRecvError::Disconnected)
            )
    }

    fn discard_queued(&self, counter: &std::sync::atomic::AtomicU64) {
        while let Ok(p) = self.rx.try_recv() {
            self.state.queued_bytes.fetch_sub(p.len(), Ordering::AcqRel);
            bump(counter);
        }
    }

    fn connect(&self) -> Result<Stream, ConnectError> {
        let cfg = &self.shared.config;
        let tcp = TcpStream::connect_timeout(&self.addr, cfg.connect_timeout)
            .map_err(ConnectError::Io)?;
        let io = ConnectError::Io;
        tcp.set_nodelay(true).map_err(io)?;
        self.state
            .set_stream(Some(tcp.try_clone().map_err(ConnectError::Io)?));
        if self.stopping() {
            return Err(ConnectError::Stopped);
        }
        // TLS first (bounded by the handshake timeout), then the HMAC handshake inside it.
        tcp.set_read_timeout(Some(cfg.handshake_timeout))
            .map_err(io)?;
        tcp.set_write_timeout(Some(cfg.handshake_timeout))
            .map_err(io)?;
        let mut stream = Stream::connect(tcp, self.addr.ip(), cfg.tls.as_ref()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                ConnectError::Handshake(HandshakeError::Refused(e.to_string()))
            } else {
                ConnectError::Io(e)
            }
        })?;
        handshake::client(
            &mut stream,
            self.shared.identity(),
            self.id,
            Instant::now() + cfg.handshake_timeout,
        )
        .map_err(ConnectError::Handshake)?;
        stream.tcp().set_read_timeout(None).map_err(io)?;
        stream
            .tcp()
            .set_write_timeout(Some(cfg.io_timeout))
            .map_err(io)?;
        Ok(stream)
    }

    /// Writes queued messages until the connection breaks or the writer is stopped.
    fn pump(&self, stream: &mut Stream) -> Ended {
        let counters = &self.shared.counters;
        let keepalive = self.shared.config.io_timeout / 3;
        let mut w = BufWriter::with_capacity(64 * 1024, stream);
        loop {
            let first = crossbeam_channel::select! {
                recv(self.stop) -> _ => return Ended::Stopped,
                recv(self.rx) -> m => match m {
                    Ok(p) => Some(p),
                    Err(_) => return Ended::Stopped,
                },
                default(keepalive) => None,
            };
            let mut unflushed = 0u64;
            let result = match first {
                None => write_frame(&mut w, &[]),
                Some(p) => {
                    self.state.queued_bytes.fetch_sub(p.len(), Ordering::AcqRel);
                    unflushed += 1;
                    let mut result = write_frame(&mut w, &p);
                    while result.is_ok() && unflushed < BATCH as u64 {
                        let Ok(p) = self.rx.try_recv() else { break };
                        self.state.queued_bytes.fetch_sub(p.len(), Ordering::AcqRel);
                        unflushed += 1;
                        result = write_frame(&mut w, &p);
                    }
                    result
                }
            };
            let result = result.and_then(|()| w.flush());
            match result {
                Ok(()) => {
                    counters
                        .messages_sent
                        .fetch_add(unflushed, Ordering::Relaxed);
                }
                Err(e) => {
                    counters
                        .dropped_in_flight
                        .fetch_add(unflushed, Ordering::Relaxed);
                    if self.stopping() {
                        return Ended::Stopped;
                    }
                    return Ended::Broken(e.to_string());
                }
            }
        }
    }
}

#[derive(Debug)]
enum ConnectError {
    Io(std::io::Error),
    Handshake(HandshakeError),
    Stopped,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Handshake(e) => write!(f, "{e}"),
            ConnectError::Stopped => write!(f, "stopped"),
        }
    }
}

/// The delay before the next attempt after `failures` failures in a row (0: after a
/// connection that worked and broke): `min · 2^failures` capped at `max`, drawn uniformly from
/// its upper half so that nodes restarted together do not reconnect in lockstep.
pub(crate) fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let base = min.saturating_mul(1u32 << failures.min(20)).min(max);
    let half = base / 2;
    half + rand::rng().random_range(Duration::ZERO..=base - half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(1000));
        for failures in 0..40 {
            let base = (min * 2u32.pow(failures.min(20))).min(max);
            for _ in 0..20 {
                let d = backoff(min, max, failures);
                assert!(d >= base / 2 && d <= base, "{failures}: {d:?} vs {base:?}");
            }
        }
    }
}
