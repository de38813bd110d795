//! Proof and root generation over stored complete-subtree hashes.
//!
//! A log with tens of millions of entries cannot rehash its tree to answer a
//! proof. Every hash RFC 9162 asks for is the MTH of a range whose start is
//! aligned to a power of two, and such a range is the right-to-left fold of at
//! most 64 *complete* subtrees. So a store that keeps every complete subtree
//! hash, addressed by `(level, index)`, answers roots at any past size,
//! inclusion proofs and consistency proofs from O(log n) lookups. This module
//! holds the [`HashStore`] trait, those generators, and [`appended_nodes`],
//! which tells a persistent store which rows an append creates.

use thiserror::Error;

use crate::hash::{EMPTY_ROOT, Hash, node_hash};
use crate::reference::split_point;

/// Failure to generate a root or proof.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// The requested tree size is larger than the store holds.
    #[error("tree size {size} exceeds the {leaf_count} leaves in the store")]
    SizeBeyondStore { size: u64, leaf_count: u64 },
    /// Consistency proofs need `0 < size1 <= size2`.
    #[error("no consistency proof from size {size1} to size {size2}: need 0 < size1 <= size2")]
    InvalidSizes { size1: u64, size2: u64 },
    /// The store lacks a complete-subtree hash it should hold.
    #[error("store has no hash for the complete subtree at level {level}, index {index}")]
    MissingNode { level: u8, index: u64 },
    /// The tree already holds 2^64 - 1 leaves.
    #[error("tree is full")]
    TreeFull,
}

/// Storage of complete-subtree hashes.
///
/// The node at `(level, index)` is the Merkle tree hash of leaves
/// `[index * 2^level, (index + 1) * 2^level)`; level 0 holds the leaf hashes.
/// A store with `leaf_count() == n` must hold every such node lying inside
/// `[0, n)` — exactly the nodes [`appended_nodes`] produces.
pub trait HashStore {
    /// Number of leaves appended so far.
    fn leaf_count(&self) -> u64;
    /// The complete-subtree hash at `(level, index)`, if stored.
    fn node(&self, level: u8, index: u64) -> Option<Hash>;
}

/// One complete-subtree hash, as a persistent store keeps it
/// (e.g. a table row `(level, idx, hash)` with primary key `(level, idx)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The complete-subtree hashes created by appending `leaves` (leaf hashes,
/// in order) to `store`: each leaf at level 0, then every subtree it
/// completes. Persisting these rows keeps the store complete.
///
/// Reads at most 64 nodes from the store (its right edge); each appended leaf
/// yields amortised two nodes and at most 64. A writer appending often keeps
/// a [`Frontier`] instead, and reads the right edge once.
pub fn appended_nodes<S: HashStore + ?Sized>(
    store: &S,
    leaves: &[Hash],
) -> Result<Vec<Node>, ProofError> {
    Frontier::of(store)?.append(leaves)
}

/// The right edge of a tree: the rightmost complete subtree at each level
/// whose bit is set in the tree size. Enough to append without reading the
/// store again; a writer keeps it between appends.
#[derive(Clone)]
pub struct Frontier {
    size: u64,
    /// `right_edge[level]` is meaningful exactly when bit `level` of `size`
    /// is set.
    right_edge: [Hash; 64],
}

impl Frontier {
    /// The meaningful entries of the edge, lowest level first.
    fn edge(&self) -> impl Iterator<Item = (u8, &Hash)> + '_ {
        (0..64u8)
            .filter(|level| self.size >> level & 1 == 1)
            .map(|level| (level, &self.right_edge[usize::from(level)]))
    }

    /// The right edge of `store` at its current size (at most 64 reads).
    pub fn of<S: HashStore + ?Sized>(store: &S) -> Result<Frontier, ProofError> {
        let size = store.leaf_count();
        let mut right_edge = [[0u8; 32]; 64];
        for level in 0..64u8 {
            if size >> level & 1 == 1 {
                right_edge[usize::from(level)] = get(store, level, (size >> level) - 1)?;
            }
        }
        Ok(Frontier { size, right_edge })
    }

    /// The tree size this edge belongs to.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `leaves` (leaf hashes, in order) and returns the
    /// complete-subtree hashes they create, as [`appended_nodes`] does. On
    /// error the frontier is unchanged.
    pub fn append(&mut self, leaves: &[Hash]) -> Result<Vec<Node>, ProofError> {
        self.size
            .checked_add(leaves.len() as u64)
            .ok_or(ProofError::TreeFull)?;
        let mut out = Vec::with_capacity(leaves.len() * 2);
        for leaf in leaves {
            let (mut level, mut index, mut hash) = (0u8, self.size, *leaf);
            out.push(Node { level, index, hash });
            while index & 1 == 1 {
                hash = node_hash(&self.right_edge[usize::from(level)], &hash);
                level += 1;
                index >>= 1;
                out.push(Node { level, index, hash });
            }
            self.right_edge[usize::from(level)] = hash;
            self.size += 1;
        }
        Ok(out)
    }

    /// The root of the tree this edge belongs to (the MTH of all its leaves).
    pub fn root(&self) -> Hash {
        self.edge()
            .map(|(_, hash)| *hash)
            .reduce(|right, left| node_hash(&left, &right))
            .unwrap_or(EMPTY_ROOT)
    }
}

/// Equal when they describe the same tree edge (stale hashes above a cleared
/// bit do not count).
impl PartialEq for Frontier {
    fn eq(&self, other: &Frontier) -> bool {
        self.size == other.size && self.edge().eq(other.edge())
    }
}

impl Eq for Frontier {}

impl std::fmt::Debug for Frontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontier")
            .field("size", &self.size)
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

/// MTH of the first `size` leaves, for any `size <= store.leaf_count()`.
pub fn root_at<S: HashStore + ?Sized>(store: &S, size: u64) -> Result<Hash, ProofError> {
    check_size(store, size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(store, 0, size)
}

/// RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of size `size`.
pub fn inclusion_proof<S: HashStore + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(store, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(64);
    path(store, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 consistency proof from tree size `size1` to `size2`.
///
/// Requires `0 < size1 <= size2`; equal sizes give the empty proof.
pub fn consistency_proof<S: HashStore + ?Sized>(
    store: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(store, size2)?;
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    let mut proof = Vec::with_capacity(64);
    subproof(store, size1, 0, size2, true, &mut proof)?;
    Ok(proof)
}

fn check_size<S: HashStore + ?Sized>(store: &S, size: u64) -> Result<(), ProofError> {
    let leaf_count = store.leaf_count();
    if size > leaf_count {
        return Err(ProofError::SizeBeyondStore { size, leaf_count });
    }
    Ok(())
}

fn get<S: HashStore + ?Sized>(store: &S, level: u8, index: u64) -> Result<Hash, ProofError> {
    store
        .node(level, index)
        .ok_or(ProofError::MissingNode { level, index })
}

/// MTH of leaves `[start, end)`, where `start < end` and `start` is a multiple
/// of the smallest power of two >= `end - start` (true of every range the RFC
/// recursion visits). Folds the range's complete subtrees right to left.
fn range_hash<S: HashStore + ?Sized>(store: &S, start: u64, end: u64) -> Result<Hash, ProofError> {
    debug_assert!(start < end);
    // Peel the smallest complete subtree off the right end of [start, end).
    let peel = |end: u64, width: u64| -> Result<Hash, ProofError> {
        let level = width.trailing_zeros();
        get(store, level as u8, (end >> level) - 1)
    };
    let mut remaining = end - start;
    let mut end = end;
    let width = 1u64 << remaining.trailing_zeros();
    let mut acc = peel(end, width)?;
    remaining -= width;
    end -= width;
    while remaining != 0 {
        let width = 1u64 << remaining.trailing_zeros();
        acc = node_hash(&peel(end, width)?, &acc);
        remaining -= width;
        end -= width;
    }
    Ok(acc)
}

/// PATH(m, D[start:end]) with `m` an absolute leaf index.
fn path<S: HashStore + ?Sized>(
    store: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let mid = start + split_point(n);
    if m < mid {
        path(store, m, start, mid, out)?;
        out.push(range_hash(store, mid, end)?);
    } else {
        path(store, m, mid, end, out)?;
        out.push(range_hash(store, start, mid)?);
    }
    Ok(())
}

/// SUBPROOF(m, D[start:end], complete) with `m` relative to `start`.
fn subproof<S: HashStore + ?Sized>(
    store: &S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range_hash(store, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(store, m, start, start + k, complete, out)?;
        out.push(range_hash(store, start + k, end)?);
    } else {
        subproof(store, m - k, start + k, end, false, out)?;
        out.push(range_hash(store, start, start + k)?);
    }
    Ok(())
}
