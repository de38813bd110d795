//! A flood of refusals is accounted for in full without flooding the audit log:
//! the first refusal of a kind from a source (a peer address, a caller) in a
//! window is recorded as it happens, the ones after it are counted, and one
//! summary entry records the count when the window closes.

use gateway::limits::{Limit, LimitsConfig};
use gateway::pki::Validity;
use gateway::proto::{AuditEntry, AuditQuery, audit_client::AuditClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, tls_handshake};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Handshakes with an expired certificate from one address fold into one entry
/// and its summary: they are keyed by a stable reason code, not by rustls'
/// error text, which carries the current time (one entry per second before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_refusals_fold_by_reason_code() {
    const HANDSHAKES: u64 = 1_000;
    const AT_ONCE: u64 = 8;
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    pki.issue_with("auditor/expired", Validity::Expired);
    let state = ServerState::new();
    // One window longer than the flood.
    let server = TestServer::start_with_limits(&pki, &state, LimitsConfig::default()).await;
    let gateway = server.gateway.clone();
    let expired = pki.client("auditor/expired");

    // A few at a time, in two halves a second apart: a key that held the
    // time of day would split the flood at least in two.
    let done = Arc::new(AtomicU64::new(0));
    for half in 1..=2 {
        let workers: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (done, expired, addr) = (done.clone(), expired.clone(), server.addr);
                tokio::spawn(async move {
                    while done.fetch_add(1, Ordering::Relaxed) < half * HANDSHAKES / 2 {
                        assert!(
                            tls_handshake(addr, &expired).await.is_err(),
                            "an expired certificate got through"
                        );
                    }
                    done.fetch_sub(1, Ordering::Relaxed);
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        if half == 1 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
    }
    assert_eq!(done.load(Ordering::Relaxed), HANDSHAKES);

    // While the window is open: one entry, with the code and a fixed text.
    let live = accounted_entries(&server, &pki, "connection_refused", "anonymous", 1).await;
    assert_eq!(live.len(), 1, "{live:?}");
    let details: serde_json::Value = serde_json::from_str(&live[0].details_json).unwrap();
    assert_eq!(details["code"], "certificate_expired", "{details}");
    assert_eq!(
        details["reason"], "the certificate has expired",
        "{details}"
    );
    assert_eq!(details["peer"], "127.0.0.1", "{details}");

    // Stopping closes the window: its summary counts the rest.
    server.stop().await;
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = stored_entries(&gateway, "connection_refused");
        if entries
            .iter()
            .map(|d| d["repeated"].as_u64().unwrap_or(1))
            .sum::<u64>()
            >= HANDSHAKES
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(entries.len() <= 2, "{entries:?}");
    let total: u64 = entries
        .iter()
        .map(|d| d["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(total, HANDSHAKES, "{entries:?}");
    assert!(
        entries.iter().all(|d| d["code"] == "certificate_expired"),
        "{entries:?}"
    );
}

/// The details of the stored entries with `action`, read from the store.
fn stored_entries(gateway: &gateway::Gateway, action: &str) -> Vec<serde_json::Value> {
    gateway
        .store
        .query_audit(&gateway::store::AuditFilter {
            action: Some(action.into()),
            limit: 1_000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.decode().unwrap().details.to_json())
        .collect()
}
