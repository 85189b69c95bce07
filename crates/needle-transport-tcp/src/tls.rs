//! Mutual TLS (rustls) under the handshake and the frames: [`TlsConfig`] builds a server and a
//! client configuration from PEM files (this node's certificate chain and key, and the cluster's
//! CA), and [`Stream`] is a connection that is plain TCP or TLS in either role.
//!
//! Both sides must present a certificate issued by the cluster's CA: the server requires and
//! verifies a client certificate (`WebPkiClientVerifier`), and the client verifies the server's
//! certificate against the CA and the peer's IP address (so a node's certificate must carry its
//! Raft IP address as a subject alternative name). The HMAC handshake still runs inside TLS.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use crate::error::TcpError;

/// TLS settings of a node: the server side (accepting peers) and the client side (connecting to
/// them), both with this node's certificate and both trusting only the cluster's CA.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

fn bad(what: impl Into<String>) -> TcpError {
    TcpError::InvalidConfig {
        reason: what.into(),
    }
}

/// ring, not aws-lc-rs: it builds with a C compiler alone (no cmake, no nasm). rustls marks it
/// deprecated for lacking post-quantum key exchange, which this threat model does not need yet.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file, naming it in the error.
pub fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TcpError> {
    std::fs::read(path).map_err(|e| bad(format!("reading the {what} {}: {e}", path.display())))
}

/// The certificates of a PEM bundle (at least one).
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TcpError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("the {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(format!("the {what} holds no certificate")));
    }
    Ok(certs)
}

/// A root store holding the CA certificates of `ca_pem`.
pub fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, TcpError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA file (--tls-ca)")? {
        roots.add(cert).map_err(|e| {
            bad(format!(
                "the CA file (--tls-ca) holds a bad certificate: {e}"
            ))
        })?;
    }
    Ok(roots)
}

impl TlsConfig {
    /// From PEM text: this node's certificate chain, its private key, and the cluster's CA.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<TlsConfig, TcpError> {
        let chain = certificates(cert_pem, "certificate (--tls-cert)")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| bad(format!("the key (--tls-key) is not a PEM private key: {e}")))?;
        let roots = Arc::new(root_store(ca_pem)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| bad(format!("building the client certificate verifier: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| bad(format!("the certificate and key do not go together: {e}")))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(format!("the certificate and key do not go together: {e}")))?;
        Ok(TlsConfig {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// From PEM files (`--tls-cert`, `--tls-key`, `--tls-ca`).
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<TlsConfig, TcpError> {
        TlsConfig::from_pem(
            &read_pem(cert, "certificate (--tls-cert)")?,
            &read_pem(key, "key (--tls-key)")?,
            &read_pem(ca, "CA file (--tls-ca)")?,
        )
    }

    /// The server side, for sharing with another listener (the HTTP API).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

/// A connection: plain TCP, or TLS as client or server. Reads and writes go through TLS when
/// there is TLS; [`Stream::tcp`] is the socket underneath (for timeouts and shutdown).
pub(crate) enum Stream {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// Wraps an outgoing connection to `ip` (TLS when `tls` is set) and completes the TLS
    /// handshake; a TLS failure is an `InvalidData` error naming it.
    pub fn connect(tcp: TcpStream, ip: IpAddr, tls: Option<&TlsConfig>) -> io::Result<Stream> {
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let conn = ClientConnection::new(tls.client.clone(), ServerName::IpAddress(ip.into()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(tls_error)?;
        }
        Ok(Stream::Client(Box::new(s)))
    }

    /// Wraps an accepted connection (TLS when `tls` is set) and completes the TLS handshake,
    /// which verifies the client's certificate.
    pub fn accept(tcp: TcpStream, tls: Option<&TlsConfig>) -> io::Result<Stream> {
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let conn = ServerConnection::new(tls.server.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(tls_error)?;
        }
        Ok(Stream::Server(Box::new(s)))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Client(s) => &s.sock,
            Stream::Server(s) => &s.sock,
        }
    }
}

/// rustls reports protocol and certificate failures as `InvalidData`: say it was TLS.
fn tls_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidData {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS handshake failed: {e}"),
        )
    } else {
        e
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Client(s) => s.read(buf),
            Stream::Server(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Client(s) => s.write(buf),
            Stream::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Client(s) => s.flush(),
            Stream::Server(s) => s.flush(),
        }
    }
}
