//! The embedded default store: SQLite (bundled, so nothing to install), in WAL
//! mode with `synchronous = FULL`, so a committed batch survives a crash or a
//! power cut. One writer connection serialises commits (one transaction per
//! batch, never per row); readers use their own connections and never block it.

use super::{
    AuditFilter, AuditLeaf, BatchWrite, CommitOutcome, RecordWrite, Store, StoreError,
    StoredAuditEntry, StoredBatch, StoredCheckpoint, StoredRecord,
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
    enterprise    TEXT,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_enterprise ON records (enterprise, kind) WHERE enterprise IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_batch ON records (agency, batch_id);

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
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action, seq);
-- Which entries name which person (auditor-domain pseudonym).
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject  TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
-- Every complete subtree hash of the Merkle tree: (0, i) is leaf i.
CREATE TABLE IF NOT EXISTS audit_nodes (
    level    INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    hash     BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_ms INTEGER NOT NULL
);
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

/// The audit tree as stored in `audit_nodes`, read through one connection.
struct SqlTree<'c> {
    conn: &'c Connection,
    size: u64,
}

impl<'c> SqlTree<'c> {
    fn open(conn: &'c Connection) -> Result<SqlTree<'c>, StoreError> {
        let max: Option<i64> = conn
            .prepare_cached("SELECT MAX(idx) FROM audit_nodes WHERE level = 0")?
            .query_row([], |r| r.get(0))?;
        Ok(SqlTree {
            conn,
            size: max.map(|m| m as u64 + 1).unwrap_or(0),
        })
    }
}

impl tlog::HashStore for SqlTree<'_> {
    fn leaf_count(&self) -> u64 {
        self.size
    }
    fn node(&self, level: u8, index: u64) -> Option<tlog::Hash> {
        let hash: Vec<u8> = self
            .conn
            .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")
            .ok()?
            .query_row(params![level, index as i64], |r| r.get(0))
            .optional()
            .ok()??;
        hash.try_into().ok()
    }
}

/// Appends entries as leaves, with their subject back-pointers and the new
/// complete-subtree nodes, inside the caller's transaction.
fn insert_audit(tx: &Transaction<'_>, entries: &[AuditEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let tree = SqlTree::open(tx)?;
    let size = tree.size;
    let mut latest: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut leaves = Vec::with_capacity(entries.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, at_ms, actor, action, outcome, kinds, entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut prev_of =
            tx.prepare_cached("SELECT MAX(seq) FROM audit_subjects WHERE subject = ?1")?;
        let mut insert_subject =
            tx.prepare_cached("INSERT INTO audit_subjects (subject, seq) VALUES (?1, ?2)")?;
        for (i, e) in entries.iter().enumerate() {
            let seq = size + 1 + i as u64;
            let mut tokens: Vec<&String> = e.subjects.iter().collect();
            tokens.sort();
            tokens.dedup();
            let mut subjects = Vec::with_capacity(tokens.len());
            for token in tokens {
                let prev = match latest.get(token.as_str()) {
                    Some(&p) => p,
                    None => prev_of
                        .query_row(params![token], |r| r.get::<_, Option<i64>>(0))?
                        .map(|p| p as u64)
                        .unwrap_or(0),
                };
                subjects.push(crate::audit::SubjectRef {
                    token: token.clone(),
                    prev_seq: prev,
                });
                latest.insert(token.clone(), seq);
                insert_subject.execute(params![token, seq as i64])?;
            }
            let bytes = e
                .canonical(seq, subjects)
                .encode()
                .map_err(|err| StoreError::Backend(format!("audit entry encoding: {err}")))?;
            leaves.push(tlog::leaf_hash(&bytes));
            let mut kinds = e.kinds.clone();
            kinds.sort();
            kinds.dedup();
            let kinds = if kinds.is_empty() {
                String::new()
            } else {
                format!(",{},", kinds.join(","))
            };
            insert.execute(params![
                seq as i64, e.at_ms, e.actor, e.action, e.outcome, kinds, bytes
            ])?;
        }
    }
    let nodes = tlog::appended_nodes(&tree, &leaves)?;
    let mut insert_node =
        tx.prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for n in nodes {
        insert_node.execute(params![n.level, n.index as i64, &n.hash[..]])?;
    }
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
            insert_audit(tx, &[(batch.audit)(&receipt)])?;
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

    fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[&str],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|c| {
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE enterprise = ? AND kind IN ({marks}) AND cancelled = 0 ORDER BY kind, changed_at"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![credit_code.to_string().into()];
            args.extend(kinds.iter().map(|k| rusqlite::types::Value::from(k.to_string())));
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
        self.write(|tx| insert_audit(tx, entries))
    }

    fn query_audit(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, entry FROM audit_log
                 WHERE seq > ?1
                   AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms < ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR action = ?5)
                   AND (?6 IS NULL OR outcome = ?6)
                   AND (?7 IS NULL OR instr(kinds, ',' || ?7 || ',') > 0)
                   AND (?8 IS NULL OR seq IN (SELECT seq FROM audit_subjects WHERE subject = ?8))
                 ORDER BY seq LIMIT ?9",
            )?;
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
        })
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
            let mut stmt = c.prepare_cached(
                "SELECT n.idx, n.hash, a.entry FROM audit_nodes n
                 LEFT JOIN audit_log a ON a.seq = n.idx + 1
                 WHERE n.level = 0 AND n.idx >= ?1 AND n.idx < ?2
                 ORDER BY n.idx LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![from as i64, to as i64, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (idx, hash, entry) = row?;
                out.push(AuditLeaf {
                    seq: idx as u64 + 1,
                    leaf_hash: hash
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("audit leaf hash".into()))?,
                    entry,
                });
            }
            Ok(out)
        })
    }

    fn audit_subject_entries(&self, subject: &str) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.seq, a.entry FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq
                 WHERE s.subject = ?1 ORDER BY s.seq",
            )?;
            let rows = stmt.query_map(params![subject], row_to_audit)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit_checkpoints (size, root, note, signed_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (size) DO NOTHING",
                params![cp.size as i64, &cp.root[..], cp.note, cp.signed_ms],
            )?;
            Ok(())
        })
    }
}
