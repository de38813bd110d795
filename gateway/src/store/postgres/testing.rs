//! Throw-away databases for tests of the PostgreSQL store (its own and the
//! end-to-end suite's): each on the server `GATEWAY_TEST_POSTGRES` names
//! (default: the machine's, on 127.0.0.1:5432, user `postgres`, trust
//! authentication), created empty and dropped when the value is dropped. Not
//! used by the gateway itself.

use std::sync::atomic::{AtomicU64, Ordering};

/// The server's maintenance database, where databases are created and dropped.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// A fresh database, dropped (with its connections) on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `gw_test_<random>`. Panics, saying how to start the server,
    /// when PostgreSQL cannot be reached: a suite that cannot reach it fails
    /// instead of passing without having run.
    pub fn create() -> TestDatabase {
        let admin_url =
            std::env::var("GATEWAY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "gw_test_{}_{}_{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = admin(&admin_url, &format!("CREATE DATABASE {name}")) {
            panic!(
                "PostgreSQL is not reachable for the PostgreSQL test suite at {admin_url} ({e}). \
                 Start it (on this machine: `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start`; .ci/run does so), or point \
                 GATEWAY_TEST_POSTGRES at a server where user postgres may create databases."
            );
        }
        let url = url_of(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// The url a store opens it with.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` in this database as the admin user (e.g. to read tables
    /// as they are at rest); each row's columns as text.
    pub fn query_text(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        query_text(&self.url, sql)
    }
}

/// Runs `sql` in the database at `url` (`sslmode=disable`); each row's
/// columns as text.
pub fn query_text(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    {
        let (url, sql) = (url.to_string(), sql.to_string());
        on_own_runtime(move || async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut out = Vec::new();
            for m in client.simple_query(&sql).await? {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
                }
            }
            Ok(out)
        })
        .expect("query the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.admin_url, &sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The admin url with its database replaced by `name`.
fn url_of(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn admin(admin_url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (url, sql) = (admin_url.to_string(), sql.to_string());
    on_own_runtime(move || async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(&sql).await
    })
}

/// Runs a future on a runtime of its own, on a thread of its own (callers
/// may be on an async runtime or not).
fn on_own_runtime<F, Fut, T>(f: F) -> Result<T, tokio_postgres::Error>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f())
    })
    .join()
    .expect("the database thread")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_url_names_the_new_database() {
        assert_eq!(
            super::url_of(super::DEFAULT_ADMIN_URL, "gw_test_1"),
            "postgres://postgres@127.0.0.1:5432/gw_test_1?sslmode=disable"
        );
        assert_eq!(super::url_of("postgres://u@h", "d"), "postgres://u@h/d");
    }
}
