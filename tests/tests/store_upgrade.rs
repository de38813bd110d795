//! Upgrading keeps the data. A store in the first release's layout (schema
//! version 1, `tests/fixtures/schema/sqlite-v1.sql`) is migrated when today's
//! gateway opens it; its records serve through a pull as they did, a removal
//! made before the upgrade still reaches a consumer that held the record, and
//! its audit log verifies against the signed checkpoint it had (a consistency
//! proof from that size, and the whole export against it). A store whose
//! schema is newer than the gateway knows is refused at start-up.
//!
//! How the old store is filled: the first release's binary is not rebuilt
//! here (its dependency set predates this tree's lockfile). Today's gateway
//! serves the traffic, sealing records and signing the checkpoint with the
//! key file the old store then keeps; its rows are copied into a database
//! created from the first release's DDL in that release's shape: rows
//! overwritten in place (no earlier versions), the subject index inside
//! `gateway.db`, the last audit tile a shorter row, no meta table and no
//! version recorded. What is tested is the layout and its migration; the
//! row encodings are today's.

use crate::audit_support::*;
use gateway::proto::{self, ConsistencyRequest, PullEvent, PullRequest, pull_event::Event};
use gateway::store::sqlite::SCHEMA_VERSION;
use gateway_tests::{
    ServerState, TestPki, TestServer, hrss_header, push_batches, serve_command, shipped_policies,
    synthetic_hrss_row, synthetic_hrss_rows,
};
use rusqlite::{Connection, params};
use std::path::Path;

const V1: &str = include_str!("../fixtures/schema/sqlite-v1.sql");
/// Single-row batches pushed: each is an audit entry, so the log passes a
/// complete tile (256 leaves) and a stored node above it.
const BATCHES: u64 = 270;

async fn pull_from(server: &TestServer, pki: &TestPki, cursor: u64) -> Vec<PullEvent> {
    let mut events = Vec::new();
    gateway::client::pull(
        assistance(server, pki).await,
        PullRequest {
            cursor,
            ..pull_request()
        },
        |e| {
            events.push(e.clone());
            Ok(())
        },
    )
    .await
    .unwrap();
    events
}

fn user_version(data_dir: &Path) -> u32 {
    Connection::open(data_dir.join("gateway.db"))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Writes the store of `from` into `to` in the first release's layout.
fn write_first_release_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let c = Connection::open(to.join("gateway.db")).unwrap();
    c.execute_batch(V1).unwrap();
    c.execute(
        "ATTACH ?1 AS cur",
        params![from.join("gateway.db").to_str().unwrap()],
    )
    .unwrap();
    c.execute(
        "ATTACH ?1 AS idx",
        params![from.join("audit-subjects.db").to_str().unwrap()],
    )
    .unwrap();
    c.execute_batch(
        "INSERT INTO batches SELECT agency, batch_id, content_hash, receipt, committed_ms FROM cur.batches;
         INSERT INTO records (kind, key_hash, seq, person_index, enterprise, changed_at, cancelled,
                              agency, batch_id, sealed)
             SELECT kind, key_hash, seq, person_index, enterprise, changed_at, cancelled,
                    agency, batch_id, sealed FROM cur.records;
         INSERT INTO audit_log SELECT seq, at_ms, actor, action, outcome, kinds, entry FROM cur.audit_log;
         INSERT INTO audit_subjects SELECT subject, seq FROM idx.audit_subjects;
         INSERT INTO audit_tiles SELECT idx, hashes FROM cur.audit_tiles;
         INSERT INTO audit_nodes SELECT level, idx, hash FROM cur.audit_nodes;
         INSERT INTO audit_checkpoints SELECT size, root, note, signed_ms FROM cur.audit_checkpoints;",
    )
    .unwrap();
    // The first release kept the last, incomplete tile as a shorter row.
    let leaves: Vec<(i64, Vec<u8>)> = c
        .prepare("SELECT idx, hash FROM cur.audit_leaves ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!leaves.is_empty(), "the log should end inside a tile");
    let hashes: Vec<u8> = leaves.iter().flat_map(|(_, h)| h.clone()).collect();
    c.execute(
        "INSERT INTO audit_tiles (idx, hashes) VALUES (?1, ?2)",
        params![leaves[0].0, hashes],
    )
    .unwrap();
    c.execute_batch("DETACH cur; DETACH idx;").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_release_store_is_migrated_and_serves_and_verifies_as_before() {
    let pki = pki();
    let written = ServerState::new();
    // More single-row batches than the default burst allows at once.
    let limits = gateway::limits::LimitsConfig {
        batch_burst: BATCHES as u32,
        ..Default::default()
    };
    let server = TestServer::start_with_limits(&pki, &written, limits).await;
    push_hrss_sample(&server, &pki).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let batches: Vec<proto::PushBatch> = (0..BATCHES)
        .map(|b| proto::PushBatch {
            batch_id: format!("upgrade-{b}"),
            format: proto::NativeFormat::CsvGbk as i32,
            header: hrss_header(),
            rows: synthetic_hrss_rows(b, 1),
            first_row: 1,
        })
        .collect();
    let receipts = push_batches(&agency, batches).await;
    assert_eq!(receipts.len() as u64, BATCHES);
    for r in &receipts {
        assert_eq!(r.accepted, 1, "{r:?}");
    }
    // Row 0 cancelled: in the first release's layout only its tombstone is left.
    let cancel = gateway_tests::push_hrss_rows(
        &agency,
        "upgrade-cancel",
        vec![synthetic_hrss_row(0, '3', "20250301120000")],
    )
    .await;
    assert_eq!(cancel.accepted, 1, "{cancel:?}");

    let from_start = pull_from(&server, &pki, 0).await;
    // A consumer that had read every batch (row 0's first version among
    // them) hears of its removal.
    let held = from_start
        .iter()
        .map(|e| e.cursor)
        .max()
        .expect("records delivered");
    let from_cursor = pull_from(&server, &pki, held).await;
    assert!(
        from_cursor
            .iter()
            .any(|e| matches!(e.event, Some(Event::Removed(_)))),
        "the cancel is announced to a consumer that held the record"
    );
    let had = auditor(&server, &pki)
        .await
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let had_cp = open(&had.note, &written);
    assert!(had_cp.size() > 256, "{}", had_cp.size());
    server.stop().await;

    let old = ServerState::new();
    std::fs::copy(written.keys_file(), old.keys_file()).unwrap();
    write_first_release_store(&written.data_dir(), &old.data_dir());
    assert_eq!(
        user_version(&old.data_dir()),
        0,
        "no version recorded in v1"
    );

    // Today's gateway opens it: the migrations run.
    let server = TestServer::start(&pki, &old).await;
    let migrated_to = user_version(&old.data_dir());
    assert_eq!(migrated_to, SCHEMA_VERSION);
    eprintln!("store_upgrade: migrated from schema version 1 to {migrated_to}");

    // Its records serve as they did, at the same cursors.
    assert_eq!(pull_from(&server, &pki, 0).await, from_start);
    assert_eq!(pull_from(&server, &pki, held).await, from_cursor);

    // Its log extends the checkpoint it had: a consistency proof from the
    // old size to a checkpoint signed now...
    let mut client = auditor(&server, &pki).await;
    let now = open(&checkpoint(&mut client).await.note, &old);
    assert!(now.size() > had_cp.size(), "the pulls above were audited");
    let proof = client
        .prove_consistency(ConsistencyRequest {
            from_size: had_cp.size(),
            to_size: now.size(),
        })
        .await
        .unwrap()
        .into_inner();
    tlog::verify_consistency(
        had_cp.size(),
        now.size(),
        had_cp.root(),
        now.root(),
        &hashes(&proof.hashes),
    )
    .unwrap();
    // ...and every entry, exported and checked offline against it.
    let dir = tempfile::tempdir().unwrap();
    let export = export(&server, &pki, dir.path(), "audit.jsonl").await;
    let verified = verify_file(&export, &old, Some(&had.note)).unwrap();
    assert_eq!(verified.extends, Some(had_cp.size()));
    server.stop().await;
}

#[tokio::test]
async fn a_store_with_a_newer_schema_is_refused_at_start_up() {
    let pki = pki();
    let state = ServerState::new();
    drop(gateway::store::sqlite::SqliteStore::open(&state.data_dir()).unwrap());
    let newer = SCHEMA_VERSION + 1;
    Connection::open(state.data_dir().join("gateway.db"))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = serve_command(
        Path::new(env!("CARGO_BIN_EXE_gateway-under-test")),
        &pki,
        &state,
        &shipped_policies(),
        addr,
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it served: {stderr}");
    assert!(
        stderr.contains(&format!("schema is version {newer}"))
            && stderr.contains(&format!("up to {SCHEMA_VERSION}")),
        "{stderr}"
    );
    // Left as it was.
    assert_eq!(user_version(&state.data_dir()), newer);
}
