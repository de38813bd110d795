//! The SQLite schema: every table of `gateway.db` and of the subject index,
//! with what each column is for, the settings every connection shares, and
//! the one-time migrations of older layouts run at start-up. Kept apart so the
//! layout can be read in one place.

use crate::store::StoreError;
use crate::store::audit_tree::TILE;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    k  TEXT PRIMARY KEY,
    v  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS batches (
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    content_hash  BLOB NOT NULL,
    receipt       TEXT NOT NULL,
    committed_ms  INTEGER NOT NULL,
    PRIMARY KEY (agency, batch_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
    kind          TEXT NOT NULL,
    key_hash      BLOB NOT NULL,
    seq           INTEGER NOT NULL UNIQUE,
    person_index  BLOB,
    enterprise    TEXT,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX IF NOT EXISTS records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_enterprise ON records (enterprise, kind) WHERE enterprise IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_batch ON records (agency, batch_id);
-- The versions a record had before its current row (sealed as they were):
-- which version a consumer at a given cursor may hold, so that a removal is
-- announced only to a consumer that could have been delivered the record.
CREATE TABLE IF NOT EXISTS record_versions (
    kind          TEXT NOT NULL,
    key_hash      BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash, seq)
) WITHOUT ROWID;
-- Re-identifications taken, per consumer: the sliding hourly limit survives
-- restarts. Rows older than the window are pruned as new ones are taken.
CREATE TABLE IF NOT EXISTS reidentifications (
    consumer  TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reidentifications_by_consumer ON reidentifications (consumer, at_ms);

-- The audit log (see gateway/src/audit/ENCODING.md). `entry` holds the
-- canonical bytes, the leaf; the other columns are copies for querying.
CREATE TABLE IF NOT EXISTS audit_log (
    seq      INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    kinds    TEXT NOT NULL,      -- ",kind1,kind2," for filtering
    entry    BLOB NOT NULL
);
-- One secondary index only (by action, the usual filter): every index costs
-- each append a B-tree insert; other filters scan in seq order, page by page.
CREATE INDEX IF NOT EXISTS audit_log_by_action ON audit_log (action, seq);
DROP INDEX IF EXISTS audit_log_by_actor;
-- Which entries name which person lives in audit-subjects.db (INDEX_SCHEMA),
-- derived from the entries themselves.
DROP TABLE IF EXISTS audit_subjects;
-- The Merkle tree. Leaf hashes live in complete tiles of 256 (one row per
-- tile); the leaves of the last, incomplete tile are rows of audit_leaves
-- until it completes, so an append adds small rows instead of rewriting a
-- growing 8 KiB tile. The complete subtrees below level 8 are recomputed
-- from a tile (at most 128 hashes), and every complete subtree at level 8
-- and above is a row of audit_nodes. Leaf hashes stay when an entry is
-- erased, so the tree does not break.
CREATE TABLE IF NOT EXISTS audit_tiles (
    idx      INTEGER PRIMARY KEY,   -- first leaf index of the tile (a multiple of 256)
    hashes   BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in order (stores
                                    -- written before audit_leaves: the last one may be shorter)
);
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx      INTEGER PRIMARY KEY,   -- leaf index, in the last, incomplete tile
    hash     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_nodes (
    level    INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    hash     BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- Notes beside the log (audit/notes.rs): free text an entry's details commit
-- to (a re-identification's justification) but the leaf never holds; sealed,
-- bound to the commitment, written in the entry's own transaction. Erasing a
-- note overwrites `sealed` (secure_delete) and records when and by which
-- entry; the entry and its leaf stay as they were.
CREATE TABLE IF NOT EXISTS audit_notes (
    seq         INTEGER PRIMARY KEY,   -- the entry whose details commit to the note
    commitment  TEXT NOT NULL,         -- hex SHA-256(salt || text), as in the entry
    sealed      BLOB,                  -- AES-GCM(salt || text); NULL once erased
    erased_ms   INTEGER,
    erased_seq  INTEGER                -- the note_erased entry
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL,
    signed_ms INTEGER NOT NULL
);
"#;

/// The subject index (`audit-subjects.db`): derived from the audit entries,
/// rebuilt from them if lost, so it is written with `synchronous = NORMAL`.
const INDEX_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject  TEXT NOT NULL,     -- auditor-domain pseudonym
    seq      INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS progress (
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    indexed_through  INTEGER NOT NULL
);
INSERT OR IGNORE INTO progress (id, indexed_through) VALUES (0, 0);
"#;

/// Opens the writer connection to `gateway.db` at `path`, creating the
/// schema and bringing older layouts up to date.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let mut writer = Connection::open(path)?;
    writer.pragma_update(None, "journal_mode", "WAL")?;
    writer.pragma_update(None, "synchronous", "FULL")?;
    writer.pragma_update(None, "foreign_keys", "ON")?;
    configure(&writer)?;
    // A 64 MiB page cache keeps the right edges of the audit tables and
    // indexes in memory, so appends do not re-read pages from the OS.
    writer.pragma_update(None, "cache_size", -65536)?;
    // No checkpoint on the commit path (one there stalls every caller
    // waiting on that commit for as long as it copies): the checkpointer
    // thread copies the WAL into the database beside the writer.
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    writer.execute_batch(SCHEMA)?;
    move_partial_tile_to_leaves(&mut writer)?;
    Ok(writer)
}

/// Opens the subject index at `path` (its writer connection) for a log of
/// `log_size` entries.
pub(super) fn open_index(path: &Path, log_size: u64) -> Result<Connection, StoreError> {
    let index = Connection::open(path)?;
    index.pragma_update(None, "journal_mode", "WAL")?;
    index.pragma_update(None, "synchronous", "NORMAL")?;
    index.busy_timeout(std::time::Duration::from_secs(30))?;
    index.pragma_update(None, "cache_size", -65536)?;
    index.execute_batch(INDEX_SCHEMA)?;
    // A log cut back (restored from a backup, or tampered with) leaves
    // index rows beyond its end: they go, and indexing resumes there.
    index.execute(
        "DELETE FROM audit_subjects WHERE seq > ?1",
        params![log_size as i64],
    )?;
    index.execute(
        "UPDATE progress SET indexed_through = min(indexed_through, ?1)",
        params![log_size as i64],
    )?;
    Ok(index)
}

/// Settings every connection to `gateway.db` shares.
pub(super) fn configure(c: &Connection) -> Result<(), StoreError> {
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    // One plan per statement whatever the bound values: checking whether
    // `col = ?` implies a partial index's condition otherwise marks a
    // statement to be re-prepared at every new binding (look-ups spent about
    // half their store work re-parsing SQL).
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Stores written before `audit_leaves` kept the last, incomplete tile as a
/// shorter `audit_tiles` row: its leaves become rows (once, at start-up).
fn move_partial_tile_to_leaves(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let partial: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT idx, hashes FROM audit_tiles WHERE length(hashes) < ?1 ORDER BY idx DESC LIMIT 1",
            params![(TILE * 32) as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((start, hashes)) = partial {
        if hashes.len() % 32 != 0 {
            return Err(StoreError::corrupt(format!(
                "audit tile {start} holds {} bytes",
                hashes.len()
            )));
        }
        for (i, hash) in hashes.chunks_exact(32).enumerate() {
            tx.execute(
                "INSERT INTO audit_leaves (idx, hash) VALUES (?1, ?2)",
                params![start + i as i64, hash],
            )?;
        }
        tx.execute("DELETE FROM audit_tiles WHERE idx = ?1", params![start])?;
    }
    tx.commit()?;
    Ok(())
}
