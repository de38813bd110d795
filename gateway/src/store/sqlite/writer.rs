//! The one writer connection: every change goes through [`Inner::write`] or
//! [`Inner::write_records`], one transaction each, with the subject heads
//! and the audit tree's frontier staged until the transaction has committed.

use super::Inner;
use crate::store::StoreError;
use crate::store::subject_heads::{HeadUpdates, SubjectHeads};
use rusqlite::{Connection, Transaction};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) heads: SubjectHeads,
    /// The audit tree's right edge after the last commit, so an append does
    /// not read it back (and rehash the incomplete tile) every time. Taken
    /// by a transaction and put back only once it has committed.
    pub(super) frontier: Option<tlog::Frontier>,
}

/// Subject heads as seen inside one write transaction: changes apply to the
/// shared map only once the transaction has committed. Likewise the audit
/// tree's frontier.
pub(super) struct Staged<'a> {
    pub(super) base: &'a SubjectHeads,
    pub(super) updates: HeadUpdates,
    pub(super) frontier: Option<tlog::Frontier>,
}

impl Inner {
    /// Runs `f` in a write transaction that may change records (a batch
    /// commit) and commits it; records snapshots and cached rows then renew.
    pub(super) fn write_records<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(true, f)
    }

    /// Runs `f` in a write transaction that leaves the records alone (audit
    /// entries, checkpoints, meta) and commits it: records snapshots and
    /// cached rows stay current across it.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(false, f)
    }

    pub(super) fn write_as<T>(
        &self,
        may_change_records: bool,
        f: impl FnOnce(&Transaction<'_>, &mut Staged<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let waiting = WaitingWrite::new(&self.writes_waiting);
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        drop(waiting);
        let Writer {
            conn,
            heads,
            frontier,
        } = &mut *w;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut staged = Staged {
            base: heads,
            updates: HashMap::default(),
            frontier: frontier.take(),
        };
        let out = f(&tx, &mut staged)?;
        tx.commit()?;
        *frontier = staged.frontier;
        if may_change_records {
            self.records_generation.fetch_add(1, Ordering::SeqCst);
        }
        // This commit started the WAL again if the checkpointer had drained
        // it; readers may hold snapshots again.
        self.draining.store(false, Ordering::SeqCst);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let updates = staged.updates;
        let named = updates.len();
        heads.hex.reserve(named);
        for (key, seq) in updates {
            heads.set(key, seq);
        }
        drop(w);
        if named > 0 {
            self.index_backlog.fetch_add(named, Ordering::Relaxed);
            *self.index_wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.index_ready.notify_one();
        }
        Ok(out)
    }
}

/// Counts a write while it waits for the writer connection (also when the
/// wait ends in a panic), for [`crate::store::QueueDepths`].
struct WaitingWrite<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> WaitingWrite<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        WaitingWrite(count)
    }
}

impl Drop for WaitingWrite<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
