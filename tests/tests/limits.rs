//! Limits per identity: over its rate or concurrency limit a caller gets
//! RESOURCE_EXHAUSTED at once with a retry hint, other identities are not
//! affected, an oversized batch is refused, and the refusal is audited; a call
//! past its deadline ends with DEADLINE_EXCEEDED; TLS handshakes beyond the cap
//! wait in the backlog.

use crate::audit_support;
use gateway::limits::{Limit, LimitsConfig};
use gateway::proto::{
    AuditQuery, LookupRequest, audit_client::AuditClient,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::held_audit::HeldAudit;
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_caller_over_its_rate_gets_resource_exhausted_with_a_retry_hint() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    pki.issue("auditor/busy");
    let mut limits = LimitsConfig::default();
    limits.identities.insert(
        "auditor/busy".into(),
        Limit {
            rate_per_second: 0.5,
            burst: 3,
            max_concurrent: 4,
        },
    );
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    let busy = server.connect(&pki.client("auditor/busy")).await.unwrap();
    let mut client = AuditClient::new(busy);
    for _ in 0..3 {
        client.query(AuditQuery::default()).await.unwrap();
    }
    let started = std::time::Instant::now();
    let err = client.query(AuditQuery::default()).await.unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "a limit answers at once"
    );
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("retry in"), "{}", err.message());
    let hint: u64 = err
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(hint > 0 && hint <= 2000, "{hint}");

    // Another identity is unaffected, and sees the refusal in the audit log.
    let denials = audit_entries(&server, &pki, "denied").await;
    assert!(
        denials
            .iter()
            .any(|e| e.actor == "auditor/busy" && e.details_json.contains("rate_limited")),
        "{denials:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_batch_over_the_message_size_limit_is_refused_without_harm() {
    use gateway::proto::{self, agency_ingest_client::AgencyIngestClient};
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let limits = LimitsConfig {
        max_message_bytes: 64 * 1024,
        ..Default::default()
    };
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    let channel = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let batch = |id: &str, n| proto::PushBatch {
        batch_id: id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        header: gateway_tests::hrss_header(),
        rows: gateway_tests::synthetic_hrss_rows(0, n),
        first_row: 1,
    };
    let mut client = AgencyIngestClient::new(channel.clone());
    let result = async {
        let mut s = client
            .push(tokio_stream::iter(vec![batch("big", 2000)]))
            .await?
            .into_inner();
        s.message().await
    }
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange | tonic::Code::InvalidArgument
        ),
        "{err:?}"
    );
    // The server is fine and takes a batch within the limit on the same channel.
    let mut s = AgencyIngestClient::new(channel)
        .push(tokio_stream::iter(vec![batch("small", 10)]))
        .await
        .unwrap()
        .into_inner();
    let r = s.message().await.unwrap().unwrap();
    assert_eq!(r.accepted, 10);
    server.stop().await;
}

#[tokio::test]
async fn open_streams_count_against_the_concurrency_limit() {
    use gateway::proto::{PullRequest, union_exchange_client::UnionExchangeClient};
    let mut pki = TestPki::new();
    pki.issue("union/assistance");
    let mut limits = LimitsConfig::default();
    limits.identities.insert(
        "union/assistance".into(),
        Limit {
            rate_per_second: 100.0,
            burst: 100,
            max_concurrent: 1,
        },
    );
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    let channel = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let follow = || PullRequest {
        purpose: "hardship_screening".into(),
        follow: true,
        ..Default::default()
    };
    let mut client = UnionExchangeClient::new(channel);
    let open = client.pull(follow()).await.unwrap().into_inner();
    let err = client.pull(follow()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("in flight"), "{}", err.message());
    // Closing the first stream frees the slot.
    drop(open);
    let mut ok = false;
    for _ in 0..50 {
        if client.pull(follow()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "the slot was not freed when the stream closed");
    server.stop().await;
}

#[tokio::test]
async fn handshakes_beyond_the_cap_wait_until_a_slot_frees() {
    use gateway::proto::{AuditQuery, audit_client::AuditClient};
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let limits = LimitsConfig {
        max_handshakes: 1,
        ..Default::default()
    };
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    // A silent peer holds the only handshake slot.
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let addr = server.addr.to_string();
    let tls = pki.client("auditor/compliance");
    let mut caller = tokio::spawn(async move {
        let channel = gateway::client::connect(&addr, &tls).await?;
        AuditClient::new(channel)
            .query(AuditQuery::default())
            .await?;
        anyhow::Ok(())
    });
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut caller).await;
    assert!(
        waited.is_err(),
        "a handshake ran beyond the cap: {waited:?}"
    );
    // The silent peer goes away: its slot frees and the caller gets through.
    drop(silent);
    tokio::time::timeout(std::time::Duration::from_secs(10), caller)
        .await
        .expect("the caller got a slot")
        .unwrap()
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_ends_with_deadline_exceeded_and_the_server_carries_on() {
    let pki = audit_support::pki();
    let state = ServerState::new();
    let limits = LimitsConfig {
        request_timeout_secs: 1,
        ..Default::default()
    };
    let store = Arc::new(HeldAudit::new(state.open_store()));
    let server = TestServer::start_with_store(&pki, &state, limits, store.clone()).await;
    audit_support::push_hrss_sample(&server, &pki).await;
    let mut client = UnionExchangeClient::new(audit_support::assistance(&server, &pki).await);
    let lookup = |case: &str| LookupRequest {
        id_number: audit_support::PERSON.into(),
        case_number: case.into(),
        purpose: "hardship_application".into(),
    };

    // A look-up answers only once its audit entry is durable; with the log
    // held back for 4 s it cannot make its 1 s deadline.
    store.hold(Some(Duration::from_secs(4)));
    let started = Instant::now();
    let err = client.lookup(lookup("KN-1")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("within its deadline of 1 s"),
        "{}",
        err.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "ended at its deadline, not when the store caught up ({:?})",
        started.elapsed()
    );
    // On the same connection, with the store itself again, the officer is answered.
    store.hold(None);
    let answer = client.lookup(lookup("KN-2")).await.unwrap().into_inner();
    assert_eq!(answer.records.len(), 4);

    // The log stays complete: the look-ups that were never answered are
    // recorded once their entries are written (an entry without an answer,
    // never an answer without its entry), and so is each deadline refusal.
    let waited = Instant::now();
    loop {
        let looked_up = audit_entries(&server, &pki, "person_looked_up").await;
        let denied = audit_entries(&server, &pki, "denied").await;
        let deadlines = denied
            .iter()
            .filter(|e| {
                e.actor == "union/assistance" && e.details_json.contains("deadline_exceeded")
            })
            .count();
        if looked_up.len() == 2 && deadlines == 1 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "look-ups {} and deadline refusals {deadlines} recorded",
            looked_up.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}
