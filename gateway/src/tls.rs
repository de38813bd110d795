//! TLS in one module: the ring crypto provider, the server's rustls configuration
//! (TLS 1.3 only, client certificates required, verified against the configured CA
//! and CRLs), the accept loop that hands tonic only completed handshakes, and the
//! revocation state that stays current while the gateway runs.
//!
//! tonic's own `ServerTlsConfig` cannot take CRLs or a custom verifier, so the
//! handshake happens here, and each refused connection is reported to the caller
//! of [`incoming`] (which records it in the audit log) with a stable
//! [`RefusalReason`]: never rustls' error text, which carries the current time
//! (so no two refusals would fold together) and, for some errors, text the
//! peer chose.
//!
//! Why the material is reloadable ([`ServerTls::reload`], on SIGHUP): a CRL read
//! once at start goes stale and misses every revocation after it, and a server
//! certificate that can only be rotated by a restart drops every connection.
//! A reload swaps the whole rustls configuration (certificate, key, CA, CRLs)
//! for new handshakes, and closes the established connections whose
//! certificate the new CRLs revoke ([`Revocable`]); the others carry on.

use crate::coalesce::CoalescedWrites;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
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
    #[error("invalid CRL in {path}: {message}")]
    Crl { path: PathBuf, message: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client verifier configuration: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl TlsError {
    /// A stable code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "unreadable_file",
            TlsError::Empty { .. } => "no_pem_item",
            TlsError::Crl { .. } => "invalid_crl",
            TlsError::Rustls(_) => "invalid_certificate_or_key",
            TlsError::Verifier(_) => "invalid_ca_or_crl",
        }
    }
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

/// What the gateway knows of one loaded CRL, to say when it goes stale.
#[derive(Debug)]
struct CrlInfo {
    path: PathBuf,
    /// `nextUpdate` (Unix seconds); a CRL without one never goes stale.
    next_update: Option<i64>,
    revoked: usize,
    /// Its staleness has been logged and audited (once per loaded material).
    reported: AtomicBool,
}

fn load_crls(
    paths: &[PathBuf],
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Vec<CrlInfo>), TlsError> {
    let mut crls = Vec::new();
    let mut infos = Vec::new();
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
        for der in &crls[before..] {
            let (_, crl) =
                x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| TlsError::Crl {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            infos.push(CrlInfo {
                path: path.clone(),
                next_update: crl.next_update().map(|t| t.timestamp()),
                revoked: crl.iter_revoked_certificates().count(),
                reported: AtomicBool::new(false),
            });
        }
    }
    Ok((crls, infos))
}

/// What a handshake does with a CRL past its `nextUpdate` (`[tls] stale_crl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    /// Refuse certificates of the CRL's issuer until a fresh CRL is loaded
    /// (fail closed): a revocation published after it would go unseen.
    #[default]
    Refuse,
    /// Accept them as the stale CRL says (still logged and audited).
    Accept,
}

impl StaleCrl {
    pub fn as_str(self) -> &'static str {
        match self {
            StaleCrl::Refuse => "refuse",
            StaleCrl::Accept => "accept",
        }
    }
}

impl std::str::FromStr for StaleCrl {
    type Err = String;
    fn from_str(s: &str) -> Result<StaleCrl, String> {
        match s {
            "refuse" => Ok(StaleCrl::Refuse),
            "accept" => Ok(StaleCrl::Accept),
            other => Err(format!("`{other}`: expected `refuse` or `accept`")),
        }
    }
}

/// The files the server's TLS material is read from, at start and at each reload.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA bundle client certificates must chain to.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM files of CRLs; none = revocation not checked.
    pub crls: Vec<PathBuf>,
    pub stale_crl: StaleCrl,
}

/// One generation of TLS material: what every handshake started since the
/// last (re)load uses.
struct Material {
    config: Arc<rustls::ServerConfig>,
    /// The same CA and CRLs, CRL expiry ignored: asks of an established
    /// connection only whether the CRLs now list its certificate.
    revocation_check: Arc<dyn ClientCertVerifier>,
    crls: Vec<CrlInfo>,
    server_serial: String,
}

impl Material {
    fn load(files: &TlsFiles) -> Result<Material, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in load_certs("CA certificate", &files.ca)? {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let (crls, infos) = load_crls(&files.crls)?;
        // An unknown revocation status is accepted: a CRL covers only the
        // certificates its issuer revoked.
        let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .with_crls(crls.clone())
            .allow_unknown_revocation_status();
        let verifier = match files.stale_crl {
            StaleCrl::Refuse => builder.enforce_revocation_expiration(),
            StaleCrl::Accept => builder,
        }
        .build()?;
        let revocation_check = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .build()?;
        let chain = load_certs("server certificate", &files.cert)?;
        let server_serial = serial_hex(&chain[0]);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, load_key(&files.key)?)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        // No session resumption: a resumed session keeps the client
        // certificate of the one it resumes without verifying it again, so a
        // certificate revoked or expired since could keep connecting.
        // Connections are long-lived HTTP/2, so full handshakes cost little.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Material {
            config: Arc::new(config),
            revocation_check,
            crls: infos,
            server_serial,
        })
    }
}

/// A certificate's serial number in hex (empty if it does not parse).
pub fn serial_hex(der: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| hex::encode(c.raw_serial()))
        .unwrap_or_default()
}

/// A loaded CRL past its `nextUpdate`.
#[derive(Debug, Clone)]
pub struct StaleCrlReport {
    pub path: PathBuf,
    /// Unix seconds.
    pub next_update: i64,
    pub policy: StaleCrl,
}

/// What a successful reload loaded.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub server_serial: String,
    pub crls: usize,
    pub revoked: usize,
    /// Established connections closed because the new CRLs revoke their certificate.
    pub closed: usize,
    /// Loaded CRLs already past their `nextUpdate`.
    pub stale: Vec<StaleCrlReport>,
}

/// An established connection closed because a reloaded CRL revokes its certificate.
#[derive(Debug, Clone)]
pub struct ClosedConnection {
    pub peer: Option<SocketAddr>,
    /// The client certificate's serial number, hex.
    pub serial: String,
    pub end_entity: CertificateDer<'static>,
}

type OnClosed = Arc<dyn Fn(ClosedConnection) + Send + Sync>;

/// An established connection, as the reload re-checks it.
struct Live {
    peer: Option<SocketAddr>,
    chain: Vec<CertificateDer<'static>>,
    /// When its certificate was verified (the re-check asks about revocation
    /// only, not whether the certificate has expired since).
    verified_at: UnixTime,
    close: watch::Sender<bool>,
}

/// The server's TLS material and its established connections.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<Material>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
    on_closed: RwLock<Option<OnClosed>>,
}

impl ServerTls {
    /// Reads the material named by `files`.
    pub fn load(files: TlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        let material = Material::load(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(Arc::new(material)),
            reloading: Mutex::new(()),
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            on_closed: RwLock::new(None),
        }))
    }

    fn material(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The rustls configuration new handshakes use.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.material().config.clone()
    }

    /// Serial number (hex) of the server certificate in use.
    pub fn server_serial(&self) -> String {
        self.material().server_serial.clone()
    }

    /// Established connections.
    pub fn live_connections(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Called for each connection closed because a reloaded CRL revokes its
    /// certificate (the server audits it).
    pub fn on_connection_closed(&self, f: impl Fn(ClosedConnection) + Send + Sync + 'static) {
        *self.on_closed.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    /// Reads the files again. New handshakes use the new material; established
    /// connections whose certificate the new CRLs revoke are closed now (the
    /// others are untouched). On any error the previous material keeps serving.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let material = Arc::new(Material::load(&self.files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = material.clone();
        // After the swap: a handshake that finishes from here on registers
        // after it and is checked against the new material when it does.
        let live: Vec<(
            u64,
            Option<SocketAddr>,
            Vec<CertificateDer<'static>>,
            UnixTime,
        )> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, l)| (*id, l.peer, l.chain.clone(), l.verified_at))
            .collect();
        let mut closed = 0;
        for (id, peer, chain, at) in live {
            if revoked(&material, &chain, at) && self.close(id) {
                closed += 1;
                self.report_closed(peer, &chain);
            }
        }
        Ok(Reloaded {
            server_serial: material.server_serial.clone(),
            crls: material.crls.len(),
            revoked: material.crls.iter().map(|c| c.revoked).sum(),
            closed,
            stale: take_stale(&material, self.files.stale_crl, now_secs()),
        })
    }

    /// CRLs in force that have passed their `nextUpdate` since last asked
    /// (each is reported once per loaded material).
    pub fn newly_stale(&self) -> Vec<StaleCrlReport> {
        take_stale(&self.material(), self.files.stale_crl, now_secs())
    }

    /// Records an established connection (its handshake used `material`),
    /// returning its closing signal and registration.
    fn register(
        self: &Arc<Self>,
        material: &Arc<Material>,
        peer: Option<SocketAddr>,
        chain: Vec<CertificateDer<'static>>,
    ) -> (watch::Receiver<bool>, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = watch::channel(false);
        let verified_at = UnixTime::now();
        let reloaded_meanwhile = {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.insert(
                id,
                Live {
                    peer,
                    chain: chain.clone(),
                    verified_at,
                    close,
                },
            );
            let current = self.material();
            (!Arc::ptr_eq(&current, material)).then_some(current)
        };
        // Verified against material a reload replaced while the handshake ran.
        if let Some(current) = reloaded_meanwhile
            && revoked(&current, &chain, verified_at)
            && self.close(id)
        {
            self.report_closed(peer, &chain);
        }
        let registration = Registration {
            id,
            tls: Arc::downgrade(self),
        };
        (closed, registration)
    }

    /// Signals connection `id` to close; false if it already was.
    fn close(&self, id: u64) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(&id) {
            Some(l) => !l.close.send_replace(true),
            None => false,
        }
    }

    fn report_closed(&self, peer: Option<SocketAddr>, chain: &[CertificateDer<'static>]) {
        let Some(end_entity) = chain.first() else {
            return;
        };
        let closed = ClosedConnection {
            peer,
            serial: serial_hex(end_entity),
            end_entity: end_entity.clone(),
        };
        tracing::warn!(
            peer = ?closed.peer,
            serial = %closed.serial,
            "closing a connection: its certificate is revoked by the reloaded CRLs"
        );
        let hook = self
            .on_closed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(closed);
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn take_stale(material: &Material, policy: StaleCrl, now: i64) -> Vec<StaleCrlReport> {
    material
        .crls
        .iter()
        .filter_map(|c| {
            let next_update = c.next_update?;
            (next_update < now && !c.reported.swap(true, Ordering::Relaxed)).then(|| {
                StaleCrlReport {
                    path: c.path.clone(),
                    next_update,
                    policy,
                }
            })
        })
        .collect()
}

/// Whether `material`'s CRLs revoke the certificate at the head of `chain`.
fn revoked(material: &Material, chain: &[CertificateDer<'static>], at: UnixTime) -> bool {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return false;
    };
    matches!(
        material
            .revocation_check
            .verify_client_cert(end_entity, intermediates, at),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    )
}

/// Removes its connection from the live set when the connection ends.
pub struct Registration {
    id: u64,
    tls: Weak<ServerTls>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(tls) = self.tls.upgrade() {
            tls.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

/// A connection the gateway can close from outside: once signalled, every read
/// and write fails, so HTTP/2 ends the connection (a pending read is woken).
pub struct Revocable<T> {
    inner: T,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_closed: bool,
    _registration: Registration,
}

impl<T> Revocable<T> {
    fn new(inner: T, mut closed: watch::Receiver<bool>, registration: Registration) -> Self {
        Revocable {
            inner,
            closed: Box::pin(async move {
                // The sender goes only with the registry (the server is
                // stopping): then nothing will close this connection.
                if closed.wait_for(|c| *c).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
            is_closed: false,
            _registration: registration,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if !self.is_closed && self.closed.as_mut().poll(cx).is_ready() {
            self.is_closed = true;
        }
        if self.is_closed {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection closed: its client certificate has been revoked",
            ))
        } else {
            Ok(())
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Revocable<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Revocable<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The peer's certificates and address, as tonic reads them from the TLS
/// stream inside (identity comes from there: see `authz`).
impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Revocable<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Refused handshakes are counted per peer address and reason.
impl crate::audit::repeats::Source for (String, Option<RefusalReason>) {
    fn describe(&self) -> String {
        let (peer, reason) = self;
        format!(
            "handshake {peer} {}",
            reason.map_or("several", |r| r.code())
        )
    }
}

/// Why a TLS handshake was refused: a closed set with stable codes, so that
/// refusals fold by kind (the error text carries the time of day) and nothing
/// a peer sent reaches the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The client presented no certificate.
    NoCertificate,
    /// The certificate does not chain to the configured CA.
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// A loaded CRL lists the certificate.
    Revoked,
    /// The issuer's CRL is past its `nextUpdate` (with `stale_crl = "refuse"`).
    CrlStale,
    /// A CRL that applies cannot be used (bad signature, unsupported form).
    CrlInvalid,
    /// Revocation status required and unknown.
    RevocationUnknown,
    /// Any other fault of the certificate (signature, usage, encoding).
    BadCertificate,
    /// The peer aborted the handshake with an alert (e.g. it does not trust
    /// the server's certificate).
    PeerAlert,
    /// Not TLS 1.3, or not TLS at all.
    ProtocolError,
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// The peer closed or reset the connection mid-handshake.
    ConnectionLost,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 13] = [
        RefusalReason::NoCertificate,
        RefusalReason::UnknownIssuer,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::Revoked,
        RefusalReason::CrlStale,
        RefusalReason::CrlInvalid,
        RefusalReason::RevocationUnknown,
        RefusalReason::BadCertificate,
        RefusalReason::PeerAlert,
        RefusalReason::ProtocolError,
        RefusalReason::HandshakeTimeout,
        RefusalReason::ConnectionLost,
    ];

    /// The stable code recorded in the audit log.
    pub fn code(self) -> &'static str {
        match self {
            RefusalReason::NoCertificate => "no_certificate",
            RefusalReason::UnknownIssuer => "unknown_issuer",
            RefusalReason::Expired => "certificate_expired",
            RefusalReason::NotYetValid => "certificate_not_yet_valid",
            RefusalReason::Revoked => "certificate_revoked",
            RefusalReason::CrlStale => "crl_stale",
            RefusalReason::CrlInvalid => "crl_invalid",
            RefusalReason::RevocationUnknown => "revocation_status_unknown",
            RefusalReason::BadCertificate => "bad_certificate",
            RefusalReason::PeerAlert => "peer_alert",
            RefusalReason::ProtocolError => "protocol_error",
            RefusalReason::HandshakeTimeout => "handshake_timeout",
            RefusalReason::ConnectionLost => "connection_lost",
        }
    }

    /// A fixed description for people reading the log.
    pub fn description(self) -> &'static str {
        match self {
            RefusalReason::NoCertificate => "the client presented no certificate",
            RefusalReason::UnknownIssuer => "the certificate is not from the trusted CA",
            RefusalReason::Expired => "the certificate has expired",
            RefusalReason::NotYetValid => "the certificate is not yet valid",
            RefusalReason::Revoked => "the certificate is revoked",
            RefusalReason::CrlStale => "the issuer's CRL is past its nextUpdate",
            RefusalReason::CrlInvalid => "the issuer's CRL cannot be used",
            RefusalReason::RevocationUnknown => "the certificate's revocation status is unknown",
            RefusalReason::BadCertificate => "the certificate is invalid",
            RefusalReason::PeerAlert => "the client aborted the handshake",
            RefusalReason::ProtocolError => "not a TLS 1.3 handshake",
            RefusalReason::HandshakeTimeout => "the handshake did not finish in time",
            RefusalReason::ConnectionLost => "the connection ended during the handshake",
        }
    }

    /// The reason for a failed `accept` (rustls' error inside tokio-rustls' I/O error).
    pub fn of_accept_error(e: &std::io::Error) -> RefusalReason {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => RefusalReason::of_rustls(tls),
            None => match e.kind() {
                std::io::ErrorKind::InvalidData => RefusalReason::ProtocolError,
                _ => RefusalReason::ConnectionLost,
            },
        }
    }

    pub fn of_rustls(e: &rustls::Error) -> RefusalReason {
        use rustls::CertificateError as C;
        match e {
            rustls::Error::NoCertificatesPresented => RefusalReason::NoCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                C::Expired | C::ExpiredContext { .. } => RefusalReason::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => RefusalReason::NotYetValid,
                C::Revoked => RefusalReason::Revoked,
                C::UnknownIssuer => RefusalReason::UnknownIssuer,
                C::UnknownRevocationStatus => RefusalReason::RevocationUnknown,
                C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                    RefusalReason::CrlStale
                }
                _ => RefusalReason::BadCertificate,
            },
            rustls::Error::InvalidCertRevocationList(_) => RefusalReason::CrlInvalid,
            rustls::Error::AlertReceived(_) => RefusalReason::PeerAlert,
            _ => RefusalReason::ProtocolError,
        }
    }
}

/// A TCP connection whose TLS handshake failed: the certificate was missing,
/// expired, revoked or from another CA, or the peer spoke something else.
#[derive(Debug, Clone)]
pub struct RefusedConnection {
    pub peer: Option<SocketAddr>,
    pub reason: RefusalReason,
}

/// How handshakes are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Handshakes {
    /// Time a client has to finish its handshake.
    pub timeout: Duration,
    /// Handshakes in progress at most.
    pub at_once: usize,
}

/// An established connection as tonic gets it.
pub type Connection = Revocable<CoalescedWrites<TlsStream<TcpStream>>>;

/// Accepts TCP connections, runs each TLS handshake in its own task (with a
/// timeout, so a silent peer cannot hold the accept loop) with the material in
/// force when it was accepted, and yields only established TLS streams, each
/// registered with `tls` so that a reload can close it. Refusals go to
/// `on_refused`. The loop stops when the returned stream is dropped. Each
/// stream gathers its writes until its task yields ([`CoalescedWrites`]).
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    handshakes: Handshakes,
    on_refused: impl Fn(RefusedConnection) + Send + Sync + 'static,
) -> ReceiverStream<Result<Connection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
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
            let material = tls.material();
            let tls = tls.clone();
            let tx = tx.clone();
            let on_refused = on_refused.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let acceptor = TlsAcceptor::from(material.config.clone());
                let reason =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let chain = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                                .unwrap_or_default();
                            let (closed, registration) = tls.register(&material, Some(peer), chain);
                            let stream =
                                Revocable::new(CoalescedWrites::new(stream), closed, registration);
                            let _ = tx.send(Ok(stream)).await;
                            return;
                        }
                        Ok(Err(e)) => RefusalReason::of_accept_error(&e),
                        Err(_) => RefusalReason::HandshakeTimeout,
                    };
                tracing::warn!(peer = %peer, reason = reason.code(), "connection refused");
                on_refused(RefusedConnection {
                    peer: Some(peer),
                    reason,
                });
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn refusals_of_one_kind_share_one_code_whatever_the_time() {
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let expired = |now| {
            rustls::Error::InvalidCertificate(C::ExpiredContext {
                time: at(now),
                not_after: at(1_000),
            })
        };
        // The texts differ (they carry the time); the reason does not.
        assert_ne!(expired(2_000).to_string(), expired(2_001).to_string());
        assert_eq!(
            RefusalReason::of_rustls(&expired(2_000)),
            RefusalReason::Expired
        );
        assert_eq!(
            RefusalReason::of_rustls(&expired(2_001)),
            RefusalReason::Expired
        );
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, expired(3_000));
        assert_eq!(
            RefusalReason::of_accept_error(&wrapped),
            RefusalReason::Expired
        );
        for (error, reason) in [
            (
                rustls::Error::NoCertificatesPresented,
                RefusalReason::NoCertificate,
            ),
            (
                rustls::Error::InvalidCertificate(C::UnknownIssuer),
                RefusalReason::UnknownIssuer,
            ),
            (
                rustls::Error::InvalidCertificate(C::Revoked),
                RefusalReason::Revoked,
            ),
            (
                rustls::Error::InvalidCertificate(C::NotValidYet),
                RefusalReason::NotYetValid,
            ),
            (
                rustls::Error::InvalidCertificate(C::ExpiredRevocationList),
                RefusalReason::CrlStale,
            ),
            (
                rustls::Error::InvalidCertificate(C::BadSignature),
                RefusalReason::BadCertificate,
            ),
            (
                rustls::Error::General("peer text".into()),
                RefusalReason::ProtocolError,
            ),
        ] {
            assert_eq!(RefusalReason::of_rustls(&error), reason, "{error}");
        }
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(
            RefusalReason::of_accept_error(&eof),
            RefusalReason::ConnectionLost
        );
    }

    #[test]
    fn codes_are_distinct_snake_case_and_described() {
        let codes: std::collections::BTreeSet<_> =
            RefusalReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), RefusalReason::ALL.len());
        for r in RefusalReason::ALL {
            assert!(
                r.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                r.code()
            );
            assert!(!r.description().is_empty());
        }
    }
}
