//! Records and batches: committing a batch (its rows, receipt and audit entry
//! in one transaction), the change feed, look-ups by person and enterprise,
//! earlier versions, and re-indexing under a new key.

use super::Inner;
use super::audit_log::insert_audit;
use super::meta::set_meta;
use super::sealed_rows;
use crate::store::{
    BatchWrite, CommitOutcome, RecordWrite, ReindexedRecord, StoreError, StoredBatch, StoredRecord,
};
use adapters::RecordKind;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub(super) fn find_batch(
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
                .map_err(|_| StoreError::corrupt("batch content hash"))?,
            receipt: serde_json::from_str(&receipt)
                .map_err(|e| StoreError::corrupt(format!("batch receipt: {e}")))?,
        })
    })
    .transpose()
}

pub(super) fn head(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM records", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// A row's version, (changed_at, seq), if the row exists.
pub(super) fn record_version(
    tx: &Transaction<'_>,
    seq: u64,
) -> Result<Option<(i64, u64)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT changed_at FROM records WHERE seq = ?1")?
        .query_row(params![seq as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|changed_at| (changed_at, seq)))
}

/// The record kind in column `idx` (its identifier, as `RecordKind::id`
/// wrote it); any other text is damage.
fn kind_at(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<RecordKind> {
    let unreadable = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e)
    };
    let id = r.get_ref(idx)?.as_str().map_err(|e| unreadable(e.into()))?;
    RecordKind::from_id(id).ok_or_else(|| unreadable("not a record kind".into()))
}

pub(super) fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        seq: r.get::<_, i64>(0)? as u64,
        kind: kind_at(r, 1)?,
        key_hash: r.get(2)?,
        changed_at: r.get(3)?,
        cancelled: r.get::<_, i64>(4)? != 0,
        sealed: r.get(5)?,
    })
}

/// Applies one record inside the batch transaction. Returns false when the row is
/// older than the version already held (it is then superseded, not applied).
pub(super) fn apply_record(
    tx: &Transaction<'_>,
    agency: &str,
    batch_id: &str,
    rec: &RecordWrite,
    seq: u64,
) -> Result<bool, StoreError> {
    let held: Option<i64> = tx
        .prepare_cached("SELECT changed_at FROM records WHERE kind = ?1 AND key_hash = ?2")?
        .query_row(params![rec.kind.id(), rec.key_hash], |r| r.get(0))
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
        .execute(params![rec.kind.id(), rec.key_hash])?;
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
        rec.kind.id(),
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

impl Inner {
    pub(super) fn find_batch(
        &self,
        agency: &str,
        batch_id: &str,
    ) -> Result<Option<StoredBatch>, StoreError> {
        self.read(|c| find_batch(c, agency, batch_id))
    }

    pub(super) fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError> {
        self.write_records(|tx, heads| {
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
                .map_err(StoreError::backend)?;
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

    pub(super) fn read_feed(
        &self,
        kinds: &[RecordKind],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        // In a records snapshot, as look-ups read: a plain read would start a
        // new transaction per page, and after the audit commit of the page
        // before, SQLite empties the connection's page cache at its start
        // (≈ 5 % of a pull's CPU went to allocating those pages again).
        self.read_records(|c| {
            // Kinds are a handful of known identifiers; bind them as parameters.
            let marks = vec!["?"; kinds.len()].join(",");
            // `+kind` keeps the planner on the seq index (range + order) instead of
            // the primary key on kind, which would scan and sort the feed per page.
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE seq > ? AND +kind IN ({marks}) ORDER BY seq LIMIT ?"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![super::after_position(after).into()];
            args.extend(
                kinds
                    .iter()
                    .map(|k| rusqlite::types::Value::from(k.id().to_string())),
            );
            args.push((limit as i64).into());
            let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub(super) fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[RecordKind],
    ) -> Result<sealed_rows::Rows, StoreError> {
        let query = sealed_rows::Query::enterprise(credit_code, kinds);
        self.read_records_cached(query, |c| {
            let marks = vec!["?"; kinds.len()].join(",");
            let sql = format!(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE enterprise = ? AND kind IN ({marks}) AND cancelled = 0 ORDER BY kind, changed_at"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![credit_code.to_string().into()];
            args.extend(
                kinds
                    .iter()
                    .map(|k| rusqlite::types::Value::from(k.id().to_string())),
            );
            let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn records_for_person(
        &self,
        person_index: &[u8],
    ) -> Result<sealed_rows::Rows, StoreError> {
        let query = sealed_rows::Query::Person(person_index.to_vec());
        self.read_records_cached(query, |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                 WHERE person_index = ?1 AND cancelled = 0 ORDER BY kind, changed_at",
            )?;
            let rows = stmt.query_map(params![person_index], row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(head)
    }

    pub(super) fn record_versions(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM record_versions
                 WHERE kind = ?1 AND key_hash = ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![kind.id(), key_hash], row_to_record)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub(super) fn record_version_at(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
        seq: u64,
    ) -> Result<Option<StoredRecord>, StoreError> {
        self.read_records(|c| {
            let seq = seq.min(i64::MAX as u64) as i64;
            let current = c
                .prepare_cached(
                    "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM records
                     WHERE kind = ?1 AND key_hash = ?2 AND seq <= ?3",
                )?
                .query_row(params![kind.id(), key_hash, seq], row_to_record)
                .optional()?;
            if current.is_some() {
                return Ok(current);
            }
            Ok(c.prepare_cached(
                "SELECT seq, kind, key_hash, changed_at, cancelled, sealed FROM record_versions
                 WHERE kind = ?1 AND key_hash = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![kind.id(), key_hash, seq], row_to_record)
            .optional()?)
        })
    }

    pub(super) fn reindex_records(
        &self,
        rows: &[ReindexedRecord],
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError> {
        self.write_records(|tx, _| {
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
                    .query_row(params![row.kind.id(), row.key_hash, row.seq as i64], |r| {
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
                    .execute(params![row.key_hash, sealed, row.kind.id(), old_hash, *seq as i64])?;
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
}
