//! Every push, pull and denial leaves an audit entry that a compliance officer can
//! query, with counts, codes, purposes and policy versions, and no personal
//! identifier in it.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::{AuditQuery, PullRequest, audit_client::AuditClient};
use gateway_tests::{ServerState, TestPki, TestServer, hrss_personal_values, sample};

#[tokio::test]
async fn push_pull_and_denial_are_recorded_without_personal_data() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(
        agency.clone(),
        &sample("hrss.csv"),
        &PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let request = PullRequest {
        kinds: vec!["social_insurance".into()],
        purpose: "hardship_screening".into(),
        ..Default::default()
    };
    pull(union, request.clone(), |_| Ok(())).await.unwrap();
    let _ = pull(agency, request, |_| Ok(())).await.unwrap_err();

    let auditor = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    let entries = AuditClient::new(auditor)
        .query(AuditQuery::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} entry in {entries:?}"))
    };
    let started = find("gateway_started");
    assert_eq!(started.actor, "gateway");

    let pushed = find("batch_pushed");
    assert_eq!(pushed.actor, "agency/hrss");
    let d: serde_json::Value = serde_json::from_str(&pushed.details_json).unwrap();
    assert_eq!(d["rows"], 24);
    assert_eq!(d["accepted"], 20);
    assert_eq!(d["rejected_by_code"]["id_checksum"], 2);
    assert_eq!(d["rejected_by_code"]["bad_amount"], 2);

    let delivered = find("records_delivered");
    assert_eq!(delivered.actor, "union/assistance");
    let d: serde_json::Value = serde_json::from_str(&delivered.details_json).unwrap();
    assert_eq!(d["purpose"], "hardship_screening");
    assert!(d["records"].as_u64().unwrap() > 0);
    // The delivery names its policy by version; the forms its fields left in
    // are that version's table, recorded when the gateway started.
    assert!(d.get("fields").is_none(), "{d}");
    let version = d["policy_version"].as_str().unwrap();
    assert!(version.starts_with("sha256:"));
    let recorded = entries
        .iter()
        .filter(|e| e.action == "policy_recorded")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.details_json).unwrap())
        .find(|p| p["policy_version"] == version)
        .expect("the delivery's policy version is recorded");
    assert_eq!(recorded["consumer"], "assistance");
    assert_eq!(
        recorded["fields"]["social_insurance.person_id"],
        "pseudonymised"
    );
    assert_eq!(recorded["fields"]["social_insurance.name"], "masked");
    assert!(
        recorded["purposes"]
            .as_array()
            .unwrap()
            .contains(&"hardship_screening".into())
    );

    let denied = find("denied");
    assert_eq!(denied.actor, "agency/hrss");
    assert_eq!(denied.outcome, "denied");

    // Sequence numbers are dense and increasing.
    assert!(entries.windows(2).all(|w| w[1].seq == w[0].seq + 1));

    let (ids, names) = hrss_personal_values();
    for e in &entries {
        for v in ids.iter().chain(names.iter()) {
            assert!(
                !e.details_json.contains(v.as_str()),
                "audit entry holds personal data: {e:?}"
            );
        }
    }
    server.stop().await;
}
