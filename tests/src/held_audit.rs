//! A store whose audit appends can be held back for a while, so that a test
//! can make a call outlast its deadline for certain (a look-up waits for its
//! audit entry to be durable before it answers), or whose reads can be made
//! to fail, as an unreachable store's do (readiness). Everything else goes
//! straight to the real store of the suite's backend.

use adapters::RecordKind;
use gateway::audit::AuditEntry;
use gateway::store::{
    AuditAppend, AuditFilter, AuditLeaf, BatchWrite, CommitOutcome, NoteErasure, ReindexedRecord,
    Rows, Store, StoreError, StoredAuditEntry, StoredBatch, StoredCheckpoint, StoredNote,
    StoredRecord,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct HeldAudit {
    inner: Arc<dyn Store>,
    /// While set, queued audit appends reach the store only this much later.
    hold: Mutex<Option<Duration>>,
    /// While set, reading the feed fails as an unreachable store's would.
    unreachable: AtomicBool,
}

impl HeldAudit {
    pub fn new(inner: Arc<dyn Store>) -> HeldAudit {
        HeldAudit {
            inner,
            hold: Mutex::new(None),
            unreachable: AtomicBool::new(false),
        }
    }

    /// Holds every queued audit append back by `hold` (`None`: no longer).
    pub fn hold(&self, hold: Option<Duration>) {
        *self.hold.lock().unwrap() = hold;
    }

    /// Makes the feed's reads fail (`true`) or succeed again.
    pub fn unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
    }

    fn reachable(&self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("the database is unreachable"));
        }
        Ok(())
    }
}

impl Store for HeldAudit {
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn append_audit_queued(&self, entries: Vec<AuditEntry>) -> AuditAppend {
        match *self.hold.lock().unwrap() {
            None => self.inner.append_audit_queued(entries),
            Some(hold) => {
                let (done, append) = AuditAppend::channel();
                let inner = self.inner.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(hold);
                    done.send(inner.append_audit_queued(entries).wait());
                });
                append
            }
        }
    }

    fn find_batch(&self, agency: &str, batch_id: &str) -> Result<Option<StoredBatch>, StoreError> {
        self.inner.find_batch(agency, batch_id)
    }
    fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError> {
        self.inner.commit_batch(batch)
    }
    fn read_feed(
        &self,
        kinds: &[RecordKind],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.reachable()?;
        self.inner.read_feed(kinds, after, limit)
    }
    fn records_for_person(&self, person_index: &[u8]) -> Result<Rows, StoreError> {
        self.inner.records_for_person(person_index)
    }
    fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[RecordKind],
    ) -> Result<Rows, StoreError> {
        self.inner.records_for_enterprise(credit_code, kinds)
    }
    fn feed_head(&self) -> Result<u64, StoreError> {
        self.reachable()?;
        self.inner.feed_head()
    }
    fn queue_depths(&self) -> gateway::store::QueueDepths {
        self.inner.queue_depths()
    }
    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.inner.append_audit(entries)
    }
    fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.inner.query_audit(filter)
    }
    fn audit_size(&self) -> Result<u64, StoreError> {
        self.inner.audit_size()
    }
    fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        self.inner.audit_root(size)
    }
    fn audit_inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<tlog::Hash>, StoreError> {
        self.inner.audit_inclusion_proof(index, size)
    }
    fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.inner.audit_consistency_proof(size1, size2)
    }
    fn audit_leaves(&self, from: u64, to: u64, limit: usize) -> Result<Vec<AuditLeaf>, StoreError> {
        self.inner.audit_leaves(from, to, limit)
    }
    fn audit_subject_entries(
        &self,
        subject: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        self.inner.audit_subject_entries(subject, after_seq, limit)
    }
    fn audit_note(&self, seq: u64) -> Result<Option<StoredNote>, StoreError> {
        self.inner.audit_note(seq)
    }
    fn erase_audit_note(&self, seq: u64, erasure: AuditEntry) -> Result<NoteErasure, StoreError> {
        self.inner.erase_audit_note(seq, erasure)
    }
    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.meta_get(key)
    }
    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.meta_set(key, value)
    }
    fn take_reidentification(
        &self,
        consumer: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Result<(), i64>, StoreError> {
        self.inner
            .take_reidentification(consumer, now_ms, window_ms, limit)
    }
    fn record_versions(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
    ) -> Result<Vec<gateway::store::StoredRecord>, StoreError> {
        self.inner.record_versions(kind, key_hash)
    }
    fn record_version_at(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
        seq: u64,
    ) -> Result<Option<gateway::store::StoredRecord>, StoreError> {
        self.inner.record_version_at(kind, key_hash, seq)
    }
    fn meta_set_audited(
        &self,
        meta: &[(&str, &str)],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.inner.meta_set_audited(meta, entries)
    }
    fn reindex_records(
        &self,
        rows: &[ReindexedRecord],
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError> {
        self.inner.reindex_records(rows, meta)
    }
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.checkpoint_at(size)
    }
    fn audit_checkpoints(
        &self,
        after_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.audit_checkpoints(after_size, limit)
    }
    fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(checkpoint)
    }
}
