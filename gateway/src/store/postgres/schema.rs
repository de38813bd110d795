//! The PostgreSQL schema: the first release's layout (version 1, [`V1`])
//! and the forward migrations since, in the shared shape
//! ([`crate::store::schema_version`]). The version is a row of
//! `schema_version`; each replica, when it opens, creates the layout or runs
//! the pending migrations in one transaction under an advisory lock (so
//! replicas starting together migrate once), and refuses a database whose
//! schema is newer than it knows. The tables mirror the SQLite store's
//! (`store::sqlite::schema`); what differs is said here.

use super::db::{Tx, get};
use crate::store::StoreError;
use crate::store::schema_version::{self, Migration};

/// Version 1: the whole layout.
///
/// Beside the SQLite tables: `feed_head` and `audit_head`, one row each, are
/// the positions handed out so far. Every writer locks them (`FOR UPDATE`)
/// for the length of its transaction, which is what puts commits in one
/// order across replicas (see the module's opening comment). Which entries
/// name which subject (`audit_subjects`) and each subject's latest entry
/// (`audit_subject_heads`) were written with the entries until version 3
/// moved both after the commit (`indexer`; replicas hold the heads in
/// memory, `heads`). Text compared or ordered as
/// SQLite does (byte order) is read with `COLLATE "C"`.
const V1: &str = r#"
CREATE TABLE meta (
    k  TEXT PRIMARY KEY,
    v  TEXT NOT NULL
);

CREATE TABLE batches (
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    content_hash  BYTEA NOT NULL,
    receipt       TEXT NOT NULL,
    committed_ms  BIGINT NOT NULL,
    PRIMARY KEY (agency, batch_id)
);

-- The change feed's last position handed out: locked by each commit that
-- changes records until it commits, so positions become visible in order.
CREATE TABLE feed_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 0),
    seq  BIGINT NOT NULL
);
INSERT INTO feed_head (id, seq) VALUES (0, 0);

CREATE TABLE records (
    kind          TEXT NOT NULL,
    key_hash      BYTEA NOT NULL,
    seq           BIGINT NOT NULL UNIQUE,
    person_index  BYTEA,
    enterprise    TEXT,
    changed_at    BIGINT NOT NULL,
    cancelled     BOOLEAN NOT NULL,
    agency        TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    sealed        BYTEA NOT NULL,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX records_by_person ON records (person_index) WHERE person_index IS NOT NULL;
CREATE INDEX records_by_enterprise ON records (enterprise, kind) WHERE enterprise IS NOT NULL;
CREATE INDEX records_by_batch ON records (agency, batch_id);
CREATE TABLE record_versions (
    kind          TEXT NOT NULL,
    key_hash      BYTEA NOT NULL,
    seq           BIGINT NOT NULL,
    changed_at    BIGINT NOT NULL,
    cancelled     BOOLEAN NOT NULL,
    sealed        BYTEA NOT NULL,
    PRIMARY KEY (kind, key_hash, seq)
);

-- Re-identifications taken, per consumer (the sliding limit), and one row
-- per consumer that a taker locks, so replicas check and take in turn.
CREATE TABLE reidentification_consumers (
    consumer  TEXT PRIMARY KEY
);
CREATE TABLE reidentifications (
    consumer  TEXT NOT NULL,
    at_ms     BIGINT NOT NULL
);
CREATE INDEX reidentifications_by_consumer ON reidentifications (consumer, at_ms);

-- The audit log's size: locked by each append until it commits, so entries
-- get one global order and each append extends the tree the last one left.
CREATE TABLE audit_head (
    id    SMALLINT PRIMARY KEY CHECK (id = 0),
    size  BIGINT NOT NULL
);
INSERT INTO audit_head (id, size) VALUES (0, 0);

CREATE TABLE audit_log (
    seq      BIGINT PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    kinds    TEXT NOT NULL,      -- ",kind1,kind2," for filtering
    entry    BYTEA NOT NULL
);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE TABLE audit_subjects (
    subject  TEXT NOT NULL,      -- auditor-domain pseudonym
    seq      BIGINT NOT NULL,
    PRIMARY KEY (subject, seq)
);
CREATE TABLE audit_subject_heads (
    subject  TEXT PRIMARY KEY,
    seq      BIGINT NOT NULL     -- the latest entry naming it: the next one's back-pointer
);
-- The Merkle tree, laid out as store::audit_tree says.
CREATE TABLE audit_tiles (
    idx     BIGINT PRIMARY KEY,
    hashes  BYTEA NOT NULL
);
CREATE TABLE audit_leaves (
    idx   BIGINT PRIMARY KEY,
    hash  BYTEA NOT NULL
);
CREATE TABLE audit_nodes (
    level  SMALLINT NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE audit_notes (
    seq         BIGINT PRIMARY KEY,
    commitment  TEXT NOT NULL,
    sealed      BYTEA,
    erased_ms   BIGINT,
    erased_seq  BIGINT
);
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BYTEA NOT NULL,
    note       TEXT NOT NULL,
    signed_ms  BIGINT NOT NULL
);
"#;

/// The migrations since version 1, in order, each its SQL. A change to the
/// layout is a new entry at the end, never an edit of an applied one.
pub(super) const MIGRATIONS: [Migration<&str>; 2] = [
    Migration {
        version: 2,
        what: "refusal windows shared by the replicas",
        // One row per source of refusals (a digest), the time its window
        // opened by the database's clock; rows of closed windows are pruned as
        // new ones open (`refusals`).
        step: r#"
        CREATE TABLE refusal_windows (
            source     BYTEA PRIMARY KEY,
            opened_ms  BIGINT NOT NULL
        );
        CREATE INDEX refusal_windows_by_opened ON refusal_windows (opened_ms);
    "#,
    },
    Migration {
        version: 3,
        what: "the subject index written after the commit",
        // How far the indexer has reached (`indexer`): everything appended
        // so far was indexed inside its append. Subject heads are now the
        // latest indexed entry per subject, moved by each indexing turn:
        // room on their pages lets those updates skip the index (HOT).
        step: r#"
        CREATE TABLE audit_subject_index (
            id               SMALLINT PRIMARY KEY CHECK (id = 0),
            indexed_through  BIGINT NOT NULL
        );
        INSERT INTO audit_subject_index (id, indexed_through)
            SELECT 0, size FROM audit_head WHERE id = 0;
        ALTER TABLE audit_subject_heads SET (fillfactor = 70);
    "#,
    },
];

/// The advisory lock key replicas take while migrating (any constant that
/// nothing else in the database uses).
const MIGRATION_LOCK: i64 = 0x6761_7465_7761_7931;

/// Brings the schema up to the latest version, inside the caller's
/// transaction; refuses a database migrated by a newer gateway.
pub(super) fn migrate(db: &Tx<'_>) -> Result<(), StoreError> {
    db.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version     INTEGER PRIMARY KEY,
             applied_ms  BIGINT NOT NULL
         )",
        &[],
    )?;
    let row = db.query_one("SELECT MAX(version) FROM schema_version", &[])?;
    let todo = match get::<Option<i32>>(&row, 0)? {
        None => {
            // A new database: the first layout, then every migration.
            db.batch(V1)?;
            record(db, schema_version::FIRST)?;
            &MIGRATIONS[..]
        }
        Some(found) => schema_version::pending(found.max(0) as u32, &MIGRATIONS)
            .map_err(StoreError::unavailable)?,
    };
    for m in todo {
        tracing::info!(
            version = m.version,
            what = m.what,
            "migrating the store's schema"
        );
        db.batch(m.step)?;
        record(db, m.version)?;
    }
    Ok(())
}

fn record(db: &Tx<'_>, version: u32) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
        &[&(version as i32), &crate::audit::now_ms()],
    )?;
    Ok(())
}
