//! A batch id and a case number are recorded as sent (receipts, spans, the
//! audit log) once they have their accepted form; an identity number or a
//! mobile number has that form too. Through the public contract: a batch id
//! or a case number holding one is refused with a fixed code that never
//! repeats it, the refusal is audited by that code, the value is nowhere in
//! the receipt, the status or the audit log, and ids and case numbers of
//! dates and counters still pass.

use crate::audit_support;
use gateway::proto::{
    self, BatchOutcome, LookupRequest, ReidentifyRequest,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{
    ServerState, TestPki, TestServer, audit_entries, hrss_header, push_batches,
    synthetic_hrss_rows, valid_identity_number,
};

fn pki() -> TestPki {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    pki
}

/// The values, as the audit export and every entry's details must not hold
/// them.
async fn assert_nowhere_in_the_audit_log(
    server: &TestServer,
    pki: &TestPki,
    state: &ServerState,
    values: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let export = audit_support::export(server, pki, dir.path(), "audit.jsonl").await;
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(!text.is_empty());
    for v in values {
        assert!(!text.contains(v), "`{v}` is in the audit log");
    }
    audit_support::verify_file(&export, state, None).expect("the log verifies");
}

#[tokio::test]
async fn a_batch_id_holding_an_identifier_is_refused_and_never_repeated() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let id_number = valid_identity_number("110101", "19900307", 451);
    let legacy = "340202850315001";
    let mobile = "13812345678";
    let holding = [
        format!("batch-{id_number}"),
        id_number.clone(),
        format!("old.{legacy}"),
        format!("hrss:{mobile}:1"),
    ];
    let ordinary = [
        "2026-12-05T10:00:00.batch-000123",
        "hrss-20261205-000124",
        "20261205100000000125",
    ];
    let batch = |id: &str, at: u64| proto::PushBatch {
        batch_id: id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows: synthetic_hrss_rows(at, 2),
        first_row: 1,
    };
    let mut batches: Vec<proto::PushBatch> = holding
        .iter()
        .enumerate()
        .map(|(i, id)| batch(id, 10 * i as u64))
        .collect();
    batches.extend(
        ordinary
            .iter()
            .enumerate()
            .map(|(i, id)| batch(id, 100 + 10 * i as u64)),
    );
    let got = push_batches(&agency, batches).await;
    assert_eq!(got.len(), holding.len() + ordinary.len(), "{got:?}");
    for (r, id) in got.iter().zip(&holding) {
        let error = r.batch_error.clone().unwrap_or_default();
        assert_eq!(
            (r.outcome, error.code.as_str(), r.batch_id.as_str()),
            (
                BatchOutcome::Rejected as i32,
                "batch_id_holds_identifier",
                ""
            ),
            "batch {id}: {r:?}"
        );
        for v in [&id_number[..], legacy, mobile] {
            assert!(!error.message.contains(v), "{}", error.message);
        }
        assert_eq!(r.accepted, 0);
    }
    for (r, id) in got[holding.len()..].iter().zip(ordinary) {
        assert_eq!(
            (r.outcome, r.batch_id.as_str()),
            (BatchOutcome::Committed as i32, id),
            "{r:?}"
        );
        assert_eq!(r.accepted, 2);
    }

    // Each refusal is audited with its code, the id left out.
    let pushed = audit_entries(&server, &pki, "batch_pushed").await;
    let refused: Vec<serde_json::Value> = pushed
        .iter()
        .map(|e| serde_json::from_str(&e.details_json).unwrap())
        .filter(|d: &serde_json::Value| d["batch_error"] == "batch_id_holds_identifier")
        .collect();
    assert_eq!(refused.len(), holding.len(), "{pushed:?}");
    for d in &refused {
        assert_eq!(d["batch_id"], "", "{d}");
    }
    assert_nowhere_in_the_audit_log(&server, &pki, &state, &[&id_number, legacy, mobile]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_case_number_holding_an_identifier_is_refused_and_audited_by_its_code() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    gateway_tests::push_hrss_rows(&agency, "case-1", synthetic_hrss_rows(0, 1)).await;
    // The person of synthetic row 0: what an officer would type by mistake.
    let person = valid_identity_number("340202", "19850315", 0);
    let mobile = "13912345678";
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut client = UnionExchangeClient::new(union);
    let lookup = |case: &str| LookupRequest {
        id_number: person.clone(),
        case_number: case.into(),
        purpose: "hardship_application".into(),
    };
    for case in [
        format!("KN-{person}"),
        person.clone(),
        mobile.to_string(),
        format!("KN-2026.{mobile}"),
    ] {
        let status = client.lookup(lookup(&case)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("case_number_holds_identifier"),
            "{status:?}"
        );
        assert!(!status.message().contains(&person) && !status.message().contains(mobile));
    }
    let status = client
        .reidentify(ReidentifyRequest {
            token: "reid1.x".into(),
            case_number: format!("KN/{mobile}"),
            purpose: "hardship_application".into(),
            justification: "a hardship application needs the member's name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("case_number_holds_identifier"));

    // Case numbers of dates and counters still pass.
    for case in ["KN-2026-0042", "2026/12/05-000123", "KN.20261205100000"] {
        let found = client.lookup(lookup(case)).await.unwrap().into_inner();
        assert!(!found.records.is_empty(), "{case}");
    }

    // The refusals are audited by code (repeats of one caller, call and code
    // folded), with nothing of the case number.
    let denied = audit_entries(&server, &pki, "denied").await;
    let codes: Vec<(String, String)> = denied
        .iter()
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
            (
                d["rpc"].as_str().unwrap_or("").to_string(),
                d["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for rpc in [
        "/exchange.v1.UnionExchange/Lookup",
        "/exchange.v1.UnionExchange/Reidentify",
    ] {
        assert!(
            codes.contains(&(rpc.into(), "case_number_holds_identifier".into())),
            "{codes:?}"
        );
    }
    let looked_up = audit_entries(&server, &pki, "person_looked_up").await;
    assert_eq!(looked_up.len(), 3, "only the allowed look-ups are recorded");
    assert_nowhere_in_the_audit_log(&server, &pki, &state, &[&person, mobile]).await;
    server.stop().await;
}
