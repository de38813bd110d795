//! Rotating a key (a new key made active in the key file, the old one kept)
//! loses nothing: records stored before stay readable (encryption key), findable
//! and superseded by re-pushes (index key), consumers' pseudonyms and each
//! person's audit chain stay as they were (pseudonym key); the restart records
//! the rotation in the audit log with key ids only.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::audit_client::AuditClient;
use gateway::proto::union_exchange_client::UnionExchangeClient;
use gateway::proto::{LookupRequest, PullRequest, SubjectReportRequest, SubjectReportResponse};
use gateway_tests::{ProcessServer, ServerState, TestPki, TestServer, audit_entries, sample};
use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn a_rotated_encryption_key_is_recorded_and_old_data_stays_readable() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let pushed = push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    server.stop().await;

    let keys = std::fs::read_to_string(state.keys_file()).unwrap();
    let rotated = keys.replace(
        "active_encryption = \"enc-1\"",
        "active_encryption = \"enc-2\"",
    ) + "\n[[encryption]]\nid = \"enc-2\"\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";
    assert_ne!(keys, rotated);
    std::fs::write(state.keys_file(), rotated).unwrap();

    let server = TestServer::start(&pki, &state).await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut n = 0u64;
    pull(
        union,
        PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| {
            n += 1;
            Ok(())
        },
    )
    .await
    .unwrap();
    assert!(n > 0 && n <= pushed.accepted);
    let rotations = audit_entries(&server, &pki, "key_rotated").await;
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    assert!(
        rotations[0].details_json.contains("enc-1") && rotations[0].details_json.contains("enc-2")
    );
    assert!(
        !rotations[0].details_json.contains("AAECAwQF"),
        "key material in the audit log"
    );
    server.stop().await;
}

/// 马伟红: four accepted social-insurance rows in the hrss sample.
const PERSON: &str = "340207197607111133";

/// What a union consumer and an auditor see of the stored data: the
/// consumer's pull feed (record ids and person pseudonyms), one person's
/// look-up answer, and that person's subject report.
#[derive(Debug, PartialEq)]
struct Seen {
    /// (record_id, person_id) of each delivered record, sorted.
    feed: Vec<(String, String)>,
    lookup_subject: String,
    lookup_records: usize,
}

async fn pull_feed(server: &TestServer, pki: &TestPki) -> Vec<(String, String)> {
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut feed = Vec::new();
    pull(
        union,
        PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |e| {
            if let Some(gateway::proto::pull_event::Event::Record(r)) = &e.event {
                let person = r.fields.iter().find(|f| f.name == "person_id").unwrap();
                feed.push((r.record_id.clone(), person.value.clone()));
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    feed.sort();
    feed
}

async fn look_up(server: &TestServer, pki: &TestPki, case: &str) -> (String, usize) {
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let answer = UnionExchangeClient::new(union)
        .lookup(LookupRequest {
            id_number: PERSON.into(),
            case_number: case.into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.subject, answer.records.len())
}

async fn seen(server: &TestServer, pki: &TestPki, case: &str) -> Seen {
    let (lookup_subject, lookup_records) = look_up(server, pki, case).await;
    Seen {
        feed: pull_feed(server, pki).await,
        lookup_subject,
        lookup_records,
    }
}

async fn subject_report(server: &TestServer, pki: &TestPki) -> SubjectReportResponse {
    let auditor = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    AuditClient::new(auditor)
        .subject_report(SubjectReportRequest {
            id_number: PERSON.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Adds a key of `kind` (`index` or `pseudonym`) to the key file and makes it
/// the active one; the old key stays in the file.
fn rotate(state: &ServerState, kind: &str, old: &str, new: &str) {
    let keys = std::fs::read_to_string(state.keys_file()).unwrap();
    let rotated = keys.replace(
        &format!("active_{kind} = \"{old}\""),
        &format!("active_{kind} = \"{new}\""),
    ) + &format!(
        "\n[[{kind}]]\nid = \"{new}\"\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n"
    );
    assert_ne!(keys, rotated);
    std::fs::write(state.keys_file(), rotated).unwrap();
}

/// Push, pull, look up; rotate the key of `kind`; restart: everything stored
/// before is found as before, under the same pseudonyms, a re-push supersedes
/// instead of duplicating, and the person's audit chain is whole.
async fn rotation_loses_nothing(kind: &str, old: &str, new: &str) {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    let before = seen(&server, &pki, "KN-2026-0001").await;
    assert_eq!(before.lookup_records, 4, "{before:?}");
    assert!(!before.feed.is_empty());
    let report_before = subject_report(&server, &pki).await;
    assert!(report_before.chain_complete, "{:?}", report_before.problems);
    let last_before = report_before.items.last().unwrap().seq;
    server.stop().await;

    rotate(&state, kind, old, new);

    let server = TestServer::start(&pki, &state).await;
    let after = seen(&server, &pki, "KN-2026-0002").await;
    assert_eq!(after, before, "after rotating the {kind} key");

    // The same rows again, as new batches: they supersede what is stored.
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let opts = PushOptions {
        batch_prefix: Some("hrss-again".into()),
        ..Default::default()
    };
    let again = push_file(agency, &sample("hrss.csv"), &opts, |_| {})
        .await
        .unwrap();
    assert_eq!(again.duplicates, 0, "pushed as new batches");
    let repushed = seen(&server, &pki, "KN-2026-0003").await;
    assert_eq!(repushed, before, "a re-push after rotating the {kind} key");

    // One chain for the person, across the rotation.
    let report = subject_report(&server, &pki).await;
    assert!(report.chain_complete, "{:?}", report.problems);
    assert_eq!(report.subject, report_before.subject);
    let cases: Vec<&str> = report
        .items
        .iter()
        .filter(|i| i.action == "person_looked_up")
        .map(|i| i.case_number.as_str())
        .collect();
    assert_eq!(cases, ["KN-2026-0001", "KN-2026-0002", "KN-2026-0003"]);
    assert!(report.items.iter().any(|i| i.seq <= last_before));
    assert!(report.items.iter().any(|i| i.seq > last_before));

    let rotations = audit_entries(&server, &pki, "key_rotated").await;
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    let details = &rotations[0].details_json;
    assert!(
        details.contains(kind) && details.contains(old) && details.contains(new),
        "{details}"
    );
    assert!(
        !details.contains("AAECAwQF"),
        "key material in the audit log"
    );
    // The start-up re-index is recorded (only for a new index key).
    let reindexed = audit_entries(&server, &pki, "records_reindexed").await;
    if kind == "index" {
        assert_eq!(reindexed.len(), 1, "{reindexed:?}");
        assert!(reindexed[0].details_json.contains(new), "{reindexed:?}");
    } else {
        assert!(reindexed.is_empty(), "{reindexed:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_index_key_keeps_every_record_findable_and_superseded() {
    rotation_loses_nothing("index", "idx-1", "idx-2").await;
}

#[tokio::test]
async fn a_rotated_pseudonym_key_keeps_every_pseudonym_and_the_audit_chain() {
    rotation_loses_nothing("pseudonym", "psn-1", "psn-2").await;
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

/// `gateway keys …` on the state's store and key file, as an operator runs it.
fn keys_command(state: &ServerState, args: &[&str]) -> std::process::Output {
    keys_command_in(state, &state.data_dir(), args)
}

/// The same with another data directory: on a shared database, an operator
/// on another machine.
fn keys_command_in(state: &ServerState, data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("keys")
        .args(args)
        .env("GATEWAY_DATA_DIR", data_dir)
        .envs(state.store_env())
        .env("GATEWAY_KEYS_FILE", state.keys_file())
        .env("GATEWAY_POLICIES_DIR", gateway_tests::shipped_policies())
        .env("GATEWAY_DEV_MODE", "false")
        .env("GATEWAY_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_operator_re_pseudonymises_one_consumer_deliberately() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    let before = seen(&server, &pki, "KN-2026-0001").await;
    let report_before = subject_report(&server, &pki).await;
    server.stop().await;
    rotate(&state, "pseudonym", "psn-1", "psn-2");

    // The auditors' domain never moves: the audit chain must not split.
    let refused = keys_command(&state, &["repseudonymise", "--consumer", "auditors"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("never re-pseudonymised"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let done = keys_command(&state, &["repseudonymise", "--consumer", "assistance"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let again = keys_command(&state, &["repseudonymise", "--consumer", "assistance"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));

    let server = TestServer::start(&pki, &state).await;
    let after = seen(&server, &pki, "KN-2026-0002").await;
    assert_eq!(after.feed.len(), before.feed.len());
    assert_eq!(after.lookup_records, before.lookup_records);
    let old_ids: std::collections::BTreeSet<&String> =
        before.feed.iter().flat_map(|(r, p)| [r, p]).collect();
    assert!(
        after
            .feed
            .iter()
            .all(|(r, p)| !old_ids.contains(r) && !old_ids.contains(p)),
        "every pseudonym of the consumer changed"
    );
    assert!(after.feed.iter().any(|(_, p)| *p == after.lookup_subject));
    assert_ne!(after.lookup_subject, before.lookup_subject);

    let report = subject_report(&server, &pki).await;
    assert!(report.chain_complete, "{:?}", report.problems);
    assert_eq!(report.subject, report_before.subject);
    assert!(report.items.len() > report_before.items.len());
    let rebound = audit_entries(&server, &pki, "consumer_repseudonymised").await;
    assert_eq!(rebound.len(), 1, "{rebound:?}");
    for part in ["assistance", "psn-1", "psn-2"] {
        assert!(rebound[0].details_json.contains(part), "{rebound:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reindex_runs_on_a_stopped_gateways_store_only() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = ProcessServer::start(binary(), &pki, &state);
    let agency = gateway::client::connect(&server.addr.to_string(), &pki.client("agency/hrss"))
        .await
        .unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    rotate(&state, "index", "idx-1", "idx-2");
    let busy = keys_command(&state, &["reindex"]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("running gateway"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    if state.database().is_some() {
        // From another machine (another data directory), only the shared
        // database can say a replica serves from it.
        let elsewhere = tempfile::tempdir().unwrap();
        let busy = keys_command_in(&state, elsewhere.path(), &["reindex"]);
        assert!(!busy.status.success());
        assert!(
            String::from_utf8_lossy(&busy.stderr).contains("replicas are serving"),
            "{}",
            String::from_utf8_lossy(&busy.stderr)
        );
    }
    server.kill_9();

    let done = keys_command(&state, &["reindex"]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success() && out.contains("from index key idx-1 to idx-2"),
        "{out}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let again = keys_command(&state, &["reindex"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));

    let server = TestServer::start(&pki, &state).await;
    assert_eq!(look_up(&server, &pki, "KN-2026-0001").await.1, 4);
    let started = audit_entries(&server, &pki, "records_reindex_started").await;
    assert_eq!(started.len(), 1, "{started:?}");
    server.stop().await;
}

/// A record's earlier versions move with it when the index key rotates: a
/// consumer that held an early version still hears of its removal.
#[tokio::test]
async fn a_rotated_index_key_keeps_each_records_history() {
    use gateway::proto::{pull_event::Event, union_exchange_client::UnionExchangeClient};
    use gateway_tests::{push_hrss_rows, synthetic_hrss_row};
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let pull_from = |server: &TestServer, pki: &TestPki, cursor: u64| {
        let (server, pki) = (server.addr, pki.client("union/assistance"));
        async move {
            let channel = gateway::client::connect(&server.to_string(), &pki)
                .await
                .unwrap();
            let mut s = UnionExchangeClient::new(channel)
                .pull(PullRequest {
                    kinds: vec!["social_insurance".into()],
                    purpose: "hardship_screening".into(),
                    cursor,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut events = Vec::new();
            while let Some(e) = s.message().await.unwrap() {
                events.push(e);
            }
            events
        }
    };
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let v1 = vec![synthetic_hrss_row(1, '1', "20250101120000")];
    push_hrss_rows(&agency, "v1", v1).await;
    let held = pull_from(&server, &pki, 0).await;
    assert_eq!(held.len(), 1);
    let v2 = vec![synthetic_hrss_row(1, '2', "20250201120000")];
    push_hrss_rows(&agency, "v2", v2).await;
    server.stop().await;

    rotate(&state, "index", "idx-1", "idx-2");
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let cancel = vec![synthetic_hrss_row(1, '3', "20250301120000")];
    push_hrss_rows(&agency, "cancel", cancel).await;
    let next = pull_from(&server, &pki, held[0].cursor).await;
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(
        matches!(next[0].event, Some(Event::Removed(_))),
        "the removal of a record held before the rotation: {next:?}"
    );
    server.stop().await;
}
