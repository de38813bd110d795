//! The role matrix, enforced from the certificate: an agency cannot pull, a union
//! consumer cannot push, neither can read the audit log, and an auditor can only
//! audit. Every refusal is PERMISSION_DENIED and is recorded in the audit log.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::{AuditQuery, PullRequest, audit_client::AuditClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};

fn assert_denied(err: &anyhow::Error) {
    let status = err
        .chain()
        .find_map(|e| e.downcast_ref::<tonic::Status>())
        .unwrap_or_else(|| panic!("expected a gRPC status, got {err:#}"));
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn each_role_may_only_do_its_own_job() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let auditor = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    let request = || PullRequest {
        kinds: vec!["social_insurance".into()],
        purpose: "hardship_screening".into(),
        ..Default::default()
    };

    // An agency certificate cannot pull.
    assert_denied(
        &pull(agency.clone(), request(), |_| Ok(()))
            .await
            .unwrap_err(),
    );
    // A union certificate cannot push.
    assert_denied(
        &push_file(
            union.clone(),
            &sample("hrss.csv"),
            &PushOptions::default(),
            |_| {},
        )
        .await
        .unwrap_err(),
    );
    // An auditor can neither push nor pull.
    assert_denied(
        &pull(auditor.clone(), request(), |_| Ok(()))
            .await
            .unwrap_err(),
    );
    // Agencies and consumers cannot read the audit log.
    for channel in [agency.clone(), union.clone()] {
        let status = AuditClient::new(channel)
            .query(AuditQuery::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }
    // Each can do its own job.
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    pull(union, request(), |_| Ok(())).await.unwrap();

    let denials = audit_entries(&server, &pki, "denied").await;
    let by = |actor: &str, rpc: &str| {
        denials
            .iter()
            .any(|e| e.actor == actor && e.outcome == "denied" && e.details_json.contains(rpc))
    };
    assert!(by("agency/hrss", "UnionExchange/Pull"), "{denials:?}");
    assert!(by("union/assistance", "AgencyIngest/Push"), "{denials:?}");
    assert!(
        by("auditor/compliance", "UnionExchange/Pull"),
        "{denials:?}"
    );
    assert!(by("agency/hrss", "Audit/Query"), "{denials:?}");
    assert!(by("union/assistance", "Audit/Query"), "{denials:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_for_an_unknown_agency_is_denied_and_recorded() {
    let mut pki = TestPki::new();
    pki.issue("agency/police_bureau");
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let channel = server
        .connect(&pki.client("agency/police_bureau"))
        .await
        .unwrap();
    assert_denied(
        &push_file(
            channel,
            &sample("hrss.csv"),
            &PushOptions::default(),
            |_| {},
        )
        .await
        .unwrap_err(),
    );
    let denials = audit_entries(&server, &pki, "denied").await;
    assert!(
        denials
            .iter()
            .any(|e| e.details_json.contains("unknown_agency")),
        "{denials:?}"
    );
    server.stop().await;
}
