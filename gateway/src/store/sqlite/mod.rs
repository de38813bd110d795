//! The embedded default store: SQLite (bundled, so nothing to install), in WAL
//! mode with `synchronous = FULL`, so a committed batch survives a crash or a
//! power cut. One writer connection serialises commits (one transaction per
//! batch, never per row); readers use their own connections and never block it.
//! The audit tree keeps leaf hashes in tiles of 256 per row and larger subtrees
//! as rows of their own, so an append of a batch writes a handful of rows
//! beyond its entries (see `schema`).
//!
//! Audit appends that change nothing else (deliveries, look-ups, denials) are
//! queued to one committer thread, which writes everything queued in one
//! transaction and one fsync (group commit) and then answers each caller.
//! Which entries name which person is a derived index kept in its own file
//! (`audit-subjects.db`) by an indexer thread, so a delivery naming thousands
//! of persons costs its commit no random B-tree writes: the back-pointer of
//! each subject comes from an in-memory map of each subject's latest entry,
//! rebuilt at start-up from the index and the entries it had not reached.
//! Queries by subject first bring the index up to the end of the log.
//!
//! The files of this folder, one concern each: `schema` (tables and
//! connection settings), `writer` (the one write transaction at a time),
//! `readers` (pooled read connections and records snapshots, with
//! `sealed_rows`), `records` (batches, feed, look-ups), `audit_log`,
//! `audit_tree`, `notes`, `checkpoints`, `meta`, `errors` (how SQLite failures
//! map to the store's), `backup` (online backup and restore), and the three threads:
//! `committer`, `indexer`, `checkpointer`.

mod audit_log;
mod audit_tree;
pub mod backup;
mod checkpointer;
mod checkpoints;
mod committer;
mod errors;
mod export;
mod indexer;
mod meta;
mod notes;
mod readers;
mod records;
mod schema;
mod sealed_rows;
#[cfg(test)]
mod tests;
mod writer;

use super::group_commit::AuditQueue;
use super::{QueueDepths, StoreError};
use crate::store::subject_heads::SubjectHeads;
use readers::ReaderPool;
use rusqlite::{Connection, params};
use sealed_rows::SealedRows;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use writer::Writer;

/// Bytes of sealed look-up rows kept between look-ups ([`SealedRows`]), for
/// persons and for enterprises apart, so that look-ups of ever new persons
/// cannot push out the employers that most of them share. Employers get
/// room for a city's worth: the 13,400 that look-ups of every Wuhu resident
/// reach take 22 MB; at 16 MiB half of those look-ups' employer reads missed,
/// at 64 MiB one in ten does (an employer's first).
const PERSON_ROWS_BUDGET: usize = 16 << 20;
const ENTERPRISE_ROWS_BUDGET: usize = 64 << 20;

/// The schema version this build creates and serves (older ones are
/// migrated when the store is opened).
pub const SCHEMA_VERSION: u32 = schema::CURRENT;

/// The schema version of the store in `data_dir` (`None`: no store there
/// yet), read without writing anything, so it is safe beside a serving
/// gateway; an error if this build could not open it (a newer schema, or no
/// gateway store).
pub fn stored_schema_version(data_dir: &Path) -> Result<Option<u32>, StoreError> {
    let db = data_dir.join("gateway.db");
    if !db.exists() {
        return Ok(None);
    }
    let c = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    schema::configure(&c)?;
    let found = schema::version_of(&c)?;
    if let Some(v) = found {
        super::schema_version::pending(v, &schema::MIGRATIONS)?;
    }
    Ok(found)
}

/// The store: a handle on the state its threads share.
pub struct SqliteStore {
    inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the handle, the trait's methods and the store's threads share.
struct Inner {
    path: PathBuf,
    index_path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<ReaderPool>,
    reader_free: Condvar,
    /// Audit appends waiting for the committer thread.
    queue: AuditQueue,
    /// The subject index's own writer connection.
    index: Mutex<Connection>,
    index_wake: Mutex<bool>,
    index_ready: Condvar,
    /// Commits so far (the checkpointer's cue), and its wake-up for stopping.
    commits: std::sync::atomic::AtomicU64,
    checkpoint_stop: Mutex<()>,
    checkpoint_ready: Condvar,
    /// Commits that may have changed records (not audit-only ones): records
    /// snapshots taken before the latest are stale.
    records_generation: std::sync::atomic::AtomicU64,
    /// Look-up rows read at the current records generation, by persons and
    /// by enterprises.
    person_rows: SealedRows,
    enterprise_rows: SealedRows,
    /// Readers holding a snapshot open, and whether they must not (the
    /// checkpointer is about to start the WAL again).
    snapshots_held: std::sync::atomic::AtomicUsize,
    draining: AtomicBool,
    /// Subject rows committed but not indexed yet (an estimate).
    index_backlog: std::sync::atomic::AtomicUsize,
    /// Writes waiting for the writer connection.
    writes_waiting: std::sync::atomic::AtomicUsize,
    stopping: AtomicBool,
}

/// The body of one of the store's threads.
type StoreThread = fn(&Inner);

impl SqliteStore {
    /// Opens (creating if needed) `gateway.db` and its subject index under
    /// `data_dir`, loads each subject's latest entry, and starts the
    /// committer, indexer and checkpointer threads (stopped when the store is
    /// dropped).
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("gateway.db");
        let writer = schema::open_writer(&path)?;
        let index_path = data_dir.join("audit-subjects.db");
        let index = schema::open_index(&index_path, audit_tree::tree(&writer)?.size())?;

        let inner = Arc::new(Inner {
            path,
            index_path,
            writer: Mutex::new(Writer {
                conn: writer,
                heads: SubjectHeads::default(),
                frontier: None,
            }),
            readers: Mutex::default(),
            records_generation: Default::default(),
            person_rows: SealedRows::new(PERSON_ROWS_BUDGET),
            enterprise_rows: SealedRows::new(ENTERPRISE_ROWS_BUDGET),
            snapshots_held: Default::default(),
            draining: AtomicBool::new(false),
            reader_free: Condvar::new(),
            queue: AuditQueue::default(),
            index: Mutex::new(index),
            index_wake: Mutex::new(false),
            index_ready: Condvar::new(),
            index_backlog: Default::default(),
            writes_waiting: Default::default(),
            commits: Default::default(),
            checkpoint_stop: Mutex::new(()),
            checkpoint_ready: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        inner.load_subject_heads()?;
        let mut threads = Vec::new();
        let jobs: [(&str, StoreThread); 3] = [
            ("audit-committer", Inner::run_committer),
            ("audit-indexer", Inner::run_indexer),
            ("wal-checkpointer", Inner::run_checkpointer),
        ];
        for (name, job) in jobs {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || job(&inner))
                    .map_err(|e| StoreError::unavailable(format!("cannot start a thread: {e}")))?,
            );
        }
        Ok(SqliteStore { inner, threads })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Accepted records per (agency, batch id); used by crash-recovery checks.
    pub fn records_of_batch(&self, agency: &str, batch_id: &str) -> Result<u64, StoreError> {
        self.inner.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM records WHERE agency = ?1 AND batch_id = ?2",
                params![agency, batch_id],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.queue.close();
        *self
            .inner
            .index_wake
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        self.inner.index_ready.notify_all();
        drop(
            self.inner
                .checkpoint_stop
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.inner.checkpoint_ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

crate::store::store_via_inner!(SqliteStore, shared: false);

impl Inner {
    fn queue_depths(&self) -> QueueDepths {
        QueueDepths {
            audit_entries: self.queue.depth(),
            writes_waiting: self.writes_waiting.load(Ordering::Relaxed) as u64,
            index_backlog: self.index_backlog.load(Ordering::Relaxed) as u64,
        }
    }
}

/// A caller's "after this position" (a pull cursor, an audit page's
/// `after_seq`) as SQLite compares it. Positions are signed 64-bit there; one
/// past `i64::MAX` is past every position, so it becomes `i64::MAX` (a plain
/// cast would wrap it negative, and the feed or the log would start over).
fn after_position(after: u64) -> i64 {
    i64::try_from(after).unwrap_or(i64::MAX)
}
