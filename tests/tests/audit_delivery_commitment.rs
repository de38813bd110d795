//! A delivery's audit entry commits to exactly the bytes the consumer
//! received: its `content_sha256` is the commitment (SHA-256 over each
//! event's length and protobuf encoding) of the events of that page, so an
//! officer holding the consumer's copy can prove what left the gateway. A
//! look-up's entry commits to its answer the same way.

use crate::audit_support::*;
use gateway::client::pull;
use gateway::proto::{LookupRequest, union_exchange_client::UnionExchangeClient};
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

    let deliveries = entries_of(&server, &pki, "records_delivered").await;
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

#[tokio::test]
async fn a_lookup_answer_is_the_content_its_audit_entry_commits_to() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    push_hrss_sample(&server, &pki).await;
    let answer = UnionExchangeClient::new(assistance(&server, &pki).await)
        .lookup(LookupRequest {
            id_number: PERSON.into(),
            case_number: "KN-2026-0042".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.records.is_empty(), "the sample names {PERSON}");

    let lookups = entries_of(&server, &pki, "person_looked_up").await;
    assert_eq!(lookups.len(), 1);
    let committed = lookups[0].details.str("content_sha256").unwrap();
    let received = prost::Message::encode_to_vec(&answer);
    assert_eq!(committed, gateway::audit::commitment([received.as_slice()]));
    let mut fewer = answer.clone();
    fewer.records.pop();
    assert_ne!(
        committed,
        gateway::audit::commitment([prost::Message::encode_to_vec(&fewer).as_slice()])
    );
}
