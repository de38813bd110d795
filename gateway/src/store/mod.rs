//! Storage behind one interface, so the embedded default (SQLite, see
//! [`sqlite`]) and the later scale-out backend on a distributed SQL engine are
//! interchangeable. The store never sees a raw personal value: records arrive
//! sealed (encrypted) with keyed hashes for their keys, and audit entries are
//! built from typed events that hold no personal identifier.
//!
//! Contract every backend keeps:
//! - [`Store::commit_batch`] is atomic and durable before it returns: all of a
//!   batch's applied rows, its receipt and its audit entry, or nothing.
//! - Record versions: a row older than the version held is not applied (counted
//!   as superseded); a cancel keeps a tombstone so followers see the removal.
//! - The change feed: every applied change gets the next `seq`; a record appears
//!   once in the feed, at the seq of its latest change.
//! - The audit log is a Merkle tree (RFC 9162): each audit entry is appended as
//!   a leaf (its canonical bytes, `audit::encoding`), with its subjects'
//!   back-pointers and the new tree nodes, in the same transaction as the change
//!   it records; roots and proofs come from stored nodes in O(log n) reads.
//!   The tree's layout and maintenance are shared ([`audit_tree`]): a backend
//!   only stores and reads its hashes.
//! - Audit appends queued by concurrent callers ([`Store::append_audit_queued`])
//!   share a transaction (group commit); each caller's [`AuditAppend`] is
//!   ready once its entries are durable.
//! - Failures are [`StoreError`]s, classified by what a caller can do; a
//!   backend maps its driver's errors to them in its own folder.
//! - An entry's note (free text its details commit to, sealed: `audit::notes`)
//!   is stored in the same transaction as the entry. Erasing a note removes
//!   its sealed text for good and appends the erasure's entry, atomically; the
//!   entry, its leaf and the tree never change.
//!
//! - The store records its schema version; opening it runs the pending
//!   forward migrations in one transaction and refuses a newer schema
//!   ([`schema_version`]).
//!
//! This file holds the trait and the types every backend shares, and names no
//! backend's types; [`audit_tree`] is the shared tree, [`schema_version`] the
//! version check; each backend lives in a folder of its own, split by concern
//! ([`sqlite`], [`postgres`]); [`select`] opens the one the configuration names.

pub mod audit_tree;
pub mod dump;
pub mod group_commit;
pub mod postgres;
pub mod schema_version;
pub mod select;
pub mod sqlite;
mod subject_heads;

pub use select::{StoreConfig, open};

use crate::audit::{AuditEntry, CanonicalEntry};
use adapters::RecordKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A failure's cause as the backend reported it, kept for logs. Shared, so
/// that one failed group commit can answer each of its callers with it.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync>;

/// Why a store call failed, by what the caller can do about it. Each backend
/// maps its driver's errors to these (nothing here names a driver type); the
/// service edge turns them into gRPC statuses in one place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot serve now (closing, unreachable, out of space, busy
    /// beyond its timeout). Nothing was done; the call may be repeated later.
    #[error("the store is unavailable: {source}")]
    Unavailable { source: ErrorSource },
    /// The change collided with a concurrent one (a constraint or a
    /// serialisation failure). Nothing was done; the call may be repeated.
    #[error("a concurrent change conflicted: {source}")]
    Conflict { source: ErrorSource },
    /// Stored data is not what the store wrote (or the database is damaged).
    #[error("stored data is corrupt: {what}")]
    Corrupt { what: String },
    /// A root or proof was asked for sizes or indexes the audit tree lacks.
    #[error("audit tree: {0}")]
    Proof(#[from] tlog::ProofError),
    /// The store's schema cannot be used by this gateway (written by a
    /// newer one, or not a gateway store): found when it is opened.
    #[error(transparent)]
    Schema(#[from] schema_version::SchemaError),
    /// Any other failure of the backend.
    #[error("storage failure: {source}")]
    Backend { source: ErrorSource },
}

impl StoreError {
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable {
            source: source.into().into(),
        }
    }

    pub fn conflict(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Conflict {
            source: source.into().into(),
        }
    }

    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }

    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend {
            source: source.into().into(),
        }
    }
}

/// One validated row, ready to store.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub kind: RecordKind,
    /// Keyed hash of the record's source key.
    pub key_hash: Vec<u8>,
    /// Keyed hash of the person's identity number, if the record is about a person.
    pub person_index: Option<Vec<u8>>,
    /// The enterprise's credit code (not personal data), for employer look-ups.
    pub enterprise: Option<String>,
    /// The agency's change timestamp, Unix seconds: the record's version.
    pub changed_at: i64,
    pub cancel: bool,
    /// The whole canonical record, sealed with the active encryption key.
    pub sealed: Vec<u8>,
}

/// The outcome of one batch, as reported to the agency and kept for idempotent
/// re-sends. Holds no raw values: rejections name field, code and rule only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub rows_received: u64,
    pub accepted: u64,
    pub superseded: u64,
    /// The first rejections (at most the configured number listed).
    pub rejections: Vec<Rejection>,
    /// Rejections by code, all of them (also those not listed). Empty in
    /// receipts stored before the list was capped: then the list is all.
    #[serde(default)]
    pub rejected_counts: BTreeMap<String, u64>,
}

impl Receipt {
    pub fn rejected_by_code(&self) -> BTreeMap<String, u64> {
        if !self.rejected_counts.is_empty() {
            return self.rejected_counts.clone();
        }
        let mut m = BTreeMap::new();
        for r in &self.rejections {
            *m.entry(r.code.clone()).or_insert(0) += 1;
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub row: u32,
    pub field: String,
    pub code: String,
    pub message: String,
}

/// A batch to commit.
pub struct BatchWrite<'a> {
    pub agency: &'a str,
    pub batch_id: &'a str,
    /// SHA-256 of the batch's content, to tell a re-send from a reused id.
    pub content_hash: [u8; 32],
    pub records: Vec<RecordWrite>,
    /// The receipt, with `superseded` still 0: the store fills it in.
    pub receipt: Receipt,
    /// Builds the audit entry from the final receipt, inside the same commit.
    pub audit: &'a dyn Fn(&Receipt) -> AuditEntry,
}

/// A batch id seen before.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub content_hash: [u8; 32],
    pub receipt: Receipt,
}

/// What [`Store::commit_batch`] did.
#[derive(Debug, Clone)]
pub enum CommitOutcome {
    /// Durable now. `head` is the highest feed seq after the commit.
    Committed { receipt: Receipt, head: u64 },
    /// The batch id was already committed; nothing was written.
    AlreadyCommitted(StoredBatch),
}

/// A record as read from the change feed.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: u64,
    pub kind: RecordKind,
    pub key_hash: Vec<u8>,
    pub changed_at: i64,
    pub cancelled: bool,
    pub sealed: Vec<u8>,
}

/// Rows of a look-up, shared: a backend may hand out rows it keeps for the
/// next caller.
pub type Rows = Arc<[StoredRecord]>;

/// A read in progress, for async callers ([`Store::records_for_person_async`]):
/// it owns what it needs, so it may be awaited after the call returns.
pub type StoreRead<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// A stored record moved under the active index key (`gateway keys reindex`):
/// its new keyed hashes and its ciphertext sealed again for them.
#[derive(Debug, Clone)]
pub struct ReindexedRecord {
    /// The row (its feed position does not change).
    pub seq: u64,
    pub kind: RecordKind,
    pub key_hash: Vec<u8>,
    pub person_index: Option<Vec<u8>>,
    pub sealed: Vec<u8>,
    /// The record's earlier versions ([`Store::record_version_at`]), each
    /// sealed again for the new hash: (seq, sealed).
    pub versions: Vec<(u64, Vec<u8>)>,
}

/// Filters for audit queries (all optional).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Entries concerning this record kind.
    pub kind: Option<String>,
    /// Entries concerning this person (auditor-domain pseudonym).
    pub subject: Option<String>,
    pub after_seq: u64,
    pub limit: u32,
}

/// A stored audit entry: its position and its canonical bytes (the leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEntry {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

impl StoredAuditEntry {
    pub fn decode(&self) -> Result<CanonicalEntry, crate::audit::encoding::DecodeError> {
        CanonicalEntry::decode(&self.bytes)
    }
}

/// One leaf of the audit tree as exported: the leaf hash the tree holds and the
/// entry's canonical bytes (`None` if the entry row is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLeaf {
    pub seq: u64,
    pub leaf_hash: tlog::Hash,
    pub entry: Option<Vec<u8>>,
}

/// The note kept beside an audit entry (`audit::notes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNote {
    /// The entry whose details commit to the note.
    pub seq: u64,
    /// The commitment as stored with the note (the leaf's is authoritative).
    pub commitment: String,
    /// The sealed salt and text; `None` once erased.
    pub sealed: Option<Vec<u8>>,
    /// When it was erased, and the seq of the erasure's audit entry.
    pub erased: Option<(i64, u64)>,
}

/// What [`Store::erase_audit_note`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteErasure {
    /// Erased now; the erasure's audit entry has this seq.
    Erased { erasure_seq: u64 },
    /// Erased before (nothing was written).
    AlreadyErased { erasure_seq: u64 },
    /// The entry has no note (nothing was written).
    NoNote,
}

/// A signed checkpoint as kept by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: tlog::Hash,
    /// The C2SP signed note.
    pub note: String,
    pub signed_ms: i64,
}

/// Queued audit entries on their way into the log
/// ([`Store::append_audit_queued`]): a future of their outcome, ready once
/// they are durable or have failed. Dropping it does not withdraw them; a
/// failure that no one awaits is logged instead.
#[must_use = "await the outcome, or drop it explicitly to let the append go on unheard"]
pub struct AuditAppend(tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

/// The backend's side of an [`AuditAppend`]: answers it once.
pub struct AuditAppendDone(tokio::sync::oneshot::Sender<Result<(), StoreError>>);

impl AuditAppend {
    /// A pending append, and the side its backend answers it through.
    pub fn channel() -> (AuditAppendDone, AuditAppend) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (AuditAppendDone(tx), AuditAppend(rx))
    }

    /// An append already decided (e.g. refused because the store is closing).
    pub fn ready(outcome: Result<(), StoreError>) -> AuditAppend {
        let (done, append) = AuditAppend::channel();
        done.send(outcome);
        append
    }

    /// Blocks the thread until the outcome is known: for threads off the
    /// async runtime (it panics on one of the runtime's own threads).
    pub fn wait(self) -> Result<(), StoreError> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(abandoned()))
    }
}

impl std::future::Future for AuditAppend {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(abandoned())))
    }
}

impl AuditAppendDone {
    /// Answers the caller; if it is no longer waiting, a failure is logged.
    pub fn send(self, outcome: Result<(), StoreError>) {
        if let Err(Err(e)) = self.0.send(outcome) {
            tracing::error!(error = %e, "queued audit entries could not be written");
        }
    }
}

/// The backend dropped an append without answering it (it stopped).
fn abandoned() -> StoreError {
    StoreError::unavailable("the store stopped before the audit entries were written")
}

/// Implements [`Store`] for a backend's handle `$handle` by calling the
/// same-named methods of its `inner` field (the state its threads share, on
/// which each backend's files define the methods), so that each backend
/// does not spell out the forwarding again. `shared` is [`Store::shared`];
/// a block after it holds the handle's own versions of provided methods.
macro_rules! store_via_inner {
    ($handle:ty, shared: $shared:expr) => {
        $crate::store::store_via_inner!($handle, shared: $shared, {});
    };
    ($handle:ty, shared: $shared:expr, { $($own:item)* }) => {
        impl $crate::store::Store for $handle {
            $($own)*
            fn shared(&self) -> bool {
                $shared
            }
            fn find_batch(
                &self,
                agency: &str,
                batch_id: &str,
            ) -> Result<Option<$crate::store::StoredBatch>, $crate::store::StoreError> {
                self.inner.find_batch(agency, batch_id)
            }
            fn commit_batch(
                &self,
                batch: $crate::store::BatchWrite<'_>,
            ) -> Result<$crate::store::CommitOutcome, $crate::store::StoreError> {
                self.inner.commit_batch(batch)
            }
            fn read_feed(
                &self,
                kinds: &[adapters::RecordKind],
                after: u64,
                limit: usize,
            ) -> Result<Vec<$crate::store::StoredRecord>, $crate::store::StoreError> {
                self.inner.read_feed(kinds, after, limit)
            }
            fn records_for_person(
                &self,
                person_index: &[u8],
            ) -> Result<$crate::store::Rows, $crate::store::StoreError> {
                self.inner.records_for_person(person_index)
            }
            fn records_for_enterprise(
                &self,
                credit_code: &str,
                kinds: &[adapters::RecordKind],
            ) -> Result<$crate::store::Rows, $crate::store::StoreError> {
                self.inner.records_for_enterprise(credit_code, kinds)
            }
            fn record_version_at(
                &self,
                kind: adapters::RecordKind,
                key_hash: &[u8],
                seq: u64,
            ) -> Result<Option<$crate::store::StoredRecord>, $crate::store::StoreError> {
                self.inner.record_version_at(kind, key_hash, seq)
            }
            fn record_versions(
                &self,
                kind: adapters::RecordKind,
                key_hash: &[u8],
            ) -> Result<Vec<$crate::store::StoredRecord>, $crate::store::StoreError> {
                self.inner.record_versions(kind, key_hash)
            }
            fn feed_head(&self) -> Result<u64, $crate::store::StoreError> {
                self.inner.feed_head()
            }
            fn append_audit(
                &self,
                entries: &[$crate::audit::AuditEntry],
            ) -> Result<(), $crate::store::StoreError> {
                self.inner.append_audit(entries)
            }
            fn append_audit_queued(
                &self,
                entries: Vec<$crate::audit::AuditEntry>,
            ) -> $crate::store::AuditAppend {
                self.inner.append_audit_queued(entries)
            }
            fn query_audit(
                &self,
                filter: &$crate::store::AuditFilter,
            ) -> Result<Vec<$crate::store::StoredAuditEntry>, $crate::store::StoreError> {
                self.inner.query_audit(filter)
            }
            fn audit_size(&self) -> Result<u64, $crate::store::StoreError> {
                self.inner.audit_size()
            }
            fn audit_root(&self, size: u64) -> Result<tlog::Hash, $crate::store::StoreError> {
                self.inner.audit_root(size)
            }
            fn audit_inclusion_proof(
                &self,
                index: u64,
                size: u64,
            ) -> Result<Vec<tlog::Hash>, $crate::store::StoreError> {
                self.inner.audit_inclusion_proof(index, size)
            }
            fn audit_consistency_proof(
                &self,
                size1: u64,
                size2: u64,
            ) -> Result<Vec<tlog::Hash>, $crate::store::StoreError> {
                self.inner.audit_consistency_proof(size1, size2)
            }
            fn audit_leaves(
                &self,
                from: u64,
                to: u64,
                limit: usize,
            ) -> Result<Vec<$crate::store::AuditLeaf>, $crate::store::StoreError> {
                self.inner.audit_leaves(from, to, limit)
            }
            fn audit_subject_entries(
                &self,
                subject: &str,
                after_seq: u64,
                limit: usize,
            ) -> Result<Vec<$crate::store::StoredAuditEntry>, $crate::store::StoreError> {
                self.inner.audit_subject_entries(subject, after_seq, limit)
            }
            fn audit_note(
                &self,
                seq: u64,
            ) -> Result<Option<$crate::store::StoredNote>, $crate::store::StoreError> {
                self.inner.audit_note(seq)
            }
            fn erase_audit_note(
                &self,
                seq: u64,
                erasure: $crate::audit::AuditEntry,
            ) -> Result<$crate::store::NoteErasure, $crate::store::StoreError> {
                self.inner.erase_audit_note(seq, erasure)
            }
            fn meta_get(&self, key: &str) -> Result<Option<String>, $crate::store::StoreError> {
                self.inner.meta_get(key)
            }
            fn meta_set(&self, key: &str, value: &str) -> Result<(), $crate::store::StoreError> {
                self.inner.meta_set(key, value)
            }
            fn take_reidentification(
                &self,
                consumer: &str,
                now_ms: i64,
                window_ms: i64,
                limit: u32,
            ) -> Result<Result<(), i64>, $crate::store::StoreError> {
                self.inner
                    .take_reidentification(consumer, now_ms, window_ms, limit)
            }
            fn meta_set_audited(
                &self,
                meta: &[(&str, &str)],
                entries: &[$crate::audit::AuditEntry],
            ) -> Result<(), $crate::store::StoreError> {
                self.inner.meta_set_audited(meta, entries)
            }
            fn reindex_records(
                &self,
                rows: &[$crate::store::ReindexedRecord],
                meta: &[(&str, &str)],
            ) -> Result<u64, $crate::store::StoreError> {
                self.inner.reindex_records(rows, meta)
            }
            fn latest_checkpoint(
                &self,
            ) -> Result<Option<$crate::store::StoredCheckpoint>, $crate::store::StoreError> {
                self.inner.latest_checkpoint()
            }
            fn checkpoint_at(
                &self,
                size: u64,
            ) -> Result<Option<$crate::store::StoredCheckpoint>, $crate::store::StoreError> {
                self.inner.checkpoint_at(size)
            }
            fn audit_checkpoints(
                &self,
                after_size: u64,
                limit: usize,
            ) -> Result<Vec<$crate::store::StoredCheckpoint>, $crate::store::StoreError> {
                self.inner.audit_checkpoints(after_size, limit)
            }
            fn save_checkpoint(
                &self,
                checkpoint: &$crate::store::StoredCheckpoint,
            ) -> Result<(), $crate::store::StoreError> {
                self.inner.save_checkpoint(checkpoint)
            }
            fn queue_depths(&self) -> $crate::store::QueueDepths {
                self.inner.queue_depths()
            }
        }
    };
}
pub(crate) use store_via_inner;

/// Work waiting inside a store, for the operator's metrics: a queue that
/// keeps growing says the store cannot keep up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Audit entries queued for the next group commit.
    pub audit_entries: u64,
    /// Writes waiting for the store's writer.
    pub writes_waiting: u64,
    /// Committed audit subjects not yet in the subject index (an estimate).
    pub index_backlog: u64,
}

/// The storage interface. Methods block; async callers use `spawn_blocking`,
/// or the `_async` reads on the look-up path.
pub trait Store: Send + Sync + 'static {
    /// Whether other processes (gateway replicas) commit to the same store:
    /// then a commit made elsewhere is known only by watching
    /// [`Store::feed_head`], not from this process's own commits.
    fn shared(&self) -> bool {
        false
    }
    /// Claims the store for serving while it is open: refused while a
    /// maintenance command ([`Store::claim_maintenance`]) holds it. Stores of
    /// one process leave this to the data directory's lock.
    fn claim_serving(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Claims the store for maintenance that no serving gateway may see half
    /// done (`gateway keys`), while it is open: refused while any gateway
    /// serves from it.
    fn claim_maintenance(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn find_batch(&self, agency: &str, batch_id: &str) -> Result<Option<StoredBatch>, StoreError>;
    /// Atomically and durably applies a batch, unless its id was committed
    /// before (checked inside the same transaction, so concurrent re-sends of
    /// one batch id apply it once).
    fn commit_batch(&self, batch: BatchWrite<'_>) -> Result<CommitOutcome, StoreError>;
    /// Records of `kinds` whose latest change has `seq > after`, in seq order.
    fn read_feed(
        &self,
        kinds: &[RecordKind],
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError>;
    /// Current (not cancelled) records about one person, by keyed index.
    fn records_for_person(&self, person_index: &[u8]) -> Result<Rows, StoreError>;
    /// Current records of the given kinds about one enterprise.
    fn records_for_enterprise(
        &self,
        credit_code: &str,
        kinds: &[RecordKind],
    ) -> Result<Rows, StoreError>;
    /// [`Store::records_for_person`] for an async caller (a look-up). A
    /// store whose reads cross a network overrides it, so that the caller's
    /// thread serves others while the database answers; the default reads
    /// at once, on the calling thread, and returns the answer ready.
    fn records_for_person_async(&self, person_index: &[u8]) -> StoreRead<Rows> {
        Box::pin(std::future::ready(self.records_for_person(person_index)))
    }
    /// [`Store::records_for_enterprise`] for an async caller, as
    /// [`Store::records_for_person_async`].
    fn records_for_enterprise_async(
        &self,
        credit_code: &str,
        kinds: &[RecordKind],
    ) -> StoreRead<Rows> {
        Box::pin(std::future::ready(
            self.records_for_enterprise(credit_code, kinds),
        ))
    }
    /// Opens the refusal window of `source` (a digest of who was refused,
    /// and for what: [`crate::audit::repeats`]) for `window_ms`, unless one
    /// is open: true if this call opened it, so that its refusal is the
    /// window's first and is recorded. Replicas of one store decide it here
    /// together; a store used by one process leaves it to that process's own
    /// window (the default: always true).
    fn open_refusal_window(&self, source: &[u8], window_ms: i64) -> StoreRead<bool> {
        let _ = (source, window_ms);
        Box::pin(std::future::ready(Ok(true)))
    }
    /// The version of a record that was current at `seq` (the latest at or
    /// before it, the current row included), if the record existed then:
    /// what a consumer whose cursor is `seq` may hold of it.
    fn record_version_at(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
        seq: u64,
    ) -> Result<Option<StoredRecord>, StoreError>;
    /// Every earlier version kept of a record, in seq order.
    fn record_versions(
        &self,
        kind: RecordKind,
        key_hash: &[u8],
    ) -> Result<Vec<StoredRecord>, StoreError>;
    /// The highest seq in the change feed.
    fn feed_head(&self) -> Result<u64, StoreError>;
    /// What is waiting inside the store now (cheap: no I/O).
    fn queue_depths(&self) -> QueueDepths;
    /// Durably appends audit entries (for events that change nothing else), as
    /// Merkle leaves with their tree nodes, in one transaction (one fsync).
    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Queues audit entries for the next group commit and returns at once:
    /// concurrent callers share one transaction (one fsync). The returned
    /// future is ready once the entries are durable or have failed; it needs
    /// no runtime thread meanwhile (the backend does the work).
    fn append_audit_queued(&self, entries: Vec<AuditEntry>) -> AuditAppend;
    fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<StoredAuditEntry>, StoreError>;
    /// Number of leaves in the audit tree.
    fn audit_size(&self) -> Result<u64, StoreError>;
    /// Root of the audit tree at `size` (any size up to the current one).
    fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError>;
    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size`.
    fn audit_inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<tlog::Hash>, StoreError>;
    /// RFC 9162 consistency proof between two tree sizes.
    fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError>;
    /// Leaves `[from, to)` (leaf indexes), at most `limit`, in order.
    fn audit_leaves(&self, from: u64, to: u64, limit: usize) -> Result<Vec<AuditLeaf>, StoreError>;
    /// Entries naming this subject token after `after_seq`, in seq order, at
    /// most `limit` (a person's history is read a page at a time: an entry
    /// of a bulk pull's page is large).
    fn audit_subject_entries(
        &self,
        subject: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredAuditEntry>, StoreError>;
    /// The note kept beside entry `seq`, if it has one (erased or not).
    fn audit_note(&self, seq: u64) -> Result<Option<StoredNote>, StoreError>;
    /// Erases the note beside entry `seq` (its sealed text is overwritten,
    /// not merely unlinked) and durably appends `erasure`, the audit entry
    /// recording it, in one transaction. Entry `seq` and the tree are
    /// untouched.
    fn erase_audit_note(&self, seq: u64, erasure: AuditEntry) -> Result<NoteErasure, StoreError>;
    /// Small durable settings of the gateway itself (e.g. the key ids last in use).
    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Durably takes one of `consumer`'s re-identifications if fewer than
    /// `limit` were taken in the `window_ms` before `now_ms` (a sliding
    /// window, checked and taken in one transaction); otherwise
    /// `Err(milliseconds until one is free)`.
    fn take_reidentification(
        &self,
        consumer: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Result<(), i64>, StoreError>;
    /// Sets meta values and appends audit entries in one durable transaction
    /// (an operator's change and its record, or neither).
    fn meta_set_audited(
        &self,
        meta: &[(&str, &str)],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError>;
    /// Rewrites rows in place under new keyed hashes (a re-index), and sets
    /// meta values (its progress), in one durable transaction. A row whose
    /// new hash another row holds already is the same record: the older
    /// version of the two is deleted. Returns how many rows were so merged.
    fn reindex_records(
        &self,
        rows: &[ReindexedRecord],
        meta: &[(&str, &str)],
    ) -> Result<u64, StoreError>;
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// The stored checkpoints of sizes above `after_size`, smallest first,
    /// at most `limit` (an offline check of the whole log reads them all).
    fn audit_checkpoints(
        &self,
        after_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;
    fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
}
