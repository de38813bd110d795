//! Each subject's latest entry (the back-pointer the next entry naming it
//! records), held in memory by every replica as the SQLite store holds it
//! ([`SubjectHeads`]). Reading and moving thousands of heads in the
//! database, inside the append lock, was most of what a pull page cost.
//!
//! A replica's map is exact for the log up to a known size (`through`).
//! Entries other replicas appended since are read back and applied under
//! the append lock, before the back-pointers are taken, so every append
//! sees every committed entry: the committed entries are a prefix of the
//! log (positions are taken under the lock), so reading after `through`
//! never passes over one. A replica's own append is applied once committed,
//! and only onto the map it was computed from. The indexer thread follows
//! the log while this replica is idle, so that catch-up stays short.
//!
//! At start-up the map is loaded from `audit_subject_heads`, which the
//! indexer keeps for the entries it has indexed, plus the entries after
//! them.

use super::Inner;
use super::audit_log::entries_after;
use super::db::{Db, Isolation, get};
use crate::audit::{AuditEntry, CanonicalEntry, SubjectRef};
use crate::store::StoreError;
use crate::store::subject_heads::{HeadUpdates, SubjectHeads, SubjectKey, chain};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries read per statement when following the log.
const FOLLOW_ENTRIES: i64 = 64;

/// The heads of every subject named in the log's first `through` entries.
#[derive(Default)]
pub(super) struct KnownHeads {
    heads: SubjectHeads,
    through: u64,
}

impl KnownHeads {
    /// Applies the next entry of the log.
    fn apply(&mut self, entry: CanonicalEntry) {
        for s in entry.subjects {
            self.heads.set(SubjectKey::of(&s.token), entry.seq);
        }
        self.through = entry.seq;
    }

    /// Applies the committed entries after `through` up to `size`.
    fn catch_up<C: GenericClient>(&mut self, db: &Db<'_, C>, size: u64) -> Result<(), StoreError> {
        while self.through < size {
            let entries = entries_after(db, self.through, size, FOLLOW_ENTRIES)?;
            if entries.is_empty() {
                return Err(StoreError::corrupt(format!(
                    "the audit log holds no entry {} below its size {size}",
                    self.through + 1
                )));
            }
            entries.into_iter().for_each(|e| self.apply(e));
        }
        Ok(())
    }

    /// The map as the database holds it: the indexed heads, then the
    /// entries after them up to `size`, read in the caller's snapshot.
    fn load<C: GenericClient>(db: &Db<'_, C>, size: u64) -> Result<KnownHeads, StoreError> {
        let row = db.query_one(
            "SELECT indexed_through FROM audit_subject_index WHERE id = 0",
            &[],
        )?;
        let indexed = get::<i64>(&row, 0)?.max(0) as u64;
        let mut known = KnownHeads::default();
        for r in db.query("SELECT subject, seq FROM audit_subject_heads", &[])? {
            let seq = get::<i64>(&r, 1)?.max(0) as u64;
            // (A replica of the previous schema writes heads with its
            // appends: the entries after the index set them again below.)
            if seq <= indexed {
                known.heads.set(SubjectKey::of(get(&r, 0)?), seq);
            }
        }
        known.through = indexed;
        known.catch_up(db, size)?;
        Ok(known)
    }
}

/// What an append inside a write transaction stages: the tree's new edge
/// and the subjects' new heads, kept only once the transaction commits.
pub(super) struct Staged<'a> {
    /// This replica's kept edge of the tree (used if it is still the
    /// tree's), replaced by the new one.
    pub(super) frontier: Option<tlog::Frontier>,
    known: &'a Mutex<KnownHeads>,
    moved: Option<Moved>,
}

/// Heads an append moved: from the log of size `from` to `to`, naming
/// `named` subject rows (what the subject index has yet to take in).
struct Moved {
    from: u64,
    to: u64,
    updates: HeadUpdates,
    named: u64,
}

impl<'a> Staged<'a> {
    pub(super) fn new(frontier: Option<tlog::Frontier>, known: &'a Mutex<KnownHeads>) -> Self {
        Staged {
            frontier,
            known,
            moved: None,
        }
    }

    /// Each entry's subjects with their back-pointers, for `entries`
    /// appended after the first `size` (under the append lock, inside the
    /// transaction `db`).
    pub(super) fn back_pointers<C: GenericClient>(
        &mut self,
        db: &Db<'_, C>,
        size: u64,
        entries: &[AuditEntry],
    ) -> Result<Vec<Vec<SubjectRef>>, StoreError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.through > size {
            // The log is shorter than this replica saw it (restored from a
            // backup): what it holds now is the truth.
            *known = KnownHeads::load(db, size)?;
        }
        known.catch_up(db, size)?;
        // (A second append in the same transaction continues the first.)
        let mut moved = self.moved.take().unwrap_or(Moved {
            from: size,
            to: size,
            updates: HashMap::default(),
            named: 0,
        });
        if moved.to != size {
            return Err(StoreError::corrupt(
                "an append's transaction saw the log's size change",
            ));
        }
        let base = &known.heads;
        let mut all = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let seq = size + 1 + i as u64;
            let refs = chain(&e.subjects, seq, base, &mut moved.updates);
            moved.named += refs.len() as u64;
            all.push(refs);
        }
        moved.to = size + entries.len() as u64;
        self.moved = Some(moved);
        Ok(all)
    }

    /// After the commit: the moved heads join the map they were computed
    /// from (unless a later append, having read them back, is ahead).
    /// Returns the subject rows the commit named.
    fn committed(self) -> u64 {
        let Some(moved) = self.moved else { return 0 };
        let named = moved.named;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.through == moved.from {
            known.heads.hex.reserve(moved.updates.len());
            for (key, seq) in moved.updates {
                known.heads.set(key, seq);
            }
            known.through = moved.to;
        }
        named
    }
}

impl Inner {
    /// Loads this replica's map of heads (at start-up).
    pub(super) fn load_heads(&self) -> Result<(), StoreError> {
        let known = self.transaction(Isolation::Snapshot, |db| {
            let row = db.query_one("SELECT size FROM audit_head WHERE id = 0", &[])?;
            KnownHeads::load(db, get::<i64>(&row, 0)?.max(0) as u64)
        })?;
        *self.heads.lock().unwrap_or_else(|p| p.into_inner()) = known;
        Ok(())
    }

    /// Applies entries other replicas appended, up to `size`, outside the
    /// append lock: read first, applied only onto the map they follow.
    pub(super) fn follow_heads(&self, size: u64) -> Result<(), StoreError> {
        loop {
            let through = self.heads.lock().unwrap_or_else(|p| p.into_inner()).through;
            if through >= size {
                return Ok(());
            }
            let entries = self.read(|db| entries_after(db, through, size, FOLLOW_ENTRIES))?;
            if entries.is_empty() {
                return Ok(());
            }
            let mut known = self.heads.lock().unwrap_or_else(|p| p.into_inner());
            if known.through == through {
                entries.into_iter().for_each(|e| known.apply(e));
            }
        }
    }

    /// Runs `f` in a write transaction with this replica's kept tree edge
    /// and heads, commits it, and keeps what `f` staged only once committed;
    /// the indexer hears of the subjects it named.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&super::db::Tx<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let frontier = self
            .frontier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut staged = Staged::new(frontier, &self.heads);
        let out = self.transaction(Isolation::Write, |db| f(db, &mut staged))?;
        *self.frontier.lock().unwrap_or_else(|p| p.into_inner()) = staged.frontier.take();
        self.index.appended(staged.committed());
        Ok(out)
    }
}
