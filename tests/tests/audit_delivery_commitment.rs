//! A delivery's audit entry commits to exactly the bytes the consumer
//! received: its `content_sha256` is the commitment (SHA-256 over each
//! event's length and protobuf encoding) of the events of that page, so an
//! officer holding the consumer's copy can prove what left the gateway.

use crate::audit_support::*;
use gateway::audit::CanonicalEntry;
use gateway::client::pull;
use gateway::proto::AuditQuery;
use gateway_tests::{ServerState, TestServer};

#[tokio::test]
async fn a_pulled_page_is_the_content_its_audit_entry_commits_to() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    push_hrss_sample(&server, &pki).await;
    let mut received = Vec::new();
    pull(assistance(&server, &pki).await, pull_request(), |event| {
        received.push(prost::Message::encode_to_vec(event));
        Ok(())
    })
    .await
    .unwrap();
    assert!(received.len() > 1, "{} events", received.len());

    let entries = auditor(&server, &pki)
        .await
        .query(AuditQuery::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let deliveries: Vec<CanonicalEntry> = entries
        .iter()
        .map(|e| CanonicalEntry::decode(&e.canonical).unwrap())
        .filter(|e| e.action == "records_delivered")
        .collect();
    assert_eq!(deliveries.len(), 1, "the sample is one page");
    let committed = deliveries[0].details.str("content_sha256").unwrap();
    assert_eq!(
        committed,
        gateway::audit::commitment(received.iter().map(Vec::as_slice))
    );
    // One event more or less is another commitment.
    assert_ne!(
        committed,
        gateway::audit::commitment(received[1..].iter().map(Vec::as_slice))
    );
}
