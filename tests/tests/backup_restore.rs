//! Backup and restore of the embedded store, with the real `gateway serve`,
//! `gateway backup`, `gateway restore` and `gateway audit verify-store`
//! processes. The backup is taken while an agency keeps pushing; restored
//! into a new data directory, its audit log verifies offline against a
//! checkpoint saved before the backup, and is reported as rolled back
//! against one signed after it; a gateway started on the restored store
//! serves pulls of exactly the batches the backup holds.

use crate::audit_support::*;
use gateway::proto::{self, agency_ingest_client::AgencyIngestClient, pull_event::Event};
use gateway::store::sqlite::SqliteStore;
use gateway_tests::{ProcessServer, ServerState, hrss_header, synthetic_hrss_rows};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ROWS: u64 = 100;

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

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pushes batch `b` (rows `b * ROWS ..`), repeating it while the agency's
/// batch rate refuses it.
async fn push_batch(channel: &tonic::transport::Channel, b: u64) {
    loop {
        let batch = proto::PushBatch {
            batch_id: format!("live-{b}"),
            format: proto::NativeFormat::CsvGbk as i32,
            header: hrss_header(),
            rows: synthetic_hrss_rows(b * ROWS, ROWS),
            first_row: 1,
        };
        let pushed = AgencyIngestClient::new(channel.clone())
            .push(tokio_stream::iter(vec![batch]))
            .await;
        let receipt = match pushed {
            Ok(stream) => stream.into_inner().message().await,
            Err(e) => Err(e),
        };
        match receipt {
            Ok(Some(r)) => {
                assert_eq!(r.accepted, ROWS, "{r:?}");
                return;
            }
            Ok(None) => panic!("no receipt for batch {b}"),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("batch {b}: {s}"),
        }
    }
}

async fn signed_checkpoint(server: &ProcessServer, pki: &gateway_tests::TestPki) -> String {
    let channel =
        gateway::client::connect(&server.addr.to_string(), &pki.client("auditor/compliance"))
            .await
            .unwrap();
    proto::audit_client::AuditClient::new(channel)
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .note
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_pushes_restores_verifies_and_serves() {
    let pki = pki();
    let state = ServerState::new();
    let binary = Path::new(env!("CARGO_BIN_EXE_gateway-under-test"));
    let server = ProcessServer::start(binary, &pki, &state);
    let agency = gateway::client::connect(&server.addr.to_string(), &pki.client("agency/hrss"))
        .await
        .unwrap();
    for b in 0..3 {
        push_batch(&agency, b).await;
    }
    let work = tempfile::tempdir().unwrap();
    let before = work.path().join("before.checkpoint");
    std::fs::write(&before, signed_checkpoint(&server, &pki).await).unwrap();
    let before_size = open(&std::fs::read_to_string(&before).unwrap(), &state).size();

    // An agency pushing without pause, acknowledged batch by batch.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (acked, stop, agency) = (acked.clone(), stop.clone(), agency.clone());
        tokio::spawn(async move {
            let mut b = 3;
            while !stop.load(Ordering::SeqCst) {
                push_batch(&agency, b).await;
                acked.lock().unwrap().push(b);
                b += 1;
            }
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    while acked_count() < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backup = work.path().join("gateway.backup");
    let acked_before_backup = acked.lock().unwrap().clone();
    let out = {
        let (data_dir, backup) = (state.data_dir(), backup.clone());
        tokio::task::spawn_blocking(move || {
            gateway(&[
                "backup",
                "--out",
                path(&backup),
                "--data-dir",
                path(&data_dir),
            ])
        })
        .await
        .unwrap()
    };
    let acked_during = acked_count() - acked_before_backup.len();
    assert!(out.status.success(), "{}", text(&out));
    // The backup held no push up: batches were acknowledged while it ran.
    assert!(
        acked_during > 0,
        "no push was acknowledged during the backup"
    );
    assert!(text(&out).contains("not in the backup"), "{}", text(&out));
    let after_backup = acked_count();
    // Pushes go on after it, and the log grows past what it holds.
    while acked_count() < after_backup + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    pusher.await.unwrap();
    let after = work.path().join("after.checkpoint");
    std::fs::write(&after, signed_checkpoint(&server, &pki).await).unwrap();
    let after_size = open(&std::fs::read_to_string(&after).unwrap(), &state).size();
    let acked_all = acked.lock().unwrap().clone();
    assert_eq!(
        server
            .terminate(Duration::from_secs(30))
            .map(|s| s.success()),
        Some(true)
    );
    eprintln!(
        "backup_restore: {} batches acknowledged while the backup ran, {} in all",
        acked_during,
        acked_all.len()
    );

    let summary = gateway::store::sqlite::backup::inspect(&backup).unwrap();
    assert!(summary.audit_entries >= before_size, "{summary:?}");
    assert!(
        after_size > summary.audit_entries,
        "{after_size} {summary:?}"
    );

    // Restored into a new directory; a second restore there is refused.
    let restored = ServerState::new();
    std::fs::copy(state.keys_file(), restored.keys_file()).unwrap();
    let data = restored.data_dir();
    let restore = || {
        gateway(&[
            "restore",
            "--from",
            path(&backup),
            "--data-dir",
            path(&data),
        ])
    };
    let out = restore();
    assert!(out.status.success(), "{}", text(&out));
    let out = restore();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("holds a store already"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("audit-log.vkey")).unwrap(),
        std::fs::read_to_string(state.data_dir().join("audit-log.vkey")).unwrap(),
        "the restore puts the log's public key back"
    );

    // The officer's pinned key, kept apart from the data.
    let pinned = work.path().join("pinned.vkey");
    std::fs::copy(state.data_dir().join("audit-log.vkey"), &pinned).unwrap();
    let verify = |checkpoint: &Path| {
        gateway(&[
            "audit",
            "verify-store",
            "--data-dir",
            path(&data),
            "--key",
            path(&pinned),
            "--checkpoint",
            path(checkpoint),
        ])
    };
    let out = verify(&before);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "extends the given checkpoint of size {before_size}"
        )),
        "{}",
        text(&out)
    );
    let out = verify(&after);
    assert!(!out.status.success(), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("ROLLED BACK")
            && message.contains(&format!("covers {after_size} entries"))
            && message.contains(&format!("holds only {}", summary.audit_entries)),
        "{message}"
    );

    // Exactly the batches the backup holds: each whole or absent, every one
    // acknowledged before it started there, and the last ones not.
    let mut held = Vec::new();
    {
        let store = SqliteStore::open(&data).unwrap();
        for b in (0..3).chain(acked_all.iter().copied()) {
            match store
                .records_of_batch("hrss", &format!("live-{b}"))
                .unwrap()
            {
                0 => {}
                ROWS => held.push(b),
                n => panic!("batch {b} is half there: {n} rows"),
            }
        }
    }
    for b in (0..3).chain(acked_before_backup.iter().copied()) {
        assert!(
            held.contains(&b),
            "batch {b} was acknowledged before the backup"
        );
    }
    for b in &acked_all[after_backup..] {
        assert!(!held.contains(b), "batch {b} was pushed after the backup");
    }

    let server = ProcessServer::start(binary, &pki, &restored);
    let union = gateway::client::connect(&server.addr.to_string(), &pki.client("union/assistance"))
        .await
        .unwrap();
    let mut records = 0u64;
    gateway::client::pull(union, pull_request(), |e| {
        if matches!(e.event, Some(Event::Record(_))) {
            records += 1;
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(records, held.len() as u64 * ROWS);
}
