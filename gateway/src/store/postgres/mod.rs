//! The scale-out store: PostgreSQL, shared by any number of stateless gateway
//! replicas. Selected with `[store] url = "postgres://…"`; the tables mirror
//! the SQLite store's (see `schema`).
//!
//! Commit order, and why the change feed has no gaps. A PostgreSQL sequence
//! hands out numbers at call time, not commit time: with one, a reader could
//! see position 12 committed while 11 is still in flight, move its cursor
//! past 11, and never see it. Here positions are not drawn from a sequence.
//! The row `feed_head` holds the last position handed out, and every commit
//! that changes records locks it (`SELECT … FOR UPDATE`) first, takes the
//! positions after it, and writes the new head in the same transaction; the
//! lock is held until commit. The next writer, on any replica, gets the lock
//! only after that commit is visible, so positions become visible in exactly
//! the order they were handed out: a reader that has seen position 12 has
//! seen everything before it, and a cursor never skips a change that commits
//! later. Record writers take turns (one batch commit at a time across the
//! replicas), which is what the order costs; a batch's rows are written in
//! a few set-based statements, so a turn is short.
//!
//! One audit log. The row `audit_head` (the log's size) is locked the same
//! way by every append, so entries from every replica take one global
//! order; inside that turn the append first reads back the entries other
//! replicas appended since its last turn, so the subjects' latest entries
//! it holds in memory (`heads`) are exact, then extends the Merkle tree with
//! the shared code (`store::audit_tree`) over this database's rows, and
//! commits entries (with their back-pointers) and nodes together. Which
//! entries name which subject is indexed after the commit (`indexer`). Each replica group-commits its own
//! queued appends (`committer`): one transaction, one turn at the lock, per
//! group. A batch commit takes `feed_head` then `audit_head`, never the
//! other way, so the two locks cannot deadlock. Checkpoints may be signed by
//! any replica with the shared key; one is stored only if the database's
//! tree, under the append lock, has its root and still has the last stored
//! checkpoint's (`checkpoints`). Every replica reads roots, proofs and
//! exports from the same rows.
//!
//! Stateless replicas. Batch receipts are read after the feed lock is taken,
//! so the same batch id committed through two replicas at once gives one
//! commit; the other finds the first's receipt. Re-identification windows
//! are rows, checked and taken under a per-consumer row lock; refusal
//! windows are rows too (`refusals`). A replica
//! learns of commits made through others by watching `feed_head`
//! ([`crate::store::Store::shared`]).
//!
//! Driving the driver: the store's methods block (as the trait says); the
//! pool and its connections run on the store's own small runtime, and each
//! statement's future is driven on the calling thread (`db`). What a
//! transaction waits for is round trips, so writes nothing reads are sent
//! together (an audit append holds the lock for two round trips, whatever
//! its size). The look-up path's reads are async instead and share a few
//! pipelined connections (`readers`). Connection and pool failures are
//! `Unavailable`, serialisation failures and unique violations `Conflict`
//! (`errors`).
//!
//! The files, one concern each: `schema` (tables and migrations), `db`
//! (connections, statements, transactions), `readers` (the look-up path's
//! shared connections), `records` (batches, feed,
//! look-ups), `audit_log`, `heads`, `audit_tree`, `notes`, `checkpoints`, `meta`,
//! `refusals`, `errors`, and the `committer` and `indexer` threads.

mod audit_log;
mod audit_tree;
mod checkpoints;
mod claims;
mod committer;
mod db;
mod errors;
mod heads;
mod import;
mod indexer;
mod meta;
mod notes;
mod probe;
mod readers;
mod records;
mod refusals;
mod schema;
pub mod testing;

pub use probe::probe;
#[cfg(test)]
mod tests;

use super::StoreError;
use super::group_commit::AuditQueue;
use db::Isolation;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections a replica keeps at most (callers beyond wait for one).
const POOL_SIZE: usize = 16;
/// How long a caller waits for a connection (to open one, or for a busy
/// one to come back) before the store answers `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a writer waits for another's lock (`feed_head`, `audit_head`,
/// a note or a consumer row) before it gives up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The store: a handle on the state its committer thread shares.
pub struct PgStore {
    inner: Arc<Inner>,
    committer: Option<std::thread::JoinHandle<()>>,
    /// Indexes audit subjects after their commit (`indexer`).
    indexer: Option<std::thread::JoinHandle<()>>,
    /// Drives the pool's connections; shut down (without blocking) last.
    runtime: Option<tokio::runtime::Runtime>,
    /// How a claim's connection of its own is opened (`claims`).
    claim_settings: (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
}

struct Inner {
    runtime: tokio::runtime::Handle,
    pool: Pool,
    /// Connections shared by the look-up path's async reads.
    readers: Arc<readers::Readers>,
    /// The audit tree's right edge after this replica's last append (used
    /// only while no other replica has appended since).
    frontier: Mutex<Option<tlog::Frontier>>,
    /// Each subject's latest entry, as far as this replica has read the log.
    heads: Mutex<heads::KnownHeads>,
    /// Audit appends waiting for the committer thread.
    queue: AuditQueue,
    /// Wakes (and stops) the indexer thread.
    index: indexer::IndexSignal,
}

impl Inner {
    /// This replica's queues: its audit appends waiting for the committer,
    /// and the calls waiting for a pooled connection (a database that cannot
    /// keep up shows as a growing wait), and the subject rows it appended
    /// that the index has not reached yet.
    fn queue_depths(&self) -> crate::store::QueueDepths {
        crate::store::QueueDepths {
            audit_entries: self.queue.depth(),
            writes_waiting: self.pool.status().waiting as u64,
            index_backlog: self.index.backlog(),
        }
    }
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://…`; TLS as its
    /// `sslmode` says, verified against the PEM roots in `ca_file`), brings
    /// its schema up to date and starts the committer thread (stopped when
    /// the store is dropped).
    pub fn open(url: &str, ca_file: Option<&Path>) -> Result<PgStore, StoreError> {
        let mut config = connection_config(url)?;
        if config.get_application_name().is_none() {
            config.application_name("gateway");
        }
        // A replica that vanished mid-commit (its host gone, not its
        // process) holds the feed or audit lock until the server notices:
        // keepalives notice within a minute or so, and a writer waits for a
        // lock at most LOCK_TIMEOUT, then answers Unavailable (callers
        // retry) instead of hanging.
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_options().is_none() {
            config.options(format!("-c lock_timeout={}", LOCK_TIMEOUT.as_millis()));
        }
        let tls = tls_connector(&config, ca_file)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pg-store")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::unavailable(format!("cannot start the store's runtime: {e}"))
            })?;
        let readers = Arc::new(readers::Readers::new(config.clone(), tls.clone()));
        let claim_settings = (config.clone(), tls.clone());
        let manager = Manager::from_connect(
            config,
            db::OnStoreRuntime {
                tls,
                runtime: runtime.handle().clone(),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::unavailable(format!("cannot set up the pool: {e}")))?;
        let inner = Arc::new(Inner {
            runtime: runtime.handle().clone(),
            pool,
            readers,
            frontier: Mutex::default(),
            heads: Mutex::default(),
            queue: AuditQueue::default(),
            index: indexer::IndexSignal::default(),
        });
        let mut store = PgStore {
            inner: inner.clone(),
            committer: None,
            indexer: None,
            runtime: Some(runtime),
            claim_settings,
        };
        inner.transaction(Isolation::Write, schema::migrate)?;
        inner.load_heads()?;
        let thread = |name: &str, run: fn(&Inner)| {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&inner))
                .map_err(|e| StoreError::unavailable(format!("cannot start a thread: {e}")))
        };
        store.committer = Some(thread("audit-committer", Inner::run_committer)?);
        store.indexer = Some(thread("audit-indexer", Inner::run_indexer)?);
        Ok(store)
    }

    /// Accepted records per (agency, batch id); used by crash-recovery checks.
    pub fn records_of_batch(&self, agency: &str, batch_id: &str) -> Result<u64, StoreError> {
        self.inner.read(|db| {
            let row = db.query_one(
                "SELECT count(*) FROM records WHERE agency = $1 AND batch_id = $2",
                &[&agency, &batch_id],
            )?;
            Ok(db::get::<i64>(&row, 0)? as u64)
        })
    }
}

/// TLS to the database through rustls on ring, verified against the roots
/// in `ca_file`. Without one, only `sslmode=disable` connects (a database
/// on the loopback or a private link): an unverified TLS session would only
/// look safe.
/// The connection settings `url` names, with the gateway's connect timeout
/// unless the url sets one.
fn connection_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::unavailable(format!("the store url is not valid: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

fn tls_connector(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                StoreError::unavailable(format!("cannot read {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    StoreError::unavailable(format!("cannot read {}: {e}", path.display()))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::unavailable(format!("{}: {e}", path.display())))?;
            }
        }
        None if config.get_ssl_mode() != tokio_postgres::config::SslMode::Disable => {
            return Err(StoreError::unavailable(
                "the store url asks for TLS (sslmode is not `disable`) but no [store] ca_file \
                 names the database server's CA: set ca_file, or add `?sslmode=disable` for a \
                 database on the loopback",
            ));
        }
        None => {}
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::unavailable(format!("TLS to the database: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.inner.queue.close();
        self.inner.index.stop();
        for t in [self.committer.take(), self.indexer.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        self.inner.pool.close();
        // Without waiting: the store may be dropped on an async thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

crate::store::store_via_inner!(PgStore, shared: true, {
    fn claim_serving(&self) -> Result<(), StoreError> {
        PgStore::claim_serving(self)
    }
    fn claim_maintenance(&self) -> Result<(), StoreError> {
        PgStore::claim_maintenance(self)
    }
    fn records_for_person_async(&self, person_index: &[u8]) -> crate::store::StoreRead<crate::store::Rows> {
        Box::pin(records::records_for_person_async(self.inner.readers.clone(), person_index.to_vec()))
    }
    fn open_refusal_window(&self, source: &[u8], window_ms: i64) -> crate::store::StoreRead<bool> {
        Box::pin(refusals::open_refusal_window(
            self.inner.readers.clone(),
            source.to_vec(),
            window_ms,
        ))
    }
    fn records_for_enterprise_async(
        &self,
        credit_code: &str,
        kinds: &[adapters::RecordKind],
    ) -> crate::store::StoreRead<crate::store::Rows> {
        Box::pin(records::records_for_enterprise_async(
            self.inner.readers.clone(),
            credit_code.to_string(),
            kinds.to_vec(),
        ))
    }
});
