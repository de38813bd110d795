//! A store's whole contents as backend-neutral typed rows, so that a
//! deployment can move from one backend to another (`gateway store copy`)
//! without either backend knowing the other's driver. The source streams
//! [`DumpChunk`]s of at most a chunk's rows each, so a copy holds one chunk
//! in memory whatever the store's size; the destination writes them as they
//! come. Every table that a serving gateway reads is here, and nothing
//! derived that the destination keeps differently (its head rows and
//! per-subject latest entries are recomputed from these rows).
//!
//! The audit tree travels as its stored rows (tiles, last leaves, nodes),
//! whose layout both backends share (`store::audit_tree`); the copy then
//! checks the destination's root at every checkpoint against the source's.

use super::{StoreError, StoredCheckpoint};

/// Rows per chunk a source hands over at a time.
pub const CHUNK_ROWS: usize = 2000;

/// One row of `batches`: a batch's receipt, kept for idempotent re-sends.
#[derive(Debug, Clone)]
pub struct DumpBatch {
    pub agency: String,
    pub batch_id: String,
    pub content_hash: Vec<u8>,
    pub receipt: String,
    pub committed_ms: i64,
}

/// One row of `records`: a record's current version (a tombstone if
/// cancelled) at its change-feed position.
#[derive(Debug, Clone)]
pub struct DumpRecord {
    pub kind: String,
    pub key_hash: Vec<u8>,
    pub seq: i64,
    pub person_index: Option<Vec<u8>>,
    pub enterprise: Option<String>,
    pub changed_at: i64,
    pub cancelled: bool,
    pub agency: String,
    pub batch_id: String,
    pub sealed: Vec<u8>,
}

/// One row of `record_versions`: a version a record had before.
#[derive(Debug, Clone)]
pub struct DumpVersion {
    pub kind: String,
    pub key_hash: Vec<u8>,
    pub seq: i64,
    pub changed_at: i64,
    pub cancelled: bool,
    pub sealed: Vec<u8>,
}

/// One audit entry: its canonical bytes (the leaf), the copies of its
/// fields kept for querying, and the subject tokens it names (for the
/// destination's subject index).
#[derive(Debug, Clone)]
pub struct DumpAuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub kinds: String,
    pub entry: Vec<u8>,
    pub subjects: Vec<String>,
}

/// One row of `audit_notes`.
#[derive(Debug, Clone)]
pub struct DumpNote {
    pub seq: i64,
    pub commitment: String,
    pub sealed: Option<Vec<u8>>,
    pub erased_ms: Option<i64>,
    pub erased_seq: Option<i64>,
}

/// The positions the source had handed out when the dump was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpHeads {
    /// The change feed's last position.
    pub feed: u64,
    /// The audit log's size (leaves).
    pub audit_size: u64,
    /// The audit tree's root at that size.
    pub audit_root: tlog::Hash,
}

/// A chunk of rows of one table.
#[derive(Debug, Clone)]
pub enum DumpChunk {
    /// First, once.
    Heads(DumpHeads),
    /// Key ids in use, pseudonym domain bindings, re-index progress.
    Meta(Vec<(String, String)>),
    Batches(Vec<DumpBatch>),
    Records(Vec<DumpRecord>),
    RecordVersions(Vec<DumpVersion>),
    /// Re-identifications taken: (consumer, at ms).
    Reidentifications(Vec<(String, i64)>),
    AuditEntries(Vec<DumpAuditEntry>),
    /// Complete tiles of 256 leaf hashes: (first leaf index, hashes).
    AuditTiles(Vec<(i64, Vec<u8>)>),
    /// Leaves of the last, incomplete tile: (index, hash).
    AuditLeaves(Vec<(i64, Vec<u8>)>),
    /// Stored subtrees: (level, index, hash).
    AuditNodes(Vec<(i64, i64, Vec<u8>)>),
    Notes(Vec<DumpNote>),
    Checkpoints(Vec<StoredCheckpoint>),
}

impl DumpChunk {
    /// Rows in the chunk (the heads count as none).
    pub fn rows(&self) -> usize {
        match self {
            DumpChunk::Heads(_) => 0,
            DumpChunk::Meta(v) => v.len(),
            DumpChunk::Batches(v) => v.len(),
            DumpChunk::Records(v) => v.len(),
            DumpChunk::RecordVersions(v) => v.len(),
            DumpChunk::Reidentifications(v) => v.len(),
            DumpChunk::AuditEntries(v) => v.len(),
            DumpChunk::AuditTiles(v) | DumpChunk::AuditLeaves(v) => v.len(),
            DumpChunk::AuditNodes(v) => v.len(),
            DumpChunk::Notes(v) => v.len(),
            DumpChunk::Checkpoints(v) => v.len(),
        }
    }
}

/// Where a source's chunks go, one at a time.
pub type DumpSink<'a> = dyn FnMut(DumpChunk) -> Result<(), StoreError> + 'a;

/// What a copy moved, table by table as the destination counted them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    pub meta: u64,
    pub batches: u64,
    pub records: u64,
    pub record_versions: u64,
    pub reidentifications: u64,
    pub audit_entries: u64,
    pub audit_size: u64,
    pub notes: u64,
    pub checkpoints: u64,
}

/// Hands `rows` to `sink` in chunks of at most [`CHUNK_ROWS`], built by `wrap`.
pub(crate) fn chunked<T, I: Iterator<Item = Result<T, StoreError>>>(
    rows: I,
    wrap: fn(Vec<T>) -> DumpChunk,
    sink: &mut DumpSink<'_>,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(CHUNK_ROWS);
    for row in rows {
        buf.push(row?);
        if buf.len() == CHUNK_ROWS {
            sink(wrap(std::mem::replace(
                &mut buf,
                Vec::with_capacity(CHUNK_ROWS),
            )))?;
        }
    }
    if !buf.is_empty() {
        sink(wrap(buf))?;
    }
    Ok(())
}
