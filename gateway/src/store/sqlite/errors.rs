//! How SQLite's failures map to the store's: by what a caller can do about
//! them (wait, repeat, or report damage). The only place that knows
//! rusqlite's error codes.

use crate::store::StoreError;
use rusqlite::ErrorCode;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            // Values of a type the schema never stores.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => {
                return StoreError::corrupt(e.to_string());
            }
            _ => {}
        }
        match e.sqlite_error_code() {
            // Busy past the busy timeout, or the file cannot be used now.
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed,
            ) => StoreError::unavailable(e),
            Some(ErrorCode::ConstraintViolation) => StoreError::conflict(e),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::corrupt(e.to_string())
            }
            _ => StoreError::backend(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn sqlite_failures_map_by_what_a_caller_can_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Connection::open(dir.path().join("no/such/dir/x.db")).unwrap_err();
        assert!(matches!(
            StoreError::from(missing),
            StoreError::Unavailable { .. }
        ));

        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        let dup = c.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        let e = StoreError::from(dup);
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
        // The source is kept, for the logs.
        assert!(std::error::Error::source(&e).is_some());

        let not_a_db = dir.path().join("garbage.db");
        std::fs::write(&not_a_db, vec![0x5a; 4096]).unwrap();
        let c = Connection::open(&not_a_db).unwrap();
        let garbage = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(matches!(
            StoreError::from(garbage),
            StoreError::Corrupt { .. }
        ));

        // Text where the schema holds an integer.
        let c = Connection::open_in_memory().unwrap();
        let text = c
            .query_row("SELECT 'x'", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(matches!(StoreError::from(text), StoreError::Corrupt { .. }));
    }
}
