//! A push, a pull, a look-up and a denial each leave the expected entry in the
//! Merkle log — with subjects as auditor-domain pseudonyms chained by
//! back-pointers, field forms, policy version and a content commitment — and
//! no personal identifier anywhere in the canonical bytes.

use crate::audit_support::*;
use gateway::audit::CanonicalEntry;
use gateway::proto::{AuditQuery, LookupRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{ServerState, TestServer, hrss_personal_values};

#[tokio::test]
async fn push_pull_lookup_and_denial_entries_hold_no_personal_data() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    UnionExchangeClient::new(union)
        .lookup(LookupRequest {
            id_number: PERSON.into(),
            case_number: "KN-2026-0042".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap();

    let mut client = auditor(&server, &pki).await;
    let entries = client
        .query(AuditQuery::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let keys = gateway::keys::Keys::load(&state.keys_file(), false).unwrap();
    let token = gateway::audit::auditor_pseudonyms(&keys).token(PERSON);
    let decoded: Vec<CanonicalEntry> = entries
        .iter()
        .map(|e| CanonicalEntry::decode(&e.canonical).unwrap())
        .collect();
    let find = |action: &str| {
        decoded
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} entry"))
    };

    let pushed = find("batch_pushed");
    assert_eq!(pushed.actor, "agency/hrss");
    assert_eq!(pushed.details.get("accepted").unwrap().to_json(), 20);

    let delivered = find("records_delivered");
    assert_eq!(delivered.actor, "union/assistance");
    assert_eq!(delivered.kinds, vec!["social_insurance".to_string()]);
    assert_eq!(delivered.details.str("purpose"), Some("hardship_screening"));
    assert!(delivered.details.get("fields").is_none());
    assert!(
        delivered
            .details
            .str("policy_version")
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(delivered.details.str("content_sha256").unwrap().len(), 64);
    assert!(!delivered.subjects.is_empty());
    assert!(
        delivered
            .subjects
            .iter()
            .all(|s| s.token.len() == 32 && s.prev_seq == 0)
    );
    let me = delivered
        .subjects
        .iter()
        .find(|s| s.token == token)
        .unwrap();
    assert_eq!(me.prev_seq, 0);

    let looked_up = find("person_looked_up");
    assert_eq!(looked_up.details.str("case_number"), Some("KN-2026-0042"));
    assert_eq!(looked_up.subjects.len(), 1);
    // The look-up points back to the delivery that concerned the same person.
    assert_eq!(looked_up.subjects[0].token, token);
    assert_eq!(looked_up.subjects[0].prev_seq, delivered.seq);

    let denied = find("denied");
    assert_eq!(denied.actor, "union/assistance");
    assert_eq!(denied.outcome, "denied");
    assert!(denied.details.str("rpc").unwrap().contains("Pull"));
    assert!(denied.details.str("reason").is_some());

    // Dense seqs, and re-encoding gives back the stored bytes (canonical).
    for (i, (e, raw)) in decoded.iter().zip(&entries).enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.encode().unwrap(), raw.canonical);
    }

    let (ids, names) = hrss_personal_values();
    for raw in &entries {
        let text = String::from_utf8_lossy(&raw.canonical);
        for v in ids.iter().chain(names.iter()) {
            assert!(
                !text.contains(v.as_str()) && !raw.details_json.contains(v.as_str()),
                "entry {} holds personal data",
                raw.seq
            );
        }
    }

    // Filters: by kind and by subject.
    let by_kind = client
        .query(AuditQuery {
            kind: "social_insurance".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        by_kind
            .iter()
            .all(|e| e.kinds.contains(&"social_insurance".to_string()))
    );
    assert!(by_kind.iter().any(|e| e.action == "records_delivered"));
    let by_subject = client
        .query(AuditQuery {
            subject_id_number: PERSON.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(
        by_subject.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![delivered.seq, looked_up.seq]
    );
    server.stop().await;
}
