//! Pulls resume from any cursor with no gap and no duplicate, even after the
//! client hangs up mid-stream; `follow` delivers pushes made after it started,
//! and a cancellation as a removal; an older re-sent version never overwrites a
//! newer one.

use gateway::proto::{
    self, PullEvent, PullRequest, pull_event::Event, union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer, synthetic_hrss_row, synthetic_hrss_rows};
use std::time::Duration;
use tonic::transport::Channel;

fn request(cursor: u64, limit: u32, follow: bool) -> PullRequest {
    PullRequest {
        kinds: vec!["social_insurance".into()],
        purpose: "hardship_screening".into(),
        cursor,
        limit,
        follow,
    }
}

async fn push(agency: &Channel, id: &str, rows: Vec<Vec<u8>>) -> proto::BatchReceipt {
    gateway_tests::push_hrss_rows(agency, id, rows).await
}

async fn next(s: &mut tonic::Streaming<PullEvent>) -> PullEvent {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("follow delivered nothing")
        .unwrap()
        .unwrap()
}

fn record_id(e: &PullEvent) -> String {
    match e.event.as_ref().unwrap() {
        Event::Record(r) => r.record_id.clone(),
        Event::Removed(r) => r.record_id.clone(),
    }
}

#[tokio::test]
async fn resume_after_a_hang_up_has_no_gap_and_no_duplicate() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    assert_eq!(
        push(&agency, "a", synthetic_hrss_rows(0, 1500))
            .await
            .accepted,
        1500
    );
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut client = UnionExchangeClient::new(union);

    // Read 700 events, then hang up in the middle of the stream.
    let mut seen: Vec<PullEvent> = Vec::new();
    let mut stream = client
        .pull(request(0, 0, false))
        .await
        .unwrap()
        .into_inner();
    while let Some(e) = stream.message().await.unwrap() {
        seen.push(e);
        if seen.len() == 700 {
            break;
        }
    }
    drop(stream);
    // Resume from the last cursor received.
    let mut stream = client
        .pull(request(seen.last().unwrap().cursor, 0, false))
        .await
        .unwrap()
        .into_inner();
    while let Some(e) = stream.message().await.unwrap() {
        seen.push(e);
    }
    assert_eq!(seen.len(), 1500);
    let mut ids: Vec<String> = seen.iter().map(record_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1500, "duplicates after resuming");
    assert!(seen.windows(2).all(|w| w[0].cursor < w[1].cursor));

    // `limit` pages the same way.
    let mut paged = 0;
    let mut cursor = 0;
    loop {
        let mut s = client
            .pull(request(cursor, 400, false))
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(e) = s.message().await.unwrap() {
            cursor = e.cursor;
            n += 1;
        }
        paged += n;
        if n < 400 {
            break;
        }
    }
    assert_eq!(paged, 1500);
    server.stop().await;
}

#[tokio::test]
async fn follow_sees_new_pushes_and_cancellations_in_order() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut stream = UnionExchangeClient::new(union)
        .pull(request(0, 0, true))
        .await
        .unwrap()
        .into_inner();

    // A push made after the follow started arrives.
    push(&agency, "first", synthetic_hrss_rows(0, 3)).await;
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next(&mut stream).await);
    }
    assert!(
        first
            .iter()
            .all(|e| matches!(e.event, Some(Event::Record(_))))
    );

    // An older version re-sent out of order is superseded, not applied.
    let stale = push(
        &agency,
        "stale",
        vec![synthetic_hrss_row(1, '2', "20240101120000")],
    )
    .await;
    assert_eq!((stale.accepted, stale.superseded), (1, 1));

    // A cancellation of record 1 arrives as its removal, after the stale row did nothing.
    push(
        &agency,
        "cancel",
        vec![synthetic_hrss_row(1, '3', "20250301120000")],
    )
    .await;
    let removed = next(&mut stream).await;
    assert!(
        matches!(removed.event, Some(Event::Removed(_))),
        "{removed:?}"
    );
    assert_eq!(record_id(&removed), record_id(&first[1]));
    assert!(removed.cursor > first[2].cursor);
    server.stop().await;
}

#[tokio::test]
async fn a_policy_reload_reaches_an_open_follow() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let policies = gateway_tests::shipped_policies_copy();
    let server = TestServer::start_with_policies(&pki, &state, policies.path()).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut stream = UnionExchangeClient::new(union)
        .pull(request(0, 0, true))
        .await
        .unwrap()
        .into_inner();
    push(&agency, "before", synthetic_hrss_rows(0, 1)).await;
    let Some(Event::Record(before)) = next(&mut stream).await.event else {
        panic!("a record")
    };
    assert!(before.fields.iter().any(|f| f.name == "name"));

    // The reviewed change drops the (masked) name from contributions.
    let file = policies.path().join("assistance.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let narrowed = text.replacen("name = { op = \"mask\", keep_first = 1 }\n", "", 1);
    assert_ne!(narrowed, text);
    std::fs::write(&file, narrowed).unwrap();
    server.gateway.reload_policies().unwrap();

    push(&agency, "after", synthetic_hrss_rows(1, 1)).await;
    let Some(Event::Record(after)) = next(&mut stream).await.event else {
        panic!("a record")
    };
    assert!(
        !after.fields.iter().any(|f| f.name == "name"),
        "the open stream still delivers the dropped field"
    );
    assert_ne!(after.policy_version, before.policy_version);
    assert_eq!(
        after.policy_version,
        server.gateway.policies().get("assistance").unwrap().version
    );
    server.stop().await;
}
