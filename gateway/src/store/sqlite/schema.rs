//! The SQLite schema: every table of `gateway.db` and of the subject index,
//! with what each column is for, the settings every connection shares, and
//! the forward migrations from the first release's schema (version 1, kept as
//! `tests/fixtures/schema/sqlite-v1.sql`) run at start-up. Kept apart so the
//! layout can be read in one place.
//!
//! The schema version is `PRAGMA user_version`, in the database header: it
//! changes inside the migration's own transaction (so a version and the
//! layout it names are committed together or not at all), it travels with
//! every copy of the file (a backup says what it holds), and it needs no
//! table of its own, which the first release's file could not have had.
//! Version 0 means "not recorded": a new file, or a store written before
//! versions were recorded, whose version is told by its tables
//! ([`detect_version`]).

use crate::store::StoreError;
use crate::store::audit_tree::TILE;
use crate::store::schema_version::{self, Migration, SchemaError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;

/// A migration's data step in Rust, run in the migration transaction.
type DataStep = fn(&Transaction<'_>) -> Result<(), StoreError>;

/// One migration's work: SQL, then (if any) a data step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    sql: &'static str,
    then: Option<DataStep>,
}

/// Every change since the first release's schema, in order. Each step is
/// written so that it also holds for a store that has some later change
/// already (`IF NOT EXISTS`, `OR IGNORE`), because the version of a store
/// from before versions were recorded is told from its tables. A step is
/// history: it spells out the DDL of its time instead of borrowing from
/// [`SCHEMA`], which moves on, and is never edited once released.
pub const MIGRATIONS: [Migration<Step>; 6] = [
    Migration {
        version: 2,
        what: "records in a rowid table (feed reads stay on the seq index)",
        step: Step {
            sql: r#"
CREATE TABLE records_rowid (
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
INSERT INTO records_rowid (kind, key_hash, seq, person_index, enterprise, changed_at,
                           cancelled, agency, batch_id, sealed)
    SELECT kind, key_hash, seq, person_index, enterprise, changed_at,
           cancelled, agency, batch_id, sealed
    FROM records ORDER BY seq;
DROP TABLE records;
ALTER TABLE records_rowid RENAME TO records;
CREATE INDEX records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX records_by_enterprise ON records (enterprise, kind) WHERE enterprise IS NOT NULL;
CREATE INDEX records_by_batch ON records (agency, batch_id);
"#,
            then: None,
        },
    },
    Migration {
        version: 3,
        what: "meta table (key ids in use, re-index progress)",
        step: Step {
            sql: "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);",
            then: None,
        },
    },
    Migration {
        version: 4,
        what: "the subject index moves to audit-subjects.db (rebuilt there from the entries)",
        step: Step {
            sql: "DROP TABLE IF EXISTS audit_subjects;",
            then: None,
        },
    },
    Migration {
        version: 5,
        what: "audit_leaves: the last, incomplete tile's leaves become rows",
        step: Step {
            sql: "CREATE TABLE IF NOT EXISTS audit_leaves (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);",
            then: Some(move_partial_tile_to_leaves),
        },
    },
    Migration {
        version: 6,
        what: "record_versions and the re-identification window",
        step: Step {
            // Stores before this kept no earlier versions, and the releases
            // that wrote them announced every cancellation to every
            // consumer. Each cancelled record gets one earlier version at
            // position 0 (its last content, not cancelled), so that a
            // consumer past the start still hears of a removal made before
            // the upgrade, as it would have then; a consumer reading from
            // the start still learns nothing of it.
            sql: r#"
CREATE TABLE IF NOT EXISTS record_versions (
    kind          TEXT NOT NULL,
    key_hash      BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    cancelled     INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (kind, key_hash, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reidentifications (
    consumer  TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reidentifications_by_consumer ON reidentifications (consumer, at_ms);
INSERT OR IGNORE INTO record_versions (kind, key_hash, seq, changed_at, cancelled, sealed)
    SELECT kind, key_hash, 0, changed_at, 0, sealed FROM records
    WHERE cancelled = 1
      AND NOT EXISTS (SELECT 1 FROM record_versions v
                      WHERE v.kind = records.kind AND v.key_hash = records.key_hash);
"#,
            then: None,
        },
    },
    Migration {
        version: 7,
        what: "audit_notes: sealed notes beside the log",
        step: Step {
            sql: r#"
CREATE TABLE IF NOT EXISTS audit_notes (
    seq         INTEGER PRIMARY KEY,
    commitment  TEXT NOT NULL,
    sealed      BLOB,
    erased_ms   INTEGER,
    erased_seq  INTEGER
);
"#,
            then: None,
        },
    },
];

/// The schema version this build creates and serves.
pub const CURRENT: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The current schema (version [`CURRENT`]), as a new store is created.
/// A test checks that the first release's schema and [`MIGRATIONS`] give
/// the same tables, columns and indexes.
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
-- Which entries name which person lives in audit-subjects.db (INDEX_SCHEMA),
-- derived from the entries themselves.
-- The Merkle tree. Leaf hashes live in complete tiles of 256 (one row per
-- tile); the leaves of the last, incomplete tile are rows of audit_leaves
-- until it completes, so an append adds small rows instead of rewriting a
-- growing 8 KiB tile. The complete subtrees below level 8 are recomputed
-- from a tile (at most 128 hashes), and every complete subtree at level 8
-- and above is a row of audit_nodes. Leaf hashes stay when an entry is
-- erased, so the tree does not break.
CREATE TABLE IF NOT EXISTS audit_tiles (
    idx      INTEGER PRIMARY KEY,   -- first leaf index of the tile (a multiple of 256)
    hashes   BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in order
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
/// schema or bringing an older one up to date; a newer one is refused
/// before anything is written.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let mut writer = Connection::open(path)?;
    configure(&writer)?;
    // Refused before anything is written (not even the journal mode).
    if let Some(found) = version_of(&writer)? {
        schema_version::pending(found, &MIGRATIONS)?;
    }
    writer.pragma_update(None, "journal_mode", "WAL")?;
    writer.pragma_update(None, "synchronous", "FULL")?;
    writer.pragma_update(None, "foreign_keys", "ON")?;
    // A 64 MiB page cache keeps the right edges of the audit tables and
    // indexes in memory, so appends do not re-read pages from the OS.
    writer.pragma_update(None, "cache_size", -65536)?;
    // No checkpoint on the commit path (one there stalls every caller
    // waiting on that commit for as long as it copies): the checkpointer
    // thread copies the WAL into the database beside the writer.
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    migrate(&mut writer)?;
    Ok(writer)
}

/// The recorded schema version (0: none recorded).
fn user_version(c: &Connection) -> Result<u32, StoreError> {
    let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    u32::try_from(v).map_err(|_| {
        SchemaError::Unrecognised {
            what: format!("it records schema version {v}"),
        }
        .into()
    })
}

/// Creates the current schema in an empty database, or runs the pending
/// migrations of an older one, and records the version: one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    match version_of(&tx)? {
        None => {
            tx.execute_batch(SCHEMA)?;
            tracing::info!(schema_version = CURRENT, "new store created");
        }
        Some(found) => {
            if found == CURRENT && user_version(&tx)? == CURRENT {
                return Ok(());
            }
            let todo = schema_version::pending(found, &MIGRATIONS)?;
            for m in todo {
                tracing::warn!(
                    from = m.version - 1,
                    to = m.version,
                    change = m.what,
                    "migrating the store's schema"
                );
                tx.execute_batch(m.step.sql)?;
                if let Some(then) = m.step.then {
                    then(&tx)?;
                }
            }
        }
    }
    tx.pragma_update(None, "user_version", CURRENT)?;
    tx.commit()?;
    Ok(())
}

/// The schema version of the database `c` is open on: recorded, or told by
/// its tables for a store from before versions were recorded; `None` for
/// an empty database (a new store).
pub fn version_of(c: &Connection) -> Result<Option<u32>, StoreError> {
    let tables: std::collections::BTreeSet<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let recorded = user_version(c)?;
    if tables.is_empty() && recorded == 0 {
        return Ok(None);
    }
    for table in [
        "batches",
        "records",
        "audit_log",
        "audit_tiles",
        "audit_checkpoints",
    ] {
        if !tables.contains(table) {
            let what = if table == "audit_log" && tables.contains("audit") {
                "it predates the first release (a plain `audit` table, no audit tree); \
                 create a new store and push the agencies' exports again"
                    .to_string()
            } else {
                format!("it has no `{table}` table: not a gateway store")
            };
            return Err(SchemaError::Unrecognised { what }.into());
        }
    }
    if recorded != 0 {
        return Ok(Some(recorded));
    }
    detect_version(c, &tables).map(Some)
}

/// The version of a store written before versions were recorded, told by
/// the changes it has: each migration's mark, counted from version 2 until
/// the first one missing (a store created by the build just before
/// versions were recorded has them all, and is current).
fn detect_version(
    c: &Connection,
    tables: &std::collections::BTreeSet<String>,
) -> Result<u32, StoreError> {
    let records_sql: String = c.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'",
        [],
        |r| r.get(0),
    )?;
    let has = |t: &str| tables.contains(t);
    let marks = [
        (
            2,
            !records_sql.to_ascii_uppercase().contains("WITHOUT ROWID"),
        ),
        (3, has("meta")),
        (4, !has("audit_subjects")),
        (5, has("audit_leaves")),
        (6, has("record_versions") && has("reidentifications")),
        (7, has("audit_notes")),
    ];
    debug_assert_eq!(marks.len(), MIGRATIONS.len());
    let mut version = schema_version::FIRST;
    for (v, present) in marks {
        if !present {
            break;
        }
        version = v;
    }
    Ok(version)
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
/// shorter `audit_tiles` row: its leaves become rows (migration 5).
fn move_partial_tile_to_leaves(tx: &Transaction<'_>) -> Result<(), StoreError> {
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
    Ok(())
}
