//! The handshake that opens every connection, before any Raft message. The connecting side
//! (client) and the accepting side (server) exchange four small frames:
//!
//! ```text
//! client → server  Hello      magic | version | 1 | cluster_id | client id | server id | client nonce
//! server → client  Challenge  magic | version | 2 | cluster_id | server id | server nonce | server MAC
//! client → server  Auth       magic | version | 3 | client MAC
//! server → client  Verdict    magic | version | 4 | accepted (0/1) | reason (UTF-8)
//! ```
//!
//! Each MAC is HMAC-SHA256 under the cluster secret over a role label and the whole transcript
//! (cluster id, both node ids, both fresh 32-byte nonces), so the secret never crosses the wire,
//! a recorded handshake cannot be replayed, and one side's MAC cannot be reflected as the
//! other's. Both MACs are checked in constant time. Either side refuses a wrong version, cluster
//! id or node id; the server says why in its Verdict (never more than "authentication failed"
//! about the MAC). The whole handshake runs under one deadline.

use crate::tls::Stream;
use std::io::{self, Read, Write};
use std::time::Instant;

use hmac::{Hmac, Mac};
use needle_raft::NodeId;
use rand::RngCore;
use sha2::Sha256;

use crate::frame::{HANDSHAKE_FRAME_MAX, read_frame, write_frame};

const MAGIC: &[u8; 4] = b"NDLT";
/// The protocol version this build speaks.
pub(crate) const PROTOCOL_VERSION: u16 = 1;
const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const AUTH: u8 = 3;
const VERDICT: u8 = 4;
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const MAX_REASON: usize = 200;

/// Why a handshake did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// The other side closed the connection before sending anything (a port probe, or a node
    /// that stopped while connecting).
    Closed,
    /// The connection failed, timed out or carried bytes that are not a handshake.
    Io(String),
    /// This side refused the other (reason logged here; the other side was told when safe).
    Refused(String),
    /// The other side refused this one, with its stated reason.
    RefusedByPeer(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Closed => write!(f, "closed before the handshake"),
            HandshakeError::Io(r) => write!(f, "handshake failed: {r}"),
            HandshakeError::Refused(r) => write!(f, "refused: {r}"),
            HandshakeError::RefusedByPeer(r) => write!(f, "refused by the peer: {r}"),
        }
    }
}

/// What both sides must agree on.
#[derive(Clone, Copy)]
pub(crate) struct Identity<'a> {
    pub cluster_id: u64,
    pub secret: &'a [u8],
    pub node_id: NodeId,
}

/// Runs the client side on a fresh connection to node `server`.
pub(crate) fn client(
    stream: &mut Stream,
    me: Identity<'_>,
    server: NodeId,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let mut s = Deadline { stream, deadline };
    let client_nonce = nonce();
    let mut hello = start(HELLO);
    hello.extend(me.cluster_id.to_le_bytes());
    hello.extend(me.node_id.to_le_bytes());
    hello.extend(server.to_le_bytes());
    hello.extend(client_nonce);
    send(&mut s, &hello)?;

    let reply = receive(&mut s)?;
    let mut r = Fields::new(&reply);
    match r.header()? {
        CHALLENGE => {}
        VERDICT => return Err(HandshakeError::RefusedByPeer(verdict_reason(&mut r))),
        k => {
            return Err(HandshakeError::Io(format!(
                "expected a challenge, got kind {k}"
            )));
        }
    }
    let cluster = r.u64()?;
    let server_id = r.u64()?;
    let server_nonce: [u8; NONCE_LEN] = r.array()?;
    let server_mac: [u8; MAC_LEN] = r.array()?;
    r.end()?;
    let t = Transcript {
        cluster_id: me.cluster_id,
        client: me.node_id,
        server,
        client_nonce,
        server_nonce,
    };
    let mismatch = if cluster != me.cluster_id {
        Some(format!(
            "peer is in cluster {cluster}, this node in cluster {}",
            me.cluster_id
        ))
    } else if server_id != server {
        Some(format!("peer is node {server_id}, expected node {server}"))
    } else if !t.verify(me.secret, Role::Server, &server_mac) {
        Some(format!(
            "node {server} did not prove the cluster secret (authentication failed)"
        ))
    } else {
        None
    };
    if let Some(reason) = mismatch {
        let e = HandshakeError::Refused(reason);
        refuse(&mut s, &e);
        return Err(e);
    }
    let mut auth = start(AUTH);
    auth.extend(t.mac(me.secret, Role::Client));
    send(&mut s, &auth)?;

    let verdict = receive(&mut s)?;
    let mut r = Fields::new(&verdict);
    match r.header()? {
        VERDICT => {}
        k => {
            return Err(HandshakeError::Io(format!(
                "expected a verdict, got kind {k}"
            )));
        }
    }
    match r.u8()? {
        1 => Ok(()),
        _ => Err(HandshakeError::RefusedByPeer(verdict_reason(&mut r))),
    }
}

/// Runs the server side on an accepted connection; returns the authenticated client's id.
pub(crate) fn server(
    stream: &mut Stream,
    me: Identity<'_>,
    deadline: Instant,
) -> Result<NodeId, HandshakeError> {
    let mut s = Deadline { stream, deadline };
    let hello = receive_first(&mut s)?;
    let mut r = Fields::new(&hello);
    let kind = match r.header() {
        Ok(k) => k,
        Err(e @ HandshakeError::Refused(_)) => {
            refuse(&mut s, &e);
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if kind != HELLO {
        return Err(HandshakeError::Io(format!(
            "expected a hello, got kind {kind}"
        )));
    }
    let cluster = r.u64()?;
    let client = r.u64()?;
    let to = r.u64()?;
    let client_nonce: [u8; NONCE_LEN] = r.array()?;
    r.end()?;
    let mismatch = if cluster != me.cluster_id {
        Some(format!(
            "cluster id {cluster} does not match this node's cluster {}",
            me.cluster_id
        ))
    } else if to != me.node_id {
        Some(format!("this is node {}, not node {to}", me.node_id))
    } else if client == 0 || client == me.node_id {
        Some(format!("node id {client} is reserved or this node's own"))
    } else {
        None
    };
    if let Some(reason) = mismatch {
        let e = HandshakeError::Refused(reason);
        refuse(&mut s, &e);
        return Err(e);
    }
    let t = Transcript {
        cluster_id: me.cluster_id,
        client,
        server: me.node_id,
        client_nonce,
        server_nonce: nonce(),
    };
    let mut challenge = start(CHALLENGE);
    challenge.extend(me.cluster_id.to_le_bytes());
    challenge.extend(me.node_id.to_le_bytes());
    challenge.extend(t.server_nonce);
    challenge.extend(t.mac(me.secret, Role::Server));
    send(&mut s, &challenge)?;

    let auth = receive(&mut s)?;
    let mut r = Fields::new(&auth);
    match r.header()? {
        AUTH => {}
        VERDICT => return Err(HandshakeError::RefusedByPeer(verdict_reason(&mut r))),
        k => return Err(HandshakeError::Io(format!("expected auth, got kind {k}"))),
    }
    let client_mac: [u8; MAC_LEN] = r.array()?;
    r.end()?;
    if !t.verify(me.secret, Role::Client, &client_mac) {
        let e = HandshakeError::Refused(format!(
            "node {client} did not prove the cluster secret (authentication failed)"
        ));
        refuse(&mut s, &e);
        return Err(e);
    }
    let mut ok = start(VERDICT);
    ok.push(1);
    send(&mut s, &ok)?;
    Ok(client)
}

/// Tells the client why it was refused; best effort, the connection closes next.
fn refuse(s: &mut Deadline<'_>, e: &HandshakeError) {
    let HandshakeError::Refused(reason) = e else {
        return;
    };
    let mut v = start(VERDICT);
    v.push(0);
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    v.extend(&reason.as_bytes()[..end]);
    let _ = send(s, &v);
}

fn verdict_reason(r: &mut Fields<'_>) -> String {
    let rest = r.rest();
    let rest = rest.get(1..).unwrap_or_default(); // skip the accepted flag
    String::from_utf8_lossy(&rest[..rest.len().min(MAX_REASON)]).into_owned()
}

#[derive(Clone, Copy)]
enum Role {
    Client,
    Server,
}

struct Transcript {
    cluster_id: u64,
    client: NodeId,
    server: NodeId,
    client_nonce: [u8; NONCE_LEN],
    server_nonce: [u8; NONCE_LEN],
}

impl Transcript {
    fn hmac(&self, secret: &[u8], role: Role) -> Hmac<Sha256> {
        let mut m =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        m.update(b"needle-tcp handshake v1 ");
        m.update(match role {
            Role::Client => b"client",
            Role::Server => b"server",
        });
        m.update(&self.cluster_id.to_le_bytes());
        m.update(&self.client.to_le_bytes());
        m.update(&self.server.to_le_bytes());
        m.update(&self.client_nonce);
        m.update(&self.server_nonce);
        m
    }

    fn mac(&self, secret: &[u8], role: Role) -> [u8; MAC_LEN] {
        self.hmac(secret, role).finalize().into_bytes().into()
    }

    /// Constant-time comparison (`verify_slice` uses `subtle`).
    fn verify(&self, secret: &[u8], role: Role, mac: &[u8; MAC_LEN]) -> bool {
        self.hmac(secret, role).verify_slice(mac).is_ok()
    }
}

fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

fn start(kind: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(96);
    b.extend(MAGIC);
    b.extend(PROTOCOL_VERSION.to_le_bytes());
    b.push(kind);
    b
}

fn send(s: &mut Deadline<'_>, payload: &[u8]) -> Result<(), HandshakeError> {
    write_frame(s, payload)
        .and_then(|()| s.flush())
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

fn receive(s: &mut Deadline<'_>) -> Result<Vec<u8>, HandshakeError> {
    match read_frame(s, HANDSHAKE_FRAME_MAX) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(HandshakeError::Io("connection closed".into())),
        Err(e) => Err(HandshakeError::Io(e.to_string())),
    }
}

/// The first frame of a connection; a close before any byte is [`HandshakeError::Closed`].
fn receive_first(s: &mut Deadline<'_>) -> Result<Vec<u8>, HandshakeError> {
    match read_frame(s, HANDSHAKE_FRAME_MAX) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(HandshakeError::Closed),
        Err(e) => Err(HandshakeError::Io(e.to_string())),
    }
}

/// A cursor over a handshake frame; every shortfall is an error, never a panic.
struct Fields<'a> {
    b: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(b: &'a [u8]) -> Self {
        Fields { b }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.b.len() < n {
            return Err(HandshakeError::Io("handshake frame too short".into()));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HandshakeError> {
        Ok(self.take(N)?.try_into().expect("took exactly N bytes"))
    }

    fn u8(&mut self) -> Result<u8, HandshakeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, HandshakeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Magic and version, then the kind. A wrong version is a refusal, other junk is I/O.
    fn header(&mut self) -> Result<u8, HandshakeError> {
        if self.take(4)? != MAGIC {
            return Err(HandshakeError::Io(
                "not a needle-tcp handshake (bad magic)".into(),
            ));
        }
        let version = u16::from_le_bytes(self.array()?);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Refused(format!(
                "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
            )));
        }
        self.u8()
    }

    fn end(&self) -> Result<(), HandshakeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(HandshakeError::Io(
                "trailing bytes in handshake frame".into(),
            ))
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.b
    }
}

/// A stream whose every read and write is bounded by one deadline for the whole handshake.
struct Deadline<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
}

impl Deadline<'_> {
    fn remaining(&self) -> io::Result<std::time::Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.tcp().set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.tcp().set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let left = self.remaining()?;
        self.stream.tcp().set_write_timeout(Some(left))?;
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn pair() -> (Stream, Stream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (Stream::Plain(c), Stream::Plain(s))
    }

    fn run(
        client_id: Identity<'static>,
        expect: NodeId,
        server_id: Identity<'static>,
    ) -> (Result<(), HandshakeError>, Result<NodeId, HandshakeError>) {
        let (mut c, mut s) = pair();
        let deadline = Instant::now() + Duration::from_secs(5);
        let t = std::thread::spawn(move || server(&mut s, server_id, deadline));
        let rc = client(&mut c, client_id, expect, deadline);
        drop(c);
        (rc, t.join().unwrap())
    }

    fn id(node_id: NodeId, secret: &'static [u8]) -> Identity<'static> {
        Identity {
            cluster_id: 9,
            secret,
            node_id,
        }
    }

    #[test]
    fn same_secret_authenticates_both_ways() {
        let (c, s) = run(id(1, b"k"), 2, id(2, b"k"));
        assert_eq!(c, Ok(()));
        assert_eq!(s, Ok(1));
    }

    #[test]
    fn wrong_secret_is_refused_by_the_client_first() {
        let (c, s) = run(id(1, b"k1"), 2, id(2, b"k2"));
        assert!(
            matches!(&c, Err(HandshakeError::Refused(r)) if r.contains("secret")),
            "{c:?}"
        );
        assert!(
            matches!(&s, Err(HandshakeError::RefusedByPeer(r)) if r.contains("secret")),
            "{s:?}"
        );
    }

    #[test]
    fn wrong_cluster_and_wrong_node_are_refused_with_a_reason() {
        let other = Identity {
            cluster_id: 10,
            ..id(1, b"k")
        };
        let (c, s) = run(other, 2, id(2, b"k"));
        assert!(
            matches!(&c, Err(HandshakeError::RefusedByPeer(r)) if r.contains("cluster")),
            "{c:?}"
        );
        assert!(matches!(&s, Err(HandshakeError::Refused(_))), "{s:?}");
        let (c, _) = run(id(1, b"k"), 3, id(2, b"k"));
        assert!(
            matches!(&c, Err(HandshakeError::RefusedByPeer(r)) if r.contains("not node 3")),
            "{c:?}"
        );
        let (c, _) = run(id(2, b"k"), 2, id(2, b"k"));
        assert!(
            matches!(&c, Err(HandshakeError::RefusedByPeer(r)) if r.contains("own")),
            "{c:?}"
        );
    }

    #[test]
    fn an_impostor_without_the_secret_is_refused() {
        let (mut c, mut s) = pair();
        let deadline = Instant::now() + Duration::from_secs(5);
        let t = std::thread::spawn(move || server(&mut s, id(2, b"k"), deadline));
        let mut w = Deadline {
            stream: &mut c,
            deadline,
        };
        let mut hello = start(HELLO);
        hello.extend(9u64.to_le_bytes());
        hello.extend(1u64.to_le_bytes());
        hello.extend(2u64.to_le_bytes());
        hello.extend([0u8; NONCE_LEN]);
        send(&mut w, &hello).unwrap();
        let challenge = receive(&mut w).unwrap();
        assert_eq!(challenge[6], CHALLENGE);
        let mut auth = start(AUTH);
        auth.extend([0u8; MAC_LEN]);
        send(&mut w, &auth).unwrap();
        let verdict = receive(&mut w).unwrap();
        assert_eq!((verdict[6], verdict[7]), (VERDICT, 0));
        let r = t.join().unwrap();
        assert!(
            matches!(&r, Err(HandshakeError::Refused(m)) if m.contains("authentication failed")),
            "{r:?}"
        );
    }

    #[test]
    fn a_silent_client_times_out() {
        let (_c, mut s) = pair();
        let t0 = Instant::now();
        let r = server(
            &mut s,
            id(2, b"k"),
            Instant::now() + Duration::from_millis(100),
        );
        assert!(matches!(r, Err(HandshakeError::Io(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
