//! Audit entries as rows: appending them in the one global order (under the
//! `audit_head` lock, with their subjects' back-pointers, notes and tree
//! nodes, inside the caller's transaction) and reading them back by filter,
//! by subject (once the subject index, written after the commit by
//! `indexer`, has caught up) or as exported leaves.

use super::Inner;
use super::audit_tree::{EDGE, tree, tree_at};
use super::db::{Db, Isolation, get, pos, text};
use crate::audit::AuditEntry;
use crate::store::{AuditFilter, AuditLeaf, StoreError, StoredAuditEntry};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;

/// Appends entries as the next leaves of the one log, inside the caller's
/// transaction, and returns the seq of the first. Locks `audit_head` until
/// the transaction ends: appends through every replica take their turn
/// there, so each extends the tree the previous one committed. `frontier`
/// is this replica's kept edge of the tree (used if it is still the
/// tree's), replaced by the new one.
pub(super) fn insert_audit<C: GenericClient>(
    db: &Db<'_, C>,
    frontier: &mut Option<tlog::Frontier>,
    entries: &[AuditEntry],
) -> Result<u64, StoreError> {
    if entries.is_empty() {
        let row = db.query_one("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[])?;
        return Ok(get::<i64>(&row, 0)? as u64 + 1);
    }
    // Each subject's latest entry, as every replica's appends left it.
    let mut tokens: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.subjects.iter().map(String::as_str))
        .collect();
    // (Subject tokens are pseudonyms: hex, never NUL; checked, not mapped.)
    if tokens.iter().any(|t| t.contains('\0')) {
        return Err(StoreError::backend("an audit subject token holds NUL"));
    }
    tokens.sort_unstable();
    tokens.dedup();
    // Each subject's new head: the last of these entries naming it, as an
    // offset from the log's size (known only once the lock is granted).
    let mut last_naming: HashMap<&str, i64> = HashMap::with_capacity(tokens.len());
    for (i, e) in entries.iter().enumerate() {
        for t in &e.subjects {
            last_naming.insert(t.as_str(), i as i64 + 1);
        }
    }
    let offsets: Vec<i64> = tokens.iter().map(|t| last_naming[t]).collect();
    // The lock, then (in the same round trip, each statement seeing what
    // committed before the lock was granted) the tree's edge, and the
    // subjects' latest entries read and moved on in one statement (its
    // parts share one snapshot: `old` is the heads before the move).
    let mut read = db
        .pipeline(&[
            ("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[]),
            (EDGE, &[]),
            (
                "WITH named AS (
                     SELECT * FROM unnest($1::text[], $2::bigint[]) AS n(subject, last_offset)
                 ), old AS (
                     SELECT h.subject, h.seq FROM audit_subject_heads h JOIN named USING (subject)
                 ), moved AS (
                     INSERT INTO audit_subject_heads (subject, seq)
                     SELECT subject, (SELECT size FROM audit_head WHERE id = 0) + last_offset
                     FROM named
                     ON CONFLICT (subject) DO UPDATE SET seq = excluded.seq
                 )
                 SELECT subject, seq FROM old",
                &[&tokens, &offsets],
            ),
        ])?
        .into_iter();
    let (Some(head), Some(edge), Some(subject_heads)) = (read.next(), read.next(), read.next())
    else {
        return Err(StoreError::corrupt("audit_head holds no row"));
    };
    let (Some(head), Some(edge)) = (head.first(), edge.first()) else {
        return Err(StoreError::corrupt("audit_head holds no row"));
    };
    let size = get::<i64>(head, 0)? as u64;
    let tree = tree_at(db, edge)?;
    if tree.size() != size {
        return Err(StoreError::corrupt(format!(
            "the audit log holds {size} entries but its tree {} leaves",
            tree.size()
        )));
    }
    let mut heads: HashMap<String, i64> = HashMap::with_capacity(tokens.len());
    for r in &subject_heads {
        heads.insert(get(r, 0)?, get(r, 1)?);
    }
    let n = entries.len();
    let (mut seqs, mut at, mut actors, mut actions, mut outcomes, mut kinds, mut bytes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut leaves = Vec::with_capacity(n);
    for (i, e) in entries.iter().enumerate() {
        let seq = size + 1 + i as u64;
        let mut named: Vec<&String> = e.subjects.iter().collect();
        named.sort_unstable();
        named.dedup();
        let mut subjects = Vec::with_capacity(named.len());
        for token in named {
            let prev = heads.insert(token.clone(), seq as i64).unwrap_or(0);
            subjects.push(crate::audit::SubjectRef {
                token: token.clone(),
                prev_seq: prev as u64,
            });
        }
        let encoded = e.encode(seq, &subjects).map_err(StoreError::backend)?;
        leaves.push(tlog::leaf_hash(&encoded));
        seqs.push(seq as i64);
        at.push(e.at_ms);
        actors.push(text(&e.actor).into_owned());
        actions.push(text(&e.action).into_owned());
        outcomes.push(text(&e.outcome).into_owned());
        kinds.push(if e.kinds.is_empty() {
            String::new()
        } else {
            text(&format!(",{},", e.kinds.join(","))).into_owned()
        });
        bytes.push(encoded);
    }
    // The writes go out together, with the commit's round trip (`Db::defer`):
    // the append lock is held for two round trips, however many entries.
    let (mut note_seqs, mut commitments, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, e) in seqs.iter().zip(entries) {
        if let Some(note) = &e.note {
            note_seqs.push(*seq);
            commitments.push(text(&note.commitment).into_owned());
            sealed.push(note.sealed.clone());
        }
    }
    let new_size = (size + n as u64) as i64;
    db.defer(
        "INSERT INTO audit_log (seq, at_ms, actor, action, outcome, kinds, entry)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::bytea[])",
        vec![
            Box::new(seqs),
            Box::new(at),
            Box::new(actors),
            Box::new(actions),
            Box::new(outcomes),
            Box::new(kinds),
            Box::new(bytes),
        ],
    );
    if !note_seqs.is_empty() {
        db.defer(
            "INSERT INTO audit_notes (seq, commitment, sealed)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
            vec![Box::new(note_seqs), Box::new(commitments), Box::new(sealed)],
        );
    }
    *frontier = Some(tree.append(frontier.take(), &leaves)?);
    db.defer(
        "UPDATE audit_head SET size = $1 WHERE id = 0",
        vec![Box::new(new_size)],
    );
    Ok(size + 1)
}

fn row_to_audit(r: &tokio_postgres::Row) -> Result<StoredAuditEntry, StoreError> {
    Ok(StoredAuditEntry {
        seq: get::<i64>(r, 0)? as u64,
        bytes: get(r, 1)?,
    })
}

impl Inner {
    pub(super) fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write(|db, frontier| insert_audit(db, frontier, entries).map(|_| ()))?;
        let named = entries.iter().map(|e| e.subjects.len() as u64);
        self.index.appended(named.sum());
        Ok(())
    }

    pub(super) fn query_audit(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let mapped = |v: &Option<String>| v.as_deref().map(|v| text(v).into_owned());
        let (actor, action, outcome) = (mapped(&f.actor), mapped(&f.action), mapped(&f.outcome));
        let (kind, subject) = (mapped(&f.kind), mapped(&f.subject));
        if subject.is_some() {
            self.catch_up_index()?;
        }
        self.read(|db| {
            let rows = db.query(
                "SELECT seq, entry FROM audit_log
                 WHERE seq > $1
                   AND ($2::bigint IS NULL OR at_ms >= $2) AND ($3::bigint IS NULL OR at_ms < $3)
                   AND ($4::text IS NULL OR actor = $4) AND ($5::text IS NULL OR action = $5)
                   AND ($6::text IS NULL OR outcome = $6)
                   AND ($7::text IS NULL OR strpos(kinds, ',' || $7 || ',') > 0)
                   AND ($8::text IS NULL OR seq IN (SELECT seq FROM audit_subjects WHERE subject = $8))
                 ORDER BY seq LIMIT $9",
                &[
                    &pos(f.after_seq),
                    &f.from_ms,
                    &f.to_ms,
                    &actor,
                    &action,
                    &outcome,
                    &kind,
                    &subject,
                    &i64::from(f.limit.clamp(1, 1000)),
                ],
            )?;
            rows.iter().map(row_to_audit).collect()
        })
    }

    pub(super) fn audit_leaves(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<AuditLeaf>, StoreError> {
        self.transaction(Isolation::Snapshot, |db| {
            let tree = tree(db)?;
            let to = to.min(tree.size()).min(from.saturating_add(limit as u64));
            if from >= to {
                return Ok(Vec::new());
            }
            let mut entries = HashMap::new();
            for r in db.query(
                "SELECT seq, entry FROM audit_log WHERE seq > $1 AND seq <= $2",
                &[&(from as i64), &(to as i64)],
            )? {
                entries.insert(get::<i64>(&r, 0)? as u64, get::<Vec<u8>>(&r, 1)?);
            }
            tree.leaves_with(from, to, entries)
        })
    }

    pub(super) fn audit_subject_entries(
        &self,
        subject: &str,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.catch_up_index()?;
        self.read(|db| {
            let rows = db.query(
                "SELECT s.seq, a.entry FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq
                 WHERE s.subject = $1 ORDER BY s.seq",
                &[&text(subject)],
            )?;
            rows.iter().map(row_to_audit).collect()
        })
    }
}
