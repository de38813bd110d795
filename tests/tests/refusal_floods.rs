//! A flood of refusals is accounted for in full without flooding the audit log:
//! the first refusal of a kind from a source (a peer address, a caller) in a
//! window is recorded as it happens, the ones after it are counted, and one
//! summary entry records the count when the window closes.

use gateway::limits::{Limit, LimitsConfig};
use gateway::proto::{AuditEntry, AuditQuery, audit_client::AuditClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries};
use std::time::Duration;

const FLOOD: u64 = 25;

fn flood_limits() -> LimitsConfig {
    LimitsConfig {
        refusal_window_secs: 1,
        ..Default::default()
    }
}

/// Refusals an entry accounts for: one, or a summary's count.
fn accounted(entry: &AuditEntry) -> u64 {
    let details: serde_json::Value = serde_json::from_str(&entry.details_json).unwrap();
    details["repeated"].as_u64().unwrap_or(1)
}

/// Polls the audit log until `entries` account for `expected` refusals (the
/// summary comes when the window closes), returning them.
async fn accounted_entries(
    server: &TestServer,
    pki: &TestPki,
    action: &str,
    actor: &str,
    expected: u64,
) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = audit_entries(server, pki, action)
            .await
            .into_iter()
            .filter(|e| e.actor == actor)
            .collect();
        if entries.iter().map(accounted).sum::<u64>() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    entries
}

#[tokio::test]
async fn a_flood_of_refused_handshakes_is_recorded_once_and_counted() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, flood_limits()).await;

    for _ in 0..FLOOD {
        let refused = match server.connect(&pki.anonymous_client()).await {
            Err(_) => true,
            Ok(channel) => AuditClient::new(channel)
                .query(AuditQuery::default())
                .await
                .is_err(),
        };
        assert!(refused, "a connection without a certificate got through");
    }

    let entries = accounted_entries(&server, &pki, "connection_refused", "anonymous", FLOOD).await;
    let total: u64 = entries.iter().map(accounted).sum();
    assert_eq!(
        total, FLOOD,
        "every refused handshake is accounted for: {entries:?}"
    );
    assert!(
        entries.len() <= 4,
        "a flood from one peer is summarised, not logged one by one: {entries:?}"
    );
    let summary = entries
        .iter()
        .find(|e| e.details_json.contains("\"repeated\""))
        .expect("a summary entry");
    assert!(
        summary.details_json.contains("\"within_secs\":1"),
        "{summary:?}"
    );
    assert!(summary.details_json.contains("127.0.0.1"), "{summary:?}");
    assert_eq!(summary.outcome, "denied");
    server.stop().await;
}

#[tokio::test]
async fn every_call_refused_by_a_limit_or_the_role_matrix_is_counted() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    pki.issue("auditor/busy");
    pki.issue("union/assistance");
    let mut limits = flood_limits();
    limits.identities.insert(
        "auditor/busy".into(),
        Limit {
            rate_per_second: 0.01,
            burst: 1,
            max_concurrent: 4,
        },
    );
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits).await;

    // Over its rate: the first call passes, every other one is refused.
    let mut busy = AuditClient::new(server.connect(&pki.client("auditor/busy")).await.unwrap());
    busy.query(AuditQuery::default()).await.unwrap();
    for _ in 0..FLOOD {
        let err = busy.query(AuditQuery::default()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
    // Outside its role: a union consumer may not read the audit log.
    let mut outsider = AuditClient::new(
        server
            .connect(&pki.client("union/assistance"))
            .await
            .unwrap(),
    );
    for _ in 0..FLOOD {
        let err = outsider.query(AuditQuery::default()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    for (actor, code) in [
        ("auditor/busy", "rate_limited"),
        ("union/assistance", "role_not_permitted"),
    ] {
        let entries = accounted_entries(&server, &pki, "denied", actor, FLOOD).await;
        let total: u64 = entries.iter().map(accounted).sum();
        assert_eq!(total, FLOOD, "{actor}: {entries:?}");
        assert!(entries.len() <= 4, "{actor}: {entries:?}");
        assert!(
            entries.iter().all(|e| e.details_json.contains(code)),
            "{actor}: {entries:?}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e.details_json.contains("\"repeated\"")),
            "{actor}: {entries:?}"
        );
    }
    server.stop().await;
}
