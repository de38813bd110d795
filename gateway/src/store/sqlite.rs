//! The embedded default store: SQLite (bundled, so nothing to install), in WAL
//! mode with `synchronous = FULL`, so a committed batch survives a crash or a
//! power cut. One writer connection serialises commits (one transaction per
//! batch, never per row); readers use their own connections and never block it.

use super::{
    AuditFilter, BatchWrite, CommitOutcome, RecordWrite, Store, StoreError, StoredAuditEntry,
    StoredBatch, StoredRecord,
};
use crate::audit::AuditEntry;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SCHEMA: &str = r#"
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
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_batch ON records (agency, batch_id);

CREATE TABLE IF NOT EXISTS audit (
    seq      INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    details  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, seq);
"#;

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `gateway.db` under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("gateway.db");
        let writer = Connection::open(&path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.busy_timeout(std::time::Duration::from_secs(30))?;
        writer.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.readers.lock().expect("reader pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(std::time::Duration::from_secs(30))?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool lock");
        if pool.len() < 8 {
            pool.push(conn);
        }
        result
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Accepted records per (agency, batch id); used by crash-recovery checks.
    pub fn records_of_batch(&self, agency: &str, batch_id: &str) -> Result<u64, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM records WHERE agency = ?1 AND batch_id = ?2",
                params![agency, batch_id],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }
}

fn insert_audit(tx: &Transaction<'_>, e: &AuditEntry) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit (at_ms, actor, action, outcome, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![e.at_ms, e.actor, e.action, e.outcome, e.details])?;
    Ok(())
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
    tx.prepare_cached(
        "INSERT INTO records (kind, key_hash, seq, person_index, changed_at, cancelled, agency, batch_id, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (kind, key_hash) DO UPDATE SET
           seq = excluded.seq, person_index = excluded.person_index, changed_at = excluded.changed_at,
           cancelled = excluded.cancelled, agency = excluded.agency, batch_id = excluded.batch_id,
           sealed = excluded.sealed",
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
        rec.sealed
    ])?;
    Ok(true)
}

impl Store for SqliteStore {
    fn find_batch(&self, agency: &str, batch_id: &str) -> Result<Option<StoredBatch>, StoreError> {
        self.read(|c| find_batch(c, agency, batch_id))
    }

    fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError> {
        self.write(|tx| {
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
            insert_audit(tx, &(batch.audit)(&receipt))?;
            Ok(CommitOutcome::Committed { receipt, head: seq })
        })
    }

    fn read_feed(
        &self,
        kinds: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|c| {
            // Kinds are a handful of known identifiers; bind them as parameters.
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE seq > ? AND kind IN ({marks}) ORDER BY seq LIMIT ?"
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

    fn records_for_person(&self, person_index: &[u8]) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE person_index = ?1 AND cancelled = 0 ORDER BY kind, changed_at",
            )?;
            let rows = stmt.query_map(params![person_index], row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(head)
    }

    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in entries {
                insert_audit(tx, e)?;
            }
            Ok(())
        })
    }

    fn query_audit(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at_ms, actor, action, outcome, details FROM audit
                 WHERE seq > ?1
                   AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms < ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR action = ?5)
                   AND (?6 IS NULL OR outcome = ?6)
                 ORDER BY seq LIMIT ?7",
            )?;
            let rows = stmt.query_map(
                params![
                    f.after_seq as i64,
                    f.from_ms,
                    f.to_ms,
                    f.actor,
                    f.action,
                    f.outcome,
                    f.limit.clamp(1, 1000) as i64
                ],
                |r| {
                    Ok(StoredAuditEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        entry: AuditEntry {
                            at_ms: r.get(1)?,
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            outcome: r.get(4)?,
                            details: r.get(5)?,
                        },
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
