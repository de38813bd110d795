//! Free text a caller types stays out of the Merkle leaves, which can never be
//! erased. A case number that is not of the configured form (a name, a space,
//! 65 characters) is refused with INVALID_ARGUMENT before anything is logged
//! or audited. A re-identification's written justification is kept beside the
//! log, sealed, with only a salted commitment in the leaf: an auditor reads it
//! back checked against that commitment (the read is audited), and erases it
//! (audited) while the exported log still verifies.

use crate::audit_support::{export, sql, verify_file};
use gateway::client::{PushOptions, event_json, pull, push_file};
use gateway::proto::{
    EraseNoteRequest, LookupRequest, PullRequest, ReadNoteRequest, ReidentifyRequest,
    audit_client::AuditClient, union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};
use tonic::transport::Channel;

/// 马伟红, in the hrss sample.
const PERSON: &str = "340207197607111133";

/// A server with the housing sample pushed, and a sealed phone number (a
/// re-identification token) that union/assistance received in its pull.
async fn server_and_token() -> (TestPki, ServerState, TestServer, String) {
    let mut pki = TestPki::new();
    for id in ["agency/housing", "union/assistance", "auditor/compliance"] {
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
    let mut events = Vec::new();
    pull(
        assistance(&server, &pki).await,
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
    let token = events
        .iter()
        .find_map(|e| e["fields"]["phone"].as_str())
        .expect("a housing record with a sealed phone")
        .to_string();
    assert!(token.starts_with("reid1."));
    (pki, state, server, token)
}

async fn assistance(server: &TestServer, pki: &TestPki) -> Channel {
    server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap()
}

async fn auditor(server: &TestServer, pki: &TestPki) -> AuditClient<Channel> {
    AuditClient::new(
        server
            .connect(&pki.client("auditor/compliance"))
            .await
            .unwrap(),
    )
}

/// Every entry of the log holds none of `texts`, neither in its canonical
/// bytes (the leaf) nor in its details as shown.
async fn assert_log_holds_none_of(server: &TestServer, pki: &TestPki, texts: &[&str]) {
    let entries = audit_entries(server, pki, "").await;
    assert!(!entries.is_empty());
    for e in &entries {
        for text in texts {
            assert!(
                !e.canonical
                    .windows(text.len())
                    .any(|w| w == text.as_bytes()),
                "entry {} ({}) holds `{text}` in its canonical bytes",
                e.seq,
                e.action
            );
            assert!(
                !e.details_json.contains(text),
                "entry {} ({}) holds `{text}`: {}",
                e.seq,
                e.action,
                e.details_json
            );
        }
    }
}

#[tokio::test]
async fn a_case_number_not_of_the_configured_form_is_refused_before_it_is_audited() {
    let (pki, _state, server, token) = server_and_token().await;
    let mut union = UnionExchangeClient::new(assistance(&server, &pki).await);
    let long = "K".repeat(65);
    let refused = [
        "张三 case",
        "KN 2026 0042",
        "Wang Fang, Jinghu Road",
        long.as_str(),
    ];
    for case in refused {
        let err = union
            .lookup(LookupRequest {
                id_number: PERSON.into(),
                case_number: case.into(),
                purpose: "hardship_application".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{case}: {err:?}");
        assert!(!err.message().contains(case), "{}", err.message());
        let err = union
            .reidentify(ReidentifyRequest {
                token: token.clone(),
                case_number: case.into(),
                purpose: "hardship_application".into(),
                justification: "Applicant asked to be called back about the hardship application."
                    .into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{case}: {err:?}");
        assert!(!err.message().contains(case), "{}", err.message());
    }
    assert!(
        audit_entries(&server, &pki, "person_looked_up")
            .await
            .is_empty()
    );
    assert!(
        audit_entries(&server, &pki, "person_reidentified")
            .await
            .is_empty()
    );
    assert_log_holds_none_of(&server, &pki, &["张三", "KN 2026", "Wang Fang", &long]).await;

    // A case number of the form is accepted (trimmed) and recorded.
    union
        .lookup(LookupRequest {
            id_number: PERSON.into(),
            case_number: " KN-2026/17.3 ".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap();
    let looked_up = audit_entries(&server, &pki, "person_looked_up").await;
    assert_eq!(looked_up.len(), 1);
    assert!(looked_up[0].details_json.contains("\"KN-2026/17.3\""));
    server.stop().await;
}

#[tokio::test]
async fn a_justification_is_a_sealed_note_beside_the_log_read_against_its_commitment_and_erased() {
    let (pki, state, server, token) = server_and_token().await;
    // A made-up person and address, as an officer might type them.
    let (name, address) = ("欧阳明轩", "芜湖市镜湖区春华路88号");
    let justification = format!(
        "Applicant {name} of {address} (Ouyang Mingxuan) asked us to call about the hardship application."
    );
    let answer = UnionExchangeClient::new(assistance(&server, &pki).await)
        .reidentify(ReidentifyRequest {
            token,
            case_number: "KN-2026-0300".into(),
            purpose: "hardship_application".into(),
            justification: justification.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.field, "housing_assistance.phone");

    // No leaf holds the text, nor any part of it.
    assert_log_holds_none_of(
        &server,
        &pki,
        &[&justification, name, address, "Ouyang Mingxuan"],
    )
    .await;
    let done = audit_entries(&server, &pki, "person_reidentified").await;
    assert_eq!(done.len(), 1);
    let reidentified = &done[0];
    let details: serde_json::Value = serde_json::from_str(&reidentified.details_json).unwrap();
    let commitment = details["justification_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(commitment.len(), 64, "{details}");
    assert_eq!(
        details["justification_chars"],
        justification.chars().count()
    );
    assert!(details.get("justification").is_none(), "{details}");

    // The auditor reads it back, checked against the leaf's commitment.
    let mut audit = auditor(&server, &pki).await;
    let note = audit
        .read_note(ReadNoteRequest {
            seq: reidentified.seq,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.text, justification);
    assert!(note.commitment_ok);
    assert_eq!(note.commitment, commitment);
    assert!(!note.erased);
    // The read is audited, as the auditor, chained to the same person.
    let reads = audit_entries(&server, &pki, "note_read").await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].actor, "auditor/compliance");
    assert!(reads[0].details_json.contains("\"result\":\"opened\""));
    let tokens = |e: &gateway::proto::AuditEntry| -> Vec<String> {
        e.subjects.iter().map(|s| s.token.clone()).collect()
    };
    assert!(!tokens(reidentified).is_empty());
    assert_eq!(tokens(&reads[0]), tokens(reidentified));
    // An entry without a note has none to read.
    let looked_up = audit
        .read_note(ReadNoteRequest { seq: 1 })
        .await
        .unwrap_err();
    assert_eq!(looked_up.code(), tonic::Code::NotFound);

    let dir = tempfile::tempdir().unwrap();
    let before = export(&server, &pki, dir.path(), "before.jsonl").await;
    verify_file(&before, &state, None).unwrap();

    // Erased, with the command line officers use; audited.
    let erase = cli(
        &server,
        &pki,
        &[
            "erase-note",
            "--seq",
            &reidentified.seq.to_string(),
            "--reason",
            "subject_request",
        ],
    )
    .await;
    assert!(erase.status.success(), "{erase:?}");
    let erased = audit_entries(&server, &pki, "note_erased").await;
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0].actor, "auditor/compliance");
    assert!(
        erased[0]
            .details_json
            .contains("\"reason\":\"subject_request\"")
    );
    assert_eq!(tokens(&erased[0]), tokens(reidentified));

    // The note is gone: ReadNote says so, and the store holds no sealed text.
    let note = audit
        .read_note(ReadNoteRequest {
            seq: reidentified.seq,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(note.erased);
    assert!(note.text.is_empty() && !note.commitment_ok);
    assert_eq!(note.erased_by_seq, erased[0].seq);
    let sealed_left = sql(
        &state,
        "SELECT COUNT(*) FROM audit_notes WHERE sealed IS NOT NULL",
    );
    assert_eq!(sealed_left.as_deref(), Some("0"));
    let shown = cli(
        &server,
        &pki,
        &["note", "--seq", &reidentified.seq.to_string()],
    )
    .await;
    assert!(shown.status.success(), "{shown:?}");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("erased"));
    // Erasing again changes nothing and names the same erasure.
    let again = audit
        .erase_note(EraseNoteRequest {
            seq: reidentified.seq,
            reason: "subject_request".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.erasure_seq, erased[0].seq);
    assert_eq!(audit_entries(&server, &pki, "note_erased").await.len(), 1);
    // A reason outside the fixed codes is refused without repeating it.
    let err = audit
        .erase_note(EraseNoteRequest {
            seq: reidentified.seq,
            reason: "asked by 欧阳".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(!err.message().contains("欧阳"));

    // The log still verifies, and the entry's leaf is the one exported before.
    let after = export(&server, &pki, dir.path(), "after.jsonl").await;
    let verified = verify_file(&after, &state, None).unwrap();
    assert!(verified.size > reidentified.seq);
    let line_of = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!("{{\"seq\":{},", reidentified.seq)))
            .map(str::to_string)
            .expect("the entry's export line")
    };
    assert_eq!(line_of(&before), line_of(&after));
    assert_log_holds_none_of(&server, &pki, &[name, address]).await;
    server.stop().await;
}

/// `gateway audit …` as an officer runs it, against the test server.
async fn cli(server: &TestServer, pki: &TestPki, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    command
        .arg("audit")
        .args(args)
        .args(["--addr", &server.addr.to_string()])
        .arg("--certs-dir")
        .arg(pki.dir.path())
        .args(["--identity", "auditor/compliance"]);
    // The server runs on this test's runtime: wait for the child off it.
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}
