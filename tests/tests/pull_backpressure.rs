//! A consumer that stops reading holds its pull back: the gateway reads,
//! shapes and audits only a few pages ahead of what the connection takes,
//! never the whole feed (no unbounded buffering, and no delivery recorded
//! for records still far from being sent). Reading again, it gets every
//! record.

use crate::audit_support;
use gateway::proto::{
    self, PullRequest, agency_ingest_client::AgencyIngestClient,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{
    ServerState, TestPki, TestServer, audit_entries, hrss_header, synthetic_hrss_rows,
};
use std::time::{Duration, Instant};

/// Records the gateway reads and audits per page.
const PAGE: u64 = gateway::exchange::PAGE as u64;
const PAGES: u64 = 16;

/// Records whose delivery to the assistance department the log records.
async fn delivered(server: &TestServer, pki: &TestPki) -> u64 {
    audit_entries(server, pki, "records_delivered")
        .await
        .iter()
        .map(|e| {
            let details: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
            details["records"].as_u64().unwrap()
        })
        .sum()
}

#[tokio::test]
async fn a_stalled_consumer_holds_its_pull_back() {
    let pki = audit_support::pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let batches = (0..PAGES).map(|b| proto::PushBatch {
        batch_id: format!("bulk-{b}"),
        format: proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows: synthetic_hrss_rows(b * PAGE, PAGE),
        first_row: 1,
    });
    let mut receipts = AgencyIngestClient::new(agency)
        .push(tokio_stream::iter(batches.collect::<Vec<_>>()))
        .await
        .unwrap()
        .into_inner();
    let mut accepted = 0;
    while let Some(r) = receipts.message().await.unwrap() {
        accepted += r.accepted;
    }
    assert_eq!(accepted, PAGES * PAGE);

    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut stream = UnionExchangeClient::new(union)
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());

    // The consumer stops reading. The gateway goes on only until its few
    // pages ahead and the connection's window are full, then waits.
    let started = Instant::now();
    let mut last = (0, Instant::now());
    let held = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = delivered(&server, &pki).await;
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pull never stopped ahead of its consumer ({now} records recorded as delivered)"
        );
    };
    assert!(
        (PAGE..=5 * PAGE).contains(&held),
        "{held} of {} records recorded as delivered to a consumer that read one",
        PAGES * PAGE
    );

    // Reading again, the consumer gets every record, and the log catches up.
    let mut received = 1;
    while stream.message().await.unwrap().is_some() {
        received += 1;
    }
    assert_eq!(received, PAGES * PAGE);
    assert_eq!(delivered(&server, &pki).await, PAGES * PAGE);
    server.stop().await;
}
