//! Signed checkpoints of the audit tree as the store keeps them.

use super::Inner;
use crate::store::{StoreError, StoredCheckpoint};
use rusqlite::{OptionalExtension, params};

pub(super) fn row_to_checkpoint(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, Vec<u8>, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

pub(super) fn checkpoint_from_row(
    row: Option<(i64, Vec<u8>, String, i64)>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    row.map(|(size, root, note, signed_ms)| {
        Ok(StoredCheckpoint {
            size: size as u64,
            root: root
                .try_into()
                .map_err(|_| StoreError::corrupt("checkpoint root"))?,
            note,
            signed_ms,
        })
    })
    .transpose()
}

impl Inner {
    pub(super) fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            checkpoint_from_row(
                c.query_row(
                    "SELECT size, root, note, signed_ms FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                    [],
                    row_to_checkpoint,
                )
                .optional()?,
            )
        })
    }

    pub(super) fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            checkpoint_from_row(
                c.query_row(
                    "SELECT size, root, note, signed_ms FROM audit_checkpoints WHERE size = ?1",
                    params![size as i64],
                    row_to_checkpoint,
                )
                .optional()?,
            )
        })
    }

    pub(super) fn audit_checkpoints(
        &self,
        after_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT size, root, note, signed_ms FROM audit_checkpoints
                     WHERE size > ?1 ORDER BY size LIMIT ?2",
                )?
                .query_map(
                    params![
                        super::after_position(after_size),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    row_to_checkpoint,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|row| Ok(checkpoint_from_row(Some(row))?.expect("a row")))
                .collect()
        })
    }

    pub(super) fn save_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        // Not a records change: a checkpoint is signed every thousand
        // entries, several times a second under look-ups.
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO audit_checkpoints (size, root, note, signed_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (size) DO NOTHING",
                params![cp.size as i64, &cp.root[..], cp.note, cp.signed_ms],
            )?;
            Ok(())
        })
    }
}
