//! Every size an agency controls is bounded before anything grows with it:
//! a batch over the rows or bytes-per-row limit, or with an invalid batch
//! id, is rejected whole with a code naming the limit and the stream goes
//! on; a receipt lists the first rejections and counts them all; a batch id
//! reaches no log line or audit entry before it is valid; batches count
//! against the agency's rate; and sixteen streams of the largest messages
//! leave the server's memory bounded.

use bytes::{BufMut, Bytes, BytesMut};
use gateway::proto::{self, BatchOutcome, BatchReceipt};
use gateway_tests::{
    ProcessServer, ServerState, TestPki, TestServer, audit_entries, hrss_header, raw,
    synthetic_hrss_row, synthetic_hrss_rows,
};
use prost::Message;
use std::time::Duration;

const PUSH: &str = "/exchange.v1.AgencyIngest/Push";

fn batch(id: &str, rows: Vec<Vec<u8>>) -> proto::PushBatch {
    proto::PushBatch {
        batch_id: id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows,
        first_row: 1,
    }
}

fn code(r: &BatchReceipt) -> &str {
    r.batch_error
        .as_ref()
        .map(|e| e.code.as_str())
        .unwrap_or("")
}

fn tight() -> gateway::limits::LimitsConfig {
    gateway::limits::LimitsConfig {
        max_rows_per_batch: 100,
        max_row_bytes: 1024,
        max_rejections_listed: 5,
        ..Default::default()
    }
}

#[tokio::test]
async fn batches_over_a_limit_are_rejected_whole_and_the_stream_goes_on() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, tight()).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let hostile_id = format!("张伟-芜湖市镜湖区中山路12号-{}", "x".repeat(300));
    let mut bad_rows = synthetic_hrss_rows(0, 20);
    for row in &mut bad_rows {
        // A broken identity number in every row: 20 rejections at least.
        row[13] = b'0';
        row[14] = b'0';
    }
    let batches = vec![
        batch("too-many", synthetic_hrss_rows(0, 101)),
        batch("too-wide", vec![vec![b'a'; 2000]]),
        batch(&hostile_id, synthetic_hrss_rows(0, 1)),
        batch("many-bad", bad_rows),
        batch("good", synthetic_hrss_rows(0, 3)),
    ];
    let got = gateway_tests::push_batches(&agency, batches).await;
    assert_eq!(got.len(), 5, "the stream survived every refusal: {got:?}");
    assert_eq!(code(&got[0]), "too_many_rows");
    assert!(
        got[0]
            .batch_error
            .as_ref()
            .unwrap()
            .message
            .contains("max_rows_per_batch")
    );
    assert_eq!(
        (got[0].batch_id.as_str(), got[0].rows_received),
        ("too-many", 101)
    );
    assert_eq!(code(&got[1]), "row_too_large");
    assert!(
        got[1]
            .batch_error
            .as_ref()
            .unwrap()
            .message
            .contains("max_row_bytes")
    );
    assert_eq!(code(&got[2]), "bad_batch_id");
    assert_eq!(got[2].batch_id, "", "an invalid batch id is not repeated");
    let many_bad = &got[3];
    assert_eq!(many_bad.outcome, BatchOutcome::Committed as i32);
    assert_eq!(
        many_bad.rejections.len(),
        5,
        "the first rejections are listed"
    );
    let counted: u64 = many_bad.rejected_by_code.values().sum();
    assert!(
        counted >= 20,
        "all are counted: {:?}",
        many_bad.rejected_by_code
    );
    assert_eq!(got[4].accepted, 3);

    // The hostile batch id is nowhere in the audit log.
    let pushed = audit_entries(&server, &pki, "batch_pushed").await;
    assert_eq!(pushed.len(), 5);
    for e in &pushed {
        let canonical = String::from_utf8_lossy(&e.canonical);
        for leaked in ["张伟", "中山路", "xxxxxxxx"] {
            assert!(!canonical.contains(leaked) && !e.details_json.contains(leaked));
        }
    }
    assert!(
        pushed
            .iter()
            .any(|e| e.details_json.contains("too_many_rows"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_batches_is_refused_with_a_retry_hint() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let limits = gateway::limits::LimitsConfig {
        batch_rate_per_second: 2.0,
        batch_burst: 5,
        ..Default::default()
    };
    let server = TestServer::start_with_limits(&pki, &state, limits).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let flood: Vec<proto::PushBatch> = (0..50)
        .map(|i| {
            batch(
                &format!("b{i}"),
                vec![synthetic_hrss_row(i, '1', "20250101120000")],
            )
        })
        .collect();
    let mut receipts = gateway::proto::agency_ingest_client::AgencyIngestClient::new(agency)
        .push(tokio_stream::iter(flood))
        .await
        .unwrap()
        .into_inner();
    let mut ok = 0;
    let refused = loop {
        match receipts.message().await {
            Ok(Some(_)) => ok += 1,
            Ok(None) => panic!("the flood was never refused"),
            Err(status) => break status,
        }
    };
    assert!((5..=7).contains(&ok), "{ok} batches before the refusal");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.metadata().get("retry-after-ms").is_some());
    let denied = audit_entries(&server, &pki, "denied").await;
    assert!(
        denied.iter().any(|e| e.details_json.contains("batch_rate")),
        "{denied:?}"
    );
    server.stop().await;
}

/// A `PushBatch`'s wire form with `rows` empty rows, built without a
/// `Vec` per row.
fn empty_rows_message(id: &str, rows: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(rows * 2 + 64);
    let head = proto::PushBatch {
        batch_id: id.into(),
        format: proto::NativeFormat::CsvGbk as i32,
        first_row: 1,
        ..Default::default()
    };
    head.encode(&mut b).unwrap();
    for _ in 0..rows {
        b.put_slice(&[0x22, 0x00]);
    }
    b.freeze()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_streams_of_the_largest_messages_leave_memory_bounded() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let state = ServerState::new();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let server = ProcessServer::start(binary, &pki, &state);
    let pid = server.child.id();
    let addr = server.addr.to_string();
    let tls = pki.client("agency/hrss");
    let connect = || gateway::client::connect(&addr, &tls);
    // Warm: one ordinary batch, so the baseline includes a working server.
    let channel = connect().await.unwrap();
    let warm = batch("warm", synthetic_hrss_rows(0, 100)).encode_to_vec();
    let mut s = raw::call(channel, PUSH, vec![Bytes::from(warm)], 64 << 20)
        .await
        .unwrap();
    assert!(s.message().await.unwrap().is_some());
    let before = peak_rss_kib(pid);

    let defaults = gateway::limits::LimitsConfig::default();
    let huge = empty_rows_message("huge", (32 << 20) / 2);
    let just_under = empty_rows_message("under", (defaults.max_message_bytes - 64) / 2);
    let good = Bytes::from(batch("after", synthetic_hrss_rows(100, 1)).encode_to_vec());
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for (round, message) in [("32MiB", huge), ("limit", just_under)] {
        let mut calls = Vec::new();
        for i in 0..16 {
            let channel = connect().await.unwrap();
            let messages = vec![message.clone(), good.clone()];
            calls.push(tokio::spawn(async move {
                let answer = async {
                    let mut s = raw::call(channel, PUSH, messages, 64 << 20).await?;
                    let first = s.message().await?.unwrap_or_default();
                    let first = BatchReceipt::decode(&first[..]).unwrap();
                    let second = s.message().await?.unwrap_or_default();
                    let second = BatchReceipt::decode(&second[..]).unwrap();
                    Ok::<_, tonic::Status>((first, second))
                };
                match tokio::time::timeout(Duration::from_secs(60), answer).await {
                    Ok(Ok((first, second))) => {
                        format!("{}+{}", code(&first), second.accepted)
                    }
                    Ok(Err(status)) => format!("{:?}", status.code()),
                    Err(_) => format!("stream {i} hung"),
                }
            }));
        }
        for call in calls {
            *outcomes
                .entry(format!("{round}: {}", call.await.unwrap()))
                .or_default() += 1;
        }
    }
    let after = peak_rss_kib(pid);
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    println!(
        "server peak RSS {:.1} MiB before, {:.1} MiB after 2 x 16 streams: +{grown_mib:.1} MiB; outcomes {outcomes:?}",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    assert!(grown_mib < 256.0, "peak RSS grew by {grown_mib:.1} MiB");
    assert!(!outcomes.keys().any(|k| k.contains("hung")), "{outcomes:?}");
    // Under the message limit, a batch of too many rows is refused whole and
    // the same stream's next batch goes in.
    assert!(
        outcomes.contains_key("limit: too_many_rows+1"),
        "{outcomes:?}"
    );

    // And the server still serves an ordinary push.
    let channel = connect().await.unwrap();
    let push = gateway::client::push_file(
        channel,
        &gateway_tests::sample("hrss.csv"),
        &gateway::client::PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(push.accepted, 20);
    server.kill_9();
}
