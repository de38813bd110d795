//! The log is truncated and different entries appended up to the same size:
//! the gateway refuses to sign the rewritten tree, and once the attacker has
//! also deleted its checkpoints, an export of the rewritten log verifies on its
//! own but fails against a checkpoint the officer saved earlier.

use crate::audit_support::*;
use gateway::audit::export::VerifyFailure;
use gateway_tests::{ServerState, TestServer};

#[tokio::test]
async fn a_rewritten_history_fails_against_an_earlier_checkpoint() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let mut client = auditor(&server, &pki).await;
    let saved = checkpoint(&mut client).await;
    let saved_size = saved.size;
    assert!(saved_size >= 4);
    drop(client);
    server.stop().await;

    // Truncate to 2 entries: the entries, their leaf hashes and every tree
    // node reaching beyond leaf 2 (the subject index is derived from the
    // entries and follows the log at start-up).
    let keep = 2u64;
    sql(&state, &format!("DELETE FROM audit_log WHERE seq > {keep}"));
    sql(
        &state,
        &format!("DELETE FROM audit_nodes WHERE ((idx + 1) << level) > {keep}"),
    );
    // Leaf hashes: the log is shorter than one tile of 256, so they are all
    // rows of the last, incomplete tile.
    assert!(saved_size < 256);
    sql(
        &state,
        &format!("DELETE FROM audit_leaves WHERE idx >= {keep}"),
    );
    if state.database().is_some() {
        // PostgreSQL keeps the log's size and each subject's latest entry
        // beside the log: the attacker cuts those back too.
        sql(&state, &format!("UPDATE audit_head SET size = {keep}"));
        sql(
            &state,
            &format!("DELETE FROM audit_subjects WHERE seq > {keep}"),
        );
        sql(
            &state,
            "DELETE FROM audit_subject_heads; INSERT INTO audit_subject_heads \
             SELECT subject, max(seq) FROM audit_subjects GROUP BY subject",
        );
    }

    // Different entries appended up to (beyond) the saved size.
    let server = TestServer::start(&pki, &state).await;
    let mut client = auditor(&server, &pki).await;
    while log_size(&state) <= saved_size {
        one_entry(&server, &pki).await;
    }
    // The gateway will not sign a tree that does not extend its last checkpoint.
    let refused = client
        .get_checkpoint(gateway::proto::GetCheckpointRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::DataLoss, "{refused:?}");

    // The attacker removes the gateway's own checkpoints too.
    sql(&state, "DELETE FROM audit_checkpoints");
    let out = tempfile::tempdir().unwrap();
    let file = export(&server, &pki, out.path(), "rewritten.jsonl").await;
    // Self-consistent on its own...
    let alone = verify_file(&file, &state, None).unwrap();
    assert!(alone.size > saved_size);
    // ...but not an extension of what the officer saw before.
    assert_eq!(
        verify_file(&file, &state, Some(&saved.note)).unwrap_err(),
        VerifyFailure::NotExtension { size: saved_size }
    );
    server.stop().await;
}

#[tokio::test]
async fn an_honest_log_extends_an_earlier_checkpoint() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let mut client = auditor(&server, &pki).await;
    let saved = checkpoint(&mut client).await;
    traffic(&server, &pki).await;
    let out = tempfile::tempdir().unwrap();
    let file = export(&server, &pki, out.path(), "later.jsonl").await;
    let v = verify_file(&file, &state, Some(&saved.note)).unwrap();
    assert_eq!(v.extends, Some(saved.size));
    assert!(v.size > saved.size);
    server.stop().await;
}
