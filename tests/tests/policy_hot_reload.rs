//! SIGHUP reloads the policies without dropping connections; every policy version
//! is recorded; a broken file on reload is refused with its `file:line` problem
//! recorded, and the previous policies keep serving.

use gateway::proto::{AuditEntry, AuditQuery, PullRequest, audit_client::AuditClient};
use gateway_tests::{ProcessServer, ServerState, TestPki, shipped_policies};
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

async fn entries(auditor: &Channel, action: &str) -> Vec<AuditEntry> {
    AuditClient::new(auditor.clone())
        .query(AuditQuery {
            action: action.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

async fn wait_for(auditor: &Channel, action: &str, n: usize) -> Vec<AuditEntry> {
    for _ in 0..100 {
        let e = entries(auditor, action).await;
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {action} entry appeared");
}

async fn pull_ok(union: &Channel) -> bool {
    gateway::client::pull(
        union.clone(),
        PullRequest {
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_good_policies_and_refuses_broken_ones() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    pki.issue("union/assistance");
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let policies = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(shipped_policies().join("assistance.toml")).unwrap();
    std::fs::write(policies.path().join("assistance.toml"), &original).unwrap();
    let server = ProcessServer::start_with_policies(binary(), &pki, &state, policies.path());
    let addr = server.addr.to_string();
    let auditor = gateway::client::connect(&addr, &pki.client("auditor/compliance"))
        .await
        .unwrap();
    let union = gateway::client::connect(&addr, &pki.client("union/assistance"))
        .await
        .unwrap();
    assert!(pull_ok(&union).await);

    let started = wait_for(&auditor, "gateway_started", 1).await;
    let v1: serde_json::Value = serde_json::from_str(&started[0].details_json).unwrap();
    let v1 = v1["policies"]["assistance"].as_str().unwrap().to_string();

    // A reviewed change: the new version is in force and recorded.
    std::fs::write(
        policies.path().join("assistance.toml"),
        original.replace(
            "name = { op = \"mask\", keep_first = 1 }",
            "name = { op = \"mask\" }",
        ),
    )
    .unwrap();
    server.hangup();
    let reloaded = wait_for(&auditor, "policies_reloaded", 1).await;
    let v2: serde_json::Value = serde_json::from_str(&reloaded[0].details_json).unwrap();
    let v2 = v2["policies"]["assistance"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // Both versions' field tables are in the log: the start-up's and the reload's.
    let recorded = wait_for(&auditor, "policy_recorded", 2).await;
    let recorded: Vec<serde_json::Value> = recorded
        .iter()
        .map(|e| serde_json::from_str(&e.details_json).unwrap())
        .collect();
    for version in [&v1, &v2] {
        assert!(
            recorded
                .iter()
                .any(|p| p["policy_version"] == version.as_str()
                    && p["fields"]["social_insurance.name"] == "masked"),
            "{recorded:?}"
        );
    }
    // The connections opened before the reload still work.
    assert!(pull_ok(&union).await);

    // A broken file: refused, recorded with file and line, the previous version serves on.
    std::fs::write(
        policies.path().join("broken.toml"),
        "consumer = \"rights\"\npurposes = [\"injury_analysis\"]\n[kinds.social_insurance.fields]\nname = { op = \"sha1\" }\n",
    )
    .unwrap();
    server.hangup();
    let refused = wait_for(&auditor, "policy_reload_refused", 1).await;
    let details: serde_json::Value = serde_json::from_str(&refused[0].details_json).unwrap();
    assert!(
        details["problems"]
            .as_str()
            .unwrap()
            .contains("broken.toml:4:"),
        "{details}"
    );
    assert_eq!(details["serving"]["assistance"], v2.as_str());
    assert!(pull_ok(&union).await);
    drop(server);
}
