//! An auditor enters a person's identity number and gets exactly the
//! deliveries and look-ups that concerned that person (who, when, purpose,
//! fields and forms), with the back-pointer chain checked; an entry removed
//! from the store breaks the chain and the report says so.

use crate::audit_support::*;
use gateway::proto::{LookupRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{ServerState, TestServer, valid_identity_number};

#[tokio::test]
async fn the_subject_report_lists_exactly_that_persons_deliveries_and_lookups() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await; // push, one pull page (delivers PERSON), a denial
    let lookup = |consumer: &'static str, id: String, case: &'static str, purpose: &'static str| {
        let pki = &pki;
        let server = &server;
        async move {
            let ch = server.connect(&pki.client(consumer)).await.unwrap();
            UnionExchangeClient::new(ch)
                .lookup(LookupRequest {
                    id_number: id,
                    case_number: case.into(),
                    purpose: purpose.into(),
                })
                .await
                .unwrap()
        }
    };
    lookup(
        "union/assistance",
        PERSON.into(),
        "KN-1",
        "hardship_application",
    )
    .await;
    // Someone else, and a person with no records at all.
    let stranger = valid_identity_number("340202", "19900101", 7);
    lookup(
        "union/assistance",
        stranger.clone(),
        "KN-2",
        "hardship_application",
    )
    .await;
    lookup(
        "union/assistance",
        PERSON.into(),
        "KN-3",
        "hardship_application",
    )
    .await;

    let mut client = auditor(&server, &pki).await;
    let report = report_on(&mut client, PERSON).await;
    assert!(report.chain_complete, "{:?}", report.problems);
    let keys = gateway::keys::Keys::load(&state.keys_file(), false).unwrap();
    assert_eq!(
        report.subject,
        gateway::audit::auditor_pseudonyms(&keys).token(PERSON)
    );
    let lines: Vec<(&str, &str, &str, &str)> = report
        .items
        .iter()
        .map(|i| {
            (
                i.actor.as_str(),
                i.action.as_str(),
                i.purpose.as_str(),
                i.case_number.as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "union/assistance",
                "records_delivered",
                "hardship_screening",
                ""
            ),
            (
                "union/assistance",
                "person_looked_up",
                "hardship_application",
                "KN-1"
            ),
            (
                "union/assistance",
                "person_looked_up",
                "hardship_application",
                "KN-3"
            ),
        ]
    );
    let delivery = &report.items[0];
    assert_eq!(
        delivery.fields["social_insurance.person_id"],
        "pseudonymised"
    );
    assert_eq!(delivery.fields["social_insurance.name"], "masked");
    assert!(delivery.policy_version.starts_with("sha256:"));
    assert_eq!(delivery.prev_seq, 0);
    assert_eq!(report.items[1].prev_seq, delivery.seq);
    assert_eq!(report.items[2].prev_seq, report.items[1].seq);
    assert!(
        report.items[1]
            .fields
            .contains_key("social_insurance.person_id")
    );
    assert!(report.checkpoint.unwrap().size >= report.items[2].seq);

    // The stranger's report holds only the stranger's look-up.
    let other = report_on(&mut client, &stranger).await;
    assert_eq!(other.items.len(), 1);
    assert_eq!(other.items[0].case_number, "KN-2");

    // The report itself was audited, chained to the person's entries.
    let accesses = gateway_tests::audit_entries(&server, &pki, "subject_report").await;
    assert_eq!(accesses.len(), 2);
    assert_eq!(accesses[0].actor, "auditor/compliance");
    assert_eq!(accesses[0].subjects[0].prev_seq, report.items[2].seq);

    // An entry about the person deleted from the store: the chain is broken.
    sql(
        &state,
        &format!("DELETE FROM audit_log WHERE seq = {}", report.items[1].seq),
    );
    let broken = report_on(&mut client, PERSON).await;
    assert!(!broken.chain_complete);
    assert!(
        broken.problems[0].contains(&report.items[1].seq.to_string()),
        "{:?}",
        broken.problems
    );
    server.stop().await;
}

/// A person named by more entries than the report reads at a time: every
/// one is listed once, in order, with the chain complete.
#[tokio::test]
async fn a_long_history_is_reported_whole() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    push_hrss_sample(&server, &pki).await;
    let ch = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut union = UnionExchangeClient::new(ch);
    let lookups = 80;
    for i in 0..lookups {
        union
            .lookup(LookupRequest {
                id_number: PERSON.into(),
                case_number: format!("KN-{i}"),
                purpose: "hardship_application".into(),
            })
            .await
            .unwrap();
    }
    let report = report_on(&mut auditor(&server, &pki).await, PERSON).await;
    assert!(report.chain_complete, "{:?}", report.problems);
    assert_eq!(report.entries_checked, lookups);
    let cases: Vec<String> = report.items.iter().map(|i| i.case_number.clone()).collect();
    let expected: Vec<String> = (0..lookups).map(|i| format!("KN-{i}")).collect();
    assert_eq!(cases, expected);
    assert!(report.items.windows(2).all(|w| w[1].prev_seq == w[0].seq));
    server.stop().await;
}
