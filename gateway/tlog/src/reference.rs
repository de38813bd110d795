//! The RFC 9162 §2.1 recursive definitions — MTH, PATH (§2.1.3.1) and
//! PROOF/SUBPROOF (§2.1.4.1) — written literally over a slice of leaf hashes.
//!
//! Every call is O(n). They exist as the executable specification that the
//! O(log n) store-based generators in [`crate::store`] are tested against, and
//! for callers that only hold a small batch of leaves.

use crate::hash::{EMPTY_ROOT, Hash, node_hash};
use crate::store::ProofError;

/// Largest power of two strictly smaller than `n`; `n` must be at least 2.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "split_point needs n >= 2");
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[n]): the Merkle tree hash of the given leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(index, D[n]): the inclusion proof of leaf `index` in the tree of all `leaves`.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len() as u64) as usize;
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// PROOF(size1, D[n]): the consistency proof from the first `size1` leaves to all `leaves`.
///
/// Requires `0 < size1 <= leaves.len()`; equal sizes give the empty proof.
pub fn consistency_proof(size1: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size2 = leaves.len() as u64;
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    let mut proof = Vec::new();
    subproof(size1 as usize, leaves, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (u64::MAX, 1 << 63),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }
}
