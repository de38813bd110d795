//! Every sample export of all six agencies, pushed over mutual TLS as its own
//! agency through the real push path, gives each row exactly its outcome in
//! `labels.jsonl`: accepted, or rejected with the labelled field and code among
//! those reported (and nothing reported for accepted rows).

use gateway::client::{PushOptions, push_file};
use gateway_tests::{ServerState, TestPki, TestServer, labels, sample};

const SAMPLES: [(&str, &str); 6] = [
    ("public_security", "public_security.jsonl"),
    ("hrss", "hrss.csv"),
    ("market_regulation", "market_regulation.jsonl"),
    ("tax", "tax.csv"),
    ("housing", "housing.jsonl"),
    ("work_safety", "work_safety.jsonl"),
];

#[tokio::test]
async fn every_sample_row_of_every_agency_gets_its_labelled_outcome() {
    let mut pki = TestPki::new();
    for (agency, _) in SAMPLES {
        pki.issue(&format!("agency/{agency}"));
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;

    for (agency, file) in SAMPLES {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        // Small batches, so that row numbering across batches is exercised too.
        let opts = PushOptions {
            batch_rows: 5,
            ..Default::default()
        };
        let summary = push_file(channel, &sample(file), &opts, |_| {})
            .await
            .unwrap_or_else(|e| panic!("{agency}: push failed: {e:#}"));
        let labels = labels(agency);
        assert!(!labels.is_empty(), "{agency} has labels");
        assert_eq!(summary.rows, labels.len() as u64, "{agency}: rows");
        assert!(
            summary.rejected_batches.is_empty(),
            "{agency}: {:?}",
            summary.rejected_batches
        );
        let expected_accepted = labels.iter().filter(|l| l.accept).count() as u64;
        assert_eq!(summary.accepted, expected_accepted, "{agency}: accepted");
        for label in &labels {
            let got: Vec<_> = summary
                .rejections
                .iter()
                .filter(|r| r.row == label.row)
                .collect();
            if label.accept {
                assert!(
                    got.is_empty(),
                    "{agency} row {} accepted, got {got:?}",
                    label.row
                );
            } else {
                let (field, code) = (label.field.as_deref(), label.code.as_deref());
                assert!(
                    got.iter()
                        .any(|r| Some(r.field.as_str()) == field && Some(r.code.as_str()) == code),
                    "{agency} row {}: expected {field:?}/{code:?} among {got:?}",
                    label.row
                );
            }
        }
        // No rejection names a row the file does not have.
        assert!(
            summary
                .rejections
                .iter()
                .all(|r| (1..=summary.rows).contains(&r.row))
        );
    }
    server.stop().await;
}
