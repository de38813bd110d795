//! Group commit of audit appends: callers queue their entries and this
//! replica's committer thread writes everything queued in one transaction
//! (one turn at the `audit_head` lock, one WAL flush), then answers each
//! caller. Every replica runs its own; their groups take turns at the lock.

use super::Inner;
use super::audit_log::insert_audit;
use crate::audit::AuditEntry;
use crate::store::{AuditAppend, StoreError};
use std::sync::atomic::Ordering;

impl Inner {
    pub(super) fn append_audit_queued(&self, entries: Vec<AuditEntry>) -> AuditAppend {
        if self.stopping.load(Ordering::SeqCst) {
            return AuditAppend::ready(Err(StoreError::unavailable("the store is closing")));
        }
        let (done, append) = AuditAppend::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((entries, done));
        self.queue_ready.notify_one();
        append
    }

    /// The committer thread: everything queued while the last group was
    /// being written goes into the next transaction.
    pub(super) fn run_committer(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while q.is_empty() && !self.stopping.load(Ordering::SeqCst) {
                    q = self.queue_ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.is_empty() {
                    return;
                }
                std::mem::take(&mut *q)
            };
            let mut all = Vec::with_capacity(batch.iter().map(|(e, _)| e.len()).sum());
            let mut callers = Vec::with_capacity(batch.len());
            for (entries, done) in batch {
                all.extend(entries);
                callers.push(done);
            }
            let outcome = self.write(|db, frontier| insert_audit(db, frontier, &all).map(|_| ()));
            for done in callers {
                done.send(outcome.clone());
            }
        }
    }
}
