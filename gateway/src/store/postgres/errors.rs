//! How PostgreSQL's failures (and the pool's) map to the store's: by what a
//! caller can do about them (wait, repeat, or report damage). The only place
//! that knows the driver's error types and SQLSTATE codes.

use crate::store::StoreError;
use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            return StoreError::unavailable(e);
        }
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection itself failed (refused, reset,
            // timed out), or a value did not convert (see `corrupt_value`).
            let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
            return if io || e.to_string().contains("timed out") {
                StoreError::unavailable(e)
            } else {
                StoreError::backend(e)
            };
        };
        let class = &code.code()[..2];
        if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::EXCLUSION_VIOLATION
        {
            StoreError::conflict(e)
        } else if class == "08"   // connection exception
            || class == "53"      // insufficient resources (disk full, out of memory, too many connections)
            || class == "57"      // operator intervention (shutdown, terminated backend, cannot connect now)
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        {
            // The last: a standby that was the primary a moment ago.
            StoreError::unavailable(e)
        } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            StoreError::corrupt(e.to_string())
        } else {
            StoreError::backend(e)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => StoreError::from(e),
            // Timed out waiting for or opening a connection, the pool
            // closed, or a connection that could not be set up.
            other => StoreError::unavailable(other.to_string()),
        }
    }
}

/// A stored value of a type or size the schema never stores.
pub(super) fn corrupt_value(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("{what}: {e}"))
}
