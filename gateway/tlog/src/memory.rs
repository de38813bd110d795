//! An in-memory [`HashStore`]: every complete-subtree hash kept in per-level
//! vectors, maintained incrementally on append. It backs tests, tools and
//! small logs, and is the model a persistent store must behave like.
//!
//! Memory use is about two hashes (64 bytes) per leaf.

use crate::hash::{Hash, leaf_hash, node_hash};
use crate::store::{self, HashStore, ProofError};

/// Append-only Merkle tree holding all complete-subtree hashes in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the node at level `l`, index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash and returns its index. Hashes only the subtrees
    /// it completes: amortised one node hash, at most 64.
    pub fn append(&mut self, leaf_hash: Hash) -> u64 {
        let index = self.leaf_count();
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if !row.len().is_multiple_of(2) {
                return index;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Appends an entry (hashing it as a leaf) and returns its index.
    pub fn append_entry(&mut self, entry: &[u8]) -> u64 {
        self.append(leaf_hash(entry))
    }

    /// Root hash of the whole tree.
    pub fn root(&self) -> Hash {
        store::root_at(self, self.leaf_count())
            .expect("a MemoryTree holds every complete subtree of its own size")
    }

    /// Root hash of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        store::root_at(self, size)
    }

    /// Inclusion proof of leaf `index` in the tree of size `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        store::inclusion_proof(self, index, size)
    }

    /// Consistency proof from tree size `size1` to `size2`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        store::consistency_proof(self, size1, size2)
    }
}

impl HashStore for MemoryTree {
    fn leaf_count(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::from(level))?;
        row.get(usize::try_from(index).ok()?).copied()
    }
}
