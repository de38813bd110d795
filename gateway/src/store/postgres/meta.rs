//! Small durable state of the gateway itself: meta settings (key ids,
//! re-index progress) and the re-identifications taken per consumer, checked
//! and taken under a per-consumer row lock so that the limit holds across
//! replicas.

use super::Inner;
use super::audit_log::insert_audit;
use super::db::{Db, get};
use crate::audit::AuditEntry;
use crate::store::StoreError;
use deadpool_postgres::GenericClient;

pub(super) fn set_meta<C: GenericClient>(
    db: &Db<'_, C>,
    meta: &[(&str, &str)],
) -> Result<(), StoreError> {
    for (k, v) in meta {
        db.execute(
            "INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            &[k, v],
        )?;
    }
    Ok(())
}

impl Inner {
    pub(super) fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|db| {
            db.query_opt("SELECT v FROM meta WHERE k = $1", &[&key])?
                .map(|r| get(&r, 0))
                .transpose()
        })
    }

    pub(super) fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|db, _| set_meta(db, &[(key, value)]))
    }

    pub(super) fn take_reidentification(
        &self,
        consumer: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Result<(), i64>, StoreError> {
        self.write(|db, _| {
            // The consumer's row, locked until commit: a take through
            // another replica waits, then counts this one.
            db.execute(
                "INSERT INTO reidentification_consumers (consumer) VALUES ($1)
                 ON CONFLICT DO NOTHING",
                &[&consumer],
            )?;
            db.query_one(
                "SELECT consumer FROM reidentification_consumers WHERE consumer = $1 FOR UPDATE",
                &[&consumer],
            )?;
            let since = now_ms.saturating_sub(window_ms);
            db.execute(
                "DELETE FROM reidentifications WHERE consumer = $1 AND at_ms <= $2",
                &[&consumer, &since],
            )?;
            let row = db.query_one(
                "SELECT count(*), min(at_ms) FROM reidentifications WHERE consumer = $1",
                &[&consumer],
            )?;
            let (taken, oldest): (i64, Option<i64>) = (get(&row, 0)?, get(&row, 1)?);
            if taken >= i64::from(limit) {
                let free_at = oldest.unwrap_or(now_ms).saturating_add(window_ms);
                return Ok(Err(free_at.saturating_sub(now_ms).max(1)));
            }
            db.execute(
                "INSERT INTO reidentifications (consumer, at_ms) VALUES ($1, $2)",
                &[&consumer, &now_ms],
            )?;
            Ok(Ok(()))
        })
    }

    pub(super) fn meta_set_audited(
        &self,
        meta: &[(&str, &str)],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.write(|db, staged| {
            set_meta(db, meta)?;
            insert_audit(db, staged, entries).map(|_| ())
        })
    }
}
