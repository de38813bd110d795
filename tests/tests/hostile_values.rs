//! Values at the edges of their types, as the gRPC fuzzer (`fuzz_grpc`) sent
//! them: a pull cursor or an audit page's `after_seq` past every position
//! (above `i64::MAX` too) gives nothing, never the feed or the log from the
//! start again; and every union request over `max_request_bytes` is refused
//! as too large before it is decoded, as audit requests are.

use gateway::limits::LimitsConfig;
use gateway::proto::{
    self, AuditQuery, LookupRequest, PullRequest, ReidentifyRequest, audit_client::AuditClient,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer};

/// Positions past the last one: the largest that SQLite's signed integers
/// hold, and ones they do not.
const PAST_EVERYTHING: [u64; 4] = [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX - 1, u64::MAX];

fn pki() -> TestPki {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    pki
}

#[tokio::test]
async fn a_cursor_past_every_position_delivers_nothing() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    gateway_tests::push_hrss_rows(&agency, "edge-1", gateway_tests::synthetic_hrss_rows(0, 5))
        .await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    for cursor in PAST_EVERYTHING {
        let mut events = UnionExchangeClient::new(union.clone())
            .pull(PullRequest {
                kinds: vec!["social_insurance".into()],
                purpose: "hardship_screening".into(),
                cursor,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let first = events.message().await.unwrap();
        assert!(
            first.is_none(),
            "cursor {cursor}: an event at {:?}",
            first.map(|e| e.cursor)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_audit_page_after_a_seq_past_the_log_is_empty() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let mut auditor = AuditClient::new(
        server
            .connect(&pki.client("auditor/compliance"))
            .await
            .unwrap(),
    );
    assert!(
        !auditor
            .query(AuditQuery::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .is_empty(),
        "the log has entries"
    );
    for after_seq in PAST_EVERYTHING {
        let page = auditor
            .query(AuditQuery {
                after_seq,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            page.entries.is_empty() && page.next_after_seq == 0,
            "after {after_seq}: entries {:?}",
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn union_requests_over_the_request_size_limit_are_refused_as_too_large() {
    let pki = pki();
    let state = ServerState::new();
    let limits = LimitsConfig {
        max_request_bytes: 64 * 1024,
        ..Default::default()
    };
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let long = "x".repeat(100 * 1024);
    let mut client = UnionExchangeClient::new(union);
    let too_large = |r: Result<(), tonic::Status>, call: &str| {
        let status = r.expect_err(call);
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{call}: {status:?}");
    };
    too_large(
        client
            .lookup(LookupRequest {
                id_number: "340202198503150011".into(),
                case_number: "KN-1".into(),
                purpose: long.clone(),
            })
            .await
            .map(drop),
        "Lookup",
    );
    too_large(
        client
            .reidentify(ReidentifyRequest {
                token: "reid1.x".into(),
                case_number: "KN-1".into(),
                purpose: "hardship_application".into(),
                justification: long.clone(),
            })
            .await
            .map(drop),
        "Reidentify",
    );
    too_large(
        client
            .pull(PullRequest {
                kinds: vec![long.clone()],
                purpose: "hardship_screening".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Pull",
    );
    // As the audit service does.
    let mut auditor = AuditClient::new(
        server
            .connect(&pki.client("auditor/compliance"))
            .await
            .unwrap(),
    );
    too_large(
        auditor
            .query(proto::AuditQuery {
                actor: long,
                ..Default::default()
            })
            .await
            .map(drop),
        "Audit.Query",
    );
    server.stop().await;
}
