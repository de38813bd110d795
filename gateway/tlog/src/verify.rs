//! Proof verification as a client (a compliance officer, offline) runs it:
//! RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), preceded by an
//! exact proof-length check so that a missing or extra hash is reported as
//! such rather than as a generic mismatch.

use thiserror::Error;

use crate::hash::{Hash, node_hash};

/// Why a proof was rejected.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// Inclusion: the leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// Consistency: a proof from the empty tree proves nothing (RFC 9162 needs 0 < first).
    #[error("consistency from the empty tree is meaningless")]
    EmptyFirstTree,
    /// Consistency: the first tree is larger than the second.
    #[error("first tree size {size1} exceeds second tree size {size2}")]
    SizesReversed { size1: u64, size2: u64 },
    /// The proof has the wrong number of hashes for the given sizes.
    #[error("proof has {actual} hashes, expected {expected}")]
    WrongProofLength { expected: usize, actual: usize },
    /// Inclusion: the proof does not lead to the given root.
    #[error("inclusion proof does not lead to the given root")]
    RootMismatch,
    /// Consistency: the proof does not reproduce the first root.
    #[error("consistency proof does not reproduce the first root")]
    FirstRootMismatch,
    /// Consistency: the proof does not reproduce the second root
    /// (for equal sizes: the two roots differ).
    #[error("consistency proof does not reproduce the second root")]
    SecondRootMismatch,
}

/// Number of hashes in the inclusion proof of `index` (< `size`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Levels where the paths to `index` and to the last leaf diverge, plus
    // the right-border levels above them where `index` has a left sibling.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `size1` to `size2` (0 < size1 < size2).
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let shift = size1.trailing_zeros();
    // The proof omits the levels below the first tree's last complete
    // subtree, and omits that subtree's own hash when it is the whole first tree.
    let seed = usize::from(!size1.is_power_of_two());
    inclusion_proof_len(size1 - 1, size2) - shift as usize + seed
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of size `size` with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(VerifyError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(VerifyError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of size `size2` with root `root2` extends the tree
/// of size `size1` with root `root1` (RFC 9162 §2.1.4.2). Equal sizes need
/// equal roots and an empty proof; `size1 == 0` is rejected.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if size1 == 0 {
        return Err(VerifyError::EmptyFirstTree);
    }
    if size1 > size2 {
        return Err(VerifyError::SizesReversed { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if root1 != root2 {
            return Err(VerifyError::SecondRootMismatch);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(size1, size2);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    // Step 2: a power-of-two first tree is itself the seed of the path.
    let (seed, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        // `expected >= 1` here, so the proof is not empty.
        (&proof[0], &proof[1..])
    };
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*seed, *seed);
    for c in rest {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    if f_r != *root1 {
        return Err(VerifyError::FirstRootMismatch);
    }
    if s_r != *root2 {
        return Err(VerifyError::SecondRootMismatch);
    }
    Ok(())
}
