//! [`TcpConfig`]: timeouts, queue bounds, the frame limit and the cluster's identity and secret.
//! Validated once when a handler is built.

use std::time::Duration;

use crate::error::TcpError;
use crate::frame::HANDSHAKE_FRAME_MAX;

/// How a [`crate::TcpMessageHandler`] runs. Every node of a cluster must use the same
/// `cluster_id` and `cluster_secret`; the other values are local.
///
/// ```
/// use needle_transport_tcp::TcpConfig;
/// let config = TcpConfig::new(7, b"a long random shared secret".to_vec());
/// config.validate().unwrap();
/// assert!(format!("{config:?}").contains("redacted"));
/// ```
#[derive(Clone)]
pub struct TcpConfig {
    /// Which cluster this node belongs to. A connection from another cluster is refused.
    pub cluster_id: u64,
    /// The shared secret that authenticates every connection (HMAC-SHA256 challenge–response).
    /// It never crosses the wire. Must not be empty; 32 random bytes is a good choice.
    pub cluster_secret: Vec<u8>,
    /// How long an outgoing TCP connect may take.
    pub connect_timeout: Duration,
    /// How long the whole handshake of a connection may take, on either side.
    pub handshake_timeout: Duration,
    /// A write that makes no progress for this long closes the connection (and reconnects);
    /// an incoming connection silent for this long is closed. Idle outgoing connections send a
    /// keepalive every third of it.
    pub io_timeout: Duration,
    /// Messages waiting per peer; beyond it `send` drops and counts.
    pub queue_capacity: usize,
    /// Bytes waiting per peer; beyond it `send` drops and counts. Must exceed needle-raft's
    /// `snapshot_window_bytes` (the snapshot bytes it keeps in flight to one peer) plus the
    /// largest append message, so that a snapshot transfer never fills it.
    pub queue_max_bytes: usize,
    /// Received messages waiting for `receive`; beyond it incoming messages are dropped and counted.
    pub inbound_capacity: usize,
    /// The largest frame payload (one encoded `RaftMessage`), checked before any allocation.
    /// Must exceed needle-raft's `snapshot_chunk_size` and the largest append message
    /// (`max_size_per_msg`, or one entry larger than it).
    pub max_frame_size: u32,
    /// The first reconnect delay after a failure; doubled per failure up to `backoff_max`,
    /// each delay drawn from its upper half (jitter).
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// Incoming connections open at once (authenticated or not); more are closed on accept.
    pub max_inbound_connections: usize,
    /// Mutual TLS under the handshake (`None`: plain TCP). Every node of a cluster must agree:
    /// a TLS node refuses plaintext connections, and a plain node cannot talk to a TLS one.
    pub tls: Option<crate::tls::TlsConfig>,
}

impl TcpConfig {
    /// The defaults with this cluster's id and secret.
    pub fn new(cluster_id: u64, cluster_secret: impl Into<Vec<u8>>) -> Self {
        TcpConfig {
            cluster_id,
            cluster_secret: cluster_secret.into(),
            ..Default::default()
        }
    }

    /// Checks that the values can run a handler.
    pub fn validate(&self) -> Result<(), TcpError> {
        let bad = |reason: &str| {
            Err(TcpError::InvalidConfig {
                reason: reason.into(),
            })
        };
        if self.cluster_secret.is_empty() {
            return bad("cluster_secret must not be empty");
        }
        if self.connect_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.io_timeout.is_zero()
        {
            return bad("connect_timeout, handshake_timeout and io_timeout must be positive");
        }
        if self.io_timeout < Duration::from_millis(30) {
            return bad("io_timeout must be at least 30 ms (keepalives go every third of it)");
        }
        if self.queue_capacity == 0 || self.queue_max_bytes == 0 || self.inbound_capacity == 0 {
            return bad("queue_capacity, queue_max_bytes and inbound_capacity must be positive");
        }
        if self.max_frame_size < HANDSHAKE_FRAME_MAX {
            return bad(&format!(
                "max_frame_size must be at least {HANDSHAKE_FRAME_MAX} bytes"
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff_min must be positive and no larger than backoff_max");
        }
        if self.max_inbound_connections == 0 {
            return bad("max_inbound_connections must be positive");
        }
        Ok(())
    }
}

/// The defaults, with cluster id 0 and an empty secret, which does not validate: set
/// `cluster_secret` (or use [`TcpConfig::new`]).
impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            cluster_id: 0,
            cluster_secret: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            queue_capacity: 4096,
            queue_max_bytes: 256 << 20,
            inbound_capacity: 16_384,
            max_frame_size: 64 << 20,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_inbound_connections: 256,
            tls: None,
        }
    }
}

impl std::fmt::Debug for TcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConfig")
            .field("cluster_id", &self.cluster_id)
            .field(
                "cluster_secret",
                &format_args!("<{} bytes, redacted>", self.cluster_secret.len()),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("inbound_capacity", &self.inbound_capacity)
            .field("max_frame_size", &self.max_frame_size)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("max_inbound_connections", &self.max_inbound_connections)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_secret() {
        assert!(TcpConfig::default().validate().is_err());
        TcpConfig::new(1, b"s".to_vec()).validate().unwrap();
    }

    #[test]
    fn rejects_inconsistent_values() {
        let ok = TcpConfig::new(1, b"secret".to_vec());
        for bad in [
            TcpConfig {
                backoff_max: ok.backoff_min / 2,
                ..ok.clone()
            },
            TcpConfig {
                max_frame_size: 16,
                ..ok.clone()
            },
            TcpConfig {
                queue_capacity: 0,
                ..ok.clone()
            },
            TcpConfig {
                io_timeout: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = TcpConfig::new(1, b"hunter2-hunter2".to_vec());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
