//! A union consumer pulls what agency `hrss` pushed: only the fields its policy
//! names, the identity number as a keyed pseudonym that is stable across pulls and
//! restarts, the name masked, and no raw identity number or full name anywhere.

use gateway::client::{PushOptions, event_json, pull, push_file};
use gateway::proto::PullRequest;
use gateway_tests::{ServerState, TestPki, TestServer, hrss_personal_values, sample};
use std::collections::BTreeMap;

async fn pull_all(server: &TestServer, pki: &TestPki) -> Vec<serde_json::Value> {
    let channel = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut out = Vec::new();
    pull(
        channel,
        PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |e| {
            out.push(event_json(e));
            Ok(())
        },
    )
    .await
    .unwrap();
    out
}

fn pseudonyms(events: &[serde_json::Value]) -> BTreeMap<String, String> {
    events
        .iter()
        .map(|e| {
            (
                e["record_id"].as_str().unwrap().to_string(),
                e["fields"]["person_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pulled_records_are_policy_shaped_and_pseudonyms_survive_restarts() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let pushed = push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    assert!(pushed.accepted > 0);

    let first = pull_all(&server, &pki).await;
    assert!(!first.is_empty());
    assert!(first.len() as u64 <= pushed.accepted);
    let text = first.iter().map(|e| e.to_string()).collect::<String>();
    let (ids, names) = hrss_personal_values();
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a raw identity number was delivered"
        );
    }
    for name in &names {
        assert!(!text.contains(name.as_str()), "a full name was delivered");
    }
    for e in &first {
        let fields = e["fields"].as_object().unwrap();
        assert!(
            !fields.contains_key("insured_number"),
            "an unnamed field was delivered"
        );
        let name = fields["name"].as_str().unwrap();
        let masked: String = name.chars().skip(1).collect();
        assert!(
            !masked.is_empty() && masked.chars().all(|c| c == '*'),
            "name not masked: {name}"
        );
        assert_eq!(e["forms"]["person_id"], "pseudonymised");
        assert_eq!(e["forms"]["name"], "masked");
        assert!(e["policy_version"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(fields["person_id"].as_str().unwrap().len(), 32);
    }
    // Cursors strictly increase: the stream is ordered and has no duplicates.
    let cursors: Vec<u64> = first
        .iter()
        .map(|e| e["cursor"].as_u64().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));

    let second = pull_all(&server, &pki).await;
    assert_eq!(pseudonyms(&first), pseudonyms(&second));

    server.stop().await;
    let restarted = TestServer::start(&pki, &state).await;
    let third = pull_all(&restarted, &pki).await;
    assert_eq!(
        pseudonyms(&first),
        pseudonyms(&third),
        "pseudonyms changed across a restart"
    );
    restarted.stop().await;
}

#[tokio::test]
async fn a_purpose_outside_the_policy_is_refused_and_recorded() {
    let mut pki = TestPki::new();
    pki.issue("union/assistance");
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let channel = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let err = pull(
        channel,
        PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "marketing".into(),
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await
    .unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    // The caller's text is neither repeated nor recorded (see `capabilities`).
    assert!(status.message().contains("purpose"), "{}", status.message());

    let denials = gateway_tests::audit_entries(&server, &pki, "denied").await;
    assert!(
        denials.iter().any(
            |e| e.actor == "union/assistance" && e.details_json.contains("purpose_not_allowed")
        ),
        "{denials:?}"
    );
    server.stop().await;
}
