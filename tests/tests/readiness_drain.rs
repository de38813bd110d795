//! Readiness and drain: gRPC health says NOT_SERVING while the store cannot
//! be reached (and SERVING again once it can), and while the server drains; a
//! shutdown ends followed pulls with UNAVAILABLE within the grace and leaves
//! the audit log flushed (`gateway_stopped`).

use gateway::proto::{PullRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::held_audit::HeldAudit;
use gateway_tests::{ProcessServer, ServerState, TestPki, TestServer, audit_entries};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SERVICES: [&str; 4] = [
    "",
    "exchange.v1.AgencyIngest",
    "exchange.v1.UnionExchange",
    "exchange.v1.Audit",
];

async fn status(channel: &Channel, service: &str) -> i32 {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Waits (a few probe periods at most) until every service reports `want`.
async fn wait_for_all(channel: &Channel, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = true;
        for service in SERVICES {
            all &= status(channel, service).await == want as i32;
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "health never reported {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_is_not_serving_while_the_store_is_unreachable() {
    let mut pki = TestPki::new();
    pki.issue("agency/tax");
    let state = ServerState::new();
    let store = Arc::new(HeldAudit::new(state.open_store()));
    let limits = gateway::limits::LimitsConfig::default();
    let server = TestServer::start_with_store(&pki, &state, limits, store.clone()).await;
    let channel = server.connect(&pki.client("agency/tax")).await.unwrap();
    wait_for_all(&channel, ServingStatus::Serving).await;

    store.unreachable(true);
    wait_for_all(&channel, ServingStatus::NotServing).await;

    store.unreachable(false);
    wait_for_all(&channel, ServingStatus::Serving).await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_followed_pulls_within_the_grace_and_flushes_the_audit_log() {
    let mut pki = TestPki::new();
    for id in ["union/assistance", "agency/tax", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let grace = Duration::from_secs(5);
    let limits = gateway::limits::LimitsConfig {
        shutdown_grace_secs: grace.as_secs(),
        ..Default::default()
    };
    let store = state.open_store();
    let server = TestServer::start_with_store(&pki, &state, limits, store).await;

    // A followed pull, caught up and waiting for changes.
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut pull = UnionExchangeClient::new(union)
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            cursor: 0,
            limit: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    // Someone watching health, on another connection.
    let watcher = server.connect(&pki.client("agency/tax")).await.unwrap();
    let mut watch = HealthClient::new(watcher)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());

    // The watcher hears NOT_SERVING (or its stream ends with the connection).
    match tokio::time::timeout(grace, watch.message()).await {
        Ok(Ok(Some(update))) => assert_eq!(update.status, ServingStatus::NotServing as i32),
        Ok(Ok(None)) | Ok(Err(_)) => {}
        Err(_) => panic!("health said nothing while the server drained"),
    }
    drop(watch);
    // The followed pull ends with a defined status, well within the grace.
    let ended = tokio::time::timeout(grace, pull.message())
        .await
        .expect("the followed pull was still open at the end of the grace");
    let status = ended.expect_err("a followed pull ends with a status when the server drains");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "the gateway is stopping");
    drop(pull);
    stopping.await.unwrap();
    assert!(
        started.elapsed() < grace + Duration::from_secs(2),
        "the drain took {:?}",
        started.elapsed()
    );

    // The audit log was flushed on the way out: the next start finds
    // `gateway_stopped` after everything before it.
    let server = TestServer::start(&pki, &state).await;
    let stopped = audit_entries(&server, &pki, "gateway_stopped").await;
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    // Every call had ended by itself: nothing was cut off.
    let details: serde_json::Value = serde_json::from_str(&stopped[0].details_json).unwrap();
    assert_eq!(details["drained"], true, "{details}");
    server.stop().await;
}

/// The real binary on SIGTERM: the followed pull ends with UNAVAILABLE, the
/// process exits cleanly (well within the default grace), and the audit log
/// it leaves ends with `gateway_stopped`.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_real_binary() {
    let mut pki = TestPki::new();
    for id in ["union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let binary = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let server = ProcessServer::start(binary, &pki, &state);
    let union = gateway::client::connect(&server.addr.to_string(), &pki.client("union/assistance"))
        .await
        .unwrap();
    let mut pull = UnionExchangeClient::new(union)
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            cursor: 0,
            limit: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();

    let exited = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)));
    let ended = tokio::time::timeout(Duration::from_secs(10), pull.message())
        .await
        .expect("the followed pull outlived SIGTERM");
    let status = ended.expect_err("a followed pull ends with a status on SIGTERM");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    drop(pull);
    let exited = exited
        .await
        .unwrap()
        .expect("the gateway did not exit on SIGTERM");
    assert!(exited.success(), "{exited:?}");

    let server = TestServer::start(&pki, &state).await;
    let stopped = audit_entries(&server, &pki, "gateway_stopped").await;
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    server.stop().await;
}

/// A call that does not end by itself (here a health watch) is cut off at
/// the end of the grace: the drain never outlasts it, and says so.
#[tokio::test]
async fn the_grace_bounds_the_drain() {
    let mut pki = TestPki::new();
    for id in ["agency/tax", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let grace = Duration::from_secs(1);
    let limits = gateway::limits::LimitsConfig {
        shutdown_grace_secs: grace.as_secs(),
        ..Default::default()
    };
    let store = state.open_store();
    let server = TestServer::start_with_store(&pki, &state, limits, store).await;
    let channel = server.connect(&pki.client("agency/tax")).await.unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();

    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(3),
        "the drain took {took:?}"
    );
    drop(watch);

    let server = TestServer::start(&pki, &state).await;
    let stopped = audit_entries(&server, &pki, "gateway_stopped").await;
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let details: serde_json::Value = serde_json::from_str(&stopped[0].details_json).unwrap();
    assert_eq!(details["drained"], false, "{details}");
    server.stop().await;
}
