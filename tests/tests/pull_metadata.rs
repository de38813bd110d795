//! Metadata is policy-shaped: a record's change timestamp is delivered only
//! as the field `changed_at`, when the policy names it and in its form; and a
//! removal is announced only to a consumer that could hold the record (its
//! cursor is past a version the policy admits), so the number and timing of
//! records a row filter excludes do not leak through removals.

use gateway::proto::{
    self, PullEvent, PullRequest, pull_event::Event, union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer, synthetic_hrss_row_with_status};
use tonic::transport::Channel;

async fn push(agency: &Channel, id: &str, rows: Vec<Vec<u8>>) {
    let receipt = gateway_tests::push_hrss_rows(agency, id, rows).await;
    assert!(receipt.rejections.is_empty(), "{receipt:?}");
}

async fn pull_from(union: &Channel, purpose: &str, cursor: u64) -> Vec<PullEvent> {
    let mut s = UnionExchangeClient::new(union.clone())
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: purpose.into(),
            cursor,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        events.push(e);
    }
    events
}

fn changed_at(r: &proto::DeliveredRecord) -> Option<(&str, i32)> {
    r.fields
        .iter()
        .find(|f| f.name == "changed_at")
        .map(|f| (f.value.as_str(), f.form))
}

#[tokio::test]
async fn changed_at_is_delivered_only_as_the_policy_says() {
    let mut pki = TestPki::new();
    for id in [
        "agency/hrss",
        "union/assistance",
        "union/analytics",
        "union/organisation",
    ] {
        pki.issue(id);
    }
    let state = ServerState::new();
    // Organisation's policy without `changed_at` for contributions.
    let policies = gateway_tests::shipped_policies_copy();
    let file = policies.path().join("organisation.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let without = text.replace(
        "[kinds.social_insurance.fields]\nchanged_at = { op = \"keep\" }\n",
        "[kinds.social_insurance.fields]\n",
    );
    assert_ne!(without, text);
    std::fs::write(&file, without).unwrap();
    let server = TestServer::start_with_policies(&pki, &state, policies.path()).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push(
        &agency,
        "rows",
        vec![
            synthetic_hrss_row_with_status(1, '1', '1', "20250314093015"),
            synthetic_hrss_row_with_status(2, '1', '1', "20250314093016"),
        ],
    )
    .await;

    let records = |events: Vec<PullEvent>| -> Vec<proto::DeliveredRecord> {
        events
            .into_iter()
            .filter_map(|e| match e.event {
                Some(Event::Record(r)) => Some(r),
                _ => None,
            })
            .collect()
    };
    // Kept: to the second, as the agency sent it.
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let kept = records(pull_from(&union, "hardship_screening", 0).await);
    assert_eq!(kept.len(), 2);
    assert_eq!(
        changed_at(&kept[0]),
        Some(("2025-03-14T09:30:15+08:00", proto::FieldForm::Kept as i32))
    );
    // Generalised to the month: the second is nowhere in the record.
    let union = server
        .connect(&pki.client("union/analytics"))
        .await
        .unwrap();
    let month = records(pull_from(&union, "statistics", 0).await);
    assert_eq!(month.len(), 2);
    for r in &month {
        assert_eq!(
            changed_at(r),
            Some(("2025-03", proto::FieldForm::Generalised as i32))
        );
        #[allow(deprecated)]
        let top = &r.changed_at;
        assert_eq!(top, "", "the change time outside the policy's form");
    }
    // Not named: not delivered at all.
    let union = server
        .connect(&pki.client("union/organisation"))
        .await
        .unwrap();
    let none = records(pull_from(&union, "membership_development", 0).await);
    assert_eq!(none.len(), 2);
    for r in &none {
        assert_eq!(changed_at(r), None);
        #[allow(deprecated)]
        let top = &r.changed_at;
        assert_eq!(top, "");
    }
    server.stop().await;
}

#[tokio::test]
async fn removals_reach_only_consumers_that_could_hold_the_record() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/organisation"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    // Organisation's filter admits contributions being paid (status 1) only.
    push(
        &agency,
        "first",
        vec![
            synthetic_hrss_row_with_status(1, '1', '1', "20250101120000"),
            synthetic_hrss_row_with_status(2, '2', '1', "20250101120000"),
            synthetic_hrss_row_with_status(3, '1', '1', "20250101120000"),
        ],
    )
    .await;
    let union = server
        .connect(&pki.client("union/organisation"))
        .await
        .unwrap();
    let first = pull_from(&union, "membership_development", 0).await;
    assert_eq!(
        first.len(),
        2,
        "only the admitted records, no removals: {first:?}"
    );
    assert!(
        first
            .iter()
            .all(|e| matches!(e.event, Some(Event::Record(_))))
    );
    let cursor = first.last().unwrap().cursor;

    // Record 1 is cancelled, record 2 (never admitted) too, and record 3's
    // contributions are suspended (no longer admitted).
    push(
        &agency,
        "second",
        vec![
            synthetic_hrss_row_with_status(1, '1', '3', "20250201120000"),
            synthetic_hrss_row_with_status(2, '2', '3', "20250201120000"),
            synthetic_hrss_row_with_status(3, '2', '2', "20250201120000"),
        ],
    )
    .await;
    let next = pull_from(&union, "membership_development", cursor).await;
    let removed: Vec<&proto::RemovedRecord> = next
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Removed(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(next.len(), 2, "{next:?}");
    assert_eq!(removed.len(), 2, "{next:?}");
    let ids: Vec<String> = first
        .iter()
        .map(|e| match &e.event {
            Some(Event::Record(r)) => r.record_id.clone(),
            _ => unreachable!(),
        })
        .collect();
    for r in &removed {
        assert!(
            ids.contains(&r.record_id),
            "a removal of a record never delivered"
        );
        assert_eq!(r.changed_at, "2025-02-01T12:00:00+08:00");
    }
    // A consumer starting now holds nothing: it hears of no removal at all.
    let fresh = pull_from(&union, "membership_development", 0).await;
    assert!(fresh.is_empty(), "{fresh:?}");
    server.stop().await;
}
