//! Reading without blocking the writer: a pool of read-only connections, and
//! records snapshots kept open across calls so that their page caches stay
//! warm while the audit log commits beside them ([`Snapshot`]). Look-up rows
//! are also served from [`sealed_rows::SealedRows`] while no records were committed.

use super::Inner;
use super::schema::configure;
use super::sealed_rows;
use crate::store::StoreError;
use rusqlite::{Connection, params};
use std::sync::atomic::Ordering;

/// Read connections kept open; callers beyond this wait for one.
pub(super) const MAX_READERS: usize = 8;
/// Page cache of each read connection (KiB): the records' interior pages.
const READER_CACHE_KIB: i64 = 16 * 1024;
/// How long a records snapshot may stay open (it holds WAL frames back from
/// the checkpointer meanwhile).
pub(super) const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(1000);

#[derive(Default)]
pub(super) struct ReaderPool {
    pub(super) idle: Vec<Reader>,
    pub(super) open: usize,
}

/// A pooled read connection and, when it is kept open across calls, its
/// records snapshot.
pub(super) struct Reader {
    pub(super) conn: Connection,
    pub(super) snapshot: Option<Snapshot>,
}

/// A read transaction left open so that the connection's page cache stays
/// warm: SQLite empties a connection's cache whenever another connection has
/// committed since its last transaction, and the audit log commits about a
/// thousand times a second under load. Records change only through
/// [`Inner::write_records`] (which counts them in `records_generation`), so a
/// snapshot taken at generation `g` holds the current records for as long as
/// the generation stays `g`.
pub(super) struct Snapshot {
    pub(super) generation: u64,
    pub(super) began: std::time::Instant,
}

impl Inner {
    /// Runs `f` on a pooled read connection, waiting for one when
    /// [`MAX_READERS`] are busy (more would only contend for the same cores).
    /// `f` sees everything committed before the call.
    pub(super) fn read<T>(
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
    pub(super) fn read_records<T>(
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
    /// [`sealed_rows::SealedRows`] when it was read at the current records generation.
    pub(super) fn read_records_cached(
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
    pub(super) fn end_idle_snapshots(&self, age: Option<std::time::Duration>) {
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
    pub(super) fn end_snapshot(&self, r: &mut Reader) {
        if r.snapshot.take().is_some() {
            self.snapshots_held.fetch_sub(1, Ordering::SeqCst);
            if !r.conn.is_autocommit() {
                // A read transaction ends without writing: COMMIT cannot fail
                // here but for a broken connection, which its next use reports.
                let _ = r.conn.execute_batch("COMMIT");
            }
        }
    }

    pub(super) fn with_reader<T>(
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

    pub(super) fn open_reader(&self) -> Result<Connection, StoreError> {
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
    pub(super) fn read_with_index<T>(
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
}
