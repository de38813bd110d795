//! Inclusion and consistency proofs from the `Audit` service verify against
//! signed checkpoints with the pinned key; a forked history (a second log
//! signed with the same key) does not; a proof with a hash missing or a
//! trailing hash added is rejected.

use crate::audit_support::*;
use gateway::proto::{ConsistencyRequest, InclusionRequest};
use gateway_tests::{ServerState, TestServer};
use tlog::{VerifyError, leaf_hash, verify_consistency, verify_inclusion};

#[tokio::test]
async fn consistency_between_two_checkpoints_verifies_and_a_fork_does_not() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let mut client = auditor(&server, &pki).await;
    let first = open(&checkpoint(&mut client).await.note, &state);
    traffic(&server, &pki).await;
    let second = open(&checkpoint(&mut client).await.note, &state);
    assert!(second.size() > first.size());

    let proof = client
        .prove_consistency(ConsistencyRequest {
            from_size: first.size(),
            to_size: second.size(),
        })
        .await
        .unwrap()
        .into_inner();
    let hashes = hashes(&proof.hashes);
    verify_consistency(
        first.size(),
        second.size(),
        first.root(),
        second.root(),
        &hashes,
    )
    .unwrap();

    // A missing or a trailing hash is rejected.
    let mut short = hashes.clone();
    short.pop();
    assert!(matches!(
        verify_consistency(
            first.size(),
            second.size(),
            first.root(),
            second.root(),
            &short
        ),
        Err(VerifyError::WrongProofLength { .. })
    ));
    let mut long = hashes.clone();
    long.push([7; 32]);
    assert!(matches!(
        verify_consistency(
            first.size(),
            second.size(),
            first.root(),
            second.root(),
            &long
        ),
        Err(VerifyError::WrongProofLength { .. })
    ));

    // A fork: a second gateway with the same signing key and different history.
    let fork_state = ServerState::new();
    std::fs::copy(state.keys_file(), fork_state.keys_file()).unwrap();
    let fork = TestServer::start(&pki, &fork_state).await;
    while log_size(&fork_state) < second.size() {
        one_entry(&fork, &pki).await;
    }
    let mut fork_client = auditor(&fork, &pki).await;
    let forked = open(&checkpoint(&mut fork_client).await.note, &state);
    assert_eq!(forked.size(), second.size());
    assert_ne!(forked.root(), second.root());
    // The fork's proof from the first size does not link the honest first checkpoint...
    let fork_proof = fork_client
        .prove_consistency(ConsistencyRequest {
            from_size: first.size(),
            to_size: forked.size(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        verify_consistency(
            first.size(),
            forked.size(),
            first.root(),
            forked.root(),
            &hashes_of(&fork_proof.hashes),
        )
        .is_err()
    );
    // ...and the honest log's proof does not lead to the fork's root.
    assert!(
        verify_consistency(
            first.size(),
            forked.size(),
            first.root(),
            forked.root(),
            &hashes,
        )
        .is_err()
    );
    fork.stop().await;
    server.stop().await;
}

fn hashes_of(raw: &[Vec<u8>]) -> Vec<tlog::Hash> {
    hashes(raw)
}

#[tokio::test]
async fn inclusion_proofs_verify_and_mutated_proofs_are_rejected() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let mut client = auditor(&server, &pki).await;
    let cp = open(&checkpoint(&mut client).await.note, &state);
    for seq in 1..=cp.size() {
        let p = client
            .prove_inclusion(InclusionRequest {
                seq,
                tree_size: cp.size(),
            })
            .await
            .unwrap()
            .into_inner();
        // The leaf is recomputed from the canonical entry, not taken on trust.
        let leaf = leaf_hash(&p.canonical);
        assert_eq!(leaf.to_vec(), p.leaf_hash);
        let entry = gateway::audit::CanonicalEntry::decode(&p.canonical).unwrap();
        assert_eq!(entry.seq, seq);
        let proof = hashes(&p.hashes);
        verify_inclusion(&leaf, seq - 1, cp.size(), &proof, cp.root()).unwrap();

        if !proof.is_empty() {
            let mut short = proof.clone();
            short.pop();
            assert!(matches!(
                verify_inclusion(&leaf, seq - 1, cp.size(), &short, cp.root()),
                Err(VerifyError::WrongProofLength { .. })
            ));
        }
        let mut long = proof.clone();
        long.push([9; 32]);
        assert!(matches!(
            verify_inclusion(&leaf, seq - 1, cp.size(), &long, cp.root()),
            Err(VerifyError::WrongProofLength { .. })
        ));
        // Another entry's bytes do not verify at this position.
        let other = leaf_hash(b"not this entry");
        assert_eq!(
            verify_inclusion(&other, seq - 1, cp.size(), &proof, cp.root()),
            Err(VerifyError::RootMismatch)
        );
    }
    // Sizes beyond the log are a client error, not a crash.
    let err = client
        .prove_inclusion(InclusionRequest {
            seq: 1,
            tree_size: cp.size() + 100,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .prove_consistency(ConsistencyRequest {
            from_size: 0,
            to_size: cp.size(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}
