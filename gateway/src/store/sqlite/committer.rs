//! Group commit of audit appends (the queue is shared:
//! [`crate::store::group_commit`]): one thread writes everything queued in
//! one transaction (one fsync), then answers each caller.

use super::Inner;
use super::audit_log::insert_audit;
use crate::audit::AuditEntry;
use crate::store::AuditAppend;

/// How long the committer waits for more callers when they arrive together.
const COMMIT_LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// Callers the last commit must have served for the committer to linger.
const LINGER_AFTER_CALLERS: usize = 2;

impl Inner {
    pub(super) fn append_audit_queued(&self, entries: Vec<AuditEntry>) -> AuditAppend {
        self.queue.push(entries)
    }

    /// The committer thread: everything queued meanwhile goes into one
    /// transaction (one fsync); then each caller hears the outcome. While
    /// callers arrive together (the last commit served several), it lingers
    /// [`COMMIT_LINGER`] before taking the queue, so that one commit serves
    /// more of them, for at most that half millisecond more per call. After
    /// a commit that served one caller, the next commits at once.
    pub(super) fn run_committer(&self) {
        let mut last_callers = 0;
        loop {
            let linger = (last_callers >= LINGER_AFTER_CALLERS).then_some(COMMIT_LINGER);
            let Some(group) = self.queue.next_group(linger) else {
                return;
            };
            last_callers = group.callers();
            let outcome = self.write(|tx, heads| insert_audit(tx, heads, &group.entries));
            group.answer(outcome);
        }
    }
}
