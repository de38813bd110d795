//! A union officer looks up one applicant by identity number for a named case:
//! the answer gathers that person's records, shaped by the consumer's policy, and
//! the look-up is audited with the person only as a pseudonym.

use gateway::client::{PushOptions, push_file};
use gateway::proto::{LookupRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};

#[tokio::test]
async fn lookup_gathers_one_persons_records_for_a_case() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();

    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut client = UnionExchangeClient::new(union);
    // 马伟红 has four accepted social-insurance rows in the sample; the number is
    // typed with full-width digits and stray spaces, as from a paper form.
    let typed = " ３４０２０７１９７６０７１１１１３３ ";
    let answer = client
        .lookup(LookupRequest {
            id_number: typed.into(),
            case_number: "KN-2026-0042".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.records.len(),
        4,
        "{:?}",
        answer.records.iter().map(|r| &r.kind).collect::<Vec<_>>()
    );
    for r in &answer.records {
        assert_eq!(r.kind, "social_insurance");
        let person = r.fields.iter().find(|f| f.name == "person_id").unwrap();
        assert_eq!(
            person.value, answer.subject,
            "the subject is the person's pseudonym"
        );
        let name = r.fields.iter().find(|f| f.name == "name").unwrap();
        assert_eq!(name.value, "马**");
    }

    // Unknown person: an empty answer, not an error that tells anything apart.
    let nobody = client
        .lookup(LookupRequest {
            id_number: gateway_tests::valid_identity_number("340202", "19900101", 123),
            case_number: "KN-2026-0043".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(nobody.records.is_empty());

    // An invalid identity number is refused without echoing it.
    let err = client
        .lookup(LookupRequest {
            id_number: "340207197607111134".into(),
            case_number: "KN-2026-0044".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(!err.message().contains("340207197607111134"));

    let lookups = audit_entries(&server, &pki, "person_looked_up").await;
    assert_eq!(lookups.len(), 2);
    assert!(lookups[0].details_json.contains("KN-2026-0042"));
    assert!(!lookups[0].details_json.contains("340207197607111133"));
    assert!(
        !lookups[0].details_json.contains(&answer.subject),
        "audit pseudonyms are in the auditors' own domain"
    );
    server.stop().await;
}
