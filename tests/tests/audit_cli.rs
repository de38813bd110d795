//! The compliance officer's command line against the real `gateway serve`
//! process: the public key is written beside the data, `audit checkpoint`,
//! `audit export`, offline `audit verify` (also against a saved checkpoint),
//! `audit query` and `audit report` (table and JSON).

use crate::audit_support::*;
use gateway_tests::{ProcessServer, ServerState};
use std::process::Command;

fn cli(
    server: &ProcessServer,
    pki: &gateway_tests::TestPki,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .arg("audit")
        .args(args)
        .args(["--addr", &server.addr.to_string()])
        .arg("--certs-dir")
        .arg(pki.dir.path())
        .args(["--identity", "auditor/compliance"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_officer_exports_verifies_queries_and_reports_from_the_command_line() {
    let pki = pki();
    let state = ServerState::new();
    let server = ProcessServer::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_gateway-under-test")),
        &pki,
        &state,
    );
    let vkey_file = state.data_dir().join("audit-log.vkey");
    let pinned = std::fs::read_to_string(&vkey_file).unwrap();
    assert_eq!(pinned.trim(), verifier(&state).to_string());

    let addr = server.addr.to_string();
    let tls = pki.client("agency/hrss");
    let agency = gateway::client::connect(&addr, &tls).await.unwrap();
    gateway::client::push_file(
        agency,
        &gateway_tests::sample("hrss.csv"),
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("checkpoint.txt");
    let (ok, stdout, stderr) = cli(
        &server,
        &pki,
        &["checkpoint", "--out", saved.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("exchange.wuhu.example/audit\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n\n\u{2014} exchange.wuhu.example/audit "));

    let union = gateway::client::connect(&addr, &pki.client("union/assistance"))
        .await
        .unwrap();
    gateway::client::pull(union, pull_request(), |_| Ok(()))
        .await
        .unwrap();

    let export = dir.path().join("audit.jsonl");
    let (ok, _, stderr) = cli(
        &server,
        &pki,
        &["export", "--out", export.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    let verify = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["audit", "verify"])
        .arg(&export)
        .arg("--key")
        .arg(&vkey_file)
        .arg("--checkpoint")
        .arg(&saved)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(stdout.starts_with("OK: "), "{stdout}");
    assert!(
        stdout.contains("extends the earlier checkpoint"),
        "{stdout}"
    );

    // A wrong key is refused.
    let other = tlog::Signer::from_seed("exchange.wuhu.example/audit", [3; 32])
        .unwrap()
        .verifier()
        .to_string();
    let verify = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["audit", "verify"])
        .arg(&export)
        .args(["--key", &other])
        .output()
        .unwrap();
    assert!(!verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stderr).contains("checkpoint is not valid"));

    let (ok, stdout, stderr) = cli(&server, &pki, &["query", "--action", "batch_pushed"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("agency/hrss") && stdout.contains("batch_pushed"),
        "{stdout}"
    );
    let (ok, stdout, _) = cli(
        &server,
        &pki,
        &["query", "--kind", "social_insurance", "--json"],
    );
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["action"], "records_delivered");

    let (ok, stdout, stderr) = cli(&server, &pki, &["report", "--id-number", PERSON]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("records_delivered") && stdout.contains("hardship_screening"),
        "{stdout}"
    );
    assert!(stdout.contains("chain complete"), "{stdout}");
    assert!(!stdout.contains(PERSON));
    let (ok, stdout, _) = cli(&server, &pki, &["report", "--id-number", PERSON, "--json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["chain_complete"], true);
    assert_eq!(json["items"][0]["who"], "union/assistance");
    assert_eq!(
        json["items"][0]["fields"]["social_insurance.name"],
        "masked"
    );
    drop(server);
}
