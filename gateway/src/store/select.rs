//! Which store the configuration names (`[store]`): PostgreSQL when a url is
//! given, shared by any number of gateway replicas; otherwise the embedded
//! SQLite store in `data_dir`, as in the quickstart. The one place that opens
//! "the store the config names", for `serve` and the CLI alike.

use super::{Store, StoreError, postgres::PgStore, sqlite::SqliteStore};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[store]` in the configuration.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A PostgreSQL database shared by the replicas, `postgres://user@host/db`
    /// (TLS as its `sslmode` says). Env: `GATEWAY_STORE_URL`. Default none:
    /// the embedded store in `data_dir`.
    pub url: Option<String>,
    /// PEM file of the CA that signed the database server's certificate, to
    /// verify it when the url asks for TLS. Env: `GATEWAY_STORE_CA_FILE`.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreConfig {
    /// The url may hold a password: only its scheme and host are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(redacted))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A store url without its user information (user and password).
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Opens the store `config` names: PostgreSQL at its url, or SQLite in `data_dir`.
pub fn open(config: &StoreConfig, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.url {
        Some(url) => Arc::new(PgStore::open(url, config.ca_file.as_deref())?),
        None => Arc::new(SqliteStore::open(data_dir)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://gw:s3cret@db.example:5432/gw"),
            "postgres://…@db.example:5432/gw"
        );
        assert_eq!(redacted("postgres://db/gw"), "postgres://db/gw");
        let config = StoreConfig {
            url: Some("postgres://gw:s3cret@db/gw".into()),
            ca_file: None,
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
