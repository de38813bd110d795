//! Acknowledged means durable: the real `gateway serve` process is killed with
//! SIGKILL right after an acknowledgement while more batches are in flight. After
//! a restart every acknowledged row is there, and every unacknowledged batch is
//! either wholly there or wholly absent.

use gateway::proto::{self, agency_ingest_client::AgencyIngestClient};
use gateway_tests::{ProcessServer, ServerState, TestPki, hrss_header, synthetic_hrss_rows};
use std::path::Path;

const ROWS_PER_BATCH: u64 = 200;
const BATCHES: u64 = 40;
const KILL_AFTER_ACKS: usize = 6;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_an_ack_loses_nothing_acknowledged_and_leaves_no_half_batch() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = ProcessServer::start(binary(), &pki, &state);
    let addr = server.addr.to_string();

    let channel = gateway::client::connect(&addr, &pki.client("agency/hrss"))
        .await
        .unwrap();
    let header = hrss_header();
    let batches: Vec<proto::PushBatch> = (0..BATCHES)
        .map(|b| proto::PushBatch {
            batch_id: format!("crash-{b}"),
            format: proto::NativeFormat::CsvGbk as i32,
            header: header.clone(),
            rows: synthetic_hrss_rows(b * ROWS_PER_BATCH, ROWS_PER_BATCH),
            first_row: b * ROWS_PER_BATCH + 1,
        })
        .collect();
    // All batches are offered at once, so several are in flight when the kill lands.
    let mut receipts = AgencyIngestClient::new(channel)
        .push(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Ok(Some(r)) = receipts.message().await {
        assert_eq!(r.outcome, proto::BatchOutcome::Committed as i32, "{r:?}");
        assert_eq!(r.accepted, ROWS_PER_BATCH, "{:?}", r.rejections);
        acked.push(r.batch_id);
        if acked.len() == KILL_AFTER_ACKS {
            server.kill_9();
            break;
        }
    }
    assert_eq!(
        acked.len(),
        KILL_AFTER_ACKS,
        "the server acknowledged too few batches"
    );

    // Inspect the store as the crash left it.
    let mut durable_rows = 0;
    {
        let ids: Vec<String> = (0..BATCHES).map(|b| format!("crash-{b}")).collect();
        for (id, n) in ids.iter().zip(state.records_of_batches("hrss", &ids)) {
            if acked.contains(id) {
                assert_eq!(n, ROWS_PER_BATCH, "acknowledged batch {id} lost rows");
            } else {
                assert!(
                    n == 0 || n == ROWS_PER_BATCH,
                    "batch {id} is half there: {n} rows"
                );
            }
            durable_rows += n;
        }
    }

    // Restart: everything durable is served, and acked batches are known duplicates.
    let server = ProcessServer::start(binary(), &pki, &state);
    let addr = server.addr.to_string();
    let union = gateway::client::connect(&addr, &pki.client("union/assistance"))
        .await
        .unwrap();
    let mut pulled = 0u64;
    gateway::client::pull(
        union,
        proto::PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| {
            pulled += 1;
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(pulled, durable_rows);

    let agency = gateway::client::connect(&addr, &pki.client("agency/hrss"))
        .await
        .unwrap();
    let resend = proto::PushBatch {
        batch_id: acked[0].clone(),
        format: proto::NativeFormat::CsvGbk as i32,
        header,
        rows: synthetic_hrss_rows(0, ROWS_PER_BATCH),
        first_row: 1,
    };
    let mut receipts = AgencyIngestClient::new(agency)
        .push(tokio_stream::iter(vec![resend]))
        .await
        .unwrap()
        .into_inner();
    let r = receipts.message().await.unwrap().unwrap();
    assert_eq!(r.outcome, proto::BatchOutcome::Duplicate as i32);
    drop(server);
}
