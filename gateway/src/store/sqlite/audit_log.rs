//! Audit entries as rows: appending them (with their subjects' back-pointers,
//! notes and tree nodes, inside the caller's transaction) and reading them
//! back by filter, by subject or as exported leaves.

use super::Inner;
use super::audit_tree::tree;
use super::writer::Staged;
use crate::audit::AuditEntry;
use crate::store::subject_heads::chain;
use crate::store::{AuditFilter, AuditLeaf, StoreError, StoredAuditEntry};
use rusqlite::{Connection, Transaction, params};

/// Appends entries as leaves, with their subject back-pointers and the new
/// complete-subtree nodes, inside the caller's transaction.
pub(super) fn insert_audit(
    tx: &Transaction<'_>,
    heads: &mut Staged<'_>,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let tree = tree(tx)?;
    let size = tree.size();
    let mut leaves = Vec::with_capacity(entries.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, at_ms, actor, action, outcome, kinds, entry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (i, e) in entries.iter().enumerate() {
            let seq = size + 1 + i as u64;
            let subjects = chain(&e.subjects, seq, heads.base, &mut heads.updates);
            let bytes = e.encode(seq, &subjects).map_err(StoreError::backend)?;
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
    heads.frontier = Some(tree.append(heads.frontier.take(), &leaves)?);
    Ok(())
}

pub(super) fn row_to_audit(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAuditEntry> {
    Ok(StoredAuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        bytes: r.get(1)?,
    })
}

impl Inner {
    pub(super) fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write(|tx, heads| insert_audit(tx, heads, entries))
    }

    pub(super) fn query_audit(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
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
                    super::after_position(f.after_seq),
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
            self.read_with_index(query)
        } else {
            self.read(query)
        }
    }

    pub(super) fn audit_leaves(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<AuditLeaf>, StoreError> {
        self.read(|c| {
            let tree = tree(c)?;
            let to = to.min(tree.size()).min(from.saturating_add(limit as u64));
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
            tree.leaves_with(from, to, entries)
        })
    }

    pub(super) fn audit_subject_entries(
        &self,
        subject: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let (after, limit) = (
            after_seq.min(i64::MAX as u64) as i64,
            limit.min(i64::MAX as usize) as i64,
        );
        self.read_with_index(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.seq, a.entry FROM idx.audit_subjects s JOIN audit_log a ON a.seq = s.seq
                 WHERE s.subject = ?1 AND s.seq > ?2 ORDER BY s.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![subject, after, limit], row_to_audit)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Calls `f(seq, entry)` for each audit entry after `seq`, in order, until
    /// it returns false.
    pub(super) fn for_each_entry_after(
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
                    StoreError::corrupt(format!("audit entry {seq} does not decode: {e}"))
                })?;
                if !f(seq, entry) {
                    break;
                }
            }
            Ok(())
        })
    }
}
