//! An entry dropped from the store or from an export file, and two entries
//! swapped in either, are detected, and the first affected entry is named
//! with its line in the file (entry `seq` is on line `seq + 1`).

use crate::audit_support::*;
use gateway::audit::export::VerifyFailure;
use gateway_tests::{ServerState, TestServer};

async fn server_with_traffic() -> (gateway_tests::TestPki, ServerState, TestServer) {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    (pki, state, server)
}

#[tokio::test]
async fn an_entry_deleted_from_the_store_is_named() {
    let (pki, state, server) = server_with_traffic().await;
    let target = seq_of(&state, "batch_pushed");
    sql(
        &state,
        &format!("DELETE FROM audit_log WHERE seq = {target}"),
    );
    let out = tempfile::tempdir().unwrap();
    let file = export(&server, &pki, out.path(), "dropped.jsonl").await;
    assert_eq!(
        verify_file(&file, &state, None).unwrap_err(),
        VerifyFailure::EntryMissing {
            line: target + 1,
            seq: target
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn two_entries_swapped_in_the_store_are_named() {
    let (pki, state, server) = server_with_traffic().await;
    let a = seq_of(&state, "batch_pushed");
    let b = a + 1;
    let (ea, eb) = (stored_entry(&state, a), stored_entry(&state, b));
    overwrite_entry(&state, a, &eb);
    overwrite_entry(&state, b, &ea);
    let out = tempfile::tempdir().unwrap();
    let file = export(&server, &pki, out.path(), "swapped.jsonl").await;
    assert_eq!(
        verify_file(&file, &state, None).unwrap_err(),
        VerifyFailure::Reordered {
            line: a + 1,
            seq: a,
            found: b
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn lines_dropped_or_swapped_in_an_export_file_are_named() {
    let (pki, state, server) = server_with_traffic().await;
    let out = tempfile::tempdir().unwrap();
    let file = export(&server, &pki, out.path(), "export.jsonl").await;
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // lines[0] is the header; lines[k] holds entry k.
    let k = 3;

    let mut dropped = lines.clone();
    dropped.remove(k);
    let path = out.path().join("dropped.jsonl");
    std::fs::write(&path, dropped.join("\n") + "\n").unwrap();
    assert_eq!(
        verify_file(&path, &state, None).unwrap_err(),
        VerifyFailure::Dropped {
            line: k as u64 + 1,
            seq: k as u64,
            found: k as u64 + 1
        }
    );

    let mut swapped = lines.clone();
    swapped.swap(k, k + 1);
    let path = out.path().join("swapped.jsonl");
    std::fs::write(&path, swapped.join("\n") + "\n").unwrap();
    assert_eq!(
        verify_file(&path, &state, None).unwrap_err(),
        VerifyFailure::Reordered {
            line: k as u64 + 1,
            seq: k as u64,
            found: k as u64 + 1
        }
    );

    // The last entry dropped: the checkpoint covers more than the file holds.
    let mut short = lines.clone();
    short.pop();
    let path = out.path().join("short.jsonl");
    std::fs::write(&path, short.join("\n") + "\n").unwrap();
    assert!(matches!(
        verify_file(&path, &state, None).unwrap_err(),
        VerifyFailure::Count { .. }
    ));
    server.stop().await;
}
