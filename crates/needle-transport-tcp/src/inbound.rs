//! Incoming connections: the accept loop and one reader thread per accepted connection. A
//! reader runs the server handshake, then reads frames and hands decoded messages, tagged with
//! the authenticated sender, to the handler's one inbound channel. Anything wrong on a
//! connection (a failed handshake, a bad checksum, an oversized frame, bytes that do not decode,
//! silence past `io_timeout`) closes that connection alone. Knows nothing of outgoing peers.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use crate::tls::Stream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use needle_raft::{NodeId, RaftMessage};

use crate::frame::{FrameError, read_frame};
use crate::handler::Shared;
use crate::handshake::{self, HandshakeError};
use crate::metrics::bump;

/// How often the accept loop looks at the stop flag when no connection arrives.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// The open incoming connections and their reader threads.
#[derive(Default)]
pub(crate) struct Connections {
    next_id: u64,
    open: HashMap<u64, Conn>,
    threads: Vec<JoinHandle<()>>,
}

struct Conn {
    peer: Option<NodeId>,
    stream: TcpStream,
}

impl Connections {
    /// Closes every connection and hands back the reader threads to join.
    pub fn close_all(&mut self) -> Vec<JoinHandle<()>> {
        for c in self.open.values() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        std::mem::take(&mut self.threads)
    }

    /// Authenticated connections open now, by peer.
    pub fn authenticated(&self) -> Vec<NodeId> {
        let mut v: Vec<_> = self.open.values().filter_map(|c| c.peer).collect();
        v.sort_unstable();
        v
    }
}

pub(crate) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let me = shared.node_id;
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("node {me}: cannot poll the listener, not accepting connections: {e}");
        return;
    }
    while !shared.is_stopped() {
        match listener.accept() {
            Ok((stream, addr)) => admit(&shared, stream, addr),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                log::warn!("node {me}: accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

fn admit(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let me = shared.node_id;
    let mut conns = shared.lock_connections();
    conns.threads.retain(|t| !t.is_finished());
    if shared.is_stopped() {
        return;
    }
    if conns.open.len() >= shared.config.max_inbound_connections {
        bump(&shared.counters.connections_over_limit);
        log::warn!(
            "node {me}: refused a connection from {addr}: {} incoming connections already open",
            conns.open.len()
        );
        return;
    }
    let registered = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("node {me}: dropped a connection from {addr}: {e}");
            return;
        }
    };
    let id = conns.next_id;
    conns.next_id += 1;
    let reader_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("needle-tcp-{me}-from-{addr}"))
        .spawn(move || {
            read_connection(&reader_shared, id, stream, addr);
            let mut conns = reader_shared.lock_connections();
            if let Some(c) = conns.open.remove(&id) {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        });
    match spawned {
        Ok(t) => {
            conns.open.insert(
                id,
                Conn {
                    peer: None,
                    stream: registered,
                },
            );
            conns.threads.push(t);
        }
        Err(e) => log::warn!("node {me}: cannot spawn a reader for {addr}: {e}"),
    }
}

/// Marks connection `id` as coming from `peer` and closes that peer's older connections: a
/// peer writes on one connection at a time, so an older one is left from a previous incarnation.
fn claim(shared: &Shared, id: u64, peer: NodeId) {
    let mut conns = shared.lock_connections();
    for (other, c) in conns.open.iter() {
        if *other != id && c.peer == Some(peer) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }
    if let Some(c) = conns.open.get_mut(&id) {
        c.peer = Some(peer);
    }
}

fn read_connection(shared: &Shared, id: u64, stream: TcpStream, addr: SocketAddr) {
    let me = shared.node_id;
    let cfg = &shared.config;
    let counters = &shared.counters;
    let refuse = |reason: String, counter: &std::sync::atomic::AtomicU64| {
        if shared.is_stopped() {
            return;
        }
        log::warn!("node {me}: {reason}");
        bump(counter);
        counters.set_last_refusal(reason);
    };
    if stream.set_nonblocking(false).is_err()
        || stream.set_nodelay(true).is_err()
        || stream
            .set_read_timeout(Some(cfg.handshake_timeout))
            .is_err()
        || stream
            .set_write_timeout(Some(cfg.handshake_timeout))
            .is_err()
    {
        return;
    }
    // TLS first (a client without a certificate from the cluster's CA, or plaintext, is
    // refused here), then the HMAC handshake inside it.
    let mut stream = match Stream::accept(stream, cfg.tls.as_ref()) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            refuse(
                format!("refused a connection from {addr}: {e}"),
                &counters.handshakes_refused,
            );
            return;
        }
        Err(e) => {
            log::debug!("node {me}: connection from {addr} ended in the TLS handshake: {e}");
            return;
        }
    };
    let peer = match handshake::server(
        &mut stream,
        shared.identity(),
        Instant::now() + cfg.handshake_timeout,
    ) {
        Ok(peer) => peer,
        Err(e @ (HandshakeError::Refused(_) | HandshakeError::RefusedByPeer(_))) => {
            refuse(
                format!("connection from {addr} {e}"),
                &counters.handshakes_refused,
            );
            return;
        }
        Err(HandshakeError::Closed) => {
            log::debug!("node {me}: connection from {addr} closed before the handshake");
            return;
        }
        Err(e @ HandshakeError::Io(_)) => {
            refuse(
                format!("closed connection from {addr} before authentication: {e}"),
                &counters.connections_closed_bad_input,
            );
            return;
        }
    };
    bump(&counters.connections_accepted);
    claim(shared, id, peer);
    log::info!("node {me}: accepted node {peer} from {addr}");
    if stream.tcp().set_read_timeout(Some(cfg.io_timeout)).is_err()
        || stream
            .tcp()
            .set_write_timeout(Some(cfg.io_timeout))
            .is_err()
    {
        return;
    }
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    loop {
        match read_frame(&mut r, cfg.max_frame_size) {
            Ok(None) => {
                log::debug!("node {me}: node {peer} at {addr} closed its connection");
                return;
            }
            Ok(Some(p)) if p.is_empty() => {} // keepalive
            Ok(Some(p)) => match RaftMessage::decode(&p) {
                Ok(m) => match shared.inbound_tx.try_send((peer, m)) {
                    Ok(()) => bump(&counters.messages_received),
                    Err(TrySendError::Full(_)) => bump(&counters.dropped_inbound_full),
                    Err(TrySendError::Disconnected(_)) => return,
                },
                Err(e) => {
                    refuse(
                        format!("closed connection from node {peer} at {addr}: {e}"),
                        &counters.connections_closed_bad_input,
                    );
                    return;
                }
            },
            Err(FrameError::Io(e)) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    log::info!(
                        "node {me}: closed connection from node {peer} at {addr}: silent for {:?}",
                        cfg.io_timeout
                    );
                } else {
                    log::debug!("node {me}: connection from node {peer} at {addr} ended: {e}");
                }
                return;
            }
            Err(e) => {
                refuse(
                    format!("closed connection from node {peer} at {addr}: {e}"),
                    &counters.connections_closed_bad_input,
                );
                return;
            }
        }
    }
}
