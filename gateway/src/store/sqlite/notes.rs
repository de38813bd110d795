//! Notes beside audit entries (`audit::notes`): read, and erased for good
//! together with the erasure's own entry, the entry and its leaf untouched.

use super::Inner;
use super::audit_log::insert_audit;
use super::audit_tree::tree;
use crate::audit::AuditEntry;
use crate::store::{NoteErasure, StoreError, StoredNote};
use rusqlite::{OptionalExtension, params};

impl Inner {
    pub(super) fn audit_note(&self, seq: u64) -> Result<Option<StoredNote>, StoreError> {
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT commitment, sealed, erased_ms, erased_seq FROM audit_notes WHERE seq = ?1",
                )?
                .query_row(params![seq as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()?;
            Ok(row.map(|(commitment, sealed, erased_ms, erased_seq)| StoredNote {
                seq,
                commitment,
                sealed,
                erased: erased_ms.zip(erased_seq).map(|(ms, by)| (ms, by as u64)),
            }))
        })
    }

    pub(super) fn erase_audit_note(
        &self,
        seq: u64,
        erasure: AuditEntry,
    ) -> Result<NoteErasure, StoreError> {
        self.write(|tx, heads| {
            let held: Option<Option<i64>> = tx
                .prepare_cached("SELECT erased_seq FROM audit_notes WHERE seq = ?1")?
                .query_row(params![seq as i64], |r| r.get(0))
                .optional()?;
            match held {
                None => return Ok(NoteErasure::NoNote),
                Some(Some(by)) => {
                    return Ok(NoteErasure::AlreadyErased {
                        erasure_seq: by as u64,
                    });
                }
                Some(None) => {}
            }
            let erasure_seq = tree(tx)?.size() + 1;
            insert_audit(tx, heads, std::slice::from_ref(&erasure))?;
            // The freed bytes are overwritten with zeros, not left in the
            // page's free space or on the free list (this update only: the
            // extra writes would slow every other change for nothing).
            tx.pragma_update(None, "secure_delete", true)?;
            let erased = tx.execute(
                "UPDATE audit_notes SET sealed = NULL, erased_ms = ?2, erased_seq = ?3 WHERE seq = ?1",
                params![seq as i64, erasure.at_ms, erasure_seq as i64],
            );
            tx.pragma_update(None, "secure_delete", false)?;
            erased?;
            Ok(NoteErasure::Erased { erasure_seq })
        })
    }
}
