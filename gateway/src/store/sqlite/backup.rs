//! Online backup and restore of the embedded store (`gateway backup`,
//! `gateway restore`). A backup is one SQLite file written by `VACUUM INTO`
//! from a connection of its own: one read transaction, so it is the store as
//! of one commit while the serving gateway goes on committing (WAL readers
//! never block the writer, and the checkpointer only copies the WAL
//! passively). The online backup API was not used: copied in steps, it
//! starts again whenever another process commits, which under steady pushes
//! is always; copied in one step, it is the same single read as this.
//!
//! What the data directory holds besides `gateway.db`: the subject index
//! (`audit-subjects.db`) is derived from the entries and rebuilt at start-up,
//! so it is not copied; `audit-log.vkey`, the log's public key, is copied into
//! the backup (table `gateway_backup`) so that a restored directory can be
//! verified before the gateway runs on it. The key file is never copied: it
//! holds the secrets every sealed value and pseudonym depends on, and is
//! backed up apart, under the operator's own protection.

use super::schema;
use crate::store::StoreError;
use crate::store::schema_version::{self, SchemaError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// The table a backup file carries (dropped by a restore).
const BACKUP_TABLE: &str = "gateway_backup";

/// What a backup or restore file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub schema_version: u32,
    /// Audit entries in the log.
    pub audit_entries: u64,
    /// Size of the latest signed checkpoint kept, if any.
    pub latest_checkpoint: Option<u64>,
    /// Records (current rows, tombstones included).
    pub records: u64,
    /// The log's public key, if the backup carries it.
    pub audit_vkey: Option<String>,
    /// When the backup was taken (Unix ms), if the file is a backup.
    pub taken_ms: Option<i64>,
}

fn gateway_db(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.db")
}

fn summary(c: &Connection) -> Result<BackupSummary, StoreError> {
    let schema_version = schema::version_of(c)?.ok_or_else(|| SchemaError::Unrecognised {
        what: "the file is an empty database".into(),
    })?;
    schema_version::pending(schema_version, &schema::MIGRATIONS)?;
    let audit_entries: i64 =
        c.query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| {
            r.get(0)
        })?;
    let latest_checkpoint: Option<i64> =
        c.query_row("SELECT max(size) FROM audit_checkpoints", [], |r| r.get(0))?;
    let records: i64 = c.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
    let has_info: bool = c.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![BACKUP_TABLE],
        |r| r.get(0),
    )?;
    let info = |k: &str| -> Result<Option<String>, StoreError> {
        if !has_info {
            return Ok(None);
        }
        Ok(c.query_row(
            &format!("SELECT v FROM {BACKUP_TABLE} WHERE k = ?1"),
            params![k],
            |r| r.get(0),
        )
        .optional()?)
    };
    Ok(BackupSummary {
        schema_version,
        audit_entries: audit_entries as u64,
        latest_checkpoint: latest_checkpoint.map(|s| s as u64),
        records: records as u64,
        audit_vkey: info("audit_vkey")?,
        taken_ms: info("taken_ms")?.and_then(|v| v.parse().ok()),
    })
}

/// Checks a whole database file (every page and index), as SQLite can.
fn quick_check(c: &Connection, what: &Path) -> Result<(), StoreError> {
    let result: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if result != "ok" {
        return Err(StoreError::corrupt(format!(
            "{} fails SQLite's check: {result}",
            what.display()
        )));
    }
    Ok(())
}

/// Makes a written file and its name durable.
fn sync(file: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::unavailable(format!("{}: {e}", file.display()));
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Writes a consistent copy of the store in `data_dir` to `out` (which must
/// not exist), while a gateway may be serving from it. `audit_vkey` (the
/// contents of `audit-log.vkey`) goes into the copy. The copy is complete
/// and checked before it gets its name.
pub fn backup(
    data_dir: &Path,
    out: &Path,
    audit_vkey: Option<&str>,
    now_ms: i64,
) -> Result<BackupSummary, StoreError> {
    let source = gateway_db(data_dir);
    if !source.is_file() {
        return Err(StoreError::unavailable(format!(
            "no store at {}",
            source.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::unavailable(format!(
            "{} exists already; the backup does not overwrite a file",
            out.display()
        )));
    }
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        // Read-only: the backup never writes to the serving store (not
        // even to migrate it: its own gateway does that).
        let c = Connection::open_with_flags(
            &source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::configure(&c)?;
        let version = schema::version_of(&c)?;
        if let Some(v) = version {
            schema_version::pending(v, &schema::MIGRATIONS)?;
        }
        let target = partial
            .to_str()
            .ok_or_else(|| StoreError::unavailable("the backup path is not UTF-8"))?;
        c.execute("VACUUM INTO ?1", params![target])?;
    }
    let summary = {
        let c = Connection::open(&partial)?;
        // One self-contained file, whatever the source's journal mode.
        c.pragma_update(None, "journal_mode", "DELETE")?;
        c.execute_batch(&format!(
            "CREATE TABLE {BACKUP_TABLE} (k TEXT PRIMARY KEY, v TEXT NOT NULL)"
        ))?;
        let mut info = vec![("taken_ms", now_ms.to_string())];
        if let Some(vkey) = audit_vkey {
            info.push(("audit_vkey", vkey.trim().to_string()));
        }
        for (k, v) in info {
            c.execute(
                &format!("INSERT INTO {BACKUP_TABLE} (k, v) VALUES (?1, ?2)"),
                params![k, v],
            )?;
        }
        quick_check(&c, &partial)?;
        summary(&c)?
    };
    sync(&partial)?;
    std::fs::rename(&partial, out)
        .map_err(|e| StoreError::unavailable(format!("{}: {e}", out.display())))?;
    sync(out)?;
    Ok(summary)
}

/// Reads what a backup file holds, refusing one that is not a gateway
/// store, is damaged, or has a schema this build does not know.
pub fn inspect(file: &Path) -> Result<BackupSummary, StoreError> {
    if !file.is_file() {
        return Err(StoreError::unavailable(format!(
            "no file at {}",
            file.display()
        )));
    }
    let c = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    quick_check(&c, file)?;
    summary(&c)
}

/// Whether `data_dir` holds a store with anything in it.
pub fn holds_a_store(data_dir: &Path) -> Result<bool, StoreError> {
    let db = gateway_db(data_dir);
    if !db.exists() {
        return Ok(false);
    }
    let c = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let tables: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    Ok(tables > 0)
}

/// Makes the backup `from` the store of `data_dir` (the gateway stopped).
/// A store already there is replaced only with `replace`. The subject
/// index is removed (rebuilt from the entries at start-up), and the log's
/// public key the backup carries is written to `audit-log.vkey`. A backup
/// of an older schema is migrated when the gateway next opens it.
pub fn restore(from: &Path, data_dir: &Path, replace: bool) -> Result<BackupSummary, StoreError> {
    let summary = inspect(from)?;
    if holds_a_store(data_dir)? && !replace {
        return Err(StoreError::unavailable(format!(
            "{} holds a store already; restoring would replace it (say so to replace it)",
            data_dir.display()
        )));
    }
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| StoreError::unavailable(format!("{what}: {e}"))
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let db = gateway_db(data_dir);
    let restoring = db.with_extension("db.restoring");
    std::fs::copy(from, &restoring).map_err(io(&restoring))?;
    {
        let c = Connection::open(&restoring)?;
        c.execute_batch(&format!("DROP TABLE IF EXISTS {BACKUP_TABLE}"))?;
    }
    sync(&restoring)?;
    // The replaced store's WAL must go before the new file takes its name
    // (SQLite would otherwise replay it into the restored database); the
    // rename then replaces the old file at once.
    for name in [
        "gateway.db-wal",
        "gateway.db-shm",
        "audit-subjects.db",
        "audit-subjects.db-wal",
        "audit-subjects.db-shm",
    ] {
        let path = data_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    std::fs::rename(&restoring, &db).map_err(io(&db))?;
    sync(&db)?;
    if let Some(vkey) = &summary.audit_vkey {
        let path = data_dir.join("audit-log.vkey");
        std::fs::write(&path, format!("{vkey}\n")).map_err(io(&path))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    /// A stopped store backs up and restores whole; a restore does not
    /// replace a store unless told, and refuses a file that is not one.
    #[test]
    fn a_backup_restores_into_an_empty_directory_only_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let (data, copy, file) = (
            dir.path().join("data"),
            dir.path().join("copy"),
            dir.path().join("b.backup"),
        );
        {
            let store = SqliteStore::open(&data).unwrap();
            store.meta_set("kept", "yes").unwrap();
        }
        let taken = backup(&data, &file, Some("vkey+text\n"), 7).unwrap();
        assert_eq!(taken.schema_version, schema::CURRENT);
        assert_eq!(taken.audit_vkey.as_deref(), Some("vkey+text"));
        assert_eq!(taken.taken_ms, Some(7));
        assert!(backup(&data, &file, None, 8).is_err(), "never overwritten");

        assert_eq!(restore(&file, &copy, false).unwrap(), taken);
        assert_eq!(
            std::fs::read_to_string(copy.join("audit-log.vkey")).unwrap(),
            "vkey+text\n"
        );
        let e = restore(&file, &copy, false).unwrap_err();
        assert!(e.to_string().contains("holds a store already"), "{e}");
        restore(&file, &copy, true).unwrap();
        let store = SqliteStore::open(&copy).unwrap();
        assert_eq!(store.meta_get("kept").unwrap().as_deref(), Some("yes"));

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = restore(&other, &dir.path().join("third"), false).unwrap_err();
        assert!(e.to_string().contains("not a gateway store"), "{e}");
    }
}
