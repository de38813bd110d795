//! One byte of one stored entry is flipped in the gateway's store at rest: the
//! export no longer verifies, and `gateway audit verify` names that entry.

use crate::audit_support::*;
use gateway_tests::{ServerState, TestServer};

#[tokio::test]
async fn a_flipped_byte_in_the_store_is_named_by_verify() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let out = tempfile::tempdir().unwrap();

    // Before: the export verifies.
    let clean = export(&server, &pki, out.path(), "clean.jsonl").await;
    let ok = verify_file(&clean, &state, None).unwrap();
    assert!(ok.size >= 4, "{ok:?}");

    // The attacker flips one byte in the middle of the delivery entry.
    let target = seq_of(&state, "records_delivered");
    let mut bytes = stored_entry(&state, target);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    overwrite_entry(&state, target, &bytes);

    let tampered = export(&server, &pki, out.path(), "tampered.jsonl").await;
    let err = verify_file(&tampered, &state, None).unwrap_err();
    assert_eq!(
        err,
        gateway::audit::export::VerifyFailure::Altered {
            line: target + 1,
            seq: target
        }
    );

    // The officer's command line says the same, offline, with the pinned key.
    let vkey = verifier(&state).to_string();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["audit", "verify"])
        .arg(&tampered)
        .args(["--key", &vkey])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("line {}: entry {target} was altered", target + 1)),
        "{stderr}"
    );
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["audit", "verify"])
        .arg(&clean)
        .args(["--key", &vkey])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    server.stop().await;
}
