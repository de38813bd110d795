//! The audit log's Merkle tree, kept the same way by every backend: only the
//! storage of hashes differs ([`TreeStorage`]), so no backend reimplements
//! RFC 9162 or decides for itself what an append stores.
//!
//! The layout: leaf hashes live in complete tiles of [`TILE`] (one stored
//! value per tile); the leaves of the last, incomplete tile are stored one by
//! one ("loose") until it completes, so an append adds small values instead
//! of rewriting a growing tile. Complete subtrees below level [`TILE_BITS`]
//! are recomputed from a tile (at most 128 hashes); every complete subtree at
//! that level and above is a stored node. Roots and proofs are `tlog`'s, over
//! [`tlog::HashStore`] as [`TiledTree`] implements it, in O(log n) reads.

use crate::store::StoreError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tlog::Hash;

/// Leaves per tile, and its log.
pub const TILE_BITS: u8 = 8;
pub const TILE: u64 = 1 << TILE_BITS;

/// Called with each loose leaf read: its index and hash.
pub type LeafVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StoreError> + 'a;

/// Where a backend keeps the tree's hashes, read within one transaction or
/// snapshot. Nothing here computes a hash.
pub trait TreeStorage {
    /// The highest index among the loose leaves, if any is stored.
    fn last_loose_leaf(&self) -> Result<Option<u64>, StoreError>;
    /// The last stored tile: its first leaf index and how many leaf hashes
    /// it holds.
    fn last_tile(&self) -> Result<Option<(u64, u64)>, StoreError>;
    /// The leaf hashes (32 bytes each, in order) of the tile starting at leaf
    /// `start`, if that tile is stored.
    fn tile(&self, start: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Calls `each(index, hash)` for every loose leaf in `[from, to)`, in
    /// index order.
    fn loose_leaves(
        &self,
        from: u64,
        to: u64,
        each: &mut LeafVisitor<'_>,
    ) -> Result<(), StoreError>;
    /// The stored node at `(level, index)` (`level >= TILE_BITS`), if any.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;
}

/// Writing the tree's hashes, inside the transaction of the entries they
/// belong to.
pub trait TreeStorageMut: TreeStorage {
    /// Stores nodes (all at `TILE_BITS` or above).
    fn put_nodes(&self, nodes: &[tlog::Node]) -> Result<(), StoreError>;
    /// Stores loose leaves `first`, `first + 1`, … of the incomplete tile.
    fn put_loose_leaves(&self, first: u64, hashes: &[Hash]) -> Result<(), StoreError>;
    /// Stores the complete tile starting at `start` (`TILE` hashes) and
    /// removes its loose leaves.
    fn put_tile(&self, start: u64, hashes: &[u8]) -> Result<(), StoreError>;
}

/// The tree over a backend's storage, at the size it held when opened. Tiles
/// read are kept for the life of the value.
pub struct TiledTree<S> {
    storage: S,
    size: u64,
    tiles: RefCell<HashMap<u64, Rc<Vec<u8>>>>,
    /// The first storage failure met while `tlog` walked the tree (it asks
    /// for hashes through [`tlog::HashStore`], which has no room for one):
    /// reported instead of the missing node it looked like.
    failed: RefCell<Option<StoreError>>,
}

impl<S: TreeStorage> TiledTree<S> {
    pub fn open(storage: S) -> Result<TiledTree<S>, StoreError> {
        let size = match storage.last_loose_leaf()? {
            Some(index) => index + 1,
            None => storage
                .last_tile()?
                .map(|(start, held)| start + held)
                .unwrap_or(0),
        };
        Ok(TiledTree {
            storage,
            size,
            tiles: RefCell::default(),
            failed: RefCell::default(),
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The leaf hashes of the tile starting at leaf `start` (a complete tile,
    /// or as much of the last one as the tree holds).
    pub fn tile(&self, start: u64) -> Result<Option<Rc<Vec<u8>>>, StoreError> {
        if let Some(t) = self.tiles.borrow().get(&start) {
            return Ok(Some(t.clone()));
        }
        let mut blob = self.storage.tile(start)?;
        if blob.is_none() && start < self.size && self.size - start < TILE {
            // The last, incomplete tile: its leaves are loose.
            let mut b = Vec::with_capacity(((self.size - start) * 32) as usize);
            let mut next = start;
            self.storage
                .loose_leaves(start, self.size, &mut |index, hash| {
                    if index != next || hash.len() != 32 {
                        return Err(StoreError::corrupt(format!(
                            "audit leaf {next} is missing or malformed"
                        )));
                    }
                    b.extend_from_slice(hash);
                    next += 1;
                    Ok(())
                })?;
            blob = Some(b);
        }
        Ok(blob.map(|b| {
            let b = Rc::new(b);
            self.tiles.borrow_mut().insert(start, b.clone());
            b
        }))
    }

    /// Leaf hash `index`, if the tree holds it.
    pub fn leaf(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        let Some(tile) = self.tile(index & !(TILE - 1))? else {
            return Ok(None);
        };
        let off = ((index & (TILE - 1)) * 32) as usize;
        Ok(tile.get(off..off + 32).and_then(|h| h.try_into().ok()))
    }

    /// Leaves `[from, to)` as exported ([`crate::store::Store::audit_leaves`]):
    /// each with its hash from the tree and its entry's bytes, taken from
    /// `entries` (by seq, one past the leaf index) where the entry row exists.
    pub fn leaves_with(
        &self,
        from: u64,
        to: u64,
        mut entries: HashMap<u64, Vec<u8>>,
    ) -> Result<Vec<crate::store::AuditLeaf>, StoreError> {
        (from..to)
            .map(|index| {
                Ok(crate::store::AuditLeaf {
                    seq: index + 1,
                    leaf_hash: self.leaf(index)?.ok_or_else(|| {
                        StoreError::corrupt(format!("audit leaf {index} is missing"))
                    })?,
                    entry: entries.remove(&(index + 1)),
                })
            })
            .collect()
    }

    /// Root of the tree at `size` (any size up to the current one).
    pub fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.walk(|t| tlog::root_at(t, size))
    }

    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.walk(|t| tlog::inclusion_proof(t, index, size))
    }

    /// RFC 9162 consistency proof between two tree sizes.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, StoreError> {
        self.walk(|t| tlog::consistency_proof(t, size1, size2))
    }

    /// The tree's right edge, for appending.
    fn frontier(&self) -> Result<tlog::Frontier, StoreError> {
        self.walk(tlog::Frontier::of)
    }

    /// Runs one of `tlog`'s walks over this tree; a storage failure met on
    /// the way is its outcome.
    fn walk<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, tlog::ProofError>,
    ) -> Result<T, StoreError> {
        let out = f(self);
        if let Some(e) = self.failed.borrow_mut().take() {
            return Err(e);
        }
        Ok(out?)
    }

    /// A complete subtree below [`TILE_BITS`]: the fold of its leaf hashes.
    fn subtree_in_tile(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let Some(first) = index.checked_shl(u32::from(level)) else {
            return Ok(None);
        };
        let count = 1u64 << level;
        if first.checked_add(count).is_none_or(|end| end > self.size) {
            return Ok(None);
        }
        let Some(tile) = self.tile(first & !(TILE - 1))? else {
            return Ok(None);
        };
        let off = ((first & (TILE - 1)) * 32) as usize;
        let Some(bytes) = tile.get(off..off + count as usize * 32) else {
            return Ok(None);
        };
        let mut layer: Vec<Hash> = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| tlog::node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(layer.pop())
    }
}

impl<S: TreeStorage> tlog::HashStore for TiledTree<S> {
    fn leaf_count(&self) -> u64 {
        self.size
    }

    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let found = if level >= TILE_BITS {
            self.storage.node(level, index)
        } else {
            self.subtree_in_tile(level, index)
        };
        found.unwrap_or_else(|e| {
            self.failed.borrow_mut().get_or_insert(e);
            None
        })
    }
}

impl<S: TreeStorageMut> TiledTree<S> {
    /// Appends leaf hashes at the end of the tree: stores the nodes they
    /// complete at [`TILE_BITS`] and above, and the leaves themselves, loose
    /// or as the tiles they complete. `kept` is the edge a writer kept from
    /// its last append (used if it is this tree's); returns the new edge.
    /// The tree value is stale afterwards (open another to read).
    pub fn append(
        &self,
        kept: Option<tlog::Frontier>,
        leaves: &[Hash],
    ) -> Result<tlog::Frontier, StoreError> {
        let size = self.size;
        let mut frontier = match kept {
            Some(kept) if kept.size() == size => kept,
            _ => self.frontier()?,
        };
        let nodes = frontier.append(leaves)?;
        let high: Vec<tlog::Node> = nodes.into_iter().filter(|n| n.level >= TILE_BITS).collect();
        if !high.is_empty() {
            self.storage.put_nodes(&high)?;
        }
        let (mut next, mut done) = (size, 0usize);
        while done < leaves.len() {
            let start = next & !(TILE - 1);
            let take = ((start + TILE - next) as usize).min(leaves.len() - done);
            let batch = &leaves[done..done + take];
            if next + take as u64 == start + TILE {
                // The tile completes: one value instead of its loose leaves.
                let mut blob = match next > start {
                    true => self
                        .tile(start)?
                        .map(|t| t.as_ref().clone())
                        .ok_or_else(|| {
                            StoreError::corrupt(format!("audit tile {start} is missing"))
                        })?,
                    false => Vec::with_capacity(TILE as usize * 32),
                };
                if blob.len() as u64 != (next - start) * 32 {
                    return Err(StoreError::corrupt(format!(
                        "audit tile {start} holds {} bytes, expected {}",
                        blob.len(),
                        (next - start) * 32
                    )));
                }
                for leaf in batch {
                    blob.extend_from_slice(leaf);
                }
                self.storage.put_tile(start, &blob)?;
            } else {
                self.storage.put_loose_leaves(next, batch)?;
            }
            done += take;
            next += take as u64;
        }
        Ok(frontier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Storage in memory, as simple as a backend's could be.
    #[derive(Default)]
    struct Memory {
        tiles: RefCell<BTreeMap<u64, Vec<u8>>>,
        loose: RefCell<BTreeMap<u64, Hash>>,
        nodes: RefCell<HashMap<(u8, u64), Hash>>,
        /// Fail every node read (a backend gone away).
        broken: bool,
    }

    impl TreeStorage for &Memory {
        fn last_loose_leaf(&self) -> Result<Option<u64>, StoreError> {
            Ok(self.loose.borrow().keys().next_back().copied())
        }
        fn last_tile(&self) -> Result<Option<(u64, u64)>, StoreError> {
            Ok(self
                .tiles
                .borrow()
                .iter()
                .next_back()
                .map(|(start, t)| (*start, t.len() as u64 / 32)))
        }
        fn tile(&self, start: u64) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.tiles.borrow().get(&start).cloned())
        }
        fn loose_leaves(
            &self,
            from: u64,
            to: u64,
            each: &mut LeafVisitor<'_>,
        ) -> Result<(), StoreError> {
            for (index, hash) in self.loose.borrow().range(from..to) {
                each(*index, hash)?;
            }
            Ok(())
        }
        fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
            if self.broken {
                return Err(StoreError::unavailable("gone"));
            }
            Ok(self.nodes.borrow().get(&(level, index)).copied())
        }
    }

    impl TreeStorageMut for &Memory {
        fn put_nodes(&self, nodes: &[tlog::Node]) -> Result<(), StoreError> {
            for n in nodes {
                assert!(n.level >= TILE_BITS);
                self.nodes.borrow_mut().insert((n.level, n.index), n.hash);
            }
            Ok(())
        }
        fn put_loose_leaves(&self, first: u64, hashes: &[Hash]) -> Result<(), StoreError> {
            for (i, h) in hashes.iter().enumerate() {
                self.loose.borrow_mut().insert(first + i as u64, *h);
            }
            Ok(())
        }
        fn put_tile(&self, start: u64, hashes: &[u8]) -> Result<(), StoreError> {
            assert_eq!(hashes.len() as u64, TILE * 32);
            self.loose
                .borrow_mut()
                .retain(|i, _| *i < start || *i >= start + TILE);
            self.tiles.borrow_mut().insert(start, hashes.to_vec());
            Ok(())
        }
    }

    /// Any storage that keeps what it is given yields the reference tree's
    /// roots and proofs, across tile boundaries and irregular appends, with
    /// or without the writer's kept edge; only high nodes are stored, and
    /// loose leaves only in the last tile.
    #[test]
    fn appends_over_any_storage_match_the_reference_tree() {
        let memory = Memory::default();
        let mut reference = tlog::MemoryTree::new();
        let mut kept = None;
        let mut n = 0u64;
        for (round, batch) in [1u64, 3, 250, 2, 1, 300, 511, 1, 700, 255, 1, 1]
            .into_iter()
            .enumerate()
        {
            let leaves: Vec<Hash> = (n..n + batch)
                .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
                .collect();
            for l in &leaves {
                reference.append(*l);
            }
            let tree = TiledTree::open(&memory).unwrap();
            assert_eq!(tree.size(), n);
            // Every other append recomputes the edge from storage.
            let edge = tree
                .append(if round % 2 == 0 { kept.take() } else { None }, &leaves)
                .unwrap();
            n += batch;
            assert_eq!(edge.size(), n);
            assert_eq!(edge.root(), reference.root());
            kept = Some(edge);
        }
        let tree = TiledTree::open(&memory).unwrap();
        assert_eq!(tree.size(), n);
        assert!(memory.loose.borrow().keys().all(|i| *i >= n & !(TILE - 1)));
        for size in [1, 2, 255, 256, 257, 511, 512, 513, 1000, 1024, n - 1, n] {
            assert_eq!(tree.root(size).unwrap(), reference.root_at(size).unwrap());
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    tree.inclusion_proof(index, size).unwrap(),
                    reference.inclusion_proof(index, size).unwrap()
                );
                assert_eq!(
                    tree.leaf(index).unwrap(),
                    Some(tlog::leaf_hash(&index.to_be_bytes()))
                );
            }
            for size1 in [1, size / 3 + 1, size] {
                assert_eq!(
                    tree.consistency_proof(size1, size).unwrap(),
                    reference.consistency_proof(size1, size).unwrap()
                );
            }
        }
        assert!(matches!(
            tree.root(n + 1),
            Err(StoreError::Proof(tlog::ProofError::SizeBeyondStore { .. }))
        ));
    }

    /// A storage failure during a proof is reported as such, not as a node
    /// the tree lacks.
    #[test]
    fn a_storage_failure_is_not_a_missing_node() {
        let mut memory = Memory::default();
        let leaves: Vec<Hash> = (0..600u64)
            .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
            .collect();
        TiledTree::open(&memory)
            .unwrap()
            .append(None, &leaves)
            .unwrap();
        memory.broken = true;
        let tree = TiledTree::open(&memory).unwrap();
        assert!(matches!(
            tree.inclusion_proof(3, 600),
            Err(StoreError::Unavailable { .. })
        ));
        // Low subtrees come from tiles, which still read.
        assert!(tree.root(200).is_ok());
    }
}
