//! Revocation stays current while the gateway runs: a reload (SIGHUP) reads
//! the CRLs and the server certificate and key again. A certificate revoked
//! since can no longer connect, and its open connection is closed; other
//! connections carry on. A CRL past its nextUpdate fails closed (or is
//! accepted when configured so), loudly; a broken file keeps the previous
//! material serving.

use gateway::proto::{AuditEntry, AuditQuery, audit_client::AuditClient};
use gateway::tls::StaleCrl;
use gateway_tests::{
    ProcessServer, ServerState, TestPki, TestServer, shipped_policies, tls_handshake,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};

/// How long an open connection whose certificate a reload revokes may live on.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A health watch: a stream that stays open as long as its connection does.
async fn watch(channel: &Channel) -> tonic::Streaming<HealthCheckResponse> {
    let mut stream = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    stream
}

/// Audit entries with `action`, read over an open channel, polled until
/// `ready` holds (some are recorded off the request path).
async fn entries_until(
    channel: &Channel,
    action: &str,
    ready: impl Fn(&[AuditEntry]) -> bool,
) -> Vec<AuditEntry> {
    let mut client = AuditClient::new(channel.clone());
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = client
            .query(AuditQuery {
                action: action.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        if ready(&entries) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    entries
}

fn details(e: &AuditEntry) -> serde_json::Value {
    serde_json::from_str(&e.details_json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_at_a_reload_loses_its_open_connection_and_others_keep_theirs() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let revoked = pki.issue("auditor/leaver");
    pki.issue("auditor/colleague");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;

    let leaver = server.connect(&pki.client("auditor/leaver")).await.unwrap();
    let colleague = server
        .connect(&pki.client("auditor/colleague"))
        .await
        .unwrap();
    let mut leaver_watch = watch(&leaver).await;
    let mut colleague_watch = watch(&colleague).await;

    pki.write_crl(&[&revoked]);
    let reloaded = server.reload_tls().unwrap();
    assert_eq!(reloaded.revoked, 1);
    assert_eq!(reloaded.closed, 1);

    // The leaver's open connection is closed within the bound.
    let ended = tokio::time::timeout(CLOSE_BOUND, leaver_watch.message())
        .await
        .expect("the revoked certificate's connection is still open");
    assert!(ended.is_err(), "{ended:?}");
    // A new handshake with its certificate is refused.
    assert!(
        tls_handshake(server.addr, &pki.client("auditor/leaver"))
            .await
            .is_err()
    );
    // The colleague's connection is the one it had: its stream is still open
    // (a stream cannot survive a reconnection), and it serves calls.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), colleague_watch.message())
            .await
            .is_err(),
        "the healthy connection's stream ended"
    );
    AuditClient::new(colleague.clone())
        .query(AuditQuery::default())
        .await
        .unwrap();

    let closed = entries_until(&colleague, "connection_closed", |e| !e.is_empty()).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].actor, "auditor/leaver");
    assert_eq!(closed[0].outcome, "denied");
    let d = details(&closed[0]);
    assert_eq!(d["code"], "revoked_after_reload");
    assert_eq!(d["serial"], hex::encode(&revoked.serial));
    let reloads = entries_until(&colleague, "tls_reloaded", |e| !e.is_empty()).await;
    assert_eq!(details(&reloads[0])["closed_connections"], 1);
    let refused = entries_until(&colleague, "connection_refused", |e| !e.is_empty()).await;
    assert!(
        refused
            .iter()
            .any(|e| details(e)["code"] == "certificate_revoked"),
        "{refused:?}"
    );
    drop(colleague_watch);
    server.stop().await;
}

#[tokio::test]
async fn a_stale_crl_fails_closed_loudly() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let open = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();

    // A CRL whose nextUpdate was yesterday: revocations since are unknown.
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    pki.write_crl_until(&[], yesterday);
    let reloaded = server.reload_tls().unwrap();
    assert_eq!(reloaded.stale.len(), 1);
    assert!(
        tls_handshake(server.addr, &pki.client("auditor/compliance"))
            .await
            .is_err(),
        "a certificate checked against a stale CRL was accepted"
    );

    let stale = entries_until(&open, "crl_stale", |e| !e.is_empty()).await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].outcome, "rejected");
    let d = details(&stale[0]);
    assert_eq!(d["policy"], "refuse");
    assert!(d["crl"].as_str().unwrap().ends_with("crl.pem"), "{d}");
    let refused = entries_until(&open, "connection_refused", |e| !e.is_empty()).await;
    assert!(
        refused.iter().any(|e| details(e)["code"] == "crl_stale"),
        "{refused:?}"
    );

    // A fresh CRL: handshakes succeed again.
    pki.write_crl(&[]);
    assert!(server.reload_tls().unwrap().stale.is_empty());
    tls_handshake(server.addr, &pki.client("auditor/compliance"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_stale_crl_is_accepted_when_configured_and_still_audited() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    pki.write_crl_until(&[], yesterday);
    let state = ServerState::new();
    let server = TestServer::start_with_stale_crl(&pki, &state, StaleCrl::Accept).await;
    let open = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    // Recorded at start.
    let stale = entries_until(&open, "crl_stale", |e| !e.is_empty()).await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(details(&stale[0])["policy"], "accept");
    assert_eq!(stale[0].outcome, "ok");
    server.stop().await;
}

#[tokio::test]
async fn a_broken_reload_keeps_the_previous_material_and_is_audited() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let revoked = pki.issue("auditor/leaver");
    pki.write_crl(&[&revoked]);
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let open = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();

    std::fs::write(pki.path("crl.pem"), "not a CRL").unwrap();
    let err = server.reload_tls().unwrap_err();
    assert_eq!(err.code(), "no_pem_item");
    std::fs::write(pki.path("server.key"), "").unwrap();
    assert!(server.reload_tls().is_err());

    // The previous certificate, key and CRL serve on.
    tls_handshake(server.addr, &pki.client("auditor/compliance"))
        .await
        .unwrap();
    assert!(
        tls_handshake(server.addr, &pki.client("auditor/leaver"))
            .await
            .is_err()
    );
    let refused = entries_until(&open, "tls_reload_refused", |e| e.len() >= 2).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].outcome, "rejected");
    assert_eq!(details(&refused[0])["code"], "no_pem_item");
    server.stop().await;
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The real binary: SIGHUP makes new handshakes get the rotated server
/// certificate.
#[tokio::test]
async fn sighup_serves_a_rotated_server_certificate() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let before = std::fs::read_to_string(pki.path("server.pem")).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let server = ProcessServer::start(binary, &pki, &state);
    let client = pki.client("auditor/compliance");
    assert_eq!(
        tls_handshake(server.addr, &client).await.unwrap(),
        der(&before)
    );

    let rotated = pki.rotate_server();
    assert_ne!(der(&rotated.cert_pem), der(&before));
    server.hangup();
    let mut served = Vec::new();
    for _ in 0..100 {
        served = tls_handshake(server.addr, &client).await.unwrap();
        if served == der(&rotated.cert_pem) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served,
        der(&rotated.cert_pem),
        "the rotated certificate is not served"
    );
}

/// A production configuration without a revocation source does not start,
/// and says what to set; `revocation = "none"` must be stated to run without.
#[test]
fn production_without_crls_refuses_to_start() {
    let pki = TestPki::new();
    let state = ServerState::new();
    gateway::keys::Keys::generate_file(&state.keys_file()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .arg("serve")
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_DATA_DIR", state.data_dir())
        .envs(state.store_env())
        .env("GATEWAY_KEYS_FILE", state.keys_file())
        .env("GATEWAY_DEV_MODE", "false")
        .env("GATEWAY_POLICIES_DIR", shipped_policies())
        .env("GATEWAY_TLS_CA", pki.path("ca.pem"))
        .env("GATEWAY_TLS_CERT", pki.path("server.pem"))
        .env("GATEWAY_TLS_KEY", pki.path("server.key"))
        .env_remove("GATEWAY_TLS_CRLS")
        .env_remove("GATEWAY_TLS_REVOCATION")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Were it to start, it would serve until killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway started without a revocation source");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("no certificate revocation source")
            && stderr.contains("revocation = \"none\""),
        "{stderr}"
    );
}
