//! Connections without a certificate the gateway trusts are refused during the
//! TLS handshake: no certificate, a certificate from another CA, an expired one
//! and a revoked one. The caller's RPC fails, and the gateway records each refusal
//! with a stable reason code.

use gateway::pki::Validity;
use gateway::proto::{AuditQuery, audit_client::AuditClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries};
use std::time::Duration;

/// Tries one RPC; true if it got through the TLS layer to the application.
async fn rpc_succeeds(server: &TestServer, tls: &gateway::client::ClientTls) -> bool {
    // With TLS 1.3 the client may finish its side of the handshake before the
    // server refuses it, so the refusal can surface at connect or at the first RPC.
    let Ok(channel) = server.connect(tls).await else {
        return false;
    };
    AuditClient::new(channel)
        .query(AuditQuery::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn untrusted_expired_revoked_and_missing_certificates_cannot_connect() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    pki.issue_with("auditor/expired", Validity::Expired);
    let revoked = pki.issue("auditor/revoked");
    pki.write_crl(&[&revoked]);
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;

    assert!(
        rpc_succeeds(&server, &pki.client("auditor/compliance")).await,
        "the good certificate must work"
    );
    assert!(
        !rpc_succeeds(&server, &pki.anonymous_client()).await,
        "no certificate"
    );
    assert!(
        !rpc_succeeds(&server, &pki.foreign_client("auditor/compliance")).await,
        "foreign CA"
    );
    assert!(
        !rpc_succeeds(&server, &pki.client("auditor/expired")).await,
        "expired"
    );
    assert!(
        !rpc_succeeds(&server, &pki.client("auditor/revoked")).await,
        "revoked"
    );

    // Refusals are recorded off the handshake path; give them a moment.
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = audit_entries(&server, &pki, "connection_refused").await;
        if refused.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let codes: Vec<String> = refused
        .iter()
        .map(|e| {
            let details: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
            details["code"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert!(codes.len() >= 4, "{refused:?}");
    for code in [
        "no_certificate",
        "unknown_issuer",
        "certificate_expired",
        "certificate_revoked",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code}: {refused:?}");
    }
    for e in &refused {
        assert_eq!(e.outcome, "denied");
        assert_eq!(e.actor, "anonymous");
    }
    server.stop().await;
}
