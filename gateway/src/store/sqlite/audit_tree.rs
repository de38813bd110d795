//! The audit log's Merkle tree as SQLite rows: leaf hashes in tiles of 256,
//! the last incomplete tile as single rows, and every complete subtree at
//! level 8 and above as a node row. Roots and proofs are RFC 9162's, read
//! from these rows through [`tlog::HashStore`].

use super::Inner;
use crate::store::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// Leaves per tile, and its log.
pub(super) const TILE_BITS: u8 = 8;
pub(super) const TILE: u64 = 1 << TILE_BITS;

/// The audit tree as stored in `audit_tiles` and `audit_nodes`, read through
/// one connection (tiles read are cached for the life of the value).
pub(super) struct SqlTree<'c> {
    pub(super) conn: &'c Connection,
    pub(super) size: u64,
    pub(super) tiles: std::cell::RefCell<std::collections::HashMap<u64, std::rc::Rc<Vec<u8>>>>,
}

impl<'c> SqlTree<'c> {
    pub(super) fn open(conn: &'c Connection) -> Result<SqlTree<'c>, StoreError> {
        let last_leaf: Option<i64> = conn
            .prepare_cached("SELECT max(idx) FROM audit_leaves")?
            .query_row([], |r| r.get(0))?;
        let size = match last_leaf {
            Some(idx) => idx as u64 + 1,
            None => conn
                .prepare_cached(
                    "SELECT idx, length(hashes) FROM audit_tiles ORDER BY idx DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .map(|(idx, len)| (idx + len / 32) as u64)
                .unwrap_or(0),
        };
        Ok(SqlTree {
            conn,
            size,
            tiles: Default::default(),
        })
    }

    /// The leaf hashes of the tile starting at leaf `start`.
    pub(super) fn tile(&self, start: u64) -> Result<Option<std::rc::Rc<Vec<u8>>>, StoreError> {
        if let Some(t) = self.tiles.borrow().get(&start) {
            return Ok(Some(t.clone()));
        }
        let mut blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT hashes FROM audit_tiles WHERE idx = ?1")?
            .query_row(params![start as i64], |r| r.get(0))
            .optional()?;
        if blob.is_none() && start < self.size && self.size - start < TILE {
            // The last, incomplete tile: its leaves are rows.
            let mut b = Vec::with_capacity(((self.size - start) * 32) as usize);
            let mut stmt = self.conn.prepare_cached(
                "SELECT idx, hash FROM audit_leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let mut rows = stmt.query(params![start as i64, self.size as i64])?;
            let mut next = start;
            while let Some(row) = rows.next()? {
                let hash: Vec<u8> = row.get(1)?;
                if row.get::<_, i64>(0)? as u64 != next || hash.len() != 32 {
                    return Err(StoreError::corrupt(format!(
                        "audit leaf {next} is missing or malformed"
                    )));
                }
                b.extend_from_slice(&hash);
                next += 1;
            }
            blob = Some(b);
        }
        Ok(blob.map(|b| {
            let b = std::rc::Rc::new(b);
            self.tiles.borrow_mut().insert(start, b.clone());
            b
        }))
    }

    /// Leaf hash `index`.
    pub(super) fn leaf(&self, index: u64) -> Option<tlog::Hash> {
        let tile = self.tile(index & !(TILE - 1)).ok()??;
        let off = ((index & (TILE - 1)) * 32) as usize;
        tile.get(off..off + 32)?.try_into().ok()
    }
}

impl tlog::HashStore for SqlTree<'_> {
    fn leaf_count(&self) -> u64 {
        self.size
    }
    fn node(&self, level: u8, index: u64) -> Option<tlog::Hash> {
        if level >= TILE_BITS {
            let hash: Vec<u8> = self
                .conn
                .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")
                .ok()?
                .query_row(params![level, index as i64], |r| r.get(0))
                .optional()
                .ok()??;
            return hash.try_into().ok();
        }
        // A complete subtree inside one tile: fold its 2^level leaf hashes.
        let first = index.checked_shl(u32::from(level))?;
        let count = 1u64 << level;
        if first.checked_add(count)? > self.size {
            return None;
        }
        let tile = self.tile(first & !(TILE - 1)).ok()??;
        let off = ((first & (TILE - 1)) * 32) as usize;
        let bytes = tile.get(off..off + count as usize * 32)?;
        let mut layer: Vec<tlog::Hash> = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| tlog::node_hash(&p[0], &p[1]))
                .collect();
        }
        layer.pop()
    }
}

impl Inner {
    pub(super) fn audit_size(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(SqlTree::open(c)?.size))
    }

    pub(super) fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        self.read(|c| Ok(tlog::root_at(&SqlTree::open(c)?, size)?))
    }

    pub(super) fn audit_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| Ok(tlog::inclusion_proof(&SqlTree::open(c)?, index, size)?))
    }

    pub(super) fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.read(|c| Ok(tlog::consistency_proof(&SqlTree::open(c)?, size1, size2)?))
    }
}
