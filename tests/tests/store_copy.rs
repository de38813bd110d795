//! Moving a deployment from the embedded store to PostgreSQL with the real
//! `gateway store copy`: a gateway on SQLite takes pushes, pulls, a look-up
//! and a signed checkpoint, and is stopped; after the copy, a gateway on the
//! new database serves the same feed and look-up, answers a re-sent batch
//! with its original receipt, exports an audit log that verifies against the
//! checkpoint saved before the move, and goes on appending to that log.

use crate::audit_support::*;
use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::{
    self, LookupRequest, agency_ingest_client::AgencyIngestClient, pull_event::Event,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{
    ProcessServer, ServerState, TestPki, hrss_header, sample, synthetic_hrss_row,
    synthetic_hrss_rows,
};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `gateway audit <args>` as the compliance officer, against `server`.
fn audit(server: &ProcessServer, pki: &TestPki, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .arg("audit")
        .args(args)
        .args(["--addr", &server.addr.to_string()])
        .arg("--certs-dir")
        .arg(pki.dir.path())
        .args(["--identity", "auditor/compliance"])
        .output()
        .unwrap()
}

/// The batch re-sent after the move; its receipt.
async fn push_batch(server: &ProcessServer, pki: &TestPki) -> proto::BatchReceipt {
    push(server, pki, "before-the-move", synthetic_hrss_rows(0, 20)).await
}

/// One batch of hrss rows as agency/hrss; its receipt.
async fn push(
    server: &ProcessServer,
    pki: &TestPki,
    batch_id: &str,
    rows: Vec<Vec<u8>>,
) -> proto::BatchReceipt {
    let channel = gateway::client::connect(&server.addr.to_string(), &pki.client("agency/hrss"))
        .await
        .unwrap();
    let batch = proto::PushBatch {
        batch_id: batch_id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows,
        first_row: 1,
    };
    AgencyIngestClient::new(channel)
        .push(tokio_stream::iter(vec![batch]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("a receipt")
}

/// Every record of a pull from the start, as the consumer receives it.
async fn feed(server: &ProcessServer, pki: &TestPki) -> Vec<String> {
    let union = gateway::client::connect(&server.addr.to_string(), &pki.client("union/assistance"))
        .await
        .unwrap();
    let mut records = Vec::new();
    pull(union, pull_request(), |e| {
        if let Some(Event::Record(r)) = &e.event {
            records.push(format!("{r:?}"));
        }
        Ok(())
    })
    .await
    .unwrap();
    records
}

/// The look-up of [`PERSON`] for a case.
async fn look_up(server: &ProcessServer, pki: &TestPki) -> proto::LookupResponse {
    let union = gateway::client::connect(&server.addr.to_string(), &pki.client("union/assistance"))
        .await
        .unwrap();
    UnionExchangeClient::new(union)
        .lookup(LookupRequest {
            id_number: PERSON.into(),
            case_number: "KN-2026-0042".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_copied_to_postgres_serves_the_same_feed_receipts_and_audit_log() {
    let pki = pki();
    let state = ServerState::sqlite();
    let binary = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();

    let server = ProcessServer::start(binary, &pki, &state);
    let agency = gateway::client::connect(&server.addr.to_string(), &pki.client("agency/hrss"))
        .await
        .unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    let receipt = push_batch(&server, &pki).await;
    assert_eq!(receipt.accepted, 20, "{receipt:?}");
    // Later versions of some rows, and cancellations: the records' earlier
    // versions and tombstones move too.
    let changes: Vec<_> = (0..3)
        .map(|i| synthetic_hrss_row(i, '2', "20250201120000"))
        .chain((3..5).map(|i| synthetic_hrss_row(i, '3', "20250301120000")))
        .collect();
    let changed = push(&server, &pki, "changes", changes).await;
    assert_eq!(changed.accepted, 5, "{changed:?}");
    let feed_before = feed(&server, &pki).await;
    assert!(feed_before.len() > 20, "{}", feed_before.len());
    let lookup_before = look_up(&server, &pki).await;
    assert_eq!(lookup_before.records.len(), 4);
    let out = audit(
        &server,
        &pki,
        &["checkpoint", "--out", &path("before.checkpoint")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let vkey = state.data_dir().join("audit-log.vkey");
    let before = std::fs::read_to_string(path("before.checkpoint")).unwrap();
    let before_size = open(&before, &state).size();
    assert_eq!(
        server
            .terminate(Duration::from_secs(30))
            .map(|s| s.success()),
        Some(true)
    );

    // The move: into a new database; a second copy into it is refused.
    let state = state.with_new_database();
    let url = state.database().unwrap().url().to_string();
    let data_dir = state.data_dir();
    let copy = || {
        gateway(&[
            "store",
            "copy",
            "--from",
            data_dir.to_str().unwrap(),
            "--to",
            &url,
        ])
    };
    let out = copy();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("copied"), "{}", text(&out));
    assert!(
        text(&out).contains("(5 earlier versions), 3 batch receipts"),
        "{}",
        text(&out)
    );
    eprintln!("store_copy: {}", text(&out).trim());
    let out = copy();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("holds a store already"),
        "{}",
        text(&out)
    );

    let server = ProcessServer::start(binary, &pki, &state);
    assert_eq!(feed(&server, &pki).await, feed_before, "the same feed");
    let lookup_after = look_up(&server, &pki).await;
    assert_eq!(
        format!("{:?}", lookup_after.records),
        format!("{:?}", lookup_before.records),
        "the same look-up answer"
    );
    assert_eq!(lookup_after.subject, lookup_before.subject);
    let mut again = push_batch(&server, &pki).await;
    assert_eq!(again.outcome, proto::BatchOutcome::Duplicate as i32);
    again.outcome = receipt.outcome;
    assert_eq!(again, receipt, "a re-sent batch gets its original receipt");

    // The log exported from PostgreSQL extends the checkpoint saved before
    // the move, and goes on: a new checkpoint is consistent with the old.
    let out = audit(
        &server,
        &pki,
        &["checkpoint", "--out", &path("after.checkpoint")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::read_to_string(path("after.checkpoint")).unwrap();
    let after_size = open(&after, &state).size();
    assert!(after_size > before_size, "{after_size} {before_size}");
    let out = audit(&server, &pki, &["export", "--out", &path("audit.jsonl")]);
    assert!(out.status.success(), "{}", text(&out));
    for saved in ["before.checkpoint", "after.checkpoint"] {
        let out = gateway(&[
            "audit",
            "verify",
            &path("audit.jsonl"),
            "--key",
            vkey.to_str().unwrap(),
            "--checkpoint",
            &path(saved),
        ]);
        assert!(out.status.success(), "{saved}: {}", text(&out));
        assert!(text(&out).starts_with("OK: "), "{}", text(&out));
        // The one saved before the move is an earlier size of the log.
        assert!(
            saved != "before.checkpoint" || text(&out).contains("extends the earlier checkpoint"),
            "{saved}: {}",
            text(&out)
        );
    }
    // Entries after the move were appended to the copied log.
    let pushes_after = audit(
        &server,
        &pki,
        &["query", "--action", "batch_pushed", "--json"],
    );
    assert!(pushes_after.status.success(), "{}", text(&pushes_after));
    assert!(
        String::from_utf8_lossy(&pushes_after.stdout)
            .lines()
            .count()
            >= 2,
        "{}",
        text(&pushes_after)
    );
    drop(server);
}
