//! Capabilities per purpose: a purpose grants pull unless its policy says
//! otherwise, and look-ups and re-identifications only where the policy
//! grants them (work on a named person's case). A statistics consumer cannot
//! turn an identity number into its pseudonym; everything not granted is
//! `PERMISSION_DENIED` and audited, repeats folded. A purpose outside the
//! policy is recorded as its length and a keyed hash, never as its text.

use gateway::client::{PushOptions, push_file};
use gateway::proto::{
    LookupRequest, ReidentifyRequest, union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};

/// 马伟红, four accepted social-insurance rows in the hrss sample.
const PERSON: &str = "340207197607111133";

fn lookup(purpose: &str) -> LookupRequest {
    LookupRequest {
        id_number: PERSON.into(),
        case_number: "KN-2026-0301".into(),
        purpose: purpose.into(),
    }
}

#[tokio::test]
async fn lookups_and_reidentifications_only_where_a_purpose_grants_them() {
    let mut pki = TestPki::new();
    for id in [
        "agency/hrss",
        "union/analytics",
        "union/assistance",
        "union/organisation",
        "union/model_workers",
        "auditor/compliance",
    ] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();

    let client = |id: &'static str| {
        let server = &server;
        let pki = &pki;
        async move { UnionExchangeClient::new(server.connect(&pki.client(id)).await.unwrap()) }
    };
    // Statistics never look up people: no records, no subject, nothing that
    // links an identity number to the pseudonymous feed.
    let mut analytics = client("union/analytics").await;
    let err = analytics.lookup(lookup("statistics")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("lookup"), "{}", err.message());
    // Nor does the enterprise-registry work, nor screening.
    let mut organisation = client("union/organisation").await;
    for purpose in ["enterprise_registry", "membership_development"] {
        let err = organisation.lookup(lookup(purpose)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
    let mut assistance = client("union/assistance").await;
    let err = assistance
        .lookup(lookup("hardship_screening"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Where a purpose grants it, the look-up works.
    let answer = assistance
        .lookup(lookup("hardship_application"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.records.len(), 4);
    let mut model_workers = client("union/model_workers").await;
    assert!(
        model_workers
            .lookup(lookup("model_worker_vetting"))
            .await
            .is_ok()
    );
    // Re-identification needs its own grant: screening has none.
    let err = assistance
        .reidentify(ReidentifyRequest {
            token: "reid1.AAAA".into(),
            case_number: "KN-2026-0302".into(),
            purpose: "hardship_screening".into(),
            justification: "The applicant must be called back about the application.".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Repeats fold: ten more refused look-ups add no entry of their own.
    for _ in 0..10 {
        let _ = analytics.lookup(lookup("statistics")).await.unwrap_err();
    }
    let denied = audit_entries(&server, &pki, "denied").await;
    let not_granted: Vec<_> = denied
        .iter()
        .filter(|e| e.details_json.contains("operation_not_granted"))
        .collect();
    assert!(
        not_granted
            .iter()
            .any(|e| e.actor == "union/analytics" && e.details_json.contains("Lookup")),
        "{denied:?}"
    );
    assert!(
        not_granted
            .iter()
            .any(|e| e.actor == "union/assistance" && e.details_json.contains("Reidentify")),
        "{denied:?}"
    );
    let analytics_entries = not_granted
        .iter()
        .filter(|e| e.actor == "union/analytics")
        .count();
    assert_eq!(analytics_entries, 1, "repeats are folded: {denied:?}");
    // The granted look-ups were recorded; the refused ones never released anything.
    let looked_up = audit_entries(&server, &pki, "person_looked_up").await;
    assert_eq!(looked_up.len(), 2, "{looked_up:?}");
    assert!(looked_up.iter().all(|e| e.actor != "union/analytics"));
    server.stop().await;
}

#[tokio::test]
async fn a_purpose_outside_the_policy_is_recorded_without_its_text() {
    let mut pki = TestPki::new();
    for id in ["union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let mut assistance = UnionExchangeClient::new(
        server
            .connect(&pki.client("union/assistance"))
            .await
            .unwrap(),
    );
    // Personal data typed where a purpose belongs: a name, an address and a
    // phone number written with spaces (no digit run the redaction knows).
    let typed = "张伟 芜湖市镜湖区中山路12号 138 1234 5678";
    // Large, but within the request size limit: refused for its purpose.
    let huge = "x".repeat(1 << 19);
    for purpose in [typed, huge.as_str()] {
        let err = assistance
            .lookup(LookupRequest {
                id_number: PERSON.into(),
                case_number: "KN-2026-0303".into(),
                purpose: purpose.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(!err.message().contains("张伟"), "{}", err.message());
    }
    let denied = audit_entries(&server, &pki, "denied").await;
    let refused: Vec<_> = denied
        .iter()
        .filter(|e| e.details_json.contains("purpose_not_allowed"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "the second is a folded repeat: {denied:?}"
    );
    let details: serde_json::Value = serde_json::from_str(&refused[0].details_json).unwrap();
    assert_eq!(details["refused_text"]["chars"], typed.chars().count());
    assert_eq!(
        details["refused_text"]["keyed_hash"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    for e in &denied {
        let bytes = String::from_utf8_lossy(&e.canonical);
        for leaked in ["张伟", "中山路", "1234 5678", "xxxxxxxx"] {
            assert!(!bytes.contains(leaked), "{leaked} in the log: {e:?}");
            assert!(!e.details_json.contains(leaked));
        }
        assert!(
            e.canonical.len() < 4096,
            "an entry grew with the caller's text"
        );
    }
    server.stop().await;
}
