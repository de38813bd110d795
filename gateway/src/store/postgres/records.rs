//! Records and batches: committing a batch (its rows, receipt and audit entry
//! in one transaction, under the `feed_head` lock), the change feed, look-ups
//! by person and enterprise, earlier versions, and re-indexing under a new
//! key. A batch's rows are applied in a handful of set-based statements (the
//! versions held are read once, the batch's order decided here), so a batch
//! costs the same few round trips whatever its size.

use super::Inner;
use super::audit_log::insert_audit;
use super::db::{Db, get, in_order, pos, wait};
use super::meta::set_meta;
use super::readers::{Read, Readers};
use crate::store::{
    BatchWrite, CommitOutcome, ReindexedRecord, Rows, StoreError, StoredBatch, StoredRecord,
};
use adapters::RecordKind;
use deadpool_postgres::GenericClient;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const RECORD_COLUMNS: &str = "seq, kind, key_hash, changed_at, cancelled, sealed";

/// Parts a page of the feed is read in at once ([`Inner::read_feed`]).
const FEED_PARTS: usize = 4;

/// Feed rows in a stretch of positions, the next `$4` at most, with the
/// sealed record only for the kinds asked for (`$3`). The kinds are not a
/// condition of the query: as one, the planner may intersect the positions'
/// index with the whole primary key (whose first column is the kind),
/// which for a stretch costs a walk of every key; here it walks the
/// positions only, and rows of other kinds cost their few small columns.
const FEED_STRETCH: &str = "SELECT seq, kind, key_hash, changed_at, cancelled,
            CASE WHEN kind = ANY($3) THEN sealed END
     FROM records WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $4";

/// A person's current records (look-ups), by keyed index.
pub(super) static PERSON_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE person_index = $1 AND NOT cancelled
         ORDER BY kind COLLATE \"C\", changed_at"
    )
});

/// An enterprise's current records of some kinds (look-ups).
pub(super) static ENTERPRISE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE enterprise = $1 AND kind = ANY($2) AND NOT cancelled
         ORDER BY kind COLLATE \"C\", changed_at"
    )
});

/// [`Inner::records_for_person`], awaited on the caller's runtime.
pub(super) async fn records_for_person_async(
    readers: Arc<Readers>,
    person_index: Vec<u8>,
) -> Result<Rows, StoreError> {
    Ok(records(&readers.query(Read::Person, &[&person_index]).await?)?.into())
}

/// [`Inner::records_for_enterprise`], awaited on the caller's runtime.
pub(super) async fn records_for_enterprise_async(
    readers: Arc<Readers>,
    credit_code: String,
    kinds: Vec<RecordKind>,
) -> Result<Rows, StoreError> {
    let kinds = kind_ids(&kinds);
    Ok(records(
        &readers
            .query(Read::Enterprise, &[&credit_code, &kinds])
            .await?,
    )?
    .into())
}

pub(super) fn find_batch<C: GenericClient>(
    db: &Db<'_, C>,
    agency: &str,
    batch_id: &str,
) -> Result<Option<StoredBatch>, StoreError> {
    let Some(row) = db.query_opt(
        "SELECT content_hash, receipt FROM batches WHERE agency = $1 AND batch_id = $2",
        &[&agency, &batch_id],
    )?
    else {
        return Ok(None);
    };
    let hash: Vec<u8> = get(&row, 0)?;
    let receipt: String = get(&row, 1)?;
    Ok(Some(StoredBatch {
        content_hash: hash
            .try_into()
            .map_err(|_| StoreError::corrupt("batch content hash"))?,
        receipt: serde_json::from_str(&receipt)
            .map_err(|e| StoreError::corrupt(format!("batch receipt: {e}")))?,
    }))
}

pub(super) fn row_to_record(r: &tokio_postgres::Row) -> Result<StoredRecord, StoreError> {
    let kind: &str = get(r, 1)?;
    Ok(StoredRecord {
        seq: get::<i64>(r, 0)? as u64,
        kind: RecordKind::from_id(kind)
            .ok_or_else(|| StoreError::corrupt(format!("not a record kind: {kind:?}")))?,
        key_hash: get(r, 2)?,
        changed_at: get(r, 3)?,
        cancelled: get(r, 4)?,
        sealed: get(r, 5)?,
    })
}

fn records(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredRecord>, StoreError> {
    rows.iter().map(row_to_record).collect()
}

fn kind_ids(kinds: &[RecordKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.id()).collect()
}

/// Where a record's latest version is, while a batch is applied.
#[derive(Clone, Copy)]
enum Held {
    /// In the database.
    Stored,
    /// Row `index` of this batch, at `seq`.
    Batch { index: usize, seq: i64 },
}

impl Inner {
    pub(super) fn find_batch(
        &self,
        agency: &str,
        batch_id: &str,
    ) -> Result<Option<StoredBatch>, StoreError> {
        self.read(|db| find_batch(db, agency, batch_id))
    }

    pub(super) fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError> {
        self.write(|db, staged| {
            // Positions are handed out under this lock, held until commit:
            // the batch that takes it next sees this one committed.
            let row = db.query_one("SELECT seq FROM feed_head WHERE id = 0 FOR UPDATE", &[])?;
            let head: i64 = get(&row, 0)?;
            // Read after the lock: a concurrent commit of the same batch id
            // (through any replica) has committed or rolled back by now.
            if let Some(done) = find_batch(db, batch.agency, batch.batch_id)? {
                return Ok(CommitOutcome::AlreadyCommitted(done));
            }
            let recs = &batch.records;
            let keys: HashSet<(&str, &[u8])> = recs
                .iter()
                .map(|r| (r.kind.id(), r.key_hash.as_slice()))
                .collect();
            let (key_kinds, key_hashes): (Vec<&str>, Vec<&[u8]>) = keys.iter().copied().unzip();
            let mut held: HashMap<(&str, &[u8]), (Held, i64)> = HashMap::new();
            let stored = db.query(
                "SELECT r.kind, r.key_hash, r.changed_at FROM records r
                 JOIN unnest($1::text[], $2::bytea[]) AS k(kind, key_hash)
                   ON r.kind = k.kind AND r.key_hash = k.key_hash",
                &[&key_kinds, &key_hashes],
            )?;
            for r in &stored {
                let (kind, hash): (&str, &[u8]) = (get(r, 0)?, get(r, 1)?);
                let changed: i64 = get(r, 2)?;
                // Keyed by the batch's own copy of the key.
                if let Some(&key) = keys.get(&(kind, hash)) {
                    held.insert(key, (Held::Stored, changed));
                }
            }
            // The batch in its order: each row applied gets the next seq, a
            // row older than the version held is superseded.
            let mut receipt = batch.receipt.clone();
            let mut seq = head;
            let mut replaced_stored: Vec<(&str, &[u8])> = Vec::new();
            let mut earlier_in_batch: Vec<(usize, i64)> = Vec::new();
            for (index, rec) in recs.iter().enumerate() {
                let key = (rec.kind.id(), rec.key_hash.as_slice());
                match held.get(&key).copied() {
                    Some((_, changed)) if rec.changed_at < changed => {
                        receipt.superseded += 1;
                        continue;
                    }
                    Some((Held::Stored, _)) => replaced_stored.push(key),
                    Some((Held::Batch { index, seq }, _)) => earlier_in_batch.push((index, seq)),
                    None => {}
                }
                seq += 1;
                held.insert(key, (Held::Batch { index, seq }, rec.changed_at));
            }
            // The versions replaced become earlier versions: those stored
            // (copied before they are overwritten), and this batch's own.
            if !replaced_stored.is_empty() {
                let (kinds, hashes): (Vec<&str>, Vec<&[u8]>) = replaced_stored.into_iter().unzip();
                db.execute(
                    "INSERT INTO record_versions (kind, key_hash, seq, changed_at, cancelled, sealed)
                     SELECT r.kind, r.key_hash, r.seq, r.changed_at, r.cancelled, r.sealed
                     FROM records r JOIN unnest($1::text[], $2::bytea[]) AS k(kind, key_hash)
                       ON r.kind = k.kind AND r.key_hash = k.key_hash
                     ON CONFLICT DO NOTHING",
                    &[&kinds, &hashes],
                )?;
            }
            if !earlier_in_batch.is_empty() {
                let rows: Vec<(&crate::store::RecordWrite, i64)> = earlier_in_batch
                    .iter()
                    .map(|(i, s)| (&recs[*i], *s))
                    .collect();
                db.execute(
                    "INSERT INTO record_versions (kind, key_hash, seq, changed_at, cancelled, sealed)
                     SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[],
                                          $5::boolean[], $6::bytea[])
                     ON CONFLICT DO NOTHING",
                    &[
                        &rows.iter().map(|(r, _)| r.kind.id()).collect::<Vec<_>>(),
                        &rows.iter().map(|(r, _)| r.key_hash.as_slice()).collect::<Vec<_>>(),
                        &rows.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
                        &rows.iter().map(|(r, _)| r.changed_at).collect::<Vec<_>>(),
                        &rows.iter().map(|(r, _)| r.cancel).collect::<Vec<_>>(),
                        &rows.iter().map(|(r, _)| r.sealed.as_slice()).collect::<Vec<_>>(),
                    ],
                )?;
            }
            // Each record's latest version of this batch becomes its row,
            // written in feed order: new rows then lie in the table in the
            // order a pull reads them (a page of the feed is a few table
            // pages, not a table page per row).
            let mut latest: Vec<(&crate::store::RecordWrite, i64)> = held
                .values()
                .filter_map(|(h, _)| match h {
                    Held::Batch { index, seq } => Some((&recs[*index], *seq)),
                    Held::Stored => None,
                })
                .collect();
            latest.sort_unstable_by_key(|(_, seq)| *seq);
            if !latest.is_empty() {
                db.execute(
                    "INSERT INTO records (kind, key_hash, seq, person_index, changed_at, cancelled,
                                          agency, batch_id, sealed, enterprise)
                     SELECT k, h, s, p, c, x, $7, $8, d, e
                     FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bigint[],
                                 $6::boolean[], $9::bytea[], $10::text[])
                          AS u(k, h, s, p, c, x, d, e)
                     ON CONFLICT (kind, key_hash) DO UPDATE SET
                       seq = excluded.seq, person_index = excluded.person_index,
                       changed_at = excluded.changed_at, cancelled = excluded.cancelled,
                       agency = excluded.agency, batch_id = excluded.batch_id,
                       sealed = excluded.sealed, enterprise = excluded.enterprise",
                    &[
                        &latest.iter().map(|(r, _)| r.kind.id()).collect::<Vec<_>>(),
                        &latest.iter().map(|(r, _)| r.key_hash.as_slice()).collect::<Vec<_>>(),
                        &latest.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
                        &latest
                            .iter()
                            .map(|(r, _)| r.person_index.as_deref())
                            .collect::<Vec<_>>(),
                        &latest.iter().map(|(r, _)| r.changed_at).collect::<Vec<_>>(),
                        &latest.iter().map(|(r, _)| r.cancel).collect::<Vec<_>>(),
                        &batch.agency,
                        &batch.batch_id,
                        &latest.iter().map(|(r, _)| r.sealed.as_slice()).collect::<Vec<_>>(),
                        &latest
                            .iter()
                            .map(|(r, _)| r.enterprise.as_deref())
                            .collect::<Vec<_>>(),
                    ],
                )?;
            }
            let receipt_json = serde_json::to_string(&receipt).map_err(StoreError::backend)?;
            db.execute(
                "INSERT INTO batches (agency, batch_id, content_hash, receipt, committed_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &batch.agency,
                    &batch.batch_id,
                    &&batch.content_hash[..],
                    &receipt_json,
                    &crate::audit::now_ms(),
                ],
            )?;
            insert_audit(db, staged, &[(batch.audit)(&receipt)])?;
            db.execute("UPDATE feed_head SET seq = $1 WHERE id = 0", &[&seq])?;
            Ok(CommitOutcome::Committed {
                receipt,
                head: seq as u64,
            })
        })
    }

    /// A page of the feed, read in [`FEED_PARTS`] parts at once, each on
    /// a connection (a server process) of its own where the pool has them
    /// free: the page's first
    /// `FEED_PARTS - 1` stretches of positions, and after them the next rows
    /// whatever their positions. A page read whole is one server process
    /// walking thousands of rows while the others idle; a feed position
    /// holds at most one record, so a stretch never holds more than its
    /// share. Sparse stretches (other kinds, superseded rows) make a short
    /// round, and the next round goes on from the last row read.
    ///
    /// The parts read at slightly different moments, so they are bounded by
    /// the feed head read first: every position up to it has committed
    /// (positions become visible in order), so every part sees all of its
    /// stretch, and a commit that lands meanwhile is left for the next page
    /// whole. Without the bound, a later part could see rows an earlier part
    /// missed, and the cursor would skip those.
    pub(super) fn read_feed(
        &self,
        kinds: &[RecordKind],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let kinds = kind_ids(kinds);
        let share = (limit / FEED_PARTS).max(1) as i64;
        let mut page: Vec<StoredRecord> = Vec::with_capacity(limit.min(1 << 16));
        let head = pos(self.feed_head()?);
        let mut from = pos(after);
        while page.len() < limit && from < head {
            // One connection, and as many more as are free (parts beyond
            // them share one: still one round trip, one process for both).
            let mut clients = vec![self.client()?];
            clients.extend((1..FEED_PARTS).map_while(|_| self.spare_client()));
            let bounds: Vec<(i64, i64)> = (0..FEED_PARTS as i64)
                .map(|i| {
                    let start = from.saturating_add(i * share).min(head);
                    (start, start.saturating_add(share).min(head))
                })
                .collect();
            let parts = wait(in_order(
                bounds
                    .iter()
                    .enumerate()
                    .map(|(i, (start, end))| {
                        let client = &clients[i % clients.len()];
                        // The last part reads on to the head.
                        let end = if i + 1 == FEED_PARTS { &head } else { end };
                        let kinds = &kinds;
                        async move {
                            let stmt = client.prepare_cached(FEED_STRETCH).await?;
                            let rows = client.query(&stmt, &[start, end, kinds, &share]).await?;
                            Ok::<_, StoreError>(rows)
                        }
                    })
                    .collect(),
            ));
            drop(clients);
            let mut tail_full = false;
            let mut read_to = from;
            for (i, part) in parts.into_iter().enumerate() {
                let rows = part?;
                if i + 1 == FEED_PARTS {
                    tail_full = rows.len() as i64 >= share;
                }
                for r in &rows {
                    if page.len() == limit {
                        break;
                    }
                    read_to = get(r, 0)?;
                    if get::<Option<&[u8]>>(r, 5)?.is_some() {
                        page.push(row_to_record(r)?);
                    }
                }
            }
            // The tail read fewer rows than it could: the feed ends there.
            if !tail_full {
                break;
            }
            from = read_to;
        }
        Ok(page)
    }

    pub(super) fn records_for_person(&self, person_index: &[u8]) -> Result<Rows, StoreError> {
        self.read(|db| Ok(records(&db.query(&PERSON_SQL, &[&person_index])?)?.into()))
    }

    pub(super) fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[RecordKind],
    ) -> Result<Rows, StoreError> {
        self.read(|db| {
            Ok(records(&db.query(&ENTERPRISE_SQL, &[&credit_code, &kind_ids(kinds)])?)?.into())
        })
    }

    pub(super) fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(|db| {
            let row = db.query_one("SELECT seq FROM feed_head WHERE id = 0", &[])?;
            Ok(get::<i64>(&row, 0)? as u64)
        })
    }

    pub(super) fn record_versions(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.read(|db| {
            records(&db.query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM record_versions
                     WHERE kind = $1 AND key_hash = $2 ORDER BY seq"
                ),
                &[&kind.id(), &key_hash],
            )?)
        })
    }

    pub(super) fn record_version_at(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
        seq: u64,
    ) -> Result<Option<StoredRecord>, StoreError> {
        self.read(|db| {
            // The current row if it is old enough, else the latest earlier
            // version that is, in one statement (one snapshot).
            db.query_opt(
                &format!(
                    "(SELECT {RECORD_COLUMNS}, 1 AS current FROM records
                      WHERE kind = $1 AND key_hash = $2 AND seq <= $3)
                     UNION ALL
                     (SELECT {RECORD_COLUMNS}, 0 FROM record_versions
                      WHERE kind = $1 AND key_hash = $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1)
                     ORDER BY current DESC LIMIT 1"
                ),
                &[&kind.id(), &key_hash, &pos(seq)],
            )?
            .map(|r| row_to_record(&r))
            .transpose()
        })
    }

    pub(super) fn reindex_records(
        &self,
        rows: &[ReindexedRecord],
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError> {
        self.write(|db, _| {
            // Records change only under the feed lock.
            db.query_one("SELECT seq FROM feed_head WHERE id = 0 FOR UPDATE", &[])?;
            let version = |seq: i64| -> Result<Option<(i64, i64)>, StoreError> {
                db.query_opt("SELECT changed_at FROM records WHERE seq = $1", &[&seq])?
                    .map(|r| Ok((get::<i64>(&r, 0)?, seq)))
                    .transpose()
            };
            let mut merged = 0;
            for row in rows {
                let this = row.seq as i64;
                let Some(mine) = version(this)? else {
                    // Merged away earlier in this transaction.
                    continue;
                };
                let holder = db.query_opt(
                    "SELECT seq FROM records WHERE kind = $1 AND key_hash = $2 AND seq != $3",
                    &[&row.kind.id(), &row.key_hash, &this],
                )?;
                if let Some(holder) = holder {
                    // The same record pushed again under the new key while
                    // this row could not be found: the newer version stays.
                    merged += 1;
                    let holder: i64 = get(&holder, 0)?;
                    let theirs = version(holder)?.unwrap_or((i64::MIN, 0));
                    let (loser, keep_this) = if theirs > mine {
                        (this, false)
                    } else {
                        (holder, true)
                    };
                    db.execute("DELETE FROM records WHERE seq = $1", &[&loser])?;
                    if !keep_this {
                        continue;
                    }
                }
                // The record's earlier versions move with it, sealed again.
                let old = db.query_one("SELECT key_hash FROM records WHERE seq = $1", &[&this])?;
                let old_hash: Vec<u8> = get(&old, 0)?;
                for (seq, sealed) in &row.versions {
                    db.execute(
                        "UPDATE record_versions SET key_hash = $1, sealed = $2
                         WHERE kind = $3 AND key_hash = $4 AND seq = $5",
                        &[&row.key_hash, sealed, &row.kind.id(), &old_hash, &(*seq as i64)],
                    )?;
                }
                db.execute(
                    "UPDATE records SET key_hash = $1, person_index = $2, sealed = $3 WHERE seq = $4",
                    &[&row.key_hash, &row.person_index, &row.sealed, &this],
                )?;
            }
            set_meta(db, meta)?;
            Ok(merged)
        })
    }
}
