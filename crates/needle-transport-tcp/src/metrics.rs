//! Counters of what the transport did, kept as atomics and read as a [`TcpMetrics`] snapshot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a handler's counters since it was built. Every drop is counted somewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpMetrics {
    /// Messages written to a peer's connection.
    pub messages_sent: u64,
    /// Messages received and handed to `receive`.
    pub messages_received: u64,
    /// Messages `send` dropped because the peer's queue was full (by count or bytes).
    pub dropped_queue_full: u64,
    /// Messages `send` dropped because they did not fit in one frame.
    pub dropped_oversized: u64,
    /// Messages `send` refused because the destination is not a peer.
    pub dropped_unknown_peer: u64,
    /// Messages taken from a queue but lost: the write failed, or the peer was removed.
    pub dropped_in_flight: u64,
    /// Queued messages discarded because a connection attempt to their peer failed (Raft
    /// retransmits; sending them late would only deliver stale messages in a burst).
    pub dropped_unreachable: u64,
    /// Received messages dropped because `receive` was not keeping up.
    pub dropped_inbound_full: u64,
    /// Outgoing connections that completed the handshake.
    pub connections_established: u64,
    /// Outgoing connection attempts that failed (connect or handshake).
    pub connect_failures: u64,
    /// Incoming connections that completed the handshake.
    pub connections_accepted: u64,
    /// Handshakes refused, in either direction (version, cluster, node id or secret).
    pub handshakes_refused: u64,
    /// Incoming connections closed for a bad frame after the handshake: checksum, size or
    /// contents that do not decode as a `RaftMessage`, or closed before a handshake completed.
    pub connections_closed_bad_input: u64,
    /// Incoming connections closed at once because `max_inbound_connections` were open.
    pub connections_over_limit: u64,
    /// The latest reason a connection was refused or closed for bad input, if any.
    pub last_refusal: Option<String>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_oversized: AtomicU64,
    pub dropped_unknown_peer: AtomicU64,
    pub dropped_in_flight: AtomicU64,
    pub dropped_unreachable: AtomicU64,
    pub dropped_inbound_full: AtomicU64,
    pub connections_established: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub handshakes_refused: AtomicU64,
    pub connections_closed_bad_input: AtomicU64,
    pub connections_over_limit: AtomicU64,
    last_refusal: Mutex<Option<String>>,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn set_last_refusal(&self, reason: String) {
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub fn snapshot(&self) -> TcpMetrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpMetrics {
            messages_sent: g(&self.messages_sent),
            messages_received: g(&self.messages_received),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_oversized: g(&self.dropped_oversized),
            dropped_unknown_peer: g(&self.dropped_unknown_peer),
            dropped_in_flight: g(&self.dropped_in_flight),
            dropped_unreachable: g(&self.dropped_unreachable),
            dropped_inbound_full: g(&self.dropped_inbound_full),
            connections_established: g(&self.connections_established),
            connect_failures: g(&self.connect_failures),
            connections_accepted: g(&self.connections_accepted),
            handshakes_refused: g(&self.handshakes_refused),
            connections_closed_bad_input: g(&self.connections_closed_bad_input),
            connections_over_limit: g(&self.connections_over_limit),
            last_refusal: self
                .last_refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
