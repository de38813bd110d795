//! The queue behind [`Store::append_audit_queued`](super::Store), shared by
//! the backends: callers queue their audit entries and return at once; the
//! backend's committer thread takes everything queued since its last
//! transaction and writes it as one group (one fsync, one turn at a lock),
//! then answers each caller. Only the write itself is the backend's.

use super::{AuditAppend, AuditAppendDone, StoreError};
use crate::audit::AuditEntry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct AuditQueue {
    queued: Mutex<Vec<(Vec<AuditEntry>, AuditAppendDone)>>,
    ready: Condvar,
    closed: AtomicBool,
}

/// Everything one group commit writes, and whom it answers.
pub struct Group {
    pub entries: Vec<AuditEntry>,
    callers: Vec<AuditAppendDone>,
}

impl Group {
    /// Callers the group serves.
    pub fn callers(&self) -> usize {
        self.callers.len()
    }

    /// Answers every caller of the group with the write's outcome.
    pub fn answer(self, outcome: Result<(), StoreError>) {
        for done in self.callers {
            done.send(outcome.clone());
        }
    }
}

impl AuditQueue {
    /// Queues `entries` for the next group; refused once the queue is closed.
    pub fn push(&self, entries: Vec<AuditEntry>) -> AuditAppend {
        if self.closed.load(Ordering::SeqCst) {
            return AuditAppend::ready(Err(StoreError::unavailable("the store is closing")));
        }
        let (done, append) = AuditAppend::channel();
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((entries, done));
        self.ready.notify_one();
        append
    }

    /// Waits for queued entries and takes them all as one group: `None`
    /// once the queue is closed and empty (the committer then ends). With
    /// `linger`, it waits that long after the first arrive, for more
    /// callers to join the group.
    pub fn next_group(&self, linger: Option<Duration>) -> Option<Group> {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        while q.is_empty() && !self.closed.load(Ordering::SeqCst) {
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.is_empty() {
            return None;
        }
        if let Some(linger) = linger {
            drop(q);
            std::thread::sleep(linger);
            q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        }
        let taken = std::mem::take(&mut *q);
        drop(q);
        let mut entries = Vec::with_capacity(taken.iter().map(|(e, _)| e.len()).sum());
        let mut callers = Vec::with_capacity(taken.len());
        for (e, done) in taken {
            entries.extend(e);
            callers.push(done);
        }
        Some(Group { entries, callers })
    }

    /// Audit entries waiting for the next group.
    pub fn depth(&self) -> u64 {
        let q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().map(|(e, _)| e.len() as u64).sum()
    }

    /// Refuses further entries; the committer writes what is queued, then
    /// [`AuditQueue::next_group`] answers `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        self.ready.notify_all();
    }
}
