//! Two gateway replicas on one PostgreSQL database (in the `e2e_postgres`
//! suite only: on SQLite a store belongs to one process). Agencies push
//! through either, at the same time; the same batch id sent to both at once
//! commits once and the other gets the original receipt; a followed pull on
//! one replica delivers a push made through the other within a second and
//! skips no change; consumers pulling through either get identical feeds;
//! an audit export from either verifies and holds both replicas' entries.

use crate::audit_support;
use gateway::proto::{
    BatchOutcome, PullEvent, PullRequest, pull_event::Event,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestServer, push_hrss_rows, synthetic_hrss_rows};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

fn request(follow: bool) -> PullRequest {
    PullRequest {
        follow,
        ..audit_support::pull_request()
    }
}

fn record_id(e: &PullEvent) -> String {
    match e.event.as_ref().unwrap() {
        Event::Record(r) => r.record_id.clone(),
        Event::Removed(r) => r.record_id.clone(),
    }
}

/// The whole feed through `channel`: (cursor, record id) in order.
async fn feed(channel: Channel) -> Vec<(u64, String)> {
    let mut stream = UnionExchangeClient::new(channel)
        .pull(request(false))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        out.push((e.cursor, record_id(&e)));
    }
    out
}

/// The batch ids of the log's committed pushes, as an auditor of `server` reads them.
async fn committed_batches(server: &TestServer, pki: &gateway_tests::TestPki) -> BTreeSet<String> {
    gateway_tests::audit_entries(server, pki, "batch_pushed")
        .await
        .iter()
        .map(|e| gateway::audit::CanonicalEntry::decode(&e.canonical).unwrap())
        .filter_map(|e| match e.details {
            gateway::audit::Value::Map(m) => match (m.get("batch_id"), m.get("result")) {
                (Some(gateway::audit::Value::Str(id)), Some(gateway::audit::Value::Str(r)))
                    if r == "committed" =>
                {
                    Some(id.clone())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_one_store() {
    let pki = audit_support::pki();
    let state = ServerState::new();
    let a = TestServer::start(&pki, &state).await;
    let b = TestServer::start(&pki, &state).await;
    let tls = pki.client("agency/hrss");
    let (agency_a, agency_b) = (
        a.connect(&tls).await.unwrap(),
        b.connect(&tls).await.unwrap(),
    );

    // A follow through b, caught up on an empty feed.
    let mut follow = UnionExchangeClient::new(audit_support::assistance(&b, &pki).await)
        .pull(request(true))
        .await
        .unwrap()
        .into_inner();

    // A push through a reaches it within a second of its commit.
    let receipt = push_hrss_rows(&agency_a, "a-0", synthetic_hrss_rows(0, 5)).await;
    let pushed = Instant::now();
    assert_eq!(receipt.accepted, 5);
    let mut followed: Vec<PullEvent> = Vec::new();
    while followed.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(5), follow.message())
            .await
            .expect("the follow on the other replica delivered nothing")
            .unwrap()
            .unwrap();
        followed.push(e);
    }
    assert!(
        pushed.elapsed() < Duration::from_secs(1),
        "a push through one replica reached a follow on the other after {:?}",
        pushed.elapsed()
    );

    // Concurrent pushes through both, of overlapping records (as many at
    // once as an agency may open push streams on each).
    let mut pushes = Vec::new();
    for i in 1..=3u64 {
        for (name, channel, offset) in [("a", &agency_a, 0), ("b", &agency_b, 25)] {
            let (channel, id) = (channel.clone(), format!("{name}-{i}"));
            pushes.push(tokio::spawn(async move {
                let rows = synthetic_hrss_rows(i * 1000 + offset, 200);
                push_hrss_rows(&channel, &id, rows).await.outcome
            }));
        }
    }
    for p in pushes {
        assert_eq!(p.await.unwrap(), BatchOutcome::Committed as i32);
    }

    // The same batch id through both at once: one commit, one duplicate
    // answered with the original receipt.
    for round in 0..5u64 {
        let id = format!("same-{round}");
        let rows = synthetic_hrss_rows(10_000 + round * 10, 10);
        let (x, y) = tokio::join!(
            push_hrss_rows(&agency_a, &id, rows.clone()),
            push_hrss_rows(&agency_b, &id, rows)
        );
        let mut outcomes = [x.outcome, y.outcome];
        outcomes.sort();
        let mut expected = [
            BatchOutcome::Committed as i32,
            BatchOutcome::Duplicate as i32,
        ];
        expected.sort();
        assert_eq!(outcomes, expected, "round {round}");
        assert_eq!((x.accepted, x.rows_received), (y.accepted, y.rows_received));
    }

    // Consumers pulling through either replica get the same feed.
    let through_a = feed(audit_support::assistance(&a, &pki).await).await;
    let through_b = feed(audit_support::assistance(&b, &pki).await).await;
    assert_eq!(through_a.len(), 5 + 3 * 225 + 5 * 10);
    assert_eq!(through_a, through_b);

    // The follow missed no change: it reaches the end of the feed, in
    // cursor order, having delivered every record the feed holds.
    let last = through_a.last().unwrap().0;
    while followed.last().unwrap().cursor < last {
        let e = tokio::time::timeout(Duration::from_secs(5), follow.message())
            .await
            .expect("the follow stopped short of the feed's end")
            .unwrap()
            .unwrap();
        followed.push(e);
    }
    assert!(followed.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let delivered: BTreeSet<String> = followed.iter().map(record_id).collect();
    assert!(through_a.iter().all(|(_, id)| delivered.contains(id)));
    drop(follow);

    // One audit log: an export from either verifies, and both replicas'
    // commits are in it.
    let out = tempfile::tempdir().unwrap();
    for (name, server) in [("a", &a), ("b", &b)] {
        let path = audit_support::export(server, &pki, out.path(), &format!("{name}.jsonl")).await;
        let verified = audit_support::verify_file(&path, &state, None).unwrap();
        assert!(verified.size >= 30, "{verified:?}");
        let committed = committed_batches(server, &pki).await;
        for i in 1..=3 {
            assert!(committed.contains(&format!("a-{i}")), "{committed:?}");
            assert!(committed.contains(&format!("b-{i}")), "{committed:?}");
        }
        assert_eq!(
            committed
                .iter()
                .filter(|id| id.starts_with("same-"))
                .count(),
            5
        );
    }
    a.stop().await;
    b.stop().await;
}

/// Refusal windows live in the database: a caller refused again and again
/// through two replicas within one window is recorded once as it happens,
/// not once per replica; every other refusal is counted into a summary
/// (each replica summarises what it counted), so the log accounts for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_window_is_shared_by_the_replicas() {
    const REFUSALS: u64 = 10;
    let pki = audit_support::pki();
    let state = ServerState::new();
    // A window longer than the test: the summaries come when the replicas stop.
    let limits = gateway::limits::LimitsConfig {
        refusal_window_secs: 120,
        ..Default::default()
    };
    let a = TestServer::start_with_limits(&pki, &state, limits.clone()).await;
    let b = TestServer::start_with_limits(&pki, &state, limits.clone()).await;
    let tls = pki.client("union/assistance");
    let mut clients = [
        gateway::proto::audit_client::AuditClient::new(a.connect(&tls).await.unwrap()),
        gateway::proto::audit_client::AuditClient::new(b.connect(&tls).await.unwrap()),
    ];
    // A union consumer may not read the audit log: refused each time,
    // through one replica, then the other, and so on.
    for i in 0..2 * REFUSALS {
        let err = clients[(i % 2) as usize]
            .query(gateway::proto::AuditQuery::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
    drop(clients);
    a.stop().await;
    b.stop().await;

    let reader = TestServer::start(&pki, &state).await;
    let denied: Vec<serde_json::Value> = gateway_tests::audit_entries(&reader, &pki, "denied")
        .await
        .into_iter()
        .filter(|e| e.actor == "union/assistance")
        .map(|e| serde_json::from_str(&e.details_json).unwrap())
        .collect();
    let firsts = denied
        .iter()
        .filter(|d| d["repeated"].as_u64().unwrap_or(0) == 0)
        .count();
    assert_eq!(
        firsts, 1,
        "one first refusal per window across the replicas: {denied:?}"
    );
    let accounted: u64 = denied
        .iter()
        .map(|d| d["repeated"].as_u64().filter(|n| *n > 0).unwrap_or(1))
        .sum();
    assert_eq!(
        accounted,
        2 * REFUSALS,
        "every refusal is accounted for: {denied:?}"
    );
    assert!(denied.len() <= 3, "{denied:?}");
    reader.stop().await;
}
