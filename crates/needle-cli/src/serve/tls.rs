//! TLS for the HTTP API: the server configuration (this node's certificate; clients are not
//! asked for one, they authenticate with the bearer token) and a listener for axum that
//! completes each TLS handshake in its own task, so that a slow or broken client never holds up
//! the others. A connection that fails its handshake (plaintext HTTP included) is closed and
//! logged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use needle_transport_tcp::{certificates, provider, read_pem};
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{CliError, Result};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP API's TLS configuration from `--tls-cert` and `--tls-key`.
pub fn http_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = certificates(
        &read_pem(cert, "certificate (--tls-cert)")?,
        "certificate (--tls-cert)",
    )?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem(key, "key (--tls-key)")?).map_err(|e| {
        CliError::Usage(format!("the key (--tls-key) is not a PEM private key: {e}"))
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| CliError::Usage(format!("the certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that yields connections whose TLS handshake has completed.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (inside a tokio runtime).
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        node: u64,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        log::warn!("node {node}: HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            log::info!(
                                "node {node}: refused an HTTP connection from {addr}: TLS: {e}"
                            )
                        }
                        Err(_) => log::info!(
                            "node {node}: closed an HTTP connection from {addr}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"
                        ),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (it never does while the listener lives): wait forever,
            // as a listener with no more connections would.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
