//! Re-identification: a consumer whose policy allows it turns a sealed contact
//! detail from screening back into the phone number for a named case with a
//! written justification; it is audited. Without the permission, or with a token
//! issued to someone else, it is refused and recorded.

use gateway::client::{PushOptions, event_json, pull, push_file};
use gateway::proto::{PullRequest, ReidentifyRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};

#[tokio::test]
async fn an_allowed_consumer_reidentifies_for_a_case_and_others_are_refused() {
    let mut pki = TestPki::new();
    for id in [
        "agency/housing",
        "union/assistance",
        "union/organisation",
        "auditor/compliance",
    ] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/housing")).await.unwrap();
    push_file(
        agency,
        &sample("housing.jsonl"),
        &PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();

    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut events = Vec::new();
    pull(
        union.clone(),
        PullRequest {
            kinds: vec!["housing_assistance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |e| {
            events.push(event_json(e));
            Ok(())
        },
    )
    .await
    .unwrap();
    let with_phone = events
        .iter()
        .find(|e| e["fields"]["phone"].is_string())
        .expect("a housing record with a phone");
    assert_eq!(with_phone["forms"]["phone"], "encrypted");
    let token = with_phone["fields"]["phone"].as_str().unwrap().to_string();
    assert!(token.starts_with("reid1."));

    let request = |token: &str, justification: &str| ReidentifyRequest {
        token: token.into(),
        case_number: "KN-2026-0200".into(),
        purpose: "hardship_screening".into(),
        justification: justification.into(),
    };
    let mut client = UnionExchangeClient::new(union);
    let short = client
        .reidentify(request(&token, "because"))
        .await
        .unwrap_err();
    assert_eq!(short.code(), tonic::Code::InvalidArgument);
    let answer = client
        .reidentify(request(&token, "Screening flagged suspended contributions and a housing application; contact to offer assistance."))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.field, "housing_assistance.phone");
    let phone = answer.value;
    assert!(
        (phone.len() == 11 && phone.starts_with('1')) || phone.starts_with("0553"),
        "not a phone number"
    );

    // Another consumer cannot use the token, nor re-identify at all.
    let other = server
        .connect(&pki.client("union/organisation"))
        .await
        .unwrap();
    let err = UnionExchangeClient::new(other)
        .reidentify(ReidentifyRequest {
            purpose: "membership_development".into(),
            ..request(
                &token,
                "We would like to contact this worker about membership.",
            )
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let done = audit_entries(&server, &pki, "person_reidentified").await;
    assert_eq!(done.len(), 1);
    assert!(done[0].details_json.contains("KN-2026-0200"));
    assert!(!done[0].details_json.contains(&phone));
    let denied = audit_entries(&server, &pki, "denied").await;
    assert!(
        denied.iter().any(|e| e.actor == "union/organisation"
            && e.details_json.contains("reidentification_not_allowed")),
        "{denied:?}"
    );
    server.stop().await;
}
