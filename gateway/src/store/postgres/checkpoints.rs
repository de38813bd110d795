//! Signed checkpoints of the audit tree as the database keeps them. Any
//! replica may sign one; a checkpoint is stored only if the tree in the
//! database, under the append lock, has its root at its size and still has
//! the last stored checkpoint's root at that one's size: no replica stores a
//! checkpoint of a tree that does not extend the last one.

use super::Inner;
use super::audit_tree::tree;
use super::db::{Db, get};
use crate::store::{StoreError, StoredCheckpoint};
use deadpool_postgres::GenericClient;

fn checkpoint(row: Option<tokio_postgres::Row>) -> Result<Option<StoredCheckpoint>, StoreError> {
    row.map(|r| {
        Ok(StoredCheckpoint {
            size: get::<i64>(&r, 0)? as u64,
            root: get::<Vec<u8>>(&r, 1)?
                .try_into()
                .map_err(|_| StoreError::corrupt("checkpoint root"))?,
            note: get(&r, 2)?,
            signed_ms: get(&r, 3)?,
        })
    })
    .transpose()
}

fn latest<C: GenericClient>(db: &Db<'_, C>) -> Result<Option<StoredCheckpoint>, StoreError> {
    checkpoint(db.query_opt(
        "SELECT size, root, note, signed_ms FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        &[],
    )?)
}

impl Inner {
    pub(super) fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(latest)
    }

    pub(super) fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|db| {
            checkpoint(db.query_opt(
                "SELECT size, root, note, signed_ms FROM audit_checkpoints WHERE size = $1",
                &[&(size as i64)],
            )?)
        })
    }

    pub(super) fn audit_checkpoints(
        &self,
        after_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read(|db| {
            let rows = db.query(
                "SELECT size, root, note, signed_ms FROM audit_checkpoints
                 WHERE size > $1 ORDER BY size LIMIT $2",
                &[
                    &i64::try_from(after_size).unwrap_or(i64::MAX),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )?;
            rows.into_iter()
                .map(|row| Ok(checkpoint(Some(row))?.expect("a row")))
                .collect()
        })
    }

    pub(super) fn save_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.write(|db, _| {
            // Appends wait meanwhile (and so do other replicas' saves).
            db.query_one("SELECT size FROM audit_head WHERE id = 0 FOR UPDATE", &[])?;
            let tree = tree(db)?;
            if cp.size > tree.size() || tree.root(cp.size)? != cp.root {
                return Err(StoreError::corrupt(format!(
                    "refusing to store a checkpoint of size {} that the audit tree in the database does not have",
                    cp.size
                )));
            }
            if let Some(last) = latest(db)?
                && (last.size > tree.size() || tree.root(last.size)? != last.root)
            {
                return Err(StoreError::corrupt(format!(
                    "refusing to store a checkpoint: the audit tree no longer extends the last checkpoint (size {})",
                    last.size
                )));
            }
            db.execute(
                "INSERT INTO audit_checkpoints (size, root, note, signed_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (size) DO NOTHING",
                &[&(cp.size as i64), &&cp.root[..], &cp.note, &cp.signed_ms],
            )?;
            Ok(())
        })
    }
}
