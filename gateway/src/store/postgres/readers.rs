//! Connections shared by the async reads of the look-up path (a person's
//! records, an employer's, a refusal window). A look-up is one or two short
//! statements; on a connection of its own each would wake a server process
//! and wait out its round trip alone. Here concurrent reads share a few
//! connections, and the driver pipelines them: statements queue on the
//! socket, and a busy server process answers one after another without
//! being woken for each. The connections are driven by the runtime of the
//! async callers (no hop to the store's own), and one that closed (the
//! database restarted, or that runtime ended) is opened again by the next
//! read that picks it.

use crate::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// The statements readers prepare once per connection.
#[derive(Clone, Copy)]
pub(super) enum Read {
    Person,
    Enterprise,
    OpenRefusalWindow,
}

const READS: [Read; 3] = [Read::Person, Read::Enterprise, Read::OpenRefusalWindow];

impl Read {
    fn sql(self) -> &'static str {
        match self {
            Read::Person => &super::records::PERSON_SQL,
            Read::Enterprise => &super::records::ENTERPRISE_SQL,
            Read::OpenRefusalWindow => super::refusals::OPEN,
        }
    }
}

const READ_SETTINGS: &str = "SET plan_cache_mode = force_generic_plan";

struct Reader {
    client: Client,
    statements: Vec<Statement>,
}

pub(super) struct Readers {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Reader>>>>,
    next: AtomicUsize,
}

impl Readers {
    /// One connection per core of this machine (at least two), opened when
    /// first needed.
    pub(super) fn new(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    ) -> Readers {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        Readers {
            config,
            tls,
            slots: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `read` with `params` on the next shared connection.
    pub(super) async fn query(
        &self,
        read: Read,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let reader = self.reader().await?;
        Ok(reader
            .client
            .query(&reader.statements[read as usize], params)
            .await?)
    }

    async fn reader(&self) -> Result<Arc<Reader>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(reader) = slot.as_ref().filter(|r| !r.client.is_closed()) {
            return Ok(reader.clone());
        }
        *slot = None;
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a store read connection ended");
            }
        });
        // Each read is planned once, when prepared: the plan does not
        // depend on the values (an index look-up either way), and planning
        // them again at every call costs more than running them.
        client.batch_execute(READ_SETTINGS).await?;
        let mut statements = Vec::with_capacity(READS.len());
        for read in READS {
            statements.push(client.prepare(read.sql()).await?);
        }
        let reader = Arc::new(Reader { client, statements });
        *slot = Some(reader.clone());
        Ok(reader)
    }
}
