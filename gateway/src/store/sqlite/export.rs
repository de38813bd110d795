//! The embedded store as the source of a move to another backend
//! (`gateway store copy`): every table a serving gateway reads, streamed as
//! [`DumpChunk`]s from one read snapshot, so the chunks agree with one
//! another even if something wrote meanwhile (the copy holds the data
//! directory's lock, so nothing should).

use super::{Inner, SqliteStore};
use crate::store::StoreError;
use crate::store::dump::{
    DumpAuditEntry, DumpBatch, DumpChunk, DumpHeads, DumpNote, DumpRecord, DumpSink, DumpVersion,
    chunked,
};
use rusqlite::Connection;

impl SqliteStore {
    /// Streams the whole store to `sink`, [`DumpChunk::Heads`] first.
    pub fn export(&self, sink: &mut DumpSink<'_>) -> Result<(), StoreError> {
        self.inner.export(sink)
    }
}

/// Runs `sql` and hands its rows, as `row` reads them, to `sink` in chunks.
fn each<T>(
    c: &Connection,
    sql: &str,
    row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    wrap: fn(Vec<T>) -> DumpChunk,
    sink: &mut DumpSink<'_>,
) -> Result<(), StoreError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt
        .query_map([], row)?
        .map(|r| r.map_err(StoreError::from));
    chunked(rows, wrap, sink)
}

impl Inner {
    fn export(&self, sink: &mut DumpSink<'_>) -> Result<(), StoreError> {
        self.read(|c| {
            // One snapshot for every statement below.
            c.execute_batch("BEGIN")?;
            let out = export_from(c, sink);
            let _ = c.execute_batch("ROLLBACK");
            out
        })
    }
}

fn export_from(c: &Connection, sink: &mut DumpSink<'_>) -> Result<(), StoreError> {
    let feed = super::records::head(c)?;
    let tree = super::audit_tree::tree(c)?;
    let audit_size = tree.size();
    let audit_root = tree.root(audit_size)?;
    sink(DumpChunk::Heads(DumpHeads {
        feed,
        audit_size,
        audit_root,
    }))?;
    each(
        c,
        "SELECT k, v FROM meta ORDER BY k",
        |r| Ok((r.get(0)?, r.get(1)?)),
        DumpChunk::Meta,
        sink,
    )?;
    each(
        c,
        "SELECT agency, batch_id, content_hash, receipt, committed_ms FROM batches",
        |r| {
            Ok(DumpBatch {
                agency: r.get(0)?,
                batch_id: r.get(1)?,
                content_hash: r.get(2)?,
                receipt: r.get(3)?,
                committed_ms: r.get(4)?,
            })
        },
        DumpChunk::Batches,
        sink,
    )?;
    each(
        c,
        "SELECT kind, key_hash, seq, person_index, enterprise, changed_at, cancelled, agency,
                batch_id, sealed
         FROM records ORDER BY seq",
        |r| {
            Ok(DumpRecord {
                kind: r.get(0)?,
                key_hash: r.get(1)?,
                seq: r.get(2)?,
                person_index: r.get(3)?,
                enterprise: r.get(4)?,
                changed_at: r.get(5)?,
                cancelled: r.get::<_, i64>(6)? != 0,
                agency: r.get(7)?,
                batch_id: r.get(8)?,
                sealed: r.get(9)?,
            })
        },
        DumpChunk::Records,
        sink,
    )?;
    each(
        c,
        "SELECT kind, key_hash, seq, changed_at, cancelled, sealed FROM record_versions",
        |r| {
            Ok(DumpVersion {
                kind: r.get(0)?,
                key_hash: r.get(1)?,
                seq: r.get(2)?,
                changed_at: r.get(3)?,
                cancelled: r.get::<_, i64>(4)? != 0,
                sealed: r.get(5)?,
            })
        },
        DumpChunk::RecordVersions,
        sink,
    )?;
    each(
        c,
        "SELECT consumer, at_ms FROM reidentifications",
        |r| Ok((r.get(0)?, r.get(1)?)),
        DumpChunk::Reidentifications,
        sink,
    )?;
    // The subject tokens come from the entries themselves (the subject
    // index file may lag behind the log).
    let mut stmt = c.prepare(
        "SELECT seq, at_ms, actor, action, outcome, kinds, entry FROM audit_log ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(DumpAuditEntry {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                outcome: r.get(4)?,
                kinds: r.get(5)?,
                entry: r.get(6)?,
                subjects: Vec::new(),
            })
        })?
        .map(|r| {
            let mut e = r?;
            let decoded =
                crate::audit::encoding::CanonicalEntry::decode(&e.entry).map_err(|_| {
                    StoreError::corrupt(format!("audit entry {} does not decode", e.seq))
                })?;
            e.subjects = decoded.subjects.into_iter().map(|s| s.token).collect();
            Ok(e)
        });
    chunked(rows, DumpChunk::AuditEntries, sink)?;
    each(
        c,
        "SELECT idx, hashes FROM audit_tiles ORDER BY idx",
        |r| Ok((r.get(0)?, r.get(1)?)),
        DumpChunk::AuditTiles,
        sink,
    )?;
    each(
        c,
        "SELECT idx, hash FROM audit_leaves ORDER BY idx",
        |r| Ok((r.get(0)?, r.get(1)?)),
        DumpChunk::AuditLeaves,
        sink,
    )?;
    each(
        c,
        "SELECT level, idx, hash FROM audit_nodes",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        DumpChunk::AuditNodes,
        sink,
    )?;
    each(
        c,
        "SELECT seq, commitment, sealed, erased_ms, erased_seq FROM audit_notes ORDER BY seq",
        |r| {
            Ok(DumpNote {
                seq: r.get(0)?,
                commitment: r.get(1)?,
                sealed: r.get(2)?,
                erased_ms: r.get(3)?,
                erased_seq: r.get(4)?,
            })
        },
        DumpChunk::Notes,
        sink,
    )?;
    let mut stmt =
        c.prepare("SELECT size, root, note, signed_ms FROM audit_checkpoints ORDER BY size")?;
    let rows = stmt
        .query_map([], super::checkpoints::row_to_checkpoint)?
        .map(|r| {
            super::checkpoints::checkpoint_from_row(Some(r?))?
                .ok_or_else(|| StoreError::corrupt("a checkpoint row"))
        });
    chunked(rows, DumpChunk::Checkpoints, sink)
}
