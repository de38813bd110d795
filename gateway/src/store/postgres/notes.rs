//! Notes beside audit entries (`audit::notes`): read, and erased together
//! with the erasure's own entry, the entry and its leaf untouched.
//!
//! PostgreSQL keeps an updated row's old version until it is vacuumed, so
//! the erased note's sealed bytes would linger in the table's pages: the
//! table is vacuumed right after the erasure commits (it holds one small
//! row per note). What a base backup or archived WAL taken before then
//! holds is the operator's retention to mind.

use super::Inner;
use super::audit_log::insert_audit;
use super::db::{get, wait};
use crate::audit::AuditEntry;
use crate::store::{NoteErasure, StoreError, StoredNote};

impl Inner {
    pub(super) fn audit_note(&self, seq: u64) -> Result<Option<StoredNote>, StoreError> {
        self.read(|db| {
            let Some(r) = db.query_opt(
                "SELECT commitment, sealed, erased_ms, erased_seq FROM audit_notes WHERE seq = $1",
                &[&(seq as i64)],
            )?
            else {
                return Ok(None);
            };
            let (erased_ms, erased_seq): (Option<i64>, Option<i64>) = (get(&r, 2)?, get(&r, 3)?);
            Ok(Some(StoredNote {
                seq,
                commitment: get(&r, 0)?,
                sealed: get(&r, 1)?,
                erased: erased_ms.zip(erased_seq).map(|(ms, by)| (ms, by as u64)),
            }))
        })
    }

    pub(super) fn erase_audit_note(
        &self,
        seq: u64,
        erasure: AuditEntry,
    ) -> Result<NoteErasure, StoreError> {
        let outcome = self.write(|db, staged| {
            // The note's row, locked: an erasure through another replica
            // waits and then finds it erased.
            let held = db.query_opt(
                "SELECT erased_seq FROM audit_notes WHERE seq = $1 FOR UPDATE",
                &[&(seq as i64)],
            )?;
            match held.map(|r| get::<Option<i64>>(&r, 0)).transpose()? {
                None => return Ok(NoteErasure::NoNote),
                Some(Some(by)) => {
                    return Ok(NoteErasure::AlreadyErased {
                        erasure_seq: by as u64,
                    });
                }
                Some(None) => {}
            }
            let erasure_seq = insert_audit(db, staged, std::slice::from_ref(&erasure))?;
            db.execute(
                "UPDATE audit_notes SET sealed = NULL, erased_ms = $2, erased_seq = $3 WHERE seq = $1",
                &[&(seq as i64), &erasure.at_ms, &(erasure_seq as i64)],
            )?;
            Ok(NoteErasure::Erased { erasure_seq })
        })?;
        if matches!(outcome, NoteErasure::Erased { .. }) {
            let vacuumed = self
                .client()
                .and_then(|c| Ok(wait(c.batch_execute("VACUUM audit_notes"))?));
            if let Err(e) = vacuumed {
                tracing::error!(error = %e, "cannot vacuum the erased note's old row version");
            }
        }
        Ok(outcome)
    }
}
