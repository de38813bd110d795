//! A read-only look at a PostgreSQL store for `gateway config check
//! --online`: the database answers, and its schema is one this build can
//! serve. Unlike opening the store it changes nothing (no migration, no
//! table created), so an operator may run it against a live deployment.

use super::{connection_config, schema, tls_connector};
use crate::store::StoreError;
use crate::store::schema_version;
use std::path::Path;

/// Connects once and reads the schema version: `Ok(None)` for a database
/// the gateway has not set up yet (it will at its first start).
pub fn probe(url: &str, ca_file: Option<&Path>) -> Result<Option<u32>, StoreError> {
    let config = connection_config(url)?;
    let tls = tls_connector(&config, ca_file)?;
    // On a thread of its own, with a runtime of its own: callers may be on
    // an async runtime's thread, where blocking on (or dropping) another
    // runtime is refused.
    let look = || -> Result<Option<i32>, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::unavailable(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async {
            let (client, connection) = config.connect(tls).await.map_err(StoreError::from)?;
            let driver = tokio::spawn(connection);
            let exists = client
                .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
                .await
                .map_err(StoreError::from)?
                .get::<_, bool>(0);
            let found = if exists {
                client
                    .query_one("SELECT MAX(version) FROM schema_version", &[])
                    .await
                    .map_err(StoreError::from)?
                    .get::<_, Option<i32>>(0)
            } else {
                None
            };
            drop(client);
            let _ = driver.await;
            Ok(found)
        })
    };
    let found = std::thread::scope(|s| s.spawn(look).join())
        .map_err(|_| StoreError::unavailable("the store probe failed"))??;
    let Some(found) = found else {
        return Ok(None);
    };
    let found = u32::try_from(found).map_err(|_| StoreError::corrupt("schema version"))?;
    schema_version::pending(found, &schema::MIGRATIONS).map_err(StoreError::Schema)?;
    Ok(Some(found))
}
