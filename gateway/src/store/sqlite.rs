//! The embedded default store: SQLite (bundled, so nothing to install), in WAL
//! mode with `synchronous = FULL`, so a committed batch survives a crash or a
//! power cut. One writer connection serialises commits (one transaction per
//! batch, never per row); readers use their own connections and never block it.
//! The audit tree keeps leaf hashes in tiles of 256 per row and larger subtrees
//! as rows of their own, so an append of a batch writes a handful of rows
//! beyond its entries (schema comments below).
//!
//! Audit appends that change nothing else (deliveries, look-ups, denials) are
//! queued to one committer thread, which writes everything queued in one
//! transaction and one fsync (group commit) and then answers each caller.
//! Which entries name which person is a derived index kept in its own file
//! (`audit-subjects.db`) by an indexer thread, so a delivery naming thousands
//! of persons costs its commit no random B-tree writes: the back-pointer of
//! each subject comes from an in-memory map of each subject's latest entry,
//! rebuilt at start-up from the index and the entries it had not reached. Queries by subject first bring the
//! index up to the end of the log.

use super::sealed_rows::{self, SealedRows};
use super::{
    AuditDone, AuditFilter, AuditLeaf, BatchWrite, CommitOutcome, NoteErasure, RecordWrite,
    ReindexedRecord, Store, StoreError, StoredAuditEntry, StoredBatch, StoredCheckpoint,
    StoredNote, StoredRecord,
};
use crate::audit::AuditEntry;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    k  TEXT PRIMARY KEY,
    v  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS batches (
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    content_hash  BLOB NOT NULL,
    receipt       TEXT NOT NULL,
    committed_ms  INTEGER NOT NULL,
    PRIMARY KEY (agency, batch_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
    kind          TEXT NOT NULL,
    key_hash      BLOB NOT NULL,
    seq           INTEGER NOT NULL UNIQUE,
    person_index  BLOB,
    enterprise    TEXT,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX IF NOT EXISTS records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_enterprise ON records (enterprise, kind) WHERE enterprise IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_batch ON records (agency, batch_id);
-- The versions a record had before its current row (sealed as they were):
-- which version a consumer at a given cursor may hold, so that a removal is
-- announced only to a consumer that could have been delivered the record.
CREATE TABLE IF NOT EXISTS record_versions (
    kind          TEXT NOT NULL,
    key_hash      BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash, seq)
) WITHOUT ROWID;
-- Re-identifications taken, per consumer: the sliding hourly limit survives
-- restarts. Rows older than the window are pruned as new ones are taken.
CREATE TABLE IF NOT EXISTS reidentifications (
    consumer  TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reidentifications_by_consumer ON reidentifications (consumer, at_ms);

-- The audit log (see gateway/src/audit/ENCODING.md). `entry` holds the
-- canonical bytes, the leaf; the other columns are copies for querying.
CREATE TABLE IF NOT EXISTS audit_log (
    seq      INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    kinds    TEXT NOT NULL,      -- ",kind1,kind2," for filtering
    entry    BLOB NOT NULL
);
-- One secondary index only (by action, the usual filter): every index costs
-- each append a B-tree insert; other filters scan in seq order, page by page.
CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action, seq);
DROP INDEX IF EXISTS audit_log_by_actor;
-- Which entries name which person lives in audit-subjects.db (INDEX_SCHEMA),
-- derived from the entries themselves.
DROP TABLE IF EXISTS audit_subjects;
-- The Merkle tree. Leaf hashes live in complete tiles of 256 (one row per
-- tile); the leaves of the last, incomplete tile are rows of audit_leaves
-- until it completes, so an append adds small rows instead of rewriting a
-- growing 8 KiB tile. The complete subtrees below level 8 are recomputed
-- from a tile (at most 128 hashes), and every complete subtree at level 8
-- and above is a row of audit_nodes. Leaf hashes stay when an entry is
-- erased, so the tree does not break.
CREATE TABLE IF NOT EXISTS audit_tiles (
    idx      INTEGER PRIMARY KEY,   -- first leaf index of the tile (a multiple of 256)
    hashes   BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in order (stores
                                    -- written before audit_leaves: the last one may be shorter)
);
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx      INTEGER PRIMARY KEY,   -- leaf index, in the last, incomplete tile
    hash     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_nodes (
    level    INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    hash     BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- Notes beside the log (audit/notes.rs): free text an entry's details commit
-- to (a re-identification's justification) but the leaf never holds; sealed,
-- bound to the commitment, written in the entry's own transaction. Erasing a
-- note overwrites `sealed` (secure_delete) and records when and by which
-- entry; the entry and its leaf stay as they were.
CREATE TABLE IF NOT EXISTS audit_notes (
    seq         INTEGER PRIMARY KEY,   -- the entry whose details commit to the note
    commitment  TEXT NOT NULL,         -- hex SHA-256(salt || text), as in the entry
    sealed      BLOB,                  -- AES-GCM(salt || text); NULL once erased
    erased_ms   INTEGER,
    erased_seq  INTEGER                -- the note_erased entry
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_ms INTEGER NOT NULL
);
"#;

/// The subject index (`audit-subjects.db`): derived from the audit entries,
/// rebuilt from them if lost, so it is written with `synchronous = NORMAL`.
const INDEX_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject  TEXT NOT NULL,     -- auditor-domain pseudonym
    seq      INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS progress (
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    indexed_through  INTEGER NOT NULL
);
INSERT OR IGNORE INTO progress (id, indexed_through) VALUES (0, 0);
"#;

/// Read connections kept open; callers beyond this wait for one.
const MAX_READERS: usize = 8;
/// Page cache of each read connection (KiB): the records' interior pages.
const READER_CACHE_KIB: i64 = 16 * 1024;
/// How long a records snapshot may stay open (it holds WAL frames back from
/// the checkpointer meanwhile).
const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(1000);
/// Bytes of sealed look-up rows kept between look-ups ([`SealedRows`]), for
/// persons and for enterprises apart, so that look-ups of ever new persons
/// cannot push out the employers that most of them share. Employers get
/// room for a city's worth: the 13,400 that look-ups of every Wuhu resident
/// reach take 22 MB; at 16 MiB half of those look-ups' employer reads missed,
/// at 64 MiB one in ten does (an employer's first).
const PERSON_ROWS_BUDGET: usize = 16 << 20;
const ENTERPRISE_ROWS_BUDGET: usize = 64 << 20;
/// Subject rows the indexer writes per transaction.
const INDEX_CHUNK: usize = 50_000;
/// How often the checkpointer copies the WAL into the database (if anything
/// was committed).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// WAL frames (4 KiB pages) past which the checkpointer restarts the WAL
/// with writes paused (256 MiB). Each restart pauses every commit for the
/// copy of the last frames and a database fsync (10–40 ms seen here), so
/// under a steady stream of commits it should be rare: at 4,096 frames it
/// came every half second of look-ups and set their p99. In quieter times
/// the WAL starts again by itself, once copied to its end.
const WAL_RESTART_FRAMES: i64 = 65536;
/// Quarter-milliseconds the checkpointer waits, writes paused, for busy
/// readers to end their snapshots before starting the WAL again.
const DRAIN_WAITS: usize = 20;
/// The pause in appends the indexer waits for before indexing.
const INDEX_QUIET: std::time::Duration = std::time::Duration::from_millis(300);
/// Unindexed subject rows beyond which the indexer stops waiting for a pause.
const INDEX_MAX_BACKLOG: usize = 2_000_000;

pub struct SqliteStore {
    inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Inner {
    path: PathBuf,
    index_path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<ReaderPool>,
    reader_free: Condvar,
    /// Audit appends waiting for the committer thread.
    queue: Mutex<Vec<(Vec<AuditEntry>, AuditDone)>>,
    queue_ready: Condvar,
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
    stopping: AtomicBool,
}

/// Settings every connection to `gateway.db` shares.
fn configure(c: &Connection) -> Result<(), StoreError> {
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    // One plan per statement whatever the bound values: checking whether
    // `col = ?` implies a partial index's condition otherwise marks a
    // statement to be re-prepared at every new binding (look-ups spent about
    // half their store work re-parsing SQL).
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// The body of one of the store's threads.
type StoreThread = fn(&Inner);

struct Writer {
    conn: Connection,
    heads: SubjectHeads,
    /// The audit tree's right edge after the last commit, so an append does
    /// not read it back (and rehash the incomplete tile) every time. Taken
    /// by a transaction and put back only once it has committed.
    frontier: Option<tlog::Frontier>,
}

#[derive(Default)]
struct ReaderPool {
    idle: Vec<Reader>,
    open: usize,
}

/// A pooled read connection and, when it is kept open across calls, its
/// records snapshot.
struct Reader {
    conn: Connection,
    snapshot: Option<Snapshot>,
}

/// A read transaction left open so that the connection's page cache stays
/// warm: SQLite empties a connection's cache whenever another connection has
/// committed since its last transaction, and the audit log commits about a
/// thousand times a second under load. Records change only through
/// [`Inner::write_records`] (which counts them in `records_generation`), so a
/// snapshot taken at generation `g` holds the current records for as long as
/// the generation stays `g`.
struct Snapshot {
    generation: u64,
    began: std::time::Instant,
}

/// The latest audit entry naming each subject: the back-pointer the next
/// entry naming it records. Auditor pseudonyms (32 lowercase hex characters)
/// are held as 128-bit integers; any other token as text.
#[derive(Default)]
struct SubjectHeads {
    hex: HashMap<u128, u64, BuildTokenHasher>,
    other: HashMap<String, u64>,
}

/// A subject token as [`SubjectHeads`] keys it.
#[derive(Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    Hex(u128),
    Text(String),
}

impl SubjectKey {
    fn of(token: &str) -> SubjectKey {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if token.len() == 32
            && token.bytes().all(lower_hex)
            && let Ok(k) = u128::from_str_radix(token, 16)
        {
            return SubjectKey::Hex(k);
        }
        SubjectKey::Text(token.to_string())
    }
}

/// Pseudonyms are HMAC outputs, uniformly distributed already: their low 64
/// bits are a good hash, and far cheaper than SipHash.
#[derive(Default, Clone, Copy)]
struct BuildTokenHasher;

#[derive(Default)]
struct TokenHasher(u64);

impl std::hash::BuildHasher for BuildTokenHasher {
    type Hasher = TokenHasher;
    fn build_hasher(&self) -> TokenHasher {
        TokenHasher(0)
    }
}

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u128 keys; a plain FNV-1a keeps it correct anyway.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

impl SubjectHeads {
    fn get(&self, key: &SubjectKey) -> u64 {
        match key {
            SubjectKey::Hex(k) => self.hex.get(k).copied(),
            SubjectKey::Text(t) => self.other.get(t).copied(),
        }
        .unwrap_or(0)
    }

    fn set(&mut self, key: SubjectKey, seq: u64) {
        match key {
            SubjectKey::Hex(k) => self.hex.insert(k, seq),
            SubjectKey::Text(t) => self.other.insert(t, seq),
        };
    }
}

/// How long the committer waits for more callers when they arrive together.
const COMMIT_LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// Callers the last commit must have served for the committer to linger.
const LINGER_AFTER_CALLERS: usize = 2;

/// Subject heads as seen inside one write transaction: changes apply to the
/// shared map only once the transaction has committed. Likewise the audit
/// tree's frontier.
struct Staged<'a> {
    base: &'a SubjectHeads,
    updates: HashMap<SubjectKey, u64, BuildTokenHasher>,
    frontier: Option<tlog::Frontier>,
}

impl Staged<'_> {
    fn prev(&self, key: &SubjectKey) -> u64 {
        self.updates
            .get(key)
            .copied()
            .unwrap_or_else(|| self.base.get(key))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `gateway.db` and its subject index under
    /// `data_dir`, loads each subject's latest entry, and starts the
    /// committer, indexer and checkpointer threads (stopped when the store is
    /// dropped).
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("gateway.db");
        let mut writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        configure(&writer)?;
        // A 64 MiB page cache keeps the right edges of the audit tables and
        // indexes in memory, so appends do not re-read pages from the OS.
        writer.pragma_update(None, "cache_size", -65536)?;
        // No checkpoint on the commit path (one there stalls every caller
        // waiting on that commit for as long as it copies): the checkpointer
        // thread copies the WAL into the database beside the writer.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.execute_batch(SCHEMA)?;
        move_partial_tile_to_leaves(&mut writer)?;

        let index_path = data_dir.join("audit-subjects.db");
        let index = Connection::open(&index_path)?;
        index.pragma_update(None, "journal_mode", "WAL")?;
        index.pragma_update(None, "synchronous", "NORMAL")?;
        index.busy_timeout(std::time::Duration::from_secs(30))?;
        index.pragma_update(None, "cache_size", -65536)?;
        index.execute_batch(INDEX_SCHEMA)?;
        // A log cut back (restored from a backup, or tampered with) leaves
        // index rows beyond its end: they go, and indexing resumes there.
        let size = SqlTree::open(&writer)?.size;
        index.execute(
            "DELETE FROM audit_subjects WHERE seq > ?1",
            params![size as i64],
        )?;
        index.execute(
            "UPDATE progress SET indexed_through = min(indexed_through, ?1)",
            params![size as i64],
        )?;

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
            queue: Mutex::default(),
            queue_ready: Condvar::new(),
            index: Mutex::new(index),
            index_wake: Mutex::new(false),
            index_ready: Condvar::new(),
            index_backlog: Default::default(),
            commits: Default::default(),
            checkpoint_stop: Mutex::new(()),
            checkpoint_ready: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        // Subject heads: each subject's latest indexed entry, then the entries
        // the indexer had not reached (it catches up in the background).
        let through = {
            let index = inner.index.lock().unwrap_or_else(|p| p.into_inner());
            let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt =
                index.prepare("SELECT subject, MAX(seq) FROM audit_subjects GROUP BY subject")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let token: String = row.get(0)?;
                writer
                    .heads
                    .set(SubjectKey::of(&token), row.get::<_, i64>(1)? as u64);
            }
            index.query_row("SELECT indexed_through FROM progress", [], |r| {
                r.get::<_, i64>(0)
            })?
        };
        let mut backlog = 0;
        {
            let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            inner.for_each_entry_after(through, |seq, entry| {
                for s in entry.subjects {
                    writer.heads.set(SubjectKey::of(&s.token), seq as u64);
                    backlog += 1;
                }
                true
            })?;
        }
        inner.index_backlog.store(backlog, Ordering::Relaxed);
        *inner.index_wake.lock().unwrap_or_else(|p| p.into_inner()) = backlog > 0;
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
                    .map_err(|e| StoreError::Backend(format!("cannot start a thread: {e}")))?,
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

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.read(f)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        drop(self.inner.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.inner.queue_ready.notify_all();
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

impl Inner {
    /// Runs `f` on a pooled read connection, waiting for one when
    /// [`MAX_READERS`] are busy (more would only contend for the same cores).
    /// `f` sees everything committed before the call.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(|r| {
            self.end_snapshot(r);
            f(&r.conn)
        })
    }

    /// Like [`Inner::read`] for queries of the `records` table only: runs in
    /// the connection's open snapshot when no records were committed since it
    /// began (and it is younger than [`SNAPSHOT_MAX_AGE`]), else in a new one
    /// left open for the next call. `f` sees every record committed before
    /// the call; audit tables may be stale in it.
    fn read_records<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(|r| {
            if self.draining.load(Ordering::SeqCst) {
                self.end_snapshot(r);
                return f(&r.conn);
            }
            let current = r.snapshot.as_ref().is_some_and(|s| {
                s.generation == self.records_generation.load(Ordering::SeqCst)
                    && s.began.elapsed() < SNAPSHOT_MAX_AGE
            });
            if !current {
                self.end_snapshot(r);
                // Read before the snapshot starts (at `f`'s first read), so
                // the snapshot holds at least the generation it is marked with.
                let generation = self.records_generation.load(Ordering::SeqCst);
                r.conn.execute_batch("BEGIN")?;
                r.snapshot = Some(Snapshot {
                    generation,
                    began: std::time::Instant::now(),
                });
                self.snapshots_held.fetch_add(1, Ordering::SeqCst);
            }
            let out = f(&r.conn);
            // Stale already (records committed, or the checkpointer waits):
            // not worth holding WAL frames for.
            if out.is_err()
                || self.draining.load(Ordering::SeqCst)
                || r.snapshot
                    .as_ref()
                    .is_some_and(|s| s.generation != self.records_generation.load(Ordering::SeqCst))
            {
                self.end_snapshot(r);
            }
            out
        })
    }

    /// [`Inner::read_records`] for a look-up query, answered from
    /// [`SealedRows`] when it was read at the current records generation.
    fn read_records_cached(
        &self,
        query: sealed_rows::Query,
        f: impl FnOnce(&Connection) -> Result<sealed_rows::Rows, StoreError>,
    ) -> Result<sealed_rows::Rows, StoreError> {
        // Loaded before the read, which therefore sees every records commit
        // up to this generation (perhaps later ones too: the generation is
        // bumped after each commit, and the next bump drops the entry).
        let generation = self.records_generation.load(Ordering::SeqCst);
        let cache = match query {
            sealed_rows::Query::Person(_) => &self.person_rows,
            sealed_rows::Query::Enterprise { .. } => &self.enterprise_rows,
        };
        if let Some(rows) = cache.get(&query, generation) {
            return Ok(rows);
        }
        let rows = self.read_records(f)?;
        cache.insert(query, generation, rows.clone());
        Ok(rows)
    }

    /// Ends the snapshots of idle readers at least `age` old (all of them
    /// without an age): past [`SNAPSHOT_MAX_AGE`] so that the checkpointer can
    /// copy the whole WAL when look-ups stop, all before a WAL restart.
    fn end_idle_snapshots(&self, age: Option<std::time::Duration>) {
        let mut pool = self.readers.lock().expect("reader pool lock");
        for r in pool.idle.iter_mut() {
            if r.snapshot
                .as_ref()
                .is_some_and(|s| age.is_none_or(|a| s.began.elapsed() >= a))
            {
                self.end_snapshot(r);
            }
        }
    }

    /// Ends a reader's open snapshot, if any.
    fn end_snapshot(&self, r: &mut Reader) {
        if r.snapshot.take().is_some() {
            self.snapshots_held.fetch_sub(1, Ordering::SeqCst);
            if !r.conn.is_autocommit() {
                // A read transaction ends without writing: COMMIT cannot fail
                // here but for a broken connection, which its next use reports.
                let _ = r.conn.execute_batch("COMMIT");
            }
        }
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let reader = {
            let mut pool = self.readers.lock().expect("reader pool lock");
            loop {
                if let Some(r) = pool.idle.pop() {
                    break Some(r);
                }
                if pool.open < MAX_READERS {
                    pool.open += 1;
                    break None;
                }
                pool = self.reader_free.wait(pool).expect("reader pool lock");
            }
        };
        let mut reader = match reader {
            Some(r) => r,
            None => match self.open_reader() {
                Ok(conn) => Reader {
                    conn,
                    snapshot: None,
                },
                Err(e) => {
                    self.readers.lock().expect("reader pool lock").open -= 1;
                    self.reader_free.notify_one();
                    return Err(e);
                }
            },
        };
        let result = f(&mut reader);
        self.readers
            .lock()
            .expect("reader pool lock")
            .idle
            .push(reader);
        self.reader_free.notify_one();
        result
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let c = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&c)?;
        c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        // No memory map: the file grows with every commit, and a mapped
        // reader would remap (munmap + mmap) at nearly every transaction.
        Ok(c)
    }

    /// Runs `f` on a connection that also sees the subject index as `idx`,
    /// brought up to the end of the log first. Not pooled: subject reports and
    /// queries are rare, and the pooled readers stay plain.
    fn read_with_index<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.catch_up_index()?;
        let c = self.open_reader()?;
        c.execute(
            "ATTACH DATABASE ?1 AS idx",
            params![self.index_path.to_string_lossy()],
        )?;
        f(&c)
    }

    /// Runs `f` in a write transaction that may change records (a batch
    /// commit) and commits it; records snapshots and cached rows then renew.
    fn write_records<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(true, f)
    }

    /// Runs `f` in a write transaction that leaves the records alone (audit
    /// entries, checkpoints, meta) and commits it: records snapshots and
    /// cached rows stay current across it.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(false, f)
    }

    fn write_as<T>(
        &self,
        may_change_records: bool,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Writer {
            conn,
            heads,
            frontier,
        } = &mut *w;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut staged = Staged {
            base: heads,
            updates: HashMap::default(),
            frontier: frontier.take(),
        };
        let out = f(&tx, &mut staged)?;
        tx.commit()?;
        *frontier = staged.frontier;
        if may_change_records {
            self.records_generation.fetch_add(1, Ordering::SeqCst);
        }
        // This commit started the WAL again if the checkpointer had drained
        // it; readers may hold snapshots again.
        self.draining.store(false, Ordering::SeqCst);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let updates = staged.updates;
        let named = updates.len();
        heads.hex.reserve(named);
        for (key, seq) in updates {
            heads.set(key, seq);
        }
        drop(w);
        if named > 0 {
            self.index_backlog.fetch_add(named, Ordering::Relaxed);
            *self.index_wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.index_ready.notify_one();
        }
        Ok(out)
    }

    /// The committer thread: everything queued meanwhile goes into one
    /// transaction (one fsync); then each caller hears the outcome. While
    /// callers arrive together (the last commit served several), it lingers
    /// [`COMMIT_LINGER`] before taking the queue, so that one commit serves
    /// more of them: under 64 concurrent look-ups that cut fsyncs from ≈ 1,900
    /// to ≈ 670 a second and WAL writes per look-up by a third, for at most
    /// that half millisecond more per call. After a commit that served one
    /// caller, the next commits at once.
    fn run_committer(&self) {
        let mut last_callers = 0;
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while q.is_empty() && !self.stopping.load(Ordering::SeqCst) {
                    q = self.queue_ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.is_empty() {
                    return;
                }
                if last_callers >= LINGER_AFTER_CALLERS {
                    drop(q);
                    std::thread::sleep(COMMIT_LINGER);
                    q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                }
                std::mem::take(&mut *q)
            };
            last_callers = batch.len();
            let mut all = Vec::with_capacity(batch.iter().map(|(e, _)| e.len()).sum());
            let mut callers = Vec::with_capacity(batch.len());
            for (entries, done) in batch {
                all.extend(entries);
                callers.push(done);
            }
            let outcome = self
                .write(|tx, heads| insert_audit(tx, heads, &all))
                .map_err(|e| e.to_string());
            for done in callers {
                done(outcome.clone().map_err(StoreError::Backend));
            }
        }
    }

    /// The indexer thread: indexes new entries' subjects in large
    /// transactions once appends pause for [`INDEX_QUIET`] (or the backlog
    /// passes [`INDEX_MAX_BACKLOG`] rows), so that during a bulk pull it does
    /// not compete with serving for the cores.
    fn run_indexer(&self) {
        loop {
            {
                let mut wake = self.index_wake.lock().unwrap_or_else(|p| p.into_inner());
                if !*wake {
                    wake = self
                        .index_ready
                        .wait_timeout(wake, std::time::Duration::from_secs(5))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                // Wait for a pause in appends naming subjects.
                while *wake
                    && !self.stopping.load(Ordering::SeqCst)
                    && self.index_backlog.load(Ordering::Relaxed) < INDEX_MAX_BACKLOG
                {
                    *wake = false;
                    wake = self
                        .index_ready
                        .wait_timeout(wake, INDEX_QUIET)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *wake = false;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            // Half a core at most: after each chunk, rest as long as it took,
            // so serving keeps the cores while a large backlog is indexed.
            loop {
                let started = std::time::Instant::now();
                match self.index_chunk() {
                    Ok(true) if !self.stopping.load(Ordering::SeqCst) => {
                        std::thread::sleep(started.elapsed());
                        // Serving resumed (appends naming subjects): yield
                        // until the next pause, unless the backlog is large.
                        if *self.index_wake.lock().unwrap_or_else(|p| p.into_inner())
                            && self.index_backlog.load(Ordering::Relaxed) < INDEX_MAX_BACKLOG
                        {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "audit subject index update failed; retrying");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        break;
                    }
                }
            }
        }
    }

    /// The checkpointer thread: after commits, copies the WAL into the
    /// database (PASSIVE: never blocks the writer or readers), at most every
    /// [`CHECKPOINT_EVERY`].
    fn run_checkpointer(&self) {
        let conn = match Connection::open(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "WAL checkpointer cannot open the database");
                return;
            }
        };
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        let mut seen = self.commits.load(Ordering::Relaxed);
        loop {
            {
                let guard = self
                    .checkpoint_stop
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let _ = self
                    .checkpoint_ready
                    .wait_timeout(guard, CHECKPOINT_EVERY)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.end_idle_snapshots(Some(SNAPSHOT_MAX_AGE));
            let now = self.commits.load(Ordering::Relaxed);
            if now == seen {
                continue;
            }
            seen = now;
            let passive =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
            match passive {
                // Under a steady stream of commits the WAL is never copied to
                // its end (commits land during every copy), so no writer may
                // start it again from its beginning, and a long WAL slows every
                // read. Past a bound, writes pause for a second passive copy of
                // the few frames since the first; the next commit then starts
                // the WAL again. (PASSIVE never waits for readers: a RESTART
                // here held every commit up for the busy handler's sleeps.)
                Ok(frames) if frames >= WAL_RESTART_FRAMES => {
                    // Open records snapshots hold WAL frames: readers end
                    // theirs and keep none until the next commit, which then
                    // finds the WAL copied to its end and no reader in it.
                    self.draining.store(true, Ordering::SeqCst);
                    self.end_idle_snapshots(None);
                    for _ in 0..DRAIN_WAITS {
                        if self.snapshots_held.load(Ordering::SeqCst) == 0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(250));
                        self.end_idle_snapshots(None);
                    }
                    let _writes_paused = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying later");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying later"),
            }
        }
    }

    /// Calls `f(seq, entry)` for each audit entry after `seq`, in order, until
    /// it returns false.
    fn for_each_entry_after(
        &self,
        after: i64,
        mut f: impl FnMut(i64, crate::audit::CanonicalEntry) -> bool,
    ) -> Result<(), StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, entry FROM audit_log WHERE seq > ?1 ORDER BY seq")?;
            let mut rows = stmt.query(params![after])?;
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let bytes: Vec<u8> = row.get(1)?;
                let entry = crate::audit::CanonicalEntry::decode(&bytes).map_err(|e| {
                    StoreError::Corrupt(format!("audit entry {seq} does not decode: {e}"))
                })?;
                if !f(seq, entry) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Indexes the subjects of every entry not indexed yet.
    fn catch_up_index(&self) -> Result<(), StoreError> {
        while self.index_chunk()? {}
        Ok(())
    }

    /// Indexes one chunk (whole entries, about [`INDEX_CHUNK`] subject rows);
    /// false when there was nothing left to index.
    fn index_chunk(&self) -> Result<bool, StoreError> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let through: i64 =
            index.query_row("SELECT indexed_through FROM progress", [], |r| r.get(0))?;
        self.index_backlog.store(0, Ordering::Relaxed);
        let (mut pairs, mut last) = (Vec::new(), through);
        self.for_each_entry_after(through, |seq, entry| {
            pairs.extend(entry.subjects.into_iter().map(|s| (s.token, seq)));
            last = seq;
            pairs.len() < INDEX_CHUNK
        })?;
        if last == through {
            return Ok(false);
        }
        pairs.sort_unstable();
        let tx = index.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO audit_subjects (subject, seq) VALUES (?1, ?2)",
            )?;
            for (token, seq) in &pairs {
                insert.execute(params![token, seq])?;
            }
        }
        tx.execute("UPDATE progress SET indexed_through = ?1", params![last])?;
        tx.commit()?;
        Ok(true)
    }
}

/// Leaves per tile, and its log.
const TILE_BITS: u8 = 8;
const TILE: u64 = 1 << TILE_BITS;

/// The audit tree as stored in `audit_tiles` and `audit_nodes`, read through
/// one connection (tiles read are cached for the life of the value).
struct SqlTree<'c> {
    conn: &'c Connection,
    size: u64,
    tiles: std::cell::RefCell<std::collections::HashMap<u64, std::rc::Rc<Vec<u8>>>>,
}

impl<'c> SqlTree<'c> {
    fn open(conn: &'c Connection) -> Result<SqlTree<'c>, StoreError> {
        let last_leaf: Option<i64> = conn
            .prepare_cached("SELECT max(idx) FROM audit_leaves")?
            .query_row([], |r| r.get(0))?;
        let size = match last_leaf {
            Some(idx) => idx as u64 + 1,
            None => conn
                .prepare_cached(
                    "SELECT idx, length(hashes) FROM audit_tiles ORDER BY idx DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .map(|(idx, len)| (idx + len / 32) as u64)
                .unwrap_or(0),
        };
        Ok(SqlTree {
            conn,
            size,
            tiles: Default::default(),
        })
    }

    /// The leaf hashes of the tile starting at leaf `start`.
    fn tile(&self, start: u64) -> Result<Option<std::rc::Rc<Vec<u8>>>, StoreError> {
        if let Some(t) = self.tiles.borrow().get(&start) {
            return Ok(Some(t.clone()));
        }
        let mut blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT hashes FROM audit_tiles WHERE idx = ?1")?
            .query_row(params![start as i64], |r| r.get(0))
            .optional()?;
        if blob.is_none() && start < self.size && self.size - start < TILE {
            // The last, incomplete tile: its leaves are rows.
            let mut b = Vec::with_capacity(((self.size - start) * 32) as usize);
            let mut stmt = self.conn.prepare_cached(
                "SELECT idx, hash FROM audit_leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let mut rows = stmt.query(params![start as i64, self.size as i64])?;
            let mut next = start;
            while let Some(row) = rows.next()? {
                let hash: Vec<u8> = row.get(1)?;
                if row.get::<_, i64>(0)? as u64 != next || hash.len() != 32 {
                    return Err(StoreError::Corrupt(format!(
                        "audit leaf {next} is missing or malformed"
                    )));
                }
                b.extend_from_slice(&hash);
                next += 1;
            }
            blob = Some(b);
        }
        Ok(blob.map(|b| {
            let b = std::rc::Rc::new(b);
            self.tiles.borrow_mut().insert(start, b.clone());
            b
        }))
    }

    /// Leaf hash `index`.
    fn leaf(&self, index: u64) -> Option<tlog::Hash> {
        let tile = self.tile(index & !(TILE - 1)).ok()??;
        let off = ((index & (TILE - 1)) * 32) as usize;
        tile.get(off..off + 32)?.try_into().ok()
    }
}

impl tlog::HashStore for SqlTree<'_> {
    fn leaf_count(&self) -> u64 {
        self.size
    }
    fn node(&self, level: u8, index: u64) -> Option<tlog::Hash> {
        if level >= TILE_BITS {
            let hash: Vec<u8> = self
                .conn
                .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")
                .ok()?
                .query_row(params![level, index as i64], |r| r.get(0))
                .optional()
                .ok()??;
            return hash.try_into().ok();
        }
        // A complete subtree inside one tile: fold its 2^level leaf hashes.
        let first = index.checked_shl(u32::from(level))?;
        let count = 1u64 << level;
        if first.checked_add(count)? > self.size {
            return None;
        }
        let tile = self.tile(first & !(TILE - 1)).ok()??;
        let off = ((first & (TILE - 1)) * 32) as usize;
        let bytes = tile.get(off..off + count as usize * 32)?;
        let mut layer: Vec<tlog::Hash> = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| tlog::node_hash(&p[0], &p[1]))
                .collect();
        }
        layer.pop()
    }
}

/// Appends entries as leaves, with their subject back-pointers and the new
/// complete-subtree nodes, inside the caller's transaction.
fn insert_audit(
    tx: &Transaction<'_>,
    heads: &mut Staged<'_>,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let tree = SqlTree::open(tx)?;
    let size = tree.size;
    let mut leaves = Vec::with_capacity(entries.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, at_ms, actor, action, outcome, kinds, entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (i, e) in entries.iter().enumerate() {
            let seq = size + 1 + i as u64;
            let mut tokens: Vec<&String> = e.subjects.iter().collect();
            tokens.sort_unstable();
            tokens.dedup();
            let mut subjects = Vec::with_capacity(tokens.len());
            for token in tokens {
                let key = SubjectKey::of(token);
                subjects.push(crate::audit::SubjectRef {
                    token: token.clone(),
                    prev_seq: heads.prev(&key),
                });
                heads.updates.insert(key, seq);
            }
            let bytes = e
                .encode(seq, &subjects)
                .map_err(|err| StoreError::Backend(format!("audit entry encoding: {err}")))?;
            leaves.push(tlog::leaf_hash(&bytes));
            let kinds = if e.kinds.is_empty() {
                String::new()
            } else {
                format!(",{},", e.kinds.join(","))
            };
            insert.execute(params![
                seq as i64, e.at_ms, e.actor, e.action, e.outcome, kinds, bytes
            ])?;
            if let Some(note) = &e.note {
                tx.prepare_cached(
                    "INSERT INTO audit_notes (seq, commitment, sealed) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![seq as i64, note.commitment, note.sealed])?;
            }
        }
    }
    let mut frontier = match heads.frontier.take() {
        Some(kept) if kept.size() == size => kept,
        _ => tlog::Frontier::of(&tree)?,
    };
    let nodes = frontier.append(&leaves)?;
    heads.frontier = Some(frontier);
    let mut insert_node =
        tx.prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for n in nodes.iter().filter(|n| n.level >= TILE_BITS) {
        insert_node.execute(params![n.level, n.index as i64, &n.hash[..]])?;
    }
    // Leaf hashes: rows of the incomplete tile; a tile that completes
    // becomes one row of audit_tiles and its leaf rows go.
    let mut insert_leaf =
        tx.prepare_cached("INSERT INTO audit_leaves (idx, hash) VALUES (?1, ?2)")?;
    let mut insert_tile =
        tx.prepare_cached("INSERT INTO audit_tiles (idx, hashes) VALUES (?1, ?2)")?;
    let mut clear_leaves =
        tx.prepare_cached("DELETE FROM audit_leaves WHERE idx >= ?1 AND idx < ?2")?;
    let (mut next, mut done) = (size, 0usize);
    while done < leaves.len() {
        let start = next & !(TILE - 1);
        let take = ((start + TILE - next) as usize).min(leaves.len() - done);
        let batch = &leaves[done..done + take];
        if next + take as u64 == start + TILE {
            let mut blob = match next > start {
                true => tree
                    .tile(start)?
                    .map(|t| t.as_ref().clone())
                    .ok_or_else(|| StoreError::Corrupt(format!("audit tile {start} is missing")))?,
                false => Vec::with_capacity(TILE as usize * 32),
            };
            if blob.len() as u64 != (next - start) * 32 {
                return Err(StoreError::Corrupt(format!(
                    "audit tile {start} holds {} bytes, expected {}",
                    blob.len(),
                    (next - start) * 32
                )));
            }
            for leaf in batch {
                blob.extend_from_slice(leaf);
            }
            clear_leaves.execute(params![start as i64, (start + TILE) as i64])?;
            insert_tile.execute(params![start as i64, blob])?;
        } else {
            for (i, leaf) in batch.iter().enumerate() {
                insert_leaf.execute(params![(next + i as u64) as i64, &leaf[..]])?;
            }
        }
        done += take;
        next += take as u64;
    }
    Ok(())
}

/// Stores written before `audit_leaves` kept the last, incomplete tile as a
/// shorter `audit_tiles` row: its leaves become rows (once, at start-up).
fn move_partial_tile_to_leaves(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let partial: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT idx, hashes FROM audit_tiles WHERE length(hashes) < ?1 ORDER BY idx DESC LIMIT 1",
            params![(TILE * 32) as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((start, hashes)) = partial {
        if hashes.len() % 32 != 0 {
            return Err(StoreError::Corrupt(format!(
                "audit tile {start} holds {} bytes",
                hashes.len()
            )));
        }
        for (i, hash) in hashes.chunks_exact(32).enumerate() {
            tx.execute(
                "INSERT INTO audit_leaves (idx, hash) VALUES (?1, ?2)",
                params![start + i as i64, hash],
            )?;
        }
        tx.execute("DELETE FROM audit_tiles WHERE idx = ?1", params![start])?;
    }
    tx.commit()?;
    Ok(())
}

fn row_to_audit(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAuditEntry> {
    Ok(StoredAuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        bytes: r.get(1)?,
    })
}

fn row_to_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn checkpoint_from_row(
    row: Option<(i64, Vec<u8>, String, i64)>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    row.map(|(size, root, note, signed_ms)| {
        Ok(StoredCheckpoint {
            size: size as u64,
            root: root
                .try_into()
                .map_err(|_| StoreError::Corrupt("checkpoint root".into()))?,
            note,
            signed_ms,
        })
    })
    .transpose()
}

fn find_batch(
    c: &Connection,
    agency: &str,
    batch_id: &str,
) -> Result<Option<StoredBatch>, StoreError> {
    let row: Option<(Vec<u8>, String)> = c
        .query_row(
            "SELECT content_hash, receipt FROM batches WHERE agency = ?1 AND batch_id = ?2",
            params![agency, batch_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(hash, receipt)| {
        Ok(StoredBatch {
            content_hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("batch content hash".into()))?,
            receipt: serde_json::from_str(&receipt)
                .map_err(|e| StoreError::Corrupt(format!("batch receipt: {e}")))?,
        })
    })
    .transpose()
}

fn head(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM records", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// A row's version, (changed_at, seq), if the row exists.
fn record_version(tx: &Transaction<'_>, seq: u64) -> Result<Option<(i64, u64)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT changed_at FROM records WHERE seq = ?1")?
        .query_row(params![seq as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|changed_at| (changed_at, seq)))
}

fn set_meta(tx: &Transaction<'_>, meta: &[(&str, &str)]) -> Result<(), StoreError> {
    for (k, v) in meta {
        tx.prepare_cached(
            "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )?
        .execute(params![k, v])?;
    }
    Ok(())
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        seq: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        key_hash: r.get(2)?,
        changed_at: r.get(3)?,
        cancelled: r.get::<_, i64>(4)? != 0,
        sealed: r.get(5)?,
    })
}

/// Applies one record inside the batch transaction. Returns false when the row is
/// older than the version already held (it is then superseded, not applied).
fn apply_record(
    tx: &Transaction<'_>,
    agency: &str,
    batch_id: &str,
    rec: &RecordWrite,
    seq: u64,
) -> Result<bool, StoreError> {
    let held: Option<i64> = tx
        .prepare_cached("SELECT changed_at FROM records WHERE kind = ?1 AND key_hash = ?2")?
        .query_row(params![rec.kind, rec.key_hash], |r| r.get(0))
        .optional()?;
    if held.is_some_and(|held| rec.changed_at < held) {
        return Ok(false);
    }
    if held.is_some() {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO record_versions (kind, key_hash, seq, changed_at, cancelled, sealed)
             SELECT kind, key_hash, seq, changed_at, cancelled, sealed FROM records
             WHERE kind = ?1 AND key_hash = ?2",
        )?
        .execute(params![rec.kind, rec.key_hash])?;
    }
    tx.prepare_cached(
        "INSERT INTO records (kind, key_hash, seq, person_index, changed_at, cancelled, agency, batch_id, sealed, enterprise)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (kind, key_hash) DO UPDATE SET
           seq = excluded.seq, person_index = excluded.person_index, changed_at = excluded.changed_at,
           cancelled = excluded.cancelled, agency = excluded.agency, batch_id = excluded.batch_id,
           sealed = excluded.sealed, enterprise = excluded.enterprise",
    )?
    .execute(params![
        rec.kind,
        rec.key_hash,
        seq as i64,
        rec.person_index,
        rec.changed_at,
        rec.cancel as i64,
        agency,
        batch_id,
        rec.sealed,
        rec.enterprise
    ])?;
    Ok(true)
}

impl Store for SqliteStore {
    fn find_batch(&self, agency: &str, batch_id: &str) -> Result<Option<StoredBatch>, StoreError> {
        self.read(|c| find_batch(c, agency, batch_id))
    }

    fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError> {
        self.inner.write_records(|tx, heads| {
            if let Some(done) = find_batch(tx, batch.agency, batch.batch_id)? {
                return Ok(CommitOutcome::AlreadyCommitted(done));
            }
            let mut seq = head(tx)?;
            let mut receipt = batch.receipt.clone();
            for rec in &batch.records {
                if apply_record(tx, batch.agency, batch.batch_id, rec, seq + 1)? {
                    seq += 1;
                } else {
                    receipt.superseded += 1;
                }
            }
            let receipt_json = serde_json::to_string(&receipt)
                .map_err(|e| StoreError::Backend(format!("receipt encoding: {e}")))?;
            tx.execute(
                "INSERT INTO batches (agency, batch_id, content_hash, receipt, committed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    batch.agency,
                    batch.batch_id,
                    &batch.content_hash[..],
                    receipt_json,
                    crate::audit::now_ms()
                ],
            )?;
            insert_audit(tx, heads, &[(batch.audit)(&receipt)])?;
            Ok(CommitOutcome::Committed { receipt, head: seq })
        })
    }

    fn read_feed(
        &self,
        kinds: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        // In a records snapshot, as look-ups read: a plain read would start a
        // new transaction per page, and after the audit commit of the page
        // before, SQLite empties the connection's page cache at its start
        // (≈ 5 % of a pull's CPU went to allocating those pages again).
        self.inner.read_records(|c| {
            // Kinds are a handful of known identifiers; bind them as parameters.
            let marks = vec!["?"; kinds.len()].join(",");
            // `+kind` keeps the planner on the seq index (range + order) instead of
            // the primary key on kind, which would scan and sort the feed per page.
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE seq > ? AND +kind IN ({marks}) ORDER BY seq LIMIT ?"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![(after as i64).into()];
            args.extend(
                kinds
                    .iter()
                    .map(|k| rusqlite::types::Value::from(k.to_string())),
            );
            args.push((limit as i64).into());
            let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[&str],
    ) -> Result<sealed_rows::Rows, StoreError> {
        let query = sealed_rows::Query::enterprise(credit_code, kinds);
        self.inner.read_records_cached(query, |c| {
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE enterprise = ? AND kind IN ({marks}) AND cancelled = 0 ORDER BY kind, changed_at"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![credit_code.to_string().into()];
            args.extend(kinds.iter().map(|k| rusqlite::types::Value::from(k.to_string())));
            let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn records_for_person(&self, person_index: &[u8]) -> Result<sealed_rows::Rows, StoreError> {
        let query = sealed_rows::Query::Person(person_index.to_vec());
        self.inner.read_records_cached(query, |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE person_index = ?1 AND cancelled = 0 ORDER BY kind, changed_at",
            )?;
            let rows = stmt.query_map(params![person_index], row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(head)
    }

    fn record_versions(
        &self,
        kind: &str,
        key_hash: &[u8],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM record_versions
                 WHERE kind = ?1 AND key_hash = ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![kind, key_hash], row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn record_version_at(
        &self,
        kind: &str,
        key_hash: &[u8],
        seq: u64,
    ) -> Result<Option<StoredRecord>, StoreError> {
        self.inner.read_records(|c| {
            let seq = seq.min(i64::MAX as u64) as i64;
            let current = c
                .prepare_cached(
                    "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                     WHERE kind = ?1 AND key_hash = ?2 AND seq <= ?3",
                )?
                .query_row(params![kind, key_hash, seq], row_to_record)
                .optional()?;
            if current.is_some() {
                return Ok(current);
            }
            Ok(c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM record_versions
                 WHERE kind = ?1 AND key_hash = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![kind, key_hash, seq], row_to_record)
            .optional()?)
        })
    }

    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.inner
            .write(|tx, heads| insert_audit(tx, heads, entries))
    }

    fn append_audit_queued(&self, entries: Vec<AuditEntry>, done: AuditDone) {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return done(Err(StoreError::Backend("the store is closing".into())));
        }
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((entries, done));
        self.inner.queue_ready.notify_one();
    }

    fn query_audit(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let query = |c: &Connection| {
            let by_subject = if f.subject.is_some() {
                "AND seq IN (SELECT seq FROM idx.audit_subjects WHERE subject = ?8)"
            } else {
                "AND ?8 IS NULL"
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT seq, entry FROM audit_log
                 WHERE seq > ?1
                   AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms < ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR action = ?5)
                   AND (?6 IS NULL OR outcome = ?6)
                   AND (?7 IS NULL OR instr(kinds, ',' || ?7 || ',') > 0)
                   {by_subject}
                 ORDER BY seq LIMIT ?9"
            ))?;
            let rows = stmt.query_map(
                params![
                    f.after_seq as i64,
                    f.from_ms,
                    f.to_ms,
                    f.actor,
                    f.action,
                    f.outcome,
                    f.kind,
                    f.subject,
                    f.limit.clamp(1, 1000) as i64
                ],
                row_to_audit,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        };
        if f.subject.is_some() {
            self.inner.read_with_index(query)
        } else {
            self.read(query)
        }
    }

    fn audit_size(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(SqlTree::open(c)?.size))
    }

    fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        self.read(|c| Ok(tlog::root_at(&SqlTree::open(c)?, size)?))
    }

    fn audit_inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| Ok(tlog::inclusion_proof(&SqlTree::open(c)?, index, size)?))
    }

    fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| Ok(tlog::consistency_proof(&SqlTree::open(c)?, size1, size2)?))
    }

    fn audit_leaves(&self, from: u64, to: u64, limit: usize) -> Result<Vec<AuditLeaf>, StoreError> {
        self.read(|c| {
            let tree = SqlTree::open(c)?;
            let to = to.min(tree.size).min(from.saturating_add(limit as u64));
            if from >= to {
                return Ok(Vec::new());
            }
            let mut entries = std::collections::HashMap::new();
            let mut stmt =
                c.prepare_cached("SELECT seq, entry FROM audit_log WHERE seq > ?1 AND seq <= ?2")?;
            let rows = stmt.query_map(params![from as i64, to as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let (seq, entry) = row?;
                entries.insert(seq, entry);
            }
            (from..to)
                .map(|index| {
                    Ok(AuditLeaf {
                        seq: index + 1,
                        leaf_hash: tree.leaf(index).ok_or_else(|| {
                            StoreError::Corrupt(format!("audit leaf {index} is missing"))
                        })?,
                        entry: entries.remove(&(index + 1)),
                    })
                })
                .collect()
        })
    }

    fn audit_subject_entries(&self, subject: &str) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.inner.read_with_index(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.seq, a.entry FROM idx.audit_subjects s JOIN audit_log a ON a.seq = s.seq
                 WHERE s.subject = ?1 ORDER BY s.seq",
            )?;
            let rows = stmt.query_map(params![subject], row_to_audit)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn audit_note(&self, seq: u64) -> Result<Option<StoredNote>, StoreError> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT commitment, sealed, erased_ms, erased_seq FROM audit_notes WHERE seq = ?1",
                )?
                .query_row(params![seq as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()?;
            Ok(row.map(|(commitment, sealed, erased_ms, erased_seq)| StoredNote {
                seq,
                commitment,
                sealed,
                erased: erased_ms.zip(erased_seq).map(|(ms, by)| (ms, by as u64)),
            }))
        })
    }

    fn erase_audit_note(&self, seq: u64, erasure: AuditEntry) -> Result<NoteErasure, StoreError> {
        self.inner.write(|tx, heads| {
            let held: Option<Option<i64>> = tx
                .prepare_cached("SELECT erased_seq FROM audit_notes WHERE seq = ?1")?
                .query_row(params![seq as i64], |r| r.get(0))
                .optional()?;
            match held {
                None => return Ok(NoteErasure::NoNote),
                Some(Some(by)) => {
                    return Ok(NoteErasure::AlreadyErased {
                        erasure_seq: by as u64,
                    });
                }
                Some(None) => {}
            }
            let erasure_seq = SqlTree::open(tx)?.size + 1;
            insert_audit(tx, heads, std::slice::from_ref(&erasure))?;
            // The freed bytes are overwritten with zeros, not left in the
            // page's free space or on the free list (this update only: the
            // extra writes would slow every other change for nothing).
            tx.pragma_update(None, "secure_delete", true)?;
            let erased = tx.execute(
                "UPDATE audit_notes SET sealed = NULL, erased_ms = ?2, erased_seq = ?3 WHERE seq = ?1",
                params![seq as i64, erasure.at_ms, erasure_seq as i64],
            );
            tx.pragma_update(None, "secure_delete", false)?;
            erased?;
            Ok(NoteErasure::Erased { erasure_seq })
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT v FROM meta WHERE k = ?1", params![key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.write(|tx, _| {
            tx.execute(
                "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                params![key, value],
            )?;
            Ok(())
        })
    }

    fn take_reidentification(
        &self,
        consumer: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Result<(), i64>, StoreError> {
        self.inner.write(|tx, _| {
            let since = now_ms.saturating_sub(window_ms);
            tx.prepare_cached("DELETE FROM reidentifications WHERE consumer = ?1 AND at_ms <= ?2")?
                .execute(params![consumer, since])?;
            let (taken, oldest): (i64, Option<i64>) = tx
                .prepare_cached(
                    "SELECT count(*), min(at_ms) FROM reidentifications WHERE consumer = ?1",
                )?
                .query_row(params![consumer], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if taken >= i64::from(limit) {
                let free_at = oldest.unwrap_or(now_ms).saturating_add(window_ms);
                return Ok(Err(free_at.saturating_sub(now_ms).max(1)));
            }
            tx.prepare_cached("INSERT INTO reidentifications (consumer, at_ms) VALUES (?1, ?2)")?
                .execute(params![consumer, now_ms])?;
            Ok(Ok(()))
        })
    }

    fn meta_set_audited(
        &self,
        meta: &[(&str, &str)],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.inner.write(|tx, heads| {
            set_meta(tx, meta)?;
            insert_audit(tx, heads, entries)
        })
    }

    fn reindex_records(
        &self,
        rows: &[ReindexedRecord],
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError> {
        self.inner.write_records(|tx, _| {
            let mut merged = 0;
            for row in rows {
                let Some(version) = record_version(tx, row.seq)? else {
                    // Merged away earlier in this transaction.
                    continue;
                };
                let holder: Option<i64> = tx
                    .prepare_cached(
                        "SELECT seq FROM records WHERE kind = ?1 AND key_hash = ?2 AND seq != ?3",
                    )?
                    .query_row(params![row.kind, row.key_hash, row.seq as i64], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(holder) = holder {
                    // The same record pushed again under the new key while
                    // this row could not be found: the newer version stays.
                    merged += 1;
                    let theirs = record_version(tx, holder as u64)?.unwrap_or((i64::MIN, 0));
                    let (loser, keep_this) = if theirs > version {
                        (row.seq as i64, false)
                    } else {
                        (holder, true)
                    };
                    tx.prepare_cached("DELETE FROM records WHERE seq = ?1")?
                        .execute(params![loser])?;
                    if !keep_this {
                        continue;
                    }
                }
                // The record's earlier versions move with it, sealed again.
                let old_hash: Vec<u8> = tx
                    .prepare_cached("SELECT key_hash FROM records WHERE seq = ?1")?
                    .query_row(params![row.seq as i64], |r| r.get(0))?;
                for (seq, sealed) in &row.versions {
                    tx.prepare_cached(
                        "UPDATE record_versions SET key_hash = ?1, sealed = ?2
                         WHERE kind = ?3 AND key_hash = ?4 AND seq = ?5",
                    )?
                    .execute(params![row.key_hash, sealed, row.kind, old_hash, *seq as i64])?;
                }
                tx.prepare_cached(
                    "UPDATE records SET key_hash = ?1, person_index = ?2, sealed = ?3 WHERE seq = ?4",
                )?
                .execute(params![
                    row.key_hash,
                    row.person_index,
                    row.sealed,
                    row.seq as i64
                ])?;
            }
            set_meta(tx, meta)?;
            Ok(merged)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            checkpoint_from_row(
                c.query_row(
                    "SELECT size, root, note, signed_ms FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                    [],
                    row_to_checkpoint,
                )
                .optional()?,
            )
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            checkpoint_from_row(
                c.query_row(
                    "SELECT size, root, note, signed_ms FROM audit_checkpoints WHERE size = ?1",
                    params![size as i64],
                    row_to_checkpoint,
                )
                .optional()?,
            )
        })
    }

    fn save_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        // Not a records change: a checkpoint is signed every thousand
        // entries, several times a second under look-ups.
        self.inner.write(|tx, _| {
            tx.execute(
                "INSERT INTO audit_checkpoints (size, root, note, signed_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (size) DO NOTHING",
                params![cp.size as i64, &cp.root[..], cp.note, cp.signed_ms],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod audit_tree_tests {
    use super::*;
    use crate::audit::{AuditEntry, CanonicalEntry, Value};

    fn entry(i: u64, subject: Option<String>) -> AuditEntry {
        AuditEntry {
            at_ms: i as i64,
            actor: "union/assistance".into(),
            action: "records_delivered".into(),
            outcome: "ok".into(),
            kinds: vec!["social_insurance".into()],
            subjects: subject.into_iter().collect(),
            details: Value::Map([("n".to_string(), Value::U64(i))].into()),
            note: None,
        }
    }

    /// Tiles, recomputed low subtrees and stored high nodes give the same
    /// roots and proofs as the reference tree, across tile boundaries and
    /// irregular batches; back-pointers chain each subject's entries.
    #[test]
    fn tiled_tree_matches_the_reference_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut reference = tlog::MemoryTree::new();
        let mut n = 0u64;
        for batch in [1u64, 3, 250, 2, 1, 300, 511, 1, 700, 255, 1, 1] {
            let entries: Vec<AuditEntry> = (n..n + batch)
                .map(|i| entry(i, (i % 3 == 0).then(|| format!("{:032x}", i % 7))))
                .collect();
            store.append_audit(&entries).unwrap();
            n += batch;
            assert_eq!(store.audit_size().unwrap(), n);
        }
        let leaves = store.audit_leaves(0, n, usize::MAX).unwrap();
        assert_eq!(leaves.len() as u64, n);
        let mut last_of = std::collections::HashMap::new();
        for l in &leaves {
            let bytes = l.entry.as_ref().unwrap();
            assert_eq!(tlog::leaf_hash(bytes), l.leaf_hash);
            reference.append(l.leaf_hash);
            let e = CanonicalEntry::decode(bytes).unwrap();
            assert_eq!(e.seq, l.seq);
            for s in e.subjects {
                assert_eq!(s.prev_seq, last_of.insert(s.token, e.seq).unwrap_or(0));
            }
        }
        for size in [1, 2, 255, 256, 257, 511, 512, 513, 1000, 1024, n - 1, n] {
            assert_eq!(
                store.audit_root(size).unwrap(),
                reference.root_at(size).unwrap(),
                "root at {size}"
            );
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    store.audit_inclusion_proof(index, size).unwrap(),
                    reference.inclusion_proof(index, size).unwrap()
                );
            }
            for size1 in [1, size / 3 + 1, size] {
                assert_eq!(
                    store.audit_consistency_proof(size1, size).unwrap(),
                    reference.consistency_proof(size1, size).unwrap()
                );
            }
        }
        assert!(matches!(
            store.audit_root(n + 1),
            Err(StoreError::Proof(tlog::ProofError::SizeBeyondStore { .. }))
        ));
    }

    /// A note is stored with its entry, through the committer too; erasing
    /// it appends the erasure's entry and clears the sealed text, and leaves
    /// the entry, its leaf and the tree as they were.
    #[test]
    fn notes_are_stored_with_their_entry_and_erased_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let note = |c: &str| crate::audit::notes::SealedNote {
            commitment: c.repeat(64),
            sealed: vec![7; 40],
        };
        store
            .append_audit(&[entry(0, None), entry(1, None).with_note(note("a"))])
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        store.append_audit_queued(
            vec![entry(2, None).with_note(note("b"))],
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        );
        assert!(rx.recv().unwrap());
        assert_eq!(store.audit_note(1).unwrap(), None);
        let held = store.audit_note(2).unwrap().unwrap();
        assert_eq!(
            (held.commitment.as_str(), held.erased),
            (&*"a".repeat(64), None)
        );
        assert_eq!(held.sealed, Some(vec![7; 40]));
        assert_eq!(
            store.audit_note(3).unwrap().unwrap().commitment,
            "b".repeat(64)
        );

        let leaf = store.audit_leaves(1, 2, 1).unwrap();
        let root = store.audit_root(3).unwrap();
        assert_eq!(
            store.erase_audit_note(2, entry(9, None)).unwrap(),
            NoteErasure::Erased { erasure_seq: 4 }
        );
        let erased = store.audit_note(2).unwrap().unwrap();
        assert_eq!((erased.sealed, erased.erased), (None, Some((9, 4))));
        assert_eq!(store.audit_size().unwrap(), 4);
        assert_eq!(store.audit_leaves(1, 2, 1).unwrap(), leaf);
        assert_eq!(store.audit_root(3).unwrap(), root);
        // Nothing more is written for a second erasure, or for no note.
        assert_eq!(
            store.erase_audit_note(2, entry(10, None)).unwrap(),
            NoteErasure::AlreadyErased { erasure_seq: 4 }
        );
        assert_eq!(
            store.erase_audit_note(1, entry(11, None)).unwrap(),
            NoteErasure::NoNote
        );
        assert_eq!(store.audit_size().unwrap(), 4);
        assert!(store.audit_note(3).unwrap().unwrap().sealed.is_some());
    }

    /// Look-ups and pulls read records in snapshots kept open across calls:
    /// a batch committed after one is seen by the next read on every pooled
    /// connection, while audit-only commits leave the snapshots open.
    #[test]
    fn records_snapshots_see_every_committed_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let person = vec![7u8; 32];
        let commit = |batch: &str, version: i64| {
            let audit = |_: &crate::store::Receipt| entry(0, None);
            store
                .commit_batch(BatchWrite {
                    agency: "hrss",
                    batch_id: batch,
                    content_hash: [version as u8; 32],
                    records: vec![RecordWrite {
                        kind: "social_insurance",
                        key_hash: vec![1; 32],
                        person_index: Some(person.clone()),
                        enterprise: None,
                        changed_at: version,
                        cancel: false,
                        sealed: version.to_be_bytes().to_vec(),
                    }],
                    receipt: crate::store::Receipt {
                        rows_received: 1,
                        accepted: 1,
                        superseded: 0,
                        rejections: vec![],
                        ..Default::default()
                    },
                    audit: &audit,
                })
                .unwrap();
        };
        // The person's versions (a look-up's read), then the feed's (a pull's).
        let versions = || -> Vec<i64> {
            let mut v: Vec<i64> = store
                .records_for_person(&person)
                .unwrap()
                .iter()
                .map(|r| r.changed_at)
                .collect();
            v.extend(
                store
                    .read_feed(&["social_insurance"], 0, 10)
                    .unwrap()
                    .iter()
                    .map(|r| r.changed_at),
            );
            v
        };
        // Several connections, each left holding a snapshot.
        let read_on_many = || {
            std::thread::scope(|s| {
                let readers: Vec<_> = (0..MAX_READERS).map(|_| s.spawn(versions)).collect();
                readers
                    .into_iter()
                    .map(|r| r.join().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(versions(), Vec::<i64>::new());
        // (Read now: a plain read ends the snapshot of the reader it takes.)
        let size = store.audit_size().unwrap();
        let root = store.audit_root(size).unwrap();
        commit("b1", 100);
        assert!(read_on_many().iter().all(|v| v == &[100, 100]));
        let generation = store.inner.records_generation.load(Ordering::SeqCst);
        store.append_audit(&[entry(1, None)]).unwrap();
        assert_eq!(
            store.inner.records_generation.load(Ordering::SeqCst),
            generation,
            "an audit-only commit keeps records snapshots current"
        );
        store
            .save_checkpoint(&StoredCheckpoint {
                size,
                root,
                note: "test note".into(),
                signed_ms: 0,
            })
            .unwrap();
        assert_eq!(
            store.inner.records_generation.load(Ordering::SeqCst),
            generation,
            "saving a signed checkpoint keeps records snapshots current"
        );
        assert!(store.inner.snapshots_held.load(Ordering::SeqCst) > 0);
        commit("b2", 200);
        for v in read_on_many() {
            assert_eq!(v, [200, 200]);
        }
        // Every pooled connection, not only the one that read first.
        for _ in 0..MAX_READERS * 2 {
            assert_eq!(versions(), [200, 200]);
        }
    }

    /// A store written before `audit_leaves` existed (the last tile a shorter
    /// row) opens with the same tree and keeps appending to it.
    #[test]
    fn a_partial_tile_of_an_older_store_becomes_leaf_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut reference = tlog::MemoryTree::new();
        let append = |store: &SqliteStore, reference: &mut tlog::MemoryTree, from: u64, to: u64| {
            let entries: Vec<AuditEntry> = (from..to).map(|i| entry(i, None)).collect();
            store.append_audit(&entries).unwrap();
            for l in store.audit_leaves(from, to, usize::MAX).unwrap() {
                reference.append(l.leaf_hash);
            }
        };
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            append(&store, &mut reference, 0, 300);
        }
        // Rewrite the tail into the older layout.
        {
            let c = Connection::open(dir.path().join("gateway.db")).unwrap();
            let hashes: Vec<Vec<u8>> = c
                .prepare("SELECT hash FROM audit_leaves ORDER BY idx")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(hashes.len(), 300 - 256);
            c.execute(
                "INSERT INTO audit_tiles (idx, hashes) VALUES (256, ?1)",
                params![hashes.concat()],
            )
            .unwrap();
            c.execute("DELETE FROM audit_leaves", []).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.audit_size().unwrap(), 300);
        assert_eq!(
            store.audit_root(300).unwrap(),
            reference.root_at(300).unwrap()
        );
        append(&store, &mut reference, 300, 700);
        for size in [257, 300, 512, 513, 700] {
            assert_eq!(
                store.audit_root(size).unwrap(),
                reference.root_at(size).unwrap()
            );
            for index in [0, 256, size - 1] {
                assert_eq!(
                    store.audit_inclusion_proof(index, size).unwrap(),
                    reference.inclusion_proof(index, size).unwrap()
                );
            }
        }
    }

    /// Back-pointers and the subject index stay right across restarts, with
    /// entries appended directly and through the committer, whether or not
    /// the indexer had reached them before the store closed.
    #[test]
    fn subject_chains_survive_restarts_and_an_unindexed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let token = |i: u64| format!("{:032x}", i % 5);
        let mut n = 0u64;
        for round in 0..3 {
            let store = SqliteStore::open(dir.path()).unwrap();
            for _ in 0..4 {
                let entries: Vec<AuditEntry> = (n..n + 7)
                    .map(|i| entry(i, (i % 2 == 0).then(|| token(i))))
                    .collect();
                n += 7;
                if round == 1 {
                    let (tx, rx) = std::sync::mpsc::channel();
                    store.append_audit_queued(
                        entries,
                        Box::new(move |r| tx.send(r.is_ok()).unwrap()),
                    );
                    assert!(rx.recv().unwrap());
                } else {
                    store.append_audit(&entries).unwrap();
                }
            }
            // One text token (not a 32-hex pseudonym) too.
            store
                .append_audit(&[entry(n, Some("someone-else".into()))])
                .unwrap();
            n += 1;
            if round == 0 {
                // Indexed before closing; later rounds close with a tail.
                store.inner.catch_up_index().unwrap();
            }
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let leaves = store.audit_leaves(0, n, usize::MAX).unwrap();
        let mut expected: std::collections::HashMap<String, Vec<u64>> = Default::default();
        for l in &leaves {
            let e = CanonicalEntry::decode(l.entry.as_ref().unwrap()).unwrap();
            for s in e.subjects {
                let seqs = expected.entry(s.token).or_default();
                assert_eq!(s.prev_seq, seqs.last().copied().unwrap_or(0));
                seqs.push(e.seq);
            }
        }
        assert_eq!(expected.len(), 6);
        for (token, seqs) in &expected {
            let found: Vec<u64> = store
                .audit_subject_entries(token)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(&found, seqs, "{token}");
        }
        let filtered = store
            .query_audit(&AuditFilter {
                subject: Some(token(0)),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(filtered.len(), expected[&token(0)].len());
    }
}

#[cfg(test)]
mod reidentification_tests {
    use super::*;

    /// The hourly limit is a sliding window: a slot frees exactly an hour
    /// after it was taken, never all at once at a boundary, and consumers
    /// count apart; the count is in the database, so a reopened store keeps it.
    #[test]
    fn the_limit_slides_and_survives_reopening() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let t0 = 1_000_000_000_000;
        // Ten early in the hour, ten late in it.
        for i in 0..10 {
            assert_eq!(
                store.take_reidentification("a", t0 + i, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        for i in 0..10 {
            let at = t0 + HOUR - 1000 + i;
            assert_eq!(
                store.take_reidentification("a", at, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        assert_eq!(
            store.take_reidentification("b", t0 + 5, HOUR, 20).unwrap(),
            Ok(())
        );
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        // Full: the oldest frees one hour after it was taken.
        assert_eq!(
            store
                .take_reidentification("a", t0 + HOUR - 1, HOUR, 20)
                .unwrap(),
            Err(1)
        );
        // Past the hour boundary only the early ten are free, not twenty.
        let later = t0 + HOUR + 100;
        for _ in 0..10 {
            assert_eq!(
                store.take_reidentification("a", later, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        let wait = store.take_reidentification("a", later, HOUR, 20).unwrap();
        assert_eq!(wait, Err(t0 + 2 * HOUR - 1000 - later));
    }
}
