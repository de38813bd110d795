//! A PostgreSQL database as the destination of a move from another backend
//! (`gateway store copy`). Everything is written in ONE transaction: a copy
//! that fails half-way (the source damaged, the connection lost, the check
//! below failing) leaves the database empty, so the operator simply runs it
//! again, and no replica can ever start on half a store. The transaction
//! holds both head rows locked, so a replica started too early waits
//! instead of appending to a log being copied. Rows arrive in chunks and
//! are written chunk by chunk (one set-based statement each), so the copy's
//! memory does not grow with the store.
//!
//! Before committing, the destination's own audit tree (read back through
//! the shared `store::audit_tree` code) must have the source's size and
//! root, and the root of every copied checkpoint: the same leaves in the
//! same order, so proofs against checkpoints signed before the move verify.

use super::PgStore;
use super::db::{Isolation, Tx, get, text};
use crate::store::StoreError;
use crate::store::dump::{DumpChunk, DumpHeads, DumpSink, DumpSummary};

/// Tables that must all be empty for a copy to start.
const STORE_TABLES: [&str; 8] = [
    "meta",
    "batches",
    "records",
    "record_versions",
    "reidentifications",
    "audit_log",
    "audit_tiles",
    "audit_leaves",
];

impl PgStore {
    /// Fills this (empty) database from `source`, which streams a whole
    /// store's chunks into the sink it is given, and checks the audit tree
    /// before committing. Refuses a database that holds anything already.
    pub fn import(
        &self,
        source: impl FnOnce(&mut DumpSink<'_>) -> Result<(), StoreError>,
    ) -> Result<DumpSummary, StoreError> {
        self.inner.transaction(Isolation::Write, |db| {
            db.execute("SELECT seq FROM feed_head WHERE id = 0 FOR UPDATE", &[])?;
            db.execute("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[])?;
            for table in STORE_TABLES {
                let row = db.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?;
                if get::<bool>(&row, 0)? {
                    return Err(StoreError::conflict(format!(
                        "the destination database holds a store already (its table {table} \
                         has rows): copy only into a new, empty database"
                    )));
                }
            }
            let mut summary = DumpSummary::default();
            let mut heads = None;
            source(&mut |chunk| {
                write_chunk(db, &chunk, &mut summary)?;
                if let DumpChunk::Heads(h) = chunk {
                    heads = Some(h);
                }
                Ok(())
            })?;
            let heads = heads.ok_or_else(|| StoreError::corrupt("the source sent no heads"))?;
            finish(db, &heads, &mut summary)?;
            Ok(summary)
        })
    }
}

fn write_chunk(
    db: &Tx<'_>,
    chunk: &DumpChunk,
    summary: &mut DumpSummary,
) -> Result<(), StoreError> {
    let n = chunk.rows() as u64;
    match chunk {
        DumpChunk::Heads(_) => {}
        DumpChunk::Meta(rows) => {
            let (k, v): (Vec<_>, Vec<_>) = rows.iter().map(|(k, v)| (k, v)).unzip();
            db.execute(
                "INSERT INTO meta (k, v) SELECT * FROM unnest($1::text[], $2::text[])",
                &[&k, &v],
            )?;
            summary.meta += n;
        }
        DumpChunk::Batches(rows) => {
            let agency: Vec<_> = rows.iter().map(|r| &r.agency).collect();
            let id: Vec<_> = rows.iter().map(|r| &r.batch_id).collect();
            let hash: Vec<_> = rows.iter().map(|r| &r.content_hash).collect();
            let receipt: Vec<_> = rows.iter().map(|r| &r.receipt).collect();
            let at: Vec<_> = rows.iter().map(|r| r.committed_ms).collect();
            db.execute(
                "INSERT INTO batches (agency, batch_id, content_hash, receipt, committed_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[],
                                      $5::bigint[])",
                &[&agency, &id, &hash, &receipt, &at],
            )?;
            summary.batches += n;
        }
        DumpChunk::Records(rows) => {
            let kind: Vec<_> = rows.iter().map(|r| &r.kind).collect();
            let key: Vec<_> = rows.iter().map(|r| &r.key_hash).collect();
            let seq: Vec<_> = rows.iter().map(|r| r.seq).collect();
            let person: Vec<_> = rows.iter().map(|r| r.person_index.as_ref()).collect();
            let enterprise: Vec<_> = rows.iter().map(|r| r.enterprise.as_ref()).collect();
            let changed: Vec<_> = rows.iter().map(|r| r.changed_at).collect();
            let cancelled: Vec<_> = rows.iter().map(|r| r.cancelled).collect();
            let agency: Vec<_> = rows.iter().map(|r| &r.agency).collect();
            let batch: Vec<_> = rows.iter().map(|r| &r.batch_id).collect();
            let sealed: Vec<_> = rows.iter().map(|r| &r.sealed).collect();
            db.execute(
                "INSERT INTO records (kind, key_hash, seq, person_index, enterprise, changed_at,
                                      cancelled, agency, batch_id, sealed)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bytea[],
                                      $5::text[], $6::bigint[], $7::bool[], $8::text[],
                                      $9::text[], $10::bytea[])",
                &[
                    &kind,
                    &key,
                    &seq,
                    &person,
                    &enterprise,
                    &changed,
                    &cancelled,
                    &agency,
                    &batch,
                    &sealed,
                ],
            )?;
            summary.records += n;
        }
        DumpChunk::RecordVersions(rows) => {
            let kind: Vec<_> = rows.iter().map(|r| &r.kind).collect();
            let key: Vec<_> = rows.iter().map(|r| &r.key_hash).collect();
            let seq: Vec<_> = rows.iter().map(|r| r.seq).collect();
            let changed: Vec<_> = rows.iter().map(|r| r.changed_at).collect();
            let cancelled: Vec<_> = rows.iter().map(|r| r.cancelled).collect();
            let sealed: Vec<_> = rows.iter().map(|r| &r.sealed).collect();
            db.execute(
                "INSERT INTO record_versions (kind, key_hash, seq, changed_at, cancelled, sealed)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[],
                                      $5::bool[], $6::bytea[])",
                &[&kind, &key, &seq, &changed, &cancelled, &sealed],
            )?;
            summary.record_versions += n;
        }
        DumpChunk::Reidentifications(rows) => {
            let (consumer, at): (Vec<_>, Vec<_>) = rows.iter().map(|(c, a)| (c, *a)).unzip();
            db.execute(
                "INSERT INTO reidentifications (consumer, at_ms)
                 SELECT * FROM unnest($1::text[], $2::bigint[])",
                &[&consumer, &at],
            )?;
            summary.reidentifications += n;
        }
        DumpChunk::AuditEntries(rows) => {
            let seq: Vec<_> = rows.iter().map(|r| r.seq).collect();
            let at: Vec<_> = rows.iter().map(|r| r.at_ms).collect();
            // The query copies as the PostgreSQL store writes them (NUL mapped).
            let actor: Vec<_> = rows.iter().map(|r| text(&r.actor)).collect();
            let action: Vec<_> = rows.iter().map(|r| text(&r.action)).collect();
            let outcome: Vec<_> = rows.iter().map(|r| text(&r.outcome)).collect();
            let kinds: Vec<_> = rows.iter().map(|r| text(&r.kinds)).collect();
            let entry: Vec<_> = rows.iter().map(|r| &r.entry).collect();
            db.execute(
                "INSERT INTO audit_log (seq, at_ms, actor, action, outcome, kinds, entry)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                      $5::text[], $6::text[], $7::bytea[])",
                &[&seq, &at, &actor, &action, &outcome, &kinds, &entry],
            )?;
            let (mut tokens, mut seqs) = (Vec::new(), Vec::new());
            for r in rows {
                for token in &r.subjects {
                    if token.contains('\0') {
                        return Err(StoreError::backend("an audit subject token holds NUL"));
                    }
                    tokens.push(token.as_str());
                    seqs.push(r.seq);
                }
            }
            db.execute(
                "INSERT INTO audit_subjects (subject, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                &[&tokens, &seqs],
            )?;
            summary.audit_entries += n;
        }
        DumpChunk::AuditTiles(rows) => {
            let (idx, hashes): (Vec<_>, Vec<_>) = rows.iter().map(|(i, h)| (*i, h)).unzip();
            db.execute(
                "INSERT INTO audit_tiles (idx, hashes)
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&idx, &hashes],
            )?;
        }
        DumpChunk::AuditLeaves(rows) => {
            let (idx, hash): (Vec<_>, Vec<_>) = rows.iter().map(|(i, h)| (*i, h)).unzip();
            db.execute(
                "INSERT INTO audit_leaves (idx, hash)
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&idx, &hash],
            )?;
        }
        DumpChunk::AuditNodes(rows) => {
            let level: Vec<_> = rows.iter().map(|r| r.0 as i16).collect();
            let idx: Vec<_> = rows.iter().map(|r| r.1).collect();
            let hash: Vec<_> = rows.iter().map(|r| &r.2).collect();
            db.execute(
                "INSERT INTO audit_nodes (level, idx, hash)
                 SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
                &[&level, &idx, &hash],
            )?;
        }
        DumpChunk::Notes(rows) => {
            let seq: Vec<_> = rows.iter().map(|r| r.seq).collect();
            let commitment: Vec<_> = rows.iter().map(|r| text(&r.commitment)).collect();
            let sealed: Vec<_> = rows.iter().map(|r| r.sealed.as_ref()).collect();
            let erased_ms: Vec<_> = rows.iter().map(|r| r.erased_ms).collect();
            let erased_seq: Vec<_> = rows.iter().map(|r| r.erased_seq).collect();
            db.execute(
                "INSERT INTO audit_notes (seq, commitment, sealed, erased_ms, erased_seq)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bigint[],
                                      $5::bigint[])",
                &[&seq, &commitment, &sealed, &erased_ms, &erased_seq],
            )?;
            summary.notes += n;
        }
        DumpChunk::Checkpoints(rows) => {
            for c in rows {
                db.execute(
                    "INSERT INTO audit_checkpoints (size, root, note, signed_ms)
                     VALUES ($1, $2, $3, $4)",
                    &[&(c.size as i64), &c.root.as_slice(), &c.note, &c.signed_ms],
                )?;
            }
            summary.checkpoints += n;
        }
    }
    Ok(())
}

/// Sets the head rows and each subject's latest entry from the copied rows,
/// then checks the copied tree against the source's heads and checkpoints.
fn finish(db: &Tx<'_>, heads: &DumpHeads, summary: &mut DumpSummary) -> Result<(), StoreError> {
    db.execute(
        "UPDATE feed_head SET seq = $1 WHERE id = 0",
        &[&(heads.feed as i64)],
    )?;
    db.execute(
        "UPDATE audit_head SET size = $1 WHERE id = 0",
        &[&(heads.audit_size as i64)],
    )?;
    // The copied index is complete: every copied entry's subjects are in it.
    db.execute(
        "INSERT INTO audit_subject_heads (subject, seq)
         SELECT subject, max(seq) FROM audit_subjects GROUP BY subject",
        &[],
    )?;
    db.execute(
        "UPDATE audit_subject_index SET indexed_through = $1 WHERE id = 0",
        &[&(heads.audit_size as i64)],
    )?;
    db.execute(
        "INSERT INTO reidentification_consumers (consumer)
         SELECT DISTINCT consumer FROM reidentifications",
        &[],
    )?;
    let tree = super::audit_tree::tree(db)?;
    if tree.size() != heads.audit_size {
        return Err(StoreError::corrupt(format!(
            "the copied audit tree has {} leaves, the source's {}",
            tree.size(),
            heads.audit_size
        )));
    }
    if tree.root(heads.audit_size)? != heads.audit_root {
        return Err(StoreError::corrupt(
            "the copied audit tree's root differs from the source's",
        ));
    }
    let rows = db.query(
        "SELECT size, root FROM audit_checkpoints ORDER BY size",
        &[],
    )?;
    for r in &rows {
        let size = get::<i64>(r, 0)? as u64;
        let root: &[u8] = get(r, 1)?;
        if size > heads.audit_size || tree.root(size)?.as_slice() != root {
            return Err(StoreError::corrupt(format!(
                "the copied audit tree does not have the root of the checkpoint of size {size}"
            )));
        }
    }
    summary.audit_size = heads.audit_size;
    Ok(())
}
