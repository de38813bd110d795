//! The driver's async calls behind the store's methods. The pool's
//! connections are opened on, and driven by, the store's own small runtime
//! (so the store does not depend on, or die with, a caller's runtime),
//! whoever asks for one. A blocking method drives its statements' futures
//! to completion on the calling thread, which only waits on channels to the
//! connection task and so needs no runtime of its own. (The look-up path's
//! async reads have connections of their own: `readers`.)

use super::Inner;
use super::errors::corrupt_value;
use crate::store::StoreError;
use deadpool_postgres::{GenericClient, Object};
use std::cell::RefCell;
use std::future::Future;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

/// Drives `f` to completion on this thread.
pub(super) fn wait<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// Statements through one client or transaction, prepared once per
/// connection (deadpool keeps each connection's prepared statements).
///
/// Round trips, not statements, are what a transaction waits for: writes
/// whose outcome nothing reads may be deferred ([`Db::defer`]); they are
/// sent together with the next statement read, or before the commit, in
/// one round trip, in the order they were made. A transaction that fails
/// still fails: PostgreSQL rejects everything after the first error, and
/// the first error is the one reported.
pub(super) struct Db<'a, C> {
    client: &'a C,
    deferred: RefCell<Vec<(&'static str, Vec<Owned>)>>,
}

/// A parameter a deferred statement owns.
pub(super) type Owned = Box<dyn ToSql + Sync + Send>;

pub(super) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a, C: GenericClient> Db<'a, C> {
    pub(super) fn new(client: &'a C) -> Self {
        Db {
            client,
            deferred: RefCell::default(),
        }
    }

    /// Queues a write to go with the next statement sent.
    pub(super) fn defer(&self, sql: &'static str, params: Vec<Owned>) {
        self.deferred.borrow_mut().push((sql, params));
    }

    /// The deferred writes, then `reads`, in one round trip: the rows of
    /// each read, in order.
    pub(super) fn pipeline(
        &self,
        reads: &[(&str, &Params<'_>)],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        if deferred.is_empty() && reads.is_empty() {
            return Ok(Vec::new());
        }
        wait(async {
            // Prepared first, one by one (cached after a connection's first
            // use): a statement still being prepared would be overtaken.
            let mut statements = Vec::with_capacity(deferred.len() + reads.len());
            for sql in deferred
                .iter()
                .map(|(sql, _)| *sql)
                .chain(reads.iter().map(|r| r.0))
            {
                statements.push(self.client.prepare_cached(sql).await?);
            }
            let owned: Vec<Vec<&(dyn ToSql + Sync)>> = deferred
                .iter()
                .map(|(_, params)| params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect())
                .collect();
            let params = owned
                .iter()
                .map(Vec::as_slice)
                .chain(reads.iter().map(|r| r.1));
            let sent = statements
                .iter()
                .zip(params)
                .map(|(stmt, params)| self.client.query(stmt, params));
            let mut answers = in_order(sent.collect()).await.into_iter();
            for _ in 0..deferred.len() {
                answers.next().expect("one answer per statement")?;
            }
            answers.collect::<Result<Vec<_>, _>>()
        })
        .map_err(StoreError::from)
    }

    /// Runs `sql` (several statements, no parameters) after the deferred
    /// writes: schema changes.
    pub(super) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.flush()?;
        Ok(wait(self.client.batch_execute(sql))?)
    }

    /// Sends the deferred writes, if any.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.pipeline(&[]).map(|_| ())
    }

    pub(super) fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(self.pipeline(&[(sql, params)])?.pop().unwrap_or_default())
    }

    pub(super) fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(StoreError::corrupt(format!(
                "more than one row where one is kept: {sql}"
            )));
        }
        Ok(rows.pop())
    }

    pub(super) fn query_one(&self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::corrupt(format!("no row where one is kept: {sql}")))
    }

    pub(super) fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        self.flush()?;
        Ok(wait(async {
            let stmt = self.client.prepare_cached(sql).await?;
            self.client.execute(&stmt, params).await
        })?)
    }
}

/// Awaits every future, polling them in the order given each time: the
/// driver sends a statement when its future is first polled, so they reach
/// the server in this order (a join of many futures may poll out of order).
pub(super) async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(done.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// Opens the pool's connections on the store's runtime, whichever thread or
/// runtime asked for one: a connection's socket and task belong to the
/// runtime that made them, and only the store's lives as long as the pool.
pub(super) struct OnStoreRuntime {
    pub(super) tls: tokio_postgres_rustls::MakeRustlsConnect,
    pub(super) runtime: tokio::runtime::Handle,
}

impl deadpool_postgres::Connect for OnStoreRuntime {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                        tokio_postgres::Error,
                    >,
                > + Send
                + '_,
        >,
    > {
        let (tls, config) = (self.tls.clone(), config.clone());
        let opening = self.runtime.spawn(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a store connection ended");
                }
            });
            Ok((client, task))
        });
        Box::pin(async move {
            match opening.await {
                Ok(opened) => opened,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The store's runtime is shutting down (the store is being
                // dropped): the pool's create timeout answers the caller.
                Err(_) => std::future::pending().await,
            }
        })
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
    /// A pooled connection for a blocking caller. The pool's timers need a
    /// runtime's context: the store's (its worker drives them).
    pub(super) fn client(&self) -> Result<Object, StoreError> {
        let _context = self.runtime.enter();
        Ok(wait(self.pool.get())?)
    }

    /// Another pooled connection for a caller that can do without it:
    /// `None` unless one is free at once (a caller holding one never waits
    /// for a second, so callers cannot hold the pool between them).
    pub(super) fn spare_client(&self) -> Option<Object> {
        let _context = self.runtime.enter();
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(std::time::Duration::ZERO),
            create: Some(super::CONNECT_TIMEOUT),
            recycle: Some(super::CONNECT_TIMEOUT),
        };
        wait(self.pool.timeout_get(&timeouts)).ok()
    }

    /// Runs `f` on a pooled connection, each statement on its own.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Db<'_, Object>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        let db = Db::new(&client);
        let out = f(&db)?;
        db.flush()?;
        Ok(out)
    }

    /// Runs `f` in a transaction and commits it (rolled back if `f` fails).
    /// The transaction's `BEGIN` goes with its first statement and its
    /// `COMMIT` with its last writes: no round trip of their own.
    pub(super) fn transaction<T>(
        &self,
        isolation: Isolation,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut open = OpenTransaction(Some(self.client()?));
        let client = open.0.as_ref().expect("held until the end");
        let db = Db::new(client);
        db.defer(
            match isolation {
                Isolation::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
                Isolation::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            },
            Vec::new(),
        );
        let committed = f(&db).and_then(|out| {
            db.defer("COMMIT", Vec::new());
            db.flush().map(|()| out)
        });
        drop(db);
        match committed {
            Ok(out) => {
                open.0.take();
                Ok(out)
            }
            Err(e) => {
                open.roll_back();
                Err(e)
            }
        }
    }
}

/// A transaction's statements: through its pooled connection.
pub(super) type Tx<'a> = Db<'a, Object>;

/// A pooled connection inside a transaction this store began. Unless the
/// transaction ends (committed, or rolled back here), the connection is
/// closed instead of going back to the pool: the next caller must not find
/// itself inside someone else's transaction (a panic in between, a failed
/// rollback).
struct OpenTransaction(Option<Object>);

impl OpenTransaction {
    fn roll_back(&mut self) {
        if let Some(client) = self.0.take()
            && wait(client.batch_execute("ROLLBACK")).is_err()
        {
            drop(Object::take(client));
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}
