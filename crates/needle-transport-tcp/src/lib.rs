//! # needle-transport-tcp
//!
//! A `needle_raft::MessageHandler` over TCP: [`TcpMessageHandler`] for nodes that run as
//! separate processes (or, in tests, on several loopback ports of one process).
//!
//! - **Frames** are `len u32 | crc32c u32 | payload`, one encoded `RaftMessage` each, with the
//!   limit ([`TcpConfig::max_frame_size`]) checked before any allocation.
//! - **Every connection is authenticated** before it carries a message: a handshake with the
//!   protocol version, the cluster id and both node ids, and an HMAC-SHA256 challenge–response in
//!   both directions over the shared cluster secret, which never crosses the wire. A mismatch is
//!   refused, logged (the `log` crate) with its reason, and counted ([`TcpMetrics`]).
//! - **`send` never blocks**: each peer has a bounded queue and one writer thread that
//!   reconnects with exponential backoff and jitter. A full queue drops the message, counts it and
//!   returns an error (Raft retransmits).
//! - **Incoming**: one reader thread per connection feeds one channel. A bad checksum, an
//!   oversized frame, bytes that do not decode or a failed handshake close that connection only.
//!
//! - **Mutual TLS** ([`TlsConfig`], rustls) optionally wraps every connection: both nodes present a
//!   certificate from the cluster's CA; the HMAC handshake then runs inside TLS.
//!
//! Modules: `config`, `error`, `frame` (the bytes of a frame), `handshake` (the authentication),
//! `tls` (rustls connections),
//! `peer` (an outgoing queue and its writer), `inbound` (accepting and reading), `metrics`,
//! `handler` (the public handler). Knows nothing of Raft beyond `RaftMessage`'s bytes.

mod config;
mod error;
mod frame;
mod handler;
mod handshake;
mod inbound;
mod metrics;
mod peer;
mod tls;

pub use config::TcpConfig;
pub use error::TcpError;
pub use handler::TcpMessageHandler;
pub use metrics::TcpMetrics;
pub use peer::PeerStats;
pub use tls::{TlsConfig, certificates, provider, read_pem, root_store};

/// The handshake protocol version this build speaks; nodes of different versions refuse each other.
pub const PROTOCOL_VERSION: u16 = handshake::PROTOCOL_VERSION;
