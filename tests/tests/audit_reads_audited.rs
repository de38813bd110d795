//! An auditor's read that names a person is itself audited, under the
//! auditor's certificate identity: a query by identity number or by
//! pseudonym (chained to the person) and an export (naming no one, with its
//! checkpoint's size). The person's subject report lists them with the
//! chain still complete, and none of these entries holds the identity
//! number.

use crate::audit_support::*;
use gateway::audit::{CanonicalEntry, Value};
use gateway::proto::{AuditQuery, SubjectReportRequest, audit_client::AuditClient};
use gateway_tests::{ServerState, TestServer, audit_entries, valid_identity_number};

#[tokio::test]
async fn queries_and_exports_naming_a_person_appear_in_the_persons_report() {
    let mut pki = pki();
    pki.issue("auditor/oversight");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await; // push, one pull page (delivers PERSON), a denial
    let keys = gateway::keys::Keys::load(&state.keys_file(), false).unwrap();
    let token = gateway::audit::auditor_pseudonyms(&keys).token(PERSON);

    // Reads naming no one write nothing (the helpers below query unfiltered).
    assert!(
        audit_entries(&server, &pki, "audit_queried")
            .await
            .is_empty()
    );

    let mut compliance = auditor(&server, &pki).await;
    let by_number = compliance
        .query(AuditQuery {
            subject_id_number: PERSON.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_number.entries.len(), 1); // the delivery
    let by_token = compliance
        .query(AuditQuery {
            subject: token.clone(),
            action: "records_delivered".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_token.entries.len(), 1);

    // Another auditor exports the whole log.
    let out = tempfile::tempdir().unwrap();
    let oversight = server
        .connect(&pki.client("auditor/oversight"))
        .await
        .unwrap();
    let (_, exported_size) =
        gateway_cli::cmd::audit::export_to_file(oversight, &out.path().join("audit.jsonl"))
            .await
            .unwrap();

    // The accesses are in the log, under the certificates' identities, with
    // the filters named but not their values.
    let queried = audit_entries(&server, &pki, "audit_queried").await;
    assert_eq!(queried.len(), 2);
    let decoded: Vec<CanonicalEntry> = queried
        .iter()
        .map(|e| CanonicalEntry::decode(&e.canonical).unwrap())
        .collect();
    for e in &decoded {
        assert_eq!(e.actor, "auditor/compliance");
        assert_eq!(e.subjects.len(), 1);
        assert_eq!(e.subjects[0].token, token);
        assert_eq!(e.details.str("auditor"), Some("auditor/compliance"));
        assert_eq!(e.details.get("entries"), Some(&Value::U64(1)));
    }
    let filters = |e: &CanonicalEntry| e.details.to_json()["filters"].clone();
    assert_eq!(
        filters(&decoded[0]),
        serde_json::json!(["subject_id_number"])
    );
    assert_eq!(
        filters(&decoded[1]),
        serde_json::json!(["action", "subject"])
    );
    // Chained: the second query points back to the first.
    assert_eq!(decoded[1].subjects[0].prev_seq, decoded[0].seq);

    let exported = audit_entries(&server, &pki, "audit_exported").await;
    assert_eq!(exported.len(), 1);
    let export_entry = CanonicalEntry::decode(&exported[0].canonical).unwrap();
    assert_eq!(export_entry.actor, "auditor/oversight");
    assert!(export_entry.subjects.is_empty());
    assert_eq!(
        export_entry.details.get("tree_size"),
        Some(&Value::U64(exported_size))
    );
    // Durable before the first leaf left: the export's checkpoint ends right
    // before its own entry.
    assert_eq!(export_entry.seq, exported_size + 1);

    // No identity number in any of the new entries, canonical bytes or JSON.
    for e in queried.iter().chain(&exported) {
        let text = String::from_utf8_lossy(&e.canonical);
        assert!(!text.contains(PERSON), "entry {} holds it", e.seq);
        assert!(!e.details_json.contains(PERSON), "entry {} holds it", e.seq);
    }

    // The person's report lists the delivery, both queries and the export,
    // each with who read; the back-pointer chain is complete.
    let report = report_on(&mut compliance, PERSON).await;
    assert!(report.chain_complete, "{:?}", report.problems);
    let lines: Vec<(u64, &str, &str)> = report
        .items
        .iter()
        .map(|i| (i.seq, i.actor.as_str(), i.action.as_str()))
        .collect();
    let delivered = report.items[0].seq;
    assert_eq!(
        lines,
        vec![
            (delivered, "union/assistance", "records_delivered"),
            (decoded[0].seq, "auditor/compliance", "audit_queried"),
            (decoded[1].seq, "auditor/compliance", "audit_queried"),
            (export_entry.seq, "auditor/oversight", "audit_exported"),
        ]
    );
    assert_eq!(report.items[1].prev_seq, delivered);
    assert_eq!(report.items[3].prev_seq, 0); // outside the chain
    // The delivery, the two queries (the export names no one).
    assert_eq!(report.entries_checked, 3);

    // A second report lists the first one too, by its auditor.
    let again = AuditClient::new(
        server
            .connect(&pki.client("auditor/oversight"))
            .await
            .unwrap(),
    )
    .subject_report(SubjectReportRequest {
        id_number: PERSON.into(),
    })
    .await
    .unwrap()
    .into_inner();
    assert!(again.chain_complete, "{:?}", again.problems);
    let last = again.items.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("auditor/compliance", "subject_report")
    );
    assert_eq!(last.prev_seq, decoded[1].seq);
    assert_eq!(again.items.len(), 5);

    // Someone whose first entry came after the export: it held none of
    // their entries and is not in their report.
    let stranger = valid_identity_number("340202", "19900101", 7);
    for _ in 0..2 {
        compliance
            .subject_report(SubjectReportRequest {
                id_number: stranger.clone(),
            })
            .await
            .unwrap();
    }
    let theirs = report_on(&mut compliance, &stranger).await;
    assert!(theirs.chain_complete, "{:?}", theirs.problems);
    assert_eq!(
        theirs
            .items
            .iter()
            .map(|i| i.action.as_str())
            .collect::<Vec<_>>(),
        ["subject_report", "subject_report"]
    );
    server.stop().await;
}
