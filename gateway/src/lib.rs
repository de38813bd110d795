//! The agency ↔ union exchange gateway.
//!
//! Agencies push native exports over mutual TLS; per-agency adapters turn rows
//! into canonical records; field-level policies decide what each union consumer
//! receives; every push, pull, look-up and denial is audited. One library entry
//! point, [`serve`], is used by the `gateway` binary and by the tests alike.
//!
//! Data flows agencies → adapters (`adapters` crate) → store → policies
//! (`policies` crate) → union, and the modules read the same way:
//! [`ingest`] (agencies), [`store`], [`exchange`] (union), [`audit`]; around them
//! [`tls`] and [`identity`] establish who is calling and [`authz`] what they may do.

#![forbid(unsafe_code)]

pub mod audit;
pub mod authz;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod exchange;
pub mod identity;
pub mod ingest;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod pki;
pub mod readiness;
pub mod rotation;
pub mod sealing;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tls;

/// The allocator every gateway binary declares (`#[global_allocator]`), so the
/// benchmarks measure the one in service: under load glibc malloc took about a
/// fifth of the gateway's CPU. Built with mimalloc's `override`, it serves
/// SQLite's `malloc` as well, so the process has one allocator: glibc's kept
/// SQLite's page caches at their peak in each of its per-thread arenas.
pub type Allocator = mimalloc::MiMalloc;

/// Generated gRPC types and services (package `exchange.v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("exchange.v1");

    /// Encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/exchange_descriptor.bin"));
}

use crate::audit::{AuditEvent, ConnectionRefused, GatewayStarted};
use crate::config::Config;
use crate::keys::Keys;
use crate::store::Store;
use policies::PolicySet;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest gRPC message accepted (one push batch).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Everything the services share.
pub struct Gateway {
    pub trust_domain: String,
    pub dev_mode: bool,
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    policies: RwLock<Arc<PolicySet>>,
    /// Where policies are reloaded from (hot reload); `None` for fixed sets.
    policies_dir: Option<std::path::PathBuf>,
    /// The change feed's head; followers wait on it.
    pub feed: watch::Sender<u64>,
    /// Rate, concurrency, deadline and message-size limits.
    pub limits: limits::LimitsConfig,
    /// What union callers may type into requests (the case-number form).
    pub exchange: config::ExchangeConfig,
    /// Set when the server begins to shut down: followed pulls end (clients
    /// resume from their cursor elsewhere) so that draining completes.
    pub stopping: watch::Sender<bool>,
    /// Signs the audit log's checkpoints.
    pub audit_log: Arc<audit::AuditLog>,
    /// What operators watch ([`metrics`]); nowhere unless set up.
    pub metrics: Arc<metrics::Metrics>,
}

/// Why a gateway could not be set up on its store and keys.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Keys(#[from] rotation::RotationError),
    #[error("audit log key: {0}")]
    AuditLogKey(#[from] tlog::KeyError),
}

impl Gateway {
    /// Sets the gateway up on `store`, first bringing the store in line with
    /// the key file ([`rotation::prepare`]): records re-indexed under the
    /// active index key, pseudonym domains bound, key rotations recorded.
    pub fn new(
        trust_domain: String,
        dev_mode: bool,
        store: Arc<dyn Store>,
        keys: Arc<Keys>,
        policies: PolicySet,
    ) -> Result<Gateway, OpenError> {
        rotation::prepare(&*store, &keys, &policies.consumers().collect::<Vec<_>>())?;
        let head = store.feed_head()?;
        let audit_log = audit::AuditLog::new(
            store.clone(),
            &trust_domain,
            keys.audit_log_seed(),
            audit::CheckpointPolicy::default(),
        )?;
        Ok(Gateway {
            trust_domain,
            dev_mode,
            store,
            keys,
            policies: RwLock::new(Arc::new(policies)),
            policies_dir: None,
            feed: watch::Sender::new(head),
            limits: limits::LimitsConfig::default(),
            exchange: config::ExchangeConfig::default(),
            stopping: watch::Sender::new(false),
            audit_log: Arc::new(audit_log),
            metrics: Arc::new(metrics::Metrics::disabled()),
        })
    }

    /// Replaces the default audit checkpoint policy.
    pub fn with_audit_policy(mut self, policy: audit::CheckpointPolicy) -> Gateway {
        if let Some(log) = Arc::get_mut(&mut self.audit_log) {
            log.set_policy(policy);
        }
        self
    }

    /// Replaces the default limits.
    pub fn with_limits(mut self, limits: limits::LimitsConfig) -> Gateway {
        self.limits = limits;
        self
    }

    /// Replaces the default `[exchange]` settings.
    pub fn with_exchange(mut self, exchange: config::ExchangeConfig) -> Gateway {
        self.exchange = exchange;
        self
    }

    /// Records metrics in `metrics` (and lets it read the audit log's size
    /// and the feed's head when collected).
    pub fn with_metrics(mut self, metrics: Arc<metrics::Metrics>) -> Gateway {
        metrics.observe(self.store.clone(), self.feed.subscribe());
        self.metrics = metrics;
        self
    }

    /// Makes [`Gateway::reload_policies`] read `dir`.
    pub fn with_policies_dir(mut self, dir: std::path::PathBuf) -> Gateway {
        self.policies_dir = Some(dir);
        self
    }

    /// Reloads the policy directory. A set with any broken file is refused (its
    /// problems logged and audited) and the previous set keeps serving; calls
    /// already running keep the snapshot they started with.
    pub fn reload_policies(&self) -> Result<(), policies::PolicyError> {
        let Some(dir) = &self.policies_dir else {
            return Ok(());
        };
        match PolicySet::load_dir(dir) {
            Ok(set) => {
                // New consumers' pseudonym domains are bound to the active key
                // before they are served.
                let consumers: Vec<&str> = set.consumers().collect();
                if let Err(e) =
                    rotation::bind_pseudonym_domains(&*self.store, &self.keys, &consumers, None)
                {
                    tracing::error!(error = %e, "cannot bind new consumers' pseudonym domains");
                }
                let versions = set.versions();
                *self.policies.write().expect("policy lock") = Arc::new(set);
                tracing::info!(?versions, "policies reloaded");
                let mut entries =
                    vec![audit::PoliciesReloaded { policies: versions }.entry(audit::GATEWAY)];
                entries.extend(audit::PolicyRecorded::entries(&self.policies()));
                if let Err(e) = self.store.append_audit(&entries) {
                    tracing::error!(error = %e, "cannot record a policy reload");
                }
                Ok(())
            }
            Err(e) => {
                let problems = e.to_string();
                tracing::error!(problems = %problems, "policy reload refused; the previous policies keep serving");
                let entry = audit::PolicyReloadRefused {
                    problems: &problems,
                    serving: self.policies().versions(),
                }
                .entry(audit::GATEWAY);
                if let Err(e) = self.store.append_audit(&[entry]) {
                    tracing::error!(error = %e, "cannot record a refused policy reload");
                }
                Err(e)
            }
        }
    }

    /// Opens the store, keys and policies named by `config`, with
    /// the metrics its `[telemetry]` section asks for (inside a tokio runtime).
    pub fn open(config: &Config) -> anyhow::Result<Gateway> {
        use anyhow::Context as _;
        let keys = Keys::load(&config.keys_file, config.dev_mode)?;
        let store = store::open(&config.store, &config.data_dir)?;
        // (A shared database has no data directory's lock to say so.)
        store
            .claim_serving()
            .context("the store is not free to serve from")?;
        let vkey = audit::log::vkey(&config.trust_domain, keys.audit_log_seed())?;
        // Officers pin this public key; it sits beside the data it vouches for.
        let vkey_path = config.data_dir.join("audit-log.vkey");
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        std::fs::write(&vkey_path, format!("{vkey}\n"))
            .with_context(|| format!("cannot write {}", vkey_path.display()))?;
        let policies = PolicySet::load_dir(&config.policies_dir)
            .with_context(|| format!("loading policies from {}", config.policies_dir.display()))?;
        Ok(Gateway::new(
            config.trust_domain.clone(),
            config.dev_mode,
            store,
            Arc::new(keys),
            policies,
        )?
        .with_policies_dir(config.policies_dir.clone())
        .with_audit_policy(config.audit.clone())
        .with_limits(config.limits.clone())
        .with_exchange(config.exchange.clone())
        .with_metrics(Arc::new(metrics::Metrics::new(
            &metrics::MetricsOptions::from_config(&config.telemetry),
        )?)))
    }

    /// The policies in force (a snapshot: a reload never changes a running call).
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().expect("policy lock").clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("audit log: {0}")]
    Audit(#[from] store::StoreError),
}

/// How often the CRLs in force are checked for having passed their
/// `nextUpdate` (handshakes check it themselves; this says so in the log).
const STALE_CRL_CHECK: Duration = Duration::from_secs(10);

/// Reloads the TLS material (SIGHUP; tests call it directly): new handshakes
/// use the new server certificate, key, CA and CRLs, and established
/// connections whose certificate the new CRLs revoke are closed (each
/// audited as `connection_closed`). A failed reload keeps the previous
/// material serving, and is logged and audited.
pub fn reload_tls(gateway: &Gateway, tls: &tls::ServerTls) -> Result<tls::Reloaded, tls::TlsError> {
    match tls.reload() {
        Ok(reloaded) => {
            tracing::info!(
                server_cert_serial = %reloaded.server_serial,
                crls = reloaded.crls,
                revoked = reloaded.revoked,
                closed_connections = reloaded.closed,
                "TLS material reloaded"
            );
            let mut entries = vec![
                audit::TlsReloaded {
                    server_cert_serial: &reloaded.server_serial,
                    crls: reloaded.crls as u64,
                    revoked_certificates: reloaded.revoked as u64,
                    closed_connections: reloaded.closed as u64,
                }
                .entry(audit::GATEWAY),
            ];
            entries.extend(stale_crl_entries(&reloaded.stale));
            if let Err(e) = gateway.store.append_audit(&entries) {
                tracing::error!(error = %e, "cannot record a TLS reload");
            }
            Ok(reloaded)
        }
        Err(e) => {
            let problem = e.to_string();
            tracing::error!(
                code = e.code(),
                problem = %problem,
                "TLS RELOAD REFUSED: the previous certificate, key and CRLs keep serving"
            );
            let entry = audit::TlsReloadRefused {
                code: e.code(),
                problem: &problem,
            }
            .entry(audit::GATEWAY);
            if let Err(e) = gateway.store.append_audit(&[entry]) {
                tracing::error!(error = %e, "cannot record a refused TLS reload");
            }
            Err(e)
        }
    }
}

/// Logs each stale CRL loudly and returns its audit entries.
fn stale_crl_entries(stale: &[tls::StaleCrlReport]) -> Vec<audit::AuditEntry> {
    stale
        .iter()
        .map(|s| {
            let next_update = time::OffsetDateTime::from_unix_timestamp(s.next_update)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| s.next_update.to_string());
            let crl = s.path.display().to_string();
            match s.policy {
                tls::StaleCrl::Refuse => tracing::error!(
                    crl = %crl,
                    next_update = %next_update,
                    "STALE CRL: past its nextUpdate; certificates it covers are REFUSED until a fresh CRL is loaded (SIGHUP)"
                ),
                tls::StaleCrl::Accept => tracing::error!(
                    crl = %crl,
                    next_update = %next_update,
                    "STALE CRL: past its nextUpdate; accepted (stale_crl = \"accept\"): revocations since are unseen"
                ),
            }
            audit::CrlStale {
                crl: &crl,
                next_update: &next_update,
                policy: s.policy.as_str(),
            }
            .entry(audit::GATEWAY)
        })
        .collect()
}

/// Serves the gateway on `listener` until `shutdown` completes, then drains.
/// The TLS material is `tls`; [`reload_tls`] reloads it.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Arc<tls::ServerTls>,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let policies = gateway.policies();
    let mut entries = vec![
        GatewayStarted {
            version: env!("CARGO_PKG_VERSION"),
            dev_mode: gateway.dev_mode,
            policies: policies.versions(),
        }
        .entry(audit::GATEWAY),
    ];
    // Deliveries name their policy by version; its field table is here.
    entries.extend(audit::PolicyRecorded::entries(&policies));
    entries.extend(stale_crl_entries(&tls.newly_stale()));
    let store = gateway.store.clone();
    tokio::task::spawn_blocking(move || store.append_audit(&entries))
        .await
        .map_err(|_| store::StoreError::unavailable("the start-up audit task failed"))??;

    // Connections a reload closes (their certificate now revoked) are audited
    // under the certificate's identity.
    {
        let store = gateway.store.clone();
        let trust_domain = gateway.trust_domain.clone();
        tls.on_connection_closed(move |closed| {
            let actor = identity::principal_from_cert(&closed.end_entity, &trust_domain)
                .map(|p| p.to_string())
                .unwrap_or_else(|_| audit::ANONYMOUS.to_string());
            let peer = closed.peer.map(|p| p.ip().to_string()).unwrap_or_default();
            let entry = audit::ConnectionClosed {
                code: "revoked_after_reload",
                peer: &peer,
                serial: &closed.serial,
            }
            .entry(&actor);
            audit::record_detached(&*store, vec![entry], "cannot record a closed connection");
        });
    }
    // A CRL that passes its nextUpdate while serving is said so once.
    let stale_watch = {
        let (gateway, tls) = (gateway.clone(), tls.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STALE_CRL_CHECK);
            loop {
                tick.tick().await;
                let entries = stale_crl_entries(&tls.newly_stale());
                if !entries.is_empty() {
                    audit::record_detached(&*gateway.store, entries, "cannot record a stale CRL");
                }
            }
        })
    };

    // SERVING while the store answers and until the drain begins.
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let readiness = readiness::Readiness::new(health_reporter);
    readiness.set(true).await;
    let store_watch = tokio::spawn(readiness.clone().watch_store(gateway.store.clone()));
    // Followers wait on `gateway.feed`, which this process's own commits
    // move; commits made through other replicas are seen in the store.
    let feed_watch = tokio::spawn(watch_shared_feed(gateway.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // Anyone who can reach the port can fail a handshake: each peer address
    // and reason code is recorded once per window, the repeats counted.
    let refusal_window = Duration::from_secs(gateway.limits.refusal_window_secs);
    let refused_handshakes = audit::repeats::Repeats::new(
        gateway.store.clone(),
        refusal_window,
        ("(other peers)".to_string(), None),
        Box::new(
            |(peer, reason): &(String, Option<tls::RefusalReason>), repeated, window| {
                ConnectionRefused {
                    peer,
                    code: reason.map_or("several", |r| r.code()),
                    reason: reason.map_or("(several reasons)", |r| r.description()),
                    repeated,
                    within_secs: window.as_secs().max(1),
                }
                .entry(audit::ANONYMOUS)
            },
        ),
    );
    let handshake_refusals = refused_handshakes.clone();
    let store = gateway.store.clone();
    let instruments = gateway.metrics.clone();
    let handshakes = tls::Handshakes {
        timeout: handshake_timeout,
        at_once: gateway.limits.max_handshakes,
    };
    let incoming = tls::incoming(listener, tls, handshakes, move |refused| {
        instruments.record(metrics::HandshakeRefused {
            reason: refused.reason,
        });
        let peer = refused.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let key = (peer, Some(refused.reason));
        if !refused_handshakes.first_here(&key) {
            return;
        }
        // Only a window's first refusal on this replica gets here (a flood
        // is counted above, without a task each).
        let (repeats, store) = (refused_handshakes.clone(), store.clone());
        tokio::spawn(async move {
            if !repeats.first_everywhere(&key).await {
                return;
            }
            let entry = ConnectionRefused {
                peer: &key.0,
                code: refused.reason.code(),
                reason: refused.reason.description(),
                repeated: 0,
                within_secs: 0,
            }
            .entry(audit::ANONYMOUS);
            audit::record_detached(&*store, vec![entry], "cannot record a refused connection");
        });
    });

    let ingest = ingest::IngestRoutes::new(gateway.clone());
    let exchange = exchange::UnionExchangeRoutes::new(gateway.clone());
    let audit = proto::audit_server::AuditServer::new(audit::AuditService::new(gateway.clone()))
        .max_decoding_message_size(gateway.limits.max_request_bytes);
    // Officers pin this key (also written to <data_dir>/audit-log.vkey).
    tracing::info!(vkey = %gateway.audit_log.vkey(), "audit log public key");
    let checkpointer = tokio::spawn(gateway.audit_log.clone().run_checkpointer());

    // Behaviour as small layers, composed here, outermost first: every call
    // timed (refused ones too), who is calling (and may they call this), then
    // how much and how long they may call, and an undecodable body answered
    // as the caller's error on every service.
    let authz_layer = authz::AuthzLayer::new(
        &gateway.trust_domain,
        gateway.store.clone(),
        refusal_window,
        gateway.metrics.clone(),
    );
    let limit_layer = limits::LimitLayer::new(
        gateway.limits.clone(),
        gateway.store.clone(),
        gateway.metrics.clone(),
    );
    // Shutdown: stop accepting, NOT_SERVING, followed pulls ended; open
    // calls get the grace to finish, then are cut off.
    let (draining_tx, draining) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(metrics::RpcLayer::new(gateway.metrics.clone()))
        .layer(authz_layer.clone())
        .layer(limit_layer.clone())
        .layer(status::UndecodableLayer)
        .add_service(health)
        .add_service(reflection)
        .add_service(ingest)
        .add_service(exchange)
        .add_service(audit)
        .serve_with_incoming_shutdown(incoming, async {
            shutdown.await;
            tracing::info!("shutting down: NOT_SERVING, draining open calls");
            store_watch.abort();
            readiness.stop().await;
            gateway.stopping.send_replace(true);
            let _ = draining_tx.send(());
        });
    let grace = Duration::from_secs(gateway.limits.shutdown_grace_secs);
    let drained = tokio::select! {
        served = server => {
            served?;
            true
        }
        _ = async {
            match draining.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        } => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "shutdown grace passed: the calls still open are cut off"
            );
            false
        }
    };
    store_watch.abort();
    feed_watch.abort();
    checkpointer.abort();
    stale_watch.abort();
    // The refusals counted in windows still open, then the rest.
    authz_layer.flush_refusals();
    limit_layer.flush_refusals();
    handshake_refusals.flush();
    flush_audit(&gateway, drained).await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// How often a replica of a shared store looks for commits made through
/// the others: a followed pull sees them within this (and a query).
const SHARED_FEED_POLL: Duration = Duration::from_millis(200);

/// On a shared store, moves `gateway.feed` to the store's feed head when
/// another replica committed (a one-row read per poll); nothing to do on a
/// store this process alone writes.
async fn watch_shared_feed(gateway: Arc<Gateway>) {
    if !gateway.store.shared() {
        return;
    }
    let mut tick = tokio::time::interval(SHARED_FEED_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = gateway.store.clone();
        // A failed read is the readiness probe's to report.
        if let Ok(Ok(head)) = tokio::task::spawn_blocking(move || store.feed_head()).await {
            gateway.feed.send_if_modified(|seen| {
                let moved = head > *seen;
                *seen = (*seen).max(head);
                moved
            });
        }
    }
}

/// Writes what the audit log still owes at shutdown: `gateway_stopped`,
/// queued behind every entry queued before it (the store commits its queue
/// in order, so once it is durable they all are), then a checkpoint over all
/// of it.
async fn flush_audit(gateway: &Gateway, drained: bool) {
    let appended = gateway
        .store
        .append_audit_queued(vec![
            audit::GatewayStopped { drained }.entry(audit::GATEWAY),
        ])
        .await;
    if let Err(e) = appended {
        tracing::error!(error = %e, "cannot flush the audit log at shutdown");
        return;
    }
    let log = gateway.audit_log.clone();
    match tokio::task::spawn_blocking(move || log.checkpoint_now()).await {
        Ok(Ok(checkpoint)) => {
            tracing::info!(size = checkpoint.size, "audit log flushed and checkpointed")
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot checkpoint the audit log at shutdown"),
        Err(_) => tracing::error!("cannot checkpoint the audit log at shutdown"),
    }
}
