//! Helpers for the loopback tests: handlers on 127.0.0.1 ports, numbered test messages, bounded
//! waits, and a raw client that speaks the wire protocol by hand (written from the protocol's
//! description, not from the crate's code) to send what a well-behaved node never would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use needle_raft::{MessageHandler, NodeId, RaftMessage, RaftProtoMessage};
use needle_transport_tcp::{TcpConfig, TcpMessageHandler};
use sha2::Sha256;

pub const SECRET: &[u8] = b"needle test cluster secret, 32 b";
pub const CLUSTER: u64 = 42;

/// The seed of a random test: the test kit's one seed helper (`NEEDLE_SEED`, printed).
#[allow(unused_imports)] // Not every test binary is random.
pub use needle_testkit::seed;

/// Short timeouts so that failures show within seconds.
pub fn config() -> TcpConfig {
    TcpConfig {
        connect_timeout: Duration::from_millis(500),
        handshake_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        ..TcpConfig::new(CLUSTER, SECRET.to_vec())
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn handler(id: NodeId, peers: Vec<(NodeId, SocketAddr)>) -> TcpMessageHandler {
    handler_with(id, peers, config())
}

pub fn handler_with(
    id: NodeId,
    peers: Vec<(NodeId, SocketAddr)>,
    config: TcpConfig,
) -> TcpMessageHandler {
    TcpMessageHandler::new(id, loopback(), peers, config).expect("handler on loopback")
}

/// Binds `addr` again after a shutdown, retrying briefly.
pub fn rebind(id: NodeId, addr: SocketAddr, peers: Vec<(NodeId, SocketAddr)>) -> TcpMessageHandler {
    rebind_with(id, addr, peers, config())
}

/// Binds `addr` again after a shutdown with `config`, retrying briefly.
pub fn rebind_with(
    id: NodeId,
    addr: SocketAddr,
    peers: Vec<(NodeId, SocketAddr)>,
    config: TcpConfig,
) -> TcpMessageHandler {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpMessageHandler::new(id, addr, peers.clone(), config.clone()) {
            Ok(h) => return h,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Two nodes, 1 and 2, that know each other.
pub fn pair() -> (TcpMessageHandler, TcpMessageHandler) {
    let a = handler(1, vec![]);
    let b = handler(2, vec![(1, a.local_addr())]);
    a.add_peer(2, b.local_addr()).unwrap();
    (a, b)
}

/// A numbered Raft message; `pad` bytes of context derived from `seq` make it checkable.
pub fn msg(from: NodeId, to: NodeId, seq: u64, pad: usize) -> RaftMessage {
    let context: Vec<u8> = (0..pad).map(|i| (seq as usize + i) as u8).collect();
    RaftMessage::Raft(RaftProtoMessage {
        from,
        to,
        index: seq,
        context: context.into(),
        ..Default::default()
    })
}

pub fn seq_of(m: &RaftMessage) -> u64 {
    match m {
        RaftMessage::Raft(r) => r.index,
        RaftMessage::SnapshotChunk(c) => u64::from(c.seq),
        RaftMessage::SnapshotAck(a) => u64::from(a.received),
        RaftMessage::Removed(n) => n.index,
        _ => unreachable!("the tests send no other message"),
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_connected(h: &TcpMessageHandler, peer: NodeId) {
    wait_until(
        &format!("node {} connected to node {peer}", h.node_id()),
        Duration::from_secs(10),
        || h.peer_stats(peer).is_some_and(|s| s.connected),
    );
}

pub fn recv(h: &TcpMessageHandler, timeout: Duration) -> (NodeId, RaftMessage) {
    h.receive_timeout(timeout)
        .expect("receive")
        .unwrap_or_else(|| panic!("node {}: nothing received within {timeout:?}", h.node_id()))
}

// ---- the wire protocol, by hand ----

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend((payload.len() as u32).to_le_bytes());
    b.extend(crc32c::crc32c(payload).to_le_bytes());
    b.extend(payload);
    b
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h)?;
    let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
    assert!(len <= 512, "handshake frame of {len} bytes");
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok(p)
}

fn mac(secret: &[u8], role: &[u8], transcript: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(b"needle-tcp handshake v1 ");
    m.update(role);
    m.update(transcript);
    m.finalize().into_bytes().into()
}

/// Connects to node `server` at `addr` as node `me` and runs the client handshake with
/// `secret`, without checking the server's proof. Returns the stream and the server's verdict:
/// `Ok(())` if accepted, `Err(reason)` if refused.
pub fn raw_handshake(
    addr: SocketAddr,
    me: NodeId,
    server: NodeId,
    secret: &[u8],
) -> (TcpStream, Result<(), String>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = |kind: u8| {
        let mut v = b"NDLT".to_vec();
        v.extend(1u16.to_le_bytes());
        v.push(kind);
        v
    };
    let client_nonce = [7u8; 32];
    let mut hello = head(1);
    hello.extend(CLUSTER.to_le_bytes());
    hello.extend(me.to_le_bytes());
    hello.extend(server.to_le_bytes());
    hello.extend(client_nonce);
    s.write_all(&frame(&hello)).unwrap();
    let challenge = read_frame(&mut s).unwrap();
    assert_eq!(&challenge[..7], &head(2)[..], "a challenge");
    let server_nonce = &challenge[23..55];
    let mut transcript = Vec::new();
    transcript.extend(CLUSTER.to_le_bytes());
    transcript.extend(me.to_le_bytes());
    transcript.extend(server.to_le_bytes());
    transcript.extend(client_nonce);
    transcript.extend(server_nonce);
    let mut auth = head(3);
    auth.extend(mac(secret, b"client", &transcript));
    s.write_all(&frame(&auth)).unwrap();
    let verdict = read_frame(&mut s).unwrap();
    assert_eq!(&verdict[..7], &head(4)[..], "a verdict");
    let result = if verdict[7] == 1 {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&verdict[8..]).into_owned())
    };
    (s, result)
}

/// True when the other side closes `s` within `timeout` (whatever it sends first is read and
/// ignored); false if it is still open then.
pub fn closed_by_peer(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}
