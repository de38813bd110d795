//! Timing at scale, run on demand:
//! `cargo test -p tlog --release --test scale -- --ignored --nocapture`.
//! Builds a 1M-leaf MemoryTree and times proof generation from it.

use std::time::Instant;

use tlog::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};

#[test]
#[ignore = "timing; builds a 1M-leaf tree"]
fn proof_generation_at_one_million_leaves() {
    const N: u64 = 1 << 20;
    let started = Instant::now();
    let mut tree = MemoryTree::new();
    for i in 0..N {
        tree.append(leaf_hash(&i.to_be_bytes()));
    }
    let root = tree.root();
    println!("append {N} leaves: {:?}", started.elapsed());

    const QUERIES: u64 = 10_000;
    let pick = |q: u64| q.wrapping_mul(0x9e37_79b9_7f4a_7c15) % N;
    let started = Instant::now();
    for q in 0..QUERIES {
        std::hint::black_box(tree.inclusion_proof(pick(q), N).unwrap());
    }
    let inclusion = started.elapsed() / QUERIES as u32;
    let started = Instant::now();
    for q in 0..QUERIES {
        std::hint::black_box(tree.consistency_proof(1 + pick(q) % (N - 1), N).unwrap());
    }
    let consistency = started.elapsed() / QUERIES as u32;
    let started = Instant::now();
    for q in 0..QUERIES {
        std::hint::black_box(tree.root_at(1 + pick(q) % N).unwrap());
    }
    let old_root = started.elapsed() / QUERIES as u32;
    println!(
        "per call: inclusion proof {inclusion:?}, consistency proof {consistency:?}, root at old size {old_root:?}"
    );

    let index = pick(7);
    let proof = tree.inclusion_proof(index, N).unwrap();
    verify_inclusion(&leaf_hash(&index.to_be_bytes()), index, N, &proof, &root).unwrap();
    let size1 = 1 + pick(8) % (N - 1);
    let proof = tree.consistency_proof(size1, N).unwrap();
    verify_consistency(size1, N, &tree.root_at(size1).unwrap(), &root, &proof).unwrap();
    assert!(inclusion.as_micros() < 1000 && consistency.as_micros() < 1000);
}
