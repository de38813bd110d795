//! Group commit of audit appends (the queue is shared:
//! [`crate::store::group_commit`]): this replica's committer thread writes
//! everything queued in one transaction (one turn at the `audit_head` lock,
//! one WAL flush), then answers each caller. Every replica runs its own;
//! their groups take turns at the lock.

use super::Inner;
use super::audit_log::insert_audit;
use crate::audit::AuditEntry;
use crate::store::AuditAppend;

impl Inner {
    pub(super) fn append_audit_queued(&self, entries: Vec<AuditEntry>) -> AuditAppend {
        self.queue.push(entries)
    }

    /// The committer thread: everything queued while the last group was
    /// being written goes into the next transaction.
    pub(super) fn run_committer(&self) {
        while let Some(group) = self.queue.next_group(None) {
            let outcome =
                self.write(|db, staged| insert_audit(db, staged, &group.entries).map(|_| ()));
            group.answer(outcome);
        }
    }
}
