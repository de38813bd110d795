//! The audit tree's hashes as SQLite rows: complete tiles in `audit_tiles`,
//! the loose leaves of the last tile in `audit_leaves`, and high nodes in
//! `audit_nodes` (the layout is the shared one, `store::audit_tree`; this file
//! only reads and writes its rows).

use super::Inner;
use crate::store::StoreError;
use crate::store::audit_tree::{LeafVisitor, TiledTree, TreeStorage, TreeStorageMut};
use rusqlite::{Connection, OptionalExtension, params};

/// The tree's rows, through one connection (or transaction).
pub(super) struct TreeRows<'c>(&'c Connection);

/// The audit tree as `c` sees it.
pub(super) fn tree(c: &Connection) -> Result<TiledTree<TreeRows<'_>>, StoreError> {
    TiledTree::open(TreeRows(c))
}

impl TreeStorage for TreeRows<'_> {
    fn last_loose_leaf(&self) -> Result<Option<u64>, StoreError> {
        let last: Option<i64> = self
            .0
            .prepare_cached("SELECT max(idx) FROM audit_leaves")?
            .query_row([], |r| r.get(0))?;
        Ok(last.map(|i| i as u64))
    }

    fn last_tile(&self) -> Result<Option<(u64, u64)>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT idx, length(hashes) FROM audit_tiles ORDER BY idx DESC LIMIT 1",
            )?
            .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .optional()?
            .map(|(idx, len)| (idx as u64, len as u64 / 32)))
    }

    fn tile(&self, start: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT hashes FROM audit_tiles WHERE idx = ?1")?
            .query_row(params![start as i64], |r| r.get(0))
            .optional()?)
    }

    fn loose_leaves(
        &self,
        from: u64,
        to: u64,
        each: &mut LeafVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT idx, hash FROM audit_leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![from as i64, to as i64])?;
        while let Some(row) = rows.next()? {
            let index = row.get::<_, i64>(0)? as u64;
            let hash = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            each(index, hash)?;
        }
        Ok(())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<tlog::Hash>, StoreError> {
        let hash: Option<Vec<u8>> = self
            .0
            .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")?
            .query_row(params![level, index as i64], |r| r.get(0))
            .optional()?;
        hash.map(|h| {
            h.try_into().map_err(|_| {
                StoreError::corrupt(format!("audit node ({level}, {index}) is malformed"))
            })
        })
        .transpose()
    }
}

impl TreeStorageMut for TreeRows<'_> {
    fn put_nodes(&self, nodes: &[tlog::Node]) -> Result<(), StoreError> {
        let mut insert = self
            .0
            .prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for n in nodes {
            insert.execute(params![n.level, n.index as i64, &n.hash[..]])?;
        }
        Ok(())
    }

    fn put_loose_leaves(&self, first: u64, hashes: &[tlog::Hash]) -> Result<(), StoreError> {
        let mut insert = self
            .0
            .prepare_cached("INSERT INTO audit_leaves (idx, hash) VALUES (?1, ?2)")?;
        for (i, hash) in hashes.iter().enumerate() {
            insert.execute(params![(first + i as u64) as i64, &hash[..]])?;
        }
        Ok(())
    }

    fn put_tile(&self, start: u64, hashes: &[u8]) -> Result<(), StoreError> {
        let end = start + crate::store::audit_tree::TILE;
        self.0
            .prepare_cached("DELETE FROM audit_leaves WHERE idx >= ?1 AND idx < ?2")?
            .execute(params![start as i64, end as i64])?;
        self.0
            .prepare_cached("INSERT INTO audit_tiles (idx, hashes) VALUES (?1, ?2)")?
            .execute(params![start as i64, hashes])?;
        Ok(())
    }
}

impl Inner {
    pub(super) fn audit_size(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(tree(c)?.size()))
    }

    pub(super) fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        self.read(|c| tree(c)?.root(size))
    }

    pub(super) fn audit_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| tree(c)?.inclusion_proof(index, size))
    }

    pub(super) fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| tree(c)?.consistency_proof(size1, size2))
    }
}
