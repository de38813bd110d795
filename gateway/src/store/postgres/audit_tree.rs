//! The audit tree's hashes as PostgreSQL rows (`audit_tiles`, `audit_leaves`,
//! `audit_nodes`); the layout and every hash are the shared code's
//! (`store::audit_tree`), this file only reads and writes the rows.

use super::Inner;
use super::db::{Db, Isolation, get};
use crate::store::StoreError;
use crate::store::audit_tree::{LeafVisitor, TILE, TiledTree, TreeStorage, TreeStorageMut};
use deadpool_postgres::GenericClient;

/// The tree's rows, through one transaction.
pub(super) struct TreeRows<'d, 'c, C> {
    db: &'d Db<'c, C>,
    /// The last loose leaf and the last tile (its start and leaves), as
    /// read with the tree's edge.
    last_leaf: Option<u64>,
    last_tile: Option<(u64, u64)>,
}

/// The tree's right edge in one statement: the last loose leaf, and the
/// start and length of the last tile.
pub(super) const EDGE: &str = "
    SELECT (SELECT max(idx) FROM audit_leaves), t.idx, length(t.hashes)
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT idx, hashes FROM audit_tiles ORDER BY idx DESC LIMIT 1) AS t ON true";

/// The audit tree as `db` sees it.
pub(super) fn tree<'d, 'c, C: GenericClient>(
    db: &'d Db<'c, C>,
) -> Result<TiledTree<TreeRows<'d, 'c, C>>, StoreError> {
    let edge = db.query_one(EDGE, &[])?;
    tree_at(db, &edge)
}

/// The audit tree as `db` sees it, from its edge as read (an [`EDGE`] row)
/// in the same transaction.
pub(super) fn tree_at<'d, 'c, C: GenericClient>(
    db: &'d Db<'c, C>,
    edge: &tokio_postgres::Row,
) -> Result<TiledTree<TreeRows<'d, 'c, C>>, StoreError> {
    let last_leaf = get::<Option<i64>>(edge, 0)?.map(|i| i as u64);
    let last_tile = match (get::<Option<i64>>(edge, 1)?, get::<Option<i32>>(edge, 2)?) {
        (Some(start), Some(len)) => Some((start as u64, len as u64 / 32)),
        _ => None,
    };
    TiledTree::open(TreeRows {
        db,
        last_leaf,
        last_tile,
    })
}

impl<C: GenericClient> TreeStorage for TreeRows<'_, '_, C> {
    fn last_loose_leaf(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.last_leaf)
    }

    fn last_tile(&self) -> Result<Option<(u64, u64)>, StoreError> {
        Ok(self.last_tile)
    }

    fn tile(&self, start: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.db.query_opt(
            "SELECT hashes FROM audit_tiles WHERE idx = $1",
            &[&(start as i64)],
        )?;
        row.map(|r| get(&r, 0)).transpose()
    }

    fn loose_leaves(
        &self,
        from: u64,
        to: u64,
        each: &mut LeafVisitor<'_>,
    ) -> Result<(), StoreError> {
        let rows = self.db.query(
            "SELECT idx, hash FROM audit_leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            &[&(from as i64), &(to as i64)],
        )?;
        for r in &rows {
            let hash: &[u8] = get(r, 1)?;
            each(get::<i64>(r, 0)? as u64, hash)?;
        }
        Ok(())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<tlog::Hash>, StoreError> {
        let row = self.db.query_opt(
            "SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2",
            &[&i16::from(level), &(index as i64)],
        )?;
        row.map(|r| {
            get::<Vec<u8>>(&r, 0)?.try_into().map_err(|_| {
                StoreError::corrupt(format!("audit node ({level}, {index}) is malformed"))
            })
        })
        .transpose()
    }
}

impl<C: GenericClient> TreeStorageMut for TreeRows<'_, '_, C> {
    fn put_nodes(&self, nodes: &[tlog::Node]) -> Result<(), StoreError> {
        let levels: Vec<i16> = nodes.iter().map(|n| i16::from(n.level)).collect();
        let indexes: Vec<i64> = nodes.iter().map(|n| n.index as i64).collect();
        let hashes: Vec<Vec<u8>> = nodes.iter().map(|n| n.hash.to_vec()).collect();
        self.db.defer(
            "INSERT INTO audit_nodes (level, idx, hash)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
            vec![Box::new(levels), Box::new(indexes), Box::new(hashes)],
        );
        Ok(())
    }

    fn put_loose_leaves(&self, first: u64, hashes: &[tlog::Hash]) -> Result<(), StoreError> {
        let indexes: Vec<i64> = (0..hashes.len() as u64)
            .map(|i| (first + i) as i64)
            .collect();
        let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
        self.db.defer(
            "INSERT INTO audit_leaves (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            vec![Box::new(indexes), Box::new(hashes)],
        );
        Ok(())
    }

    fn put_tile(&self, start: u64, hashes: &[u8]) -> Result<(), StoreError> {
        self.db.defer(
            "DELETE FROM audit_leaves WHERE idx >= $1 AND idx < $2",
            vec![Box::new(start as i64), Box::new((start + TILE) as i64)],
        );
        self.db.defer(
            "INSERT INTO audit_tiles (idx, hashes) VALUES ($1, $2)",
            vec![Box::new(start as i64), Box::new(hashes.to_vec())],
        );
        Ok(())
    }
}

impl Inner {
    pub(super) fn audit_size(&self) -> Result<u64, StoreError> {
        self.read(|db| {
            let row = db.query_one("SELECT size FROM audit_head WHERE id = 0", &[])?;
            Ok(get::<i64>(&row, 0)? as u64)
        })
    }

    pub(super) fn audit_root(&self, size: u64) -> Result<tlog::Hash, StoreError> {
        self.transaction(Isolation::Snapshot, |db| tree(db)?.root(size))
    }

    pub(super) fn audit_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.transaction(Isolation::Snapshot, |db| {
            tree(db)?.inclusion_proof(index, size)
        })
    }

    pub(super) fn audit_consistency_proof(
        &self,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<tlog::Hash>, StoreError> {
        self.transaction(Isolation::Snapshot, |db| {
            tree(db)?.consistency_proof(size1, size2)
        })
    }
}
