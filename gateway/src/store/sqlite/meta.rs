//! Small durable state of the gateway itself: meta settings (key ids, re-index
//! progress) and the re-identifications taken per consumer.

use super::Inner;
use super::audit_log::insert_audit;
use crate::audit::AuditEntry;
use crate::store::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};

pub(super) fn set_meta(tx: &Transaction<'_>, meta: &[(&str, &str)]) -> Result<(), StoreError> {
    for (k, v) in meta {
        tx.prepare_cached(
            "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )?
        .execute(params![k, v])?;
    }
    Ok(())
}

impl Inner {
    pub(super) fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT v FROM meta WHERE k = ?1", params![key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    pub(super) fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                params![key, value],
            )?;
            Ok(())
        })
    }

    pub(super) fn take_reidentification(
        &self,
        consumer: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Result<(), i64>, StoreError> {
        self.write(|tx, _| {
            let since = now_ms.saturating_sub(window_ms);
            tx.prepare_cached("DELETE FROM reidentifications WHERE consumer = ?1 AND at_ms <= ?2")?
                .execute(params![consumer, since])?;
            let (taken, oldest): (i64, Option<i64>) = tx
                .prepare_cached(
                    "SELECT count(*), min(at_ms) FROM reidentifications WHERE consumer = ?1",
                )?
                .query_row(params![consumer], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if taken >= i64::from(limit) {
                let free_at = oldest.unwrap_or(now_ms).saturating_add(window_ms);
                return Ok(Err(free_at.saturating_sub(now_ms).max(1)));
            }
            tx.prepare_cached("INSERT INTO reidentifications (consumer, at_ms) VALUES (?1, ?2)")?
                .execute(params![consumer, now_ms])?;
            Ok(Ok(()))
        })
    }

    pub(super) fn meta_set_audited(
        &self,
        meta: &[(&str, &str)],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.write(|tx, heads| {
            set_meta(tx, meta)?;
            insert_audit(tx, heads, entries)
        })
    }
}
