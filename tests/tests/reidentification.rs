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
        purpose: "hardship_application".into(),
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
        denied
            .iter()
            .any(|e| e.actor == "union/organisation"
                && e.details_json.contains("operation_not_granted")),
        "{denied:?}"
    );
    server.stop().await;
}

/// Pushes the housing sample and returns the assistance department's
/// connection and a sealed phone token from its pull.
async fn phone_token(server: &TestServer, pki: &TestPki) -> (tonic::transport::Channel, String) {
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
    let mut token = None;
    pull(
        union.clone(),
        PullRequest {
            kinds: vec!["housing_assistance".into()],
            purpose: "hardship_application".into(),
            ..Default::default()
        },
        |e| {
            let e = event_json(e);
            if token.is_none() && e["fields"]["phone"].is_string() {
                token = e["fields"]["phone"].as_str().map(str::to_string);
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    (union, token.expect("a sealed phone"))
}

fn case_request(token: &str) -> ReidentifyRequest {
    ReidentifyRequest {
        token: token.into(),
        case_number: "KN-2026-0210".into(),
        purpose: "hardship_application".into(),
        justification: "The applicant's housing file must be completed by phone for the case."
            .into(),
    }
}

#[tokio::test]
async fn a_token_opens_only_while_the_policy_in_force_delivers_its_field_sealed() {
    let mut pki = TestPki::new();
    for id in ["agency/housing", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let policies = gateway_tests::shipped_policies_copy();
    let server = TestServer::start_with_policies(&pki, &state, policies.path()).await;
    let (union, token) = phone_token(&server, &pki).await;
    let mut client = UnionExchangeClient::new(union);
    client.reidentify(case_request(&token)).await.unwrap();

    // A reviewed change stops releasing the phone (the name is sealed instead).
    let file = policies.path().join("assistance.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut narrowed = String::new();
    let mut in_housing = false;
    for line in text.lines() {
        in_housing = if line.starts_with('[') {
            line == "[kinds.housing_assistance.fields]"
        } else {
            in_housing
        };
        if in_housing && line.starts_with("phone =") {
            continue;
        }
        if in_housing && line.starts_with("name =") {
            narrowed.push_str("name = { op = \"encrypt\" }\n");
            continue;
        }
        narrowed.push_str(line);
        narrowed.push('\n');
    }
    assert_ne!(narrowed, text);
    std::fs::write(&file, narrowed).unwrap();
    server.gateway.reload_policies().unwrap();

    let err = client.reidentify(case_request(&token)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let done = audit_entries(&server, &pki, "person_reidentified").await;
    assert_eq!(done.len(), 1, "released after the reload: {done:?}");
    let denied = audit_entries(&server, &pki, "denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e.details_json.contains("field_no_longer_sealed")),
        "{denied:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_hourly_limit_is_kept_across_a_restart() {
    let mut pki = TestPki::new();
    for id in ["agency/housing", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let (union, token) = phone_token(&server, &pki).await;
    let mut client = UnionExchangeClient::new(union);
    for _ in 0..gateway::exchange::REIDENTIFICATIONS_PER_HOUR {
        client.reidentify(case_request(&token)).await.unwrap();
    }
    let err = client.reidentify(case_request(&token)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    server.stop().await;

    // A restart does not hand out a fresh hour.
    let server = TestServer::start(&pki, &state).await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let err = UnionExchangeClient::new(union)
        .reidentify(case_request(&token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("retry in"), "{}", err.message());
    let done = audit_entries(&server, &pki, "person_reidentified").await;
    assert_eq!(
        done.len() as u32,
        gateway::exchange::REIDENTIFICATIONS_PER_HOUR
    );
    server.stop().await;
}
