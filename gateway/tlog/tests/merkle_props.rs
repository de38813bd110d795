//! Property tests: the O(log n) store-based generators agree with the RFC
//! 9162 recursive definitions, generated proofs verify, and every single-bit
//! flip, truncation or extension of a proof is rejected. Plus the storage
//! contract of [`appended_nodes`] and the O(log n) lookup bound at 10M+ leaves.

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use tlog::reference;
use tlog::{
    Frontier, Hash, HashStore, MemoryTree, ProofError, VerifyError, appended_nodes,
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_at, verify_consistency,
    verify_inclusion,
};

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn tree_of(leaves: &[Hash]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.append(*leaf);
    }
    tree
}

fn flipped(proof: &[Hash], element: usize, bit: usize) -> Vec<Hash> {
    let mut proof = proof.to_vec();
    proof[element][bit / 8] ^= 1 << (bit % 8);
    proof
}

/// A persistent store stand-in: rows `(level, index) -> hash`, as a SQLite
/// table would hold them.
#[derive(Default)]
struct MapStore {
    leaf_count: u64,
    rows: BTreeMap<(u8, u64), Hash>,
}

impl HashStore for MapStore {
    fn leaf_count(&self) -> u64 {
        self.leaf_count
    }
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self.rows.get(&(level, index)).copied()
    }
}

impl MapStore {
    fn append(&mut self, batch: &[Hash]) {
        for node in appended_nodes(self, batch).unwrap() {
            assert!(
                self.rows
                    .insert((node.level, node.index), node.hash)
                    .is_none(),
                "row written twice"
            );
        }
        self.leaf_count += batch.len() as u64;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn inclusion_proofs_verify_and_resist_tampering(n in 1u64..=300, seed in any::<u64>(), delta in any::<u64>()) {
        let leaves = leaves(n);
        let tree = tree_of(&leaves);
        let index = seed % n;
        let root = tree.root();
        let proof = tree.inclusion_proof(index, n).unwrap();
        prop_assert_eq!(&proof, &reference::inclusion_proof(index, &leaves).unwrap());
        let leaf = leaves[index as usize];
        prop_assert_eq!(verify_inclusion(&leaf, index, n, &proof, &root), Ok(()));

        for element in 0..proof.len() {
            for bit in 0..256 {
                let bad = flipped(&proof, element, bit);
                prop_assert!(verify_inclusion(&leaf, index, n, &bad, &root).is_err());
            }
        }
        let mut bad_leaf = leaf;
        bad_leaf[(seed % 32) as usize] ^= 1;
        prop_assert!(verify_inclusion(&bad_leaf, index, n, &proof, &root).is_err());
        let mut bad_root = root;
        bad_root[(delta % 32) as usize] ^= 0x80;
        prop_assert!(verify_inclusion(&leaf, index, n, &proof, &bad_root).is_err());
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(&leaf, index, n, &proof[1..], &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, n, &proof[..proof.len() - 1], &root).is_err());
        }
        for extra in [root, leaf, [0; 32]] {
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(verify_inclusion(&leaf, index, n, &longer, &root).is_err());
            longer.rotate_right(1);
            prop_assert!(verify_inclusion(&leaf, index, n, &longer, &root).is_err());
        }
        if n > 1 {
            let other = (index + 1 + delta % (n - 1)) % n;
            prop_assert!(verify_inclusion(&leaf, other, n, &proof, &root).is_err());
        }
        let beyond = n + delta % 1000;
        prop_assert_eq!(
            verify_inclusion(&leaf, beyond, n, &proof, &root),
            Err(VerifyError::IndexOutOfRange { index: beyond, size: n })
        );
    }

    #[test]
    fn consistency_proofs_verify_and_resist_tampering(n in 1u64..=300, seed in any::<u64>(), pick in any::<u64>()) {
        let leaves = leaves(n);
        let tree = tree_of(&leaves);
        let m = 1 + seed % n;
        let (root1, root2) = (tree.root_at(m).unwrap(), tree.root());
        let proof = tree.consistency_proof(m, n).unwrap();
        prop_assert_eq!(&proof, &reference::consistency_proof(m, &leaves).unwrap());
        prop_assert_eq!(verify_consistency(m, n, &root1, &root2, &proof), Ok(()));

        for element in 0..proof.len() {
            for bit in 0..256 {
                let bad = flipped(&proof, element, bit);
                prop_assert!(verify_consistency(m, n, &root1, &root2, &bad).is_err());
            }
        }
        if !proof.is_empty() {
            prop_assert!(verify_consistency(m, n, &root1, &root2, &proof[1..]).is_err());
            prop_assert!(verify_consistency(m, n, &root1, &root2, &proof[..proof.len() - 1]).is_err());
        }
        for extra in [root1, root2, [0; 32]] {
            let mut longer = proof.clone();
            longer.push(extra);
            prop_assert!(verify_consistency(m, n, &root1, &root2, &longer).is_err());
            longer.rotate_right(1);
            prop_assert!(verify_consistency(m, n, &root1, &root2, &longer).is_err());
        }
        let mut bad_root = root1;
        bad_root[(pick % 32) as usize] ^= 1;
        prop_assert!(verify_consistency(m, n, &bad_root, &root2, &proof).is_err());
        prop_assert!(verify_consistency(m, n, &root1, &bad_root, &proof).is_err());
        if m < n {
            prop_assert!(verify_consistency(m, n, &root2, &root1, &proof).is_err());
            prop_assert_eq!(
                verify_consistency(n, m, &root2, &root1, &proof),
                Err(VerifyError::SizesReversed { size1: n, size2: m })
            );
        }
        prop_assert_eq!(verify_consistency(0, n, &root1, &root2, &proof), Err(VerifyError::EmptyFirstTree));
    }

    #[test]
    fn incremental_roots_match_the_recursive_definition(n in 0u64..=600, picks in proptest::collection::vec(any::<u64>(), 6)) {
        let leaves = leaves(n);
        let tree = tree_of(&leaves);
        prop_assert_eq!(tree.root(), reference::root(&leaves));
        for pick in picks {
            let k = pick % (n + 1);
            prop_assert_eq!(tree.root_at(k).unwrap(), reference::root(&leaves[..k as usize]));
        }
    }

    #[test]
    fn appended_nodes_build_the_same_store(batches in proptest::collection::vec(0usize..40, 0..25)) {
        let total: usize = batches.iter().sum();
        let leaves = leaves(total as u64);
        let tree = tree_of(&leaves);
        let mut store = MapStore::default();
        let mut done = 0;
        for batch in batches {
            store.append(&leaves[done..done + batch]);
            done += batch;
            prop_assert_eq!(root_at(&store, done as u64).unwrap(), tree.root_at(done as u64).unwrap());
        }
        prop_assert_eq!(store.leaf_count(), tree.leaf_count());
        // Exactly the complete subtrees of [0, total): for each level, n >> level nodes.
        let expected_rows: u64 = (0..64).map(|level| (total as u64) >> level).sum();
        prop_assert_eq!(store.rows.len() as u64, expected_rows);
        for (&(level, index), hash) in &store.rows {
            prop_assert_eq!(tree.node(level, index), Some(*hash));
        }
    }
    #[test]
    fn a_kept_frontier_appends_as_the_store_does(start in 0u64..300, batches in proptest::collection::vec(0usize..40, 0..25)) {
        // A writer that keeps the frontier between appends creates the same
        // rows as one that reads the right edge from the store every time,
        // and knows the root without reading anything.
        let total = start as usize + batches.iter().sum::<usize>();
        let leaves = leaves(total as u64);
        let mut store = MapStore::default();
        store.append(&leaves[..start as usize]);
        let mut frontier = Frontier::of(&store).unwrap();
        prop_assert_eq!(frontier.size(), start);
        let mut done = start as usize;
        for batch in batches {
            let kept = frontier.append(&leaves[done..done + batch]).unwrap();
            let read = appended_nodes(&store, &leaves[done..done + batch]).unwrap();
            prop_assert_eq!(&kept, &read);
            store.append(&leaves[done..done + batch]);
            done += batch;
            prop_assert_eq!(frontier.size(), done as u64);
            prop_assert_eq!(frontier.root(), reference::root(&leaves[..done]));
            prop_assert_eq!(&Frontier::of(&store).unwrap(), &frontier);
        }
    }
}

#[test]
fn appended_nodes_of_the_fourth_leaf() {
    let leaves = leaves(4);
    let tree = tree_of(&leaves[..3]);
    let nodes = appended_nodes(&tree, &leaves[3..]).unwrap();
    let pairs: Vec<(u8, u64)> = nodes.iter().map(|n| (n.level, n.index)).collect();
    assert_eq!(pairs, [(0, 3), (1, 1), (2, 0)]);
    let left = node_hash(&leaves[0], &leaves[1]);
    let right = node_hash(&leaves[2], &leaves[3]);
    assert_eq!(nodes[2].hash, node_hash(&left, &right));
}

#[test]
fn generation_rejects_bad_ranges() {
    let tree = tree_of(&leaves(10));
    assert_eq!(
        tree.root_at(11),
        Err(ProofError::SizeBeyondStore {
            size: 11,
            leaf_count: 10
        })
    );
    assert_eq!(
        tree.inclusion_proof(0, 11),
        Err(ProofError::SizeBeyondStore {
            size: 11,
            leaf_count: 10
        })
    );
    assert_eq!(
        tree.inclusion_proof(5, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        tree.inclusion_proof(0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        tree.consistency_proof(0, 5),
        Err(ProofError::InvalidSizes { size1: 0, size2: 5 })
    );
    assert_eq!(
        tree.consistency_proof(6, 5),
        Err(ProofError::InvalidSizes { size1: 6, size2: 5 })
    );
    assert_eq!(tree.consistency_proof(5, 5), Ok(vec![]));
    assert_eq!(
        tree.consistency_proof(1, 11),
        Err(ProofError::SizeBeyondStore {
            size: 11,
            leaf_count: 10
        })
    );
}

#[test]
fn missing_nodes_are_reported() {
    let leaves = leaves(6);
    let mut store = MapStore::default();
    store.append(&leaves);
    store.rows.remove(&(1, 2)); // leaves [4, 6)
    assert_eq!(
        root_at(&store, 6),
        Err(ProofError::MissingNode { level: 1, index: 2 })
    );
    assert_eq!(
        inclusion_proof(&store, 0, 6),
        Err(ProofError::MissingNode { level: 1, index: 2 })
    );
    assert_eq!(
        consistency_proof(&store, 4, 6),
        Err(ProofError::MissingNode { level: 1, index: 2 })
    );
    assert_eq!(
        appended_nodes(&store, &leaves[..1]),
        Err(ProofError::MissingNode { level: 1, index: 2 })
    );
    // Proofs that do not need the node still work.
    assert_eq!(
        inclusion_proof(&store, 4, 5).unwrap(),
        reference::inclusion_proof(4, &leaves[..5]).unwrap()
    );
}

/// A store of any size that invents node hashes and counts lookups, to show
/// the generators touch O(log n) nodes however large the log is.
struct CountingStore {
    leaf_count: u64,
    lookups: Cell<usize>,
}

impl HashStore for CountingStore {
    fn leaf_count(&self) -> u64 {
        self.leaf_count
    }
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self.lookups.set(self.lookups.get() + 1);
        let mut hash = [0; 32];
        hash[0] = level;
        hash[8..16].copy_from_slice(&index.to_be_bytes());
        Some(hash)
    }
}

#[test]
fn generation_touches_logarithmically_many_nodes() {
    for size in [10_000_000u64, 10_000_001, (1 << 40) + 12_345, u64::MAX - 1] {
        let store = CountingStore {
            leaf_count: size,
            lookups: Cell::new(0),
        };
        let bits = 64 - size.leading_zeros() as usize;
        let count = |f: &dyn Fn(&CountingStore)| {
            store.lookups.set(0);
            f(&store);
            store.lookups.get()
        };
        let lookups = count(&|s| {
            root_at(s, size).unwrap();
        });
        assert!(lookups <= bits, "root at {size}: {lookups} lookups");
        for index in [0, 1, size / 3, size / 2, size - 2, size - 1] {
            let lookups = count(&|s| {
                inclusion_proof(s, index, size).unwrap();
            });
            assert!(
                lookups <= 2 * bits,
                "inclusion {index} @ {size}: {lookups} lookups"
            );
        }
        for size1 in [1, 2, 7, size / 3, size / 2 + 1, size - 1, size] {
            let lookups = count(&|s| {
                consistency_proof(s, size1, size).unwrap();
            });
            assert!(
                lookups <= 3 * bits,
                "consistency {size1} -> {size}: {lookups} lookups"
            );
        }
        let lookups = count(&|s| {
            appended_nodes(s, &[[1; 32]]).unwrap();
        });
        assert!(lookups <= bits, "append at {size}: {lookups} lookups");
    }
}
