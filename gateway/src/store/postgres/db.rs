//! The driver's async calls behind the store's blocking methods. The pool and
//! its connections live on the store's own small runtime (so the store does
//! not depend on, or die with, a caller's runtime); a statement's future is
//! driven to completion on the calling thread, which only waits on channels
//! to the connection task and so needs no runtime of its own. Every method
//! of the store blocks its caller, as the trait says.

use super::Inner;
use super::errors::corrupt_value;
use crate::store::StoreError;
use deadpool_postgres::{GenericClient, Object, Transaction};
use std::future::Future;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

/// Drives `f` to completion on this thread.
pub(super) fn wait<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// Statements through one client or transaction, prepared once per
/// connection (deadpool keeps each connection's prepared statements).
pub(super) struct Db<'a, C>(pub(super) &'a C);

pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Db<'_, C> {
    pub(super) fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(wait(async {
            let stmt = self.0.prepare_cached(sql).await?;
            self.0.query(&stmt, params).await
        })?)
    }

    pub(super) fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(wait(async {
            let stmt = self.0.prepare_cached(sql).await?;
            self.0.query_opt(&stmt, params).await
        })?)
    }

    pub(super) fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::corrupt(format!("no row where one is kept: {sql}")))
    }

    pub(super) fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        Ok(wait(async {
            let stmt = self.0.prepare_cached(sql).await?;
            self.0.execute(&stmt, params).await
        })?)
    }
}

/// Column `idx` of `row`; a value that does not convert is damage.
pub(super) fn get<'r, T: FromSql<'r>>(row: &'r Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| corrupt_value("stored value", e))
}

/// Text as PostgreSQL can hold it: its text types refuse the NUL character,
/// which SQLite and Rust strings allow. Text copied into columns for
/// querying (an audit entry's actor, action, …; the entry itself is bytes)
/// and the filters compared with it go through this one mapping, so a value
/// holding NUL is stored and found as it is on SQLite, instead of failing.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

/// A position as PostgreSQL stores it (BIGINT). Positions past `i64::MAX`
/// are past every stored one.
pub(super) fn pos(p: u64) -> i64 {
    i64::try_from(p).unwrap_or(i64::MAX)
}

/// How a transaction isolates its reads.
#[derive(Clone, Copy)]
pub(super) enum Isolation {
    /// Writes: each statement sees what committed before it; the row locks
    /// the writes take (`feed_head`, `audit_head`) order them.
    Write,
    /// A read of several statements that must agree (the audit tree):
    /// one snapshot, read only.
    Snapshot,
}

impl Inner {
    /// A pooled connection, opened on the store's runtime when none is idle.
    pub(super) fn client(&self) -> Result<Object, StoreError> {
        let pool = self.pool.clone();
        wait(self.runtime.spawn(async move { pool.get().await }))
            .map_err(|_| StoreError::unavailable("the store is closing"))?
            .map_err(StoreError::from)
    }

    /// Runs `f` on a pooled connection, each statement on its own.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Db<'_, Object>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        f(&Db(&client))
    }

    /// Runs `f` in a transaction and commits it (rolled back if `f` fails).
    pub(super) fn transaction<T>(
        &self,
        isolation: Isolation,
        f: impl FnOnce(&Db<'_, Transaction<'_>>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client()?;
        let tx = wait(async {
            let builder = client.build_transaction();
            match isolation {
                Isolation::Write => {
                    builder
                        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
                        .start()
                        .await
                }
                Isolation::Snapshot => {
                    builder
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()
                        .await
                }
            }
        })?;
        let out = f(&Db(&tx))?;
        wait(tx.commit())?;
        Ok(out)
    }
}
