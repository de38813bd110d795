//! Audit entries as rows: appending them in the one global order (under the
//! `audit_head` lock, with their subjects' back-pointers, notes and tree
//! nodes, inside the caller's transaction) and reading them back by filter,
//! by subject (once the subject index, written after the commit by
//! `indexer`, has caught up) or as exported leaves.

use super::Inner;
use super::audit_tree::{EDGE, tree, tree_at};
use super::db::{Db, Isolation, get, pos, text};
use super::heads::Staged;
use crate::audit::{AuditEntry, CanonicalEntry};
use crate::store::{AuditFilter, AuditLeaf, StoreError, StoredAuditEntry};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;

/// Appends entries as the next leaves of the one log, inside the caller's
/// transaction, and returns the seq of the first. Locks `audit_head` until
/// the transaction ends: appends through every replica take their turn
/// there, so each extends the tree the previous one committed and takes its
/// back-pointers from every entry before it (`heads`). `staged` holds this
/// replica's kept edge of the tree (used if it is still the tree's) and its
/// heads; what the append moves is kept once the transaction commits.
pub(super) fn insert_audit<C: GenericClient>(
    db: &Db<'_, C>,
    staged: &mut Staged<'_>,
    entries: &[AuditEntry],
) -> Result<u64, StoreError> {
    if entries.is_empty() {
        let row = db.query_one("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[])?;
        return Ok(get::<i64>(&row, 0)? as u64 + 1);
    }
    // (Subject tokens are pseudonyms: hex, never NUL. The subject index
    // keeps them as text, so one with NUL is refused here, not there.)
    if entries
        .iter()
        .flat_map(|e| &e.subjects)
        .any(|t| t.contains('\0'))
    {
        return Err(StoreError::backend("an audit subject token holds NUL"));
    }
    // The lock, then (in the same round trip, seeing what committed before
    // the lock was granted) the tree's edge.
    let mut read = db
        .pipeline(&[
            ("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[]),
            (EDGE, &[]),
        ])?
        .into_iter();
    let (Some(head), Some(edge)) = (read.next(), read.next()) else {
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
    let named = staged.back_pointers(db, size, entries)?;
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
    for ((i, e), subjects) in entries.iter().enumerate().zip(named) {
        let seq = size + 1 + i as u64;
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
    staged.frontier = Some(tree.append(staged.frontier.take(), &leaves)?);
    db.defer(
        "UPDATE audit_head SET size = $1 WHERE id = 0",
        vec![Box::new(new_size)],
    );
    Ok(size + 1)
}

/// Up to `limit` entries after `after` and at most `upto`, decoded, in seq
/// order: how the indexer and each replica's heads follow the log.
pub(super) fn entries_after<C: GenericClient>(
    db: &Db<'_, C>,
    after: u64,
    upto: u64,
    limit: i64,
) -> Result<Vec<CanonicalEntry>, StoreError> {
    let rows = db.query(
        "SELECT seq, entry FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        &[&pos(after), &pos(upto), &limit],
    )?;
    rows.iter()
        .map(|r| {
            let seq = get::<i64>(r, 0)? as u64;
            let entry = CanonicalEntry::decode(get(r, 1)?).map_err(|e| {
                StoreError::corrupt(format!("audit entry {seq} does not decode: {e}"))
            })?;
            if entry.seq != seq {
                return Err(StoreError::corrupt(format!(
                    "the audit entry at {seq} says it is {}",
                    entry.seq
                )));
            }
            Ok(entry)
        })
        .collect()
}

fn row_to_audit(r: &tokio_postgres::Row) -> Result<StoredAuditEntry, StoreError> {
    Ok(StoredAuditEntry {
        seq: get::<i64>(r, 0)? as u64,
        bytes: get(r, 1)?,
    })
}

impl Inner {
    pub(super) fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write(|db, staged| insert_audit(db, staged, entries).map(|_| ()))
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
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.catch_up_index()?;
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(|db| {
            let rows = db.query(
                "SELECT s.seq, a.entry FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq
                 WHERE s.subject = $1 AND s.seq > $2 ORDER BY s.seq LIMIT $3",
                &[&text(subject), &pos(after_seq), &limit],
            )?;
            rows.iter().map(row_to_audit).collect()
        })
    }
}
