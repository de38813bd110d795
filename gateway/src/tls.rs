//! TLS in one module: the ring crypto provider, the server's rustls configuration
//! (TLS 1.3 only, client certificates required, verified against the configured CA
//! and CRLs), and the accept loop that hands tonic only completed handshakes.
//!
//! tonic's own `ServerTlsConfig` cannot take CRLs or a custom verifier, so the
//! handshake happens here, and each refused connection is reported to the caller
//! of [`incoming`] (which records it in the audit log).

use crate::coalesce::CoalescedWrites;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM item")]
    Empty { what: &'static str, path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client verifier configuration: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The only crypto provider the gateway uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider (idempotent). Call at the top
/// of `main` and in every test that starts a server or client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Empty {
        what: "private key",
        path: path.to_path_buf(),
    })
}

fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        let pem = read("CRL", path)?;
        let before = crls.len();
        crls.extend(CertificateRevocationListDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if crls.len() == before {
            return Err(TlsError::Empty {
                what: "CRL",
                path: path.clone(),
            });
        }
    }
    Ok(crls)
}

/// The server side: TLS 1.3 only, a client certificate chaining to `ca` required,
/// revocation checked against `crls` (an unknown revocation status is accepted, as a
/// CRL covers only the certificates its issuer revoked).
pub fn server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    crls: &[PathBuf],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs("CA certificate", ca)? {
        roots.add(c)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(load_crls(crls)?)
        .allow_unknown_revocation_status()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs("server certificate", cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP connection whose TLS handshake failed: the certificate was missing,
/// expired, revoked or from another CA, or the peer spoke something else.
#[derive(Debug, Clone)]
pub struct RefusedConnection {
    pub peer: Option<SocketAddr>,
    /// The handshake error as rustls reports it (no certificate content).
    pub reason: String,
}

/// How handshakes are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Handshakes {
    /// Time a client has to finish its handshake.
    pub timeout: Duration,
    /// Handshakes in progress at most.
    pub at_once: usize,
}

/// Accepts TCP connections, runs each TLS handshake in its own task (with a
/// timeout, so a silent peer cannot hold the accept loop), and yields only
/// established TLS streams. Refusals go to `on_refused`. The loop stops when the
/// returned stream is dropped. Each stream gathers its writes until its task
/// yields ([`CoalescedWrites`]).
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshakes: Handshakes,
    on_refused: impl Fn(RefusedConnection) + Send + Sync + 'static,
) -> ReceiverStream<Result<CoalescedWrites<TlsStream<TcpStream>>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let on_refused = Arc::new(on_refused);
    let handshake_timeout = handshakes.timeout;
    let slots = Arc::new(tokio::sync::Semaphore::new(handshakes.at_once.max(1)));
    tokio::spawn(async move {
        loop {
            // A slot first: with every slot in a handshake, connections wait
            // in the listen backlog instead of each costing a task and a
            // socket here (a flood of silent peers holds a slot for at most
            // the handshake timeout).
            let slot = tokio::select! {
                _ = tx.closed() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let on_refused = on_refused.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let reason =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(CoalescedWrites::new(stream))).await;
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "TLS handshake timed out".to_string(),
                    };
                tracing::warn!(peer = %peer, reason = %reason, "connection refused");
                on_refused(RefusedConnection {
                    peer: Some(peer),
                    reason,
                });
            });
        }
    });
    ReceiverStream::new(rx)
}
