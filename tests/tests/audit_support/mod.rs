//! Helpers shared by the audit-log tests: a server with agency, consumer and
//! auditor identities, typical traffic, exports, the pinned public key, and
//! direct access to the store at rest to play the attacker.
#![allow(dead_code)]

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::{self, PullRequest, audit_client::AuditClient};
use gateway_tests::{ServerState, TRUST_DOMAIN, TestPki, TestServer, sample};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// 马伟红: four accepted social-insurance rows in the hrss sample.
pub const PERSON: &str = "340207197607111133";

pub fn pki() -> TestPki {
    let mut pki = TestPki::new();
    for id in [
        "agency/hrss",
        "union/assistance",
        "union/rights",
        "auditor/compliance",
    ] {
        pki.issue(id);
    }
    pki
}

pub async fn auditor(server: &TestServer, pki: &TestPki) -> AuditClient<Channel> {
    AuditClient::new(
        server
            .connect(&pki.client("auditor/compliance"))
            .await
            .unwrap(),
    )
}

/// The subject report on the person with this identity number.
pub async fn report_on(
    client: &mut AuditClient<Channel>,
    id_number: &str,
) -> proto::SubjectReportResponse {
    client
        .subject_report(proto::SubjectReportRequest {
            id_number: id_number.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The log's entries of one action, decoded from their canonical bytes, as
/// the auditor's query returns them.
pub async fn entries_of(
    server: &TestServer,
    pki: &TestPki,
    action: &str,
) -> Vec<gateway::audit::CanonicalEntry> {
    auditor(server, pki)
        .await
        .query(proto::AuditQuery::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .iter()
        .map(|e| gateway::audit::CanonicalEntry::decode(&e.canonical).unwrap())
        .filter(|e| e.action == action)
        .collect()
}

/// A push, a pull and a denial.
pub async fn traffic(server: &TestServer, pki: &TestPki) {
    push_hrss_sample(server, pki).await;
    pull(assistance(server, pki).await, pull_request(), |_| Ok(()))
        .await
        .unwrap();
    deny(server, pki).await;
}

/// The hrss sample, pushed as agency/hrss.
pub async fn push_hrss_sample(server: &TestServer, pki: &TestPki) {
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
}

/// A connection as the union's assistance department.
pub async fn assistance(server: &TestServer, pki: &TestPki) -> Channel {
    server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap()
}

pub fn pull_request() -> PullRequest {
    PullRequest {
        kinds: vec!["social_insurance".into()],
        purpose: "hardship_screening".into(),
        ..Default::default()
    }
}

/// A denied call (a purpose outside the consumer's policy). Only the first
/// refusal of a window is an entry of its own (repeats are counted into one
/// summary, see `refusal_floods`): for one entry per call, see [`one_entry`].
pub async fn deny(server: &TestServer, pki: &TestPki) {
    let request = PullRequest {
        purpose: "marketing".into(),
        ..pull_request()
    };
    let err = pull(assistance(server, pki).await, request, |_| Ok(()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").to_lowercase().contains("purpose"),
        "{err:#}"
    );
}

/// One audited call that releases nothing (a look-up of a person nobody
/// pushed): exactly one more audit entry each time.
pub async fn one_entry(server: &TestServer, pki: &TestPki) {
    let answer = gateway::proto::union_exchange_client::UnionExchangeClient::new(
        assistance(server, pki).await,
    )
    .lookup(gateway::proto::LookupRequest {
        id_number: gateway_tests::valid_identity_number("340202", "19900101", 7),
        case_number: "KN-2026-0001".into(),
        purpose: "hardship_application".into(),
    })
    .await
    .unwrap()
    .into_inner();
    assert!(answer.records.is_empty());
}

/// The public key an officer pins, derived from the gateway's key file.
pub fn verifier(state: &ServerState) -> tlog::Verifier {
    let keys = gateway::keys::Keys::load(&state.keys_file(), false).unwrap();
    let vkey = gateway::audit::log::vkey(TRUST_DOMAIN, keys.audit_log_seed()).unwrap();
    tlog::Verifier::parse(&vkey).unwrap()
}

pub async fn export(server: &TestServer, pki: &TestPki, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let channel = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    gateway_cli::cmd::audit::export_to_file(channel, &path)
        .await
        .unwrap();
    path
}

pub fn verify_file(
    path: &Path,
    state: &ServerState,
    earlier: Option<&str>,
) -> Result<gateway::audit::export::Verified, gateway::audit::export::VerifyFailure> {
    let file = std::fs::File::open(path).unwrap();
    gateway::audit::export::verify(std::io::BufReader::new(file), &verifier(state), earlier)
}

/// The SQLite store's file, for tests that alter it at rest.
pub fn db(state: &ServerState) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(state.data_dir().join("gateway.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

/// Runs `sql` (values written into it) on the state's store at rest,
/// whichever the backend; the first column of the first row, as text.
pub fn sql(state: &ServerState, sql: &str) -> Option<String> {
    match state.database() {
        Some(database) => database
            .query_text(sql)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()),
        None => {
            let c = db(state);
            let mut stmt = c.prepare(sql).unwrap();
            let mut rows = stmt.query([]).unwrap();
            let row = rows.next().unwrap()?;
            match row.get_ref(0).ok()? {
                rusqlite::types::ValueRef::Integer(i) => Some(i.to_string()),
                rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            }
        }
    }
}

/// Entry `seq`'s canonical bytes as stored.
pub fn stored_entry(state: &ServerState, seq: u64) -> Vec<u8> {
    let hex_of = match state.database() {
        Some(_) => "encode(entry, 'hex')",
        None => "hex(entry)",
    };
    let text = sql(
        state,
        &format!("SELECT {hex_of} FROM audit_log WHERE seq = {seq}"),
    )
    .unwrap();
    hex::decode(text.to_lowercase()).unwrap()
}

/// Replaces entry `seq`'s stored bytes (as an attacker with the database would).
pub fn overwrite_entry(state: &ServerState, seq: u64, bytes: &[u8]) {
    let literal = match state.database() {
        Some(_) => format!("'\\x{}'::bytea", hex::encode(bytes)),
        None => format!("X'{}'", hex::encode(bytes)),
    };
    sql(
        state,
        &format!("UPDATE audit_log SET entry = {literal} WHERE seq = {seq}"),
    );
}

/// The seq of the first entry with this action.
pub fn seq_of(state: &ServerState, action: &str) -> u64 {
    sql(
        state,
        &format!("SELECT MIN(seq) FROM audit_log WHERE action = '{action}'"),
    )
    .unwrap()
    .parse()
    .unwrap()
}

pub async fn checkpoint(client: &mut AuditClient<Channel>) -> proto::SignedCheckpoint {
    client
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Opens a signed checkpoint with the pinned key.
pub fn open(note: &str, state: &ServerState) -> tlog::Checkpoint {
    tlog::Checkpoint::open(note.as_bytes(), &[verifier(state)])
        .unwrap()
        .0
}

pub fn hashes(raw: &[Vec<u8>]) -> Vec<tlog::Hash> {
    raw.iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect()
}

/// Highest seq in the stored log.
pub fn log_size(state: &ServerState) -> u64 {
    sql(state, "SELECT COALESCE(MAX(seq), 0) FROM audit_log")
        .unwrap()
        .parse()
        .unwrap()
}
