//! Pushing the hrss sample export as agency `hrss` over mutual TLS accepts exactly
//! the rows `labels.jsonl` accepts and rejects every other row with its labelled
//! field and code; re-pushing is idempotent.

use gateway::client::{PushOptions, push_file};
use gateway_tests::{ServerState, TestPki, TestServer, labels, sample};

#[tokio::test]
async fn hrss_sample_rows_get_their_labelled_outcomes() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let channel = server.connect(&pki.client("agency/hrss")).await.unwrap();

    // Small batches, so that row numbering across batches is exercised too.
    let opts = PushOptions {
        batch_rows: 7,
        ..Default::default()
    };
    let summary = push_file(channel.clone(), &sample("hrss.csv"), &opts, |_| {})
        .await
        .unwrap();

    let labels = labels("hrss");
    assert_eq!(summary.rows, labels.len() as u64);
    assert!(
        summary.rejected_batches.is_empty(),
        "{:?}",
        summary.rejected_batches
    );
    let expected_accepted = labels.iter().filter(|l| l.accept).count() as u64;
    assert_eq!(summary.accepted, expected_accepted);
    for label in &labels {
        let rejections: Vec<_> = summary
            .rejections
            .iter()
            .filter(|r| r.row == label.row)
            .collect();
        if label.accept {
            assert!(
                rejections.is_empty(),
                "row {} should be accepted: {rejections:?}",
                label.row
            );
        } else {
            let (field, code) = (
                label.field.as_deref().unwrap(),
                label.code.as_deref().unwrap(),
            );
            assert!(
                rejections
                    .iter()
                    .any(|r| r.field == field && r.code == code),
                "row {} should be rejected with {field}/{code}, got {rejections:?}",
                label.row
            );
        }
    }
    // Rejection messages never echo raw values.
    let (ids, names) = gateway_tests::hrss_personal_values();
    for r in &summary.rejections {
        for v in ids.iter().chain(names.iter()) {
            assert!(
                !r.message.contains(v.as_str()),
                "message echoes a raw value: {}",
                r.message
            );
        }
    }

    // The same file again: every batch is a duplicate, nothing is applied twice.
    let again = push_file(channel, &sample("hrss.csv"), &opts, |_| {})
        .await
        .unwrap();
    assert_eq!(again.duplicates, again.batches);
    assert_eq!(again.accepted, summary.accepted);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_id_reused_for_other_content_is_refused_and_a_bad_header_names_the_column() {
    use gateway::proto;
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let channel = server.connect(&pki.client("agency/hrss")).await.unwrap();

    let bytes = std::fs::read(sample("hrss.csv")).unwrap();
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec());
    let header = lines.next().unwrap();
    let rows: Vec<Vec<u8>> = lines.filter(|l| !l.is_empty()).collect();
    let batch = |id: &str, header: Vec<u8>, rows: Vec<Vec<u8>>| proto::PushBatch {
        batch_id: id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        header,
        rows,
        first_row: 1,
    };
    let mut bad_header = header.clone();
    bad_header.extend_from_slice(b",EXTRA");
    let batches = vec![
        batch("b-1", header.clone(), rows[..5].to_vec()),
        batch("b-1", header.clone(), rows[5..10].to_vec()),
        batch("b-2", bad_header, rows[..5].to_vec()),
        batch("b-3", header.clone(), rows[10..12].to_vec()),
    ];
    let got = gateway_tests::push_batches(&channel, batches).await;
    assert_eq!(
        got.len(),
        4,
        "one receipt per batch, the stream survives bad batches"
    );
    assert_eq!(got[0].outcome, proto::BatchOutcome::Committed as i32);
    assert_eq!(got[1].outcome, proto::BatchOutcome::Rejected as i32);
    assert_eq!(got[1].batch_error.as_ref().unwrap().code, "batch_id_reused");
    assert_eq!(got[2].outcome, proto::BatchOutcome::Rejected as i32);
    let err = got[2].batch_error.as_ref().unwrap();
    assert_eq!(err.code, "unknown_column");
    assert!(err.message.contains("EXTRA"), "{}", err.message);
    assert_eq!(got[3].outcome, proto::BatchOutcome::Committed as i32);
    server.stop().await;
}
