//! Who may use the shared database for what: serving replicas against the
//! maintenance of `gateway keys` (re-indexing, re-pseudonymising), which no
//! replica may see half done. On one machine the data directory's lock says
//! so; replicas on other machines share only the database, so the claim is
//! a PostgreSQL advisory lock there: each serving replica holds it shared,
//! a maintenance command exclusively, each on a connection of its own (the
//! lock lives as long as the connection: a replica that dies, however it
//! dies, lets go of it).
//!
//! A serving replica whose claim's connection closes (the database
//! restarted) takes the claim again as soon as it reconnects.

use super::PgStore;
use crate::store::StoreError;
use std::time::Duration;

/// The advisory lock key of the claims (any constant nothing else uses).
const CLAIM: i64 = 0x6761_7465_7761_7932;

/// How long a lost claim waits before it is taken again.
const RECLAIM_PAUSE: Duration = Duration::from_secs(1);

impl PgStore {
    async fn claim_connection(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        shared: bool,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>, bool), StoreError> {
        let (client, connection) = config.connect(tls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let sql = if shared {
            "SELECT pg_try_advisory_lock_shared($1)"
        } else {
            "SELECT pg_try_advisory_lock($1)"
        };
        let row = client.query_one(sql, &[&CLAIM]).await?;
        Ok((client, connection, row.try_get(0)?))
    }

    /// Takes the claim (shared or not) on a connection of its own: `None`
    /// while another holds it the other way.
    fn take_claim(
        &self,
        shared: bool,
    ) -> Result<Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>, StoreError> {
        let (config, tls) = self.claim_settings.clone();
        let (client, connection, granted) = super::db::wait(
            self.inner
                .runtime
                .spawn(Self::claim_connection(config, tls, shared)),
        )
        .map_err(|e| StoreError::unavailable(format!("the claim task failed: {e}")))??;
        Ok(granted.then_some((client, connection)))
    }

    /// Claims the database for serving, as long as this store lives:
    /// refused while a maintenance command holds it.
    pub(super) fn claim_serving(&self) -> Result<(), StoreError> {
        let Some((client, connection)) = self.take_claim(true)? else {
            return Err(StoreError::unavailable(
                "a `gateway keys` command is working on this database; start the gateway when it has finished",
            ));
        };
        let (config, tls) = self.claim_settings.clone();
        // Held by the task below: taken again whenever its connection ends,
        // until the store's runtime stops.
        self.inner.runtime.spawn(async move {
            let (mut _client, mut connection) = (client, connection);
            loop {
                let _ = connection.await;
                loop {
                    tokio::time::sleep(RECLAIM_PAUSE).await;
                    match Self::claim_connection(config.clone(), tls.clone(), true).await {
                        Ok((c, conn, true)) => {
                            tracing::info!("the serving claim on the database is held again");
                            (_client, connection) = (c, conn);
                            break;
                        }
                        Ok((_, conn, false)) => {
                            conn.abort();
                            tracing::error!(
                                "a `gateway keys` command holds the database while this gateway serves; stop the command or this gateway"
                            );
                        }
                        Err(_) => {}
                    }
                }
            }
        });
        Ok(())
    }

    /// Claims the database for maintenance, as long as this store lives:
    /// refused while any gateway serves from it.
    pub(super) fn claim_maintenance(&self) -> Result<(), StoreError> {
        let Some((client, connection)) = self.take_claim(false)? else {
            return Err(StoreError::unavailable(
                "gateway replicas are serving from this database; stop every one of them first",
            ));
        };
        // The connection (and so the claim) is kept until the store's
        // runtime stops.
        self.inner.runtime.spawn(async move {
            let _client = client;
            let _ = connection.await;
        });
        Ok(())
    }
}
