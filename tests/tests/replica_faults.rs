//! Faults under real `gateway serve` processes sharing one PostgreSQL
//! database (in the `e2e_postgres` suite only: on SQLite a store belongs to
//! one process). A replica killed with SIGKILL mid-push loses no
//! acknowledged row, and its clients' re-sends to another replica duplicate
//! none; the database's connections killed under a serving replica, or the
//! database cut off altogether, give callers UNAVAILABLE promptly (never a
//! hang), health NOT_SERVING while it lasts, and service back by itself.

use gateway::client::{ClientTls, RowReader, connect, detect_format, native};
use gateway::proto::{
    BatchOutcome, BatchReceipt, PullRequest, PushBatch, agency_ingest_client::AgencyIngestClient,
    audit_client::AuditClient, pull_event::Event, union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{
    ProcessServer, ServerState, TestPki, TestServer, hrss_header, push_batches, sample,
    synthetic_hrss_rows,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SAMPLES: [(&str, &str); 6] = [
    ("hrss", "hrss.csv"),
    ("tax", "tax.csv"),
    ("public_security", "public_security.jsonl"),
    ("housing", "housing.jsonl"),
    ("market_regulation", "market_regulation.jsonl"),
    ("work_safety", "work_safety.jsonl"),
];

/// A call that takes longer than this has hung, as far as its caller cares.
const PROMPT: Duration = Duration::from_secs(3);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

fn pki() -> TestPki {
    let mut pki = TestPki::new();
    for (agency, _) in SAMPLES {
        pki.issue(&format!("agency/{agency}"));
    }
    pki.issue("union/assistance");
    pki.issue("auditor/compliance");
    pki
}

async fn channel(server: &ProcessServer, tls: &ClientTls) -> anyhow::Result<Channel> {
    connect(&server.addr.to_string(), tls).await
}

fn pull_request() -> PullRequest {
    PullRequest {
        kinds: vec!["social_insurance".into()],
        purpose: "hardship_screening".into(),
        ..Default::default()
    }
}

/// The whole feed through `channel`: (cursor, record id) in order.
async fn feed(channel: Channel) -> Result<Vec<(u64, String)>, tonic::Status> {
    let mut stream = UnionExchangeClient::new(channel)
        .pull(pull_request())
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await? {
        let id = match e.event.as_ref().unwrap() {
            Event::Record(r) => r.record_id.clone(),
            Event::Removed(r) => r.record_id.clone(),
        };
        out.push((e.cursor, id));
    }
    Ok(out)
}

/// A sample export cut into batches of `rows` rows, with ids `<agency>-s<n>`.
fn sample_batches(agency: &str, file: &str, rows: usize) -> Vec<PushBatch> {
    let path = sample(file);
    let format = detect_format(&path).unwrap();
    let mut reader = RowReader::new(std::fs::File::open(&path).unwrap(), format.is_csv());
    let header = if format.is_csv() {
        reader.next_row().unwrap().unwrap()
    } else {
        Vec::new()
    };
    let mut all = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        all.push(row);
    }
    all.chunks(rows)
        .enumerate()
        .map(|(n, chunk)| PushBatch {
            batch_id: format!("{agency}-s{n}"),
            format: native(format) as i32,
            header: header.clone(),
            rows: chunk.to_vec(),
            first_row: (n * rows + 1) as u64,
        })
        .collect()
}

/// What one agency's client got: a receipt per batch id, and the batches it
/// re-sent after its replica failed.
#[derive(Default)]
struct Pushed {
    receipts: BTreeMap<String, BatchReceipt>,
    resent: BTreeSet<String>,
}

/// Pushes `batches` in one stream to the first replica of `replicas`; when
/// that stream fails, re-sends every batch without a receipt to the next,
/// with the same batch ids. `receipted` counts the receipts as they arrive.
async fn push_with_failover(
    replicas: Vec<SocketAddr>,
    tls: ClientTls,
    batches: Vec<PushBatch>,
    receipted: Arc<AtomicUsize>,
) -> Pushed {
    let mut pushed = Pushed::default();
    for (i, addr) in replicas.iter().enumerate() {
        let remaining: Vec<PushBatch> = batches
            .iter()
            .filter(|b| !pushed.receipts.contains_key(&b.batch_id))
            .cloned()
            .collect();
        if remaining.is_empty() {
            break;
        }
        if i > 0 {
            pushed
                .resent
                .extend(remaining.iter().map(|b| b.batch_id.clone()));
        }
        let Ok(channel) = connect(&addr.to_string(), &tls).await else {
            continue;
        };
        let Ok(response) = AgencyIngestClient::new(channel)
            .push(tokio_stream::iter(remaining))
            .await
        else {
            continue;
        };
        let mut stream = response.into_inner();
        while let Ok(Some(receipt)) = stream.message().await {
            receipted.fetch_add(1, Ordering::SeqCst);
            pushed.receipts.insert(receipt.batch_id.clone(), receipt);
        }
    }
    pushed
}

/// Batch ids of the log's `batch_pushed` entries that say `committed`, each
/// as often as the log holds it, read by an auditor through `channel`.
async fn committed_in_log(channel: Channel) -> Vec<String> {
    let mut client = AuditClient::new(channel);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .query(gateway::proto::AuditQuery {
                action: "batch_pushed".into(),
                after_seq: after,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for e in &page.entries {
            let entry = gateway::audit::CanonicalEntry::decode(&e.canonical).unwrap();
            if let gateway::audit::Value::Map(m) = entry.details
                && let (Some(gateway::audit::Value::Str(id)), Some(gateway::audit::Value::Str(r))) =
                    (m.get("batch_id"), m.get("result"))
                && r == "committed"
            {
                out.push(id.clone());
            }
        }
        if page.next_after_seq == 0 {
            return out;
        }
        after = page.next_after_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_push_loses_and_duplicates_nothing() {
    let pki = pki();
    let state = ServerState::new();
    // The first replica creates the schema; the others find it.
    let mut victim = Some(ProcessServer::start_replica(
        binary(),
        &pki,
        &state,
        "r0",
        None,
    ));
    let r1 = ProcessServer::start_replica(binary(), &pki, &state, "r1", None);
    let r2 = ProcessServer::start_replica(binary(), &pki, &state, "r2", None);
    let r0_addr = victim.as_ref().unwrap().addr;

    // Every agency pushes its sample in small batches, each through a
    // replica of its own; hrss, through the replica to be killed, also a
    // long run of batches, so that the kill finds it mid-push.
    let hrss_on_victim = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    let mut samples = BTreeMap::new();
    for (n, (agency, file)) in SAMPLES.into_iter().enumerate() {
        let mut batches = sample_batches(agency, file, 4);
        if agency == "hrss" {
            batches.extend((0..40u64).map(|i| PushBatch {
                batch_id: format!("hrss-g{i}"),
                format: gateway::proto::NativeFormat::CsvGbk as i32,
                header: hrss_header(),
                rows: synthetic_hrss_rows(100_000 + i * 100, 100),
                first_row: 1,
            }));
        }
        let order = match n % 3 {
            0 => vec![r0_addr, r1.addr],
            1 => vec![r1.addr, r2.addr],
            _ => vec![r2.addr, r1.addr],
        };
        let counter = if agency == "hrss" {
            hrss_on_victim.clone()
        } else {
            Arc::new(AtomicUsize::new(0))
        };
        let tls = pki.client(&format!("agency/{agency}"));
        samples.insert(
            agency,
            batches
                .iter()
                .filter(|b| b.batch_id.contains("-s"))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let all_ids: Vec<String> = batches.iter().map(|b| b.batch_id.clone()).collect();
        clients.push((
            agency,
            all_ids,
            tokio::spawn(push_with_failover(order, tls, batches, counter)),
        ));
    }

    // SIGKILL once the victim has acknowledged a few of hrss's batches.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hrss_on_victim.load(Ordering::SeqCst) < 8 {
        assert!(Instant::now() < deadline, "the victim acknowledged nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.take().unwrap().kill_9();

    let mut pushed = BTreeMap::new();
    for (agency, ids, client) in clients {
        let got = client.await.unwrap();
        assert_eq!(
            got.receipts.keys().cloned().collect::<BTreeSet<_>>(),
            ids.iter().cloned().collect::<BTreeSet<_>>(),
            "{agency}: a receipt for every batch"
        );
        pushed.insert(agency, (ids, got));
    }
    let (_, hrss) = &pushed["hrss"];
    assert!(
        !hrss.resent.is_empty(),
        "the kill came after hrss's last receipt: nothing was re-sent"
    );

    // The records each sample batch leaves in the store when nothing fails
    // (a sample's later rows may replace records of its earlier batches).
    let reference = ServerState::new();
    let server = TestServer::start(&pki, &reference).await;
    let mut expected_at_rest = BTreeMap::new();
    for (agency, batches) in samples {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        let ids: Vec<String> = batches.iter().map(|b| b.batch_id.clone()).collect();
        push_batches(&channel, batches).await;
        for (id, n) in ids.iter().zip(reference.records_of_batches(agency, &ids)) {
            expected_at_rest.insert(format!("{agency}/{id}"), n);
        }
    }
    server.stop().await;

    // No acknowledged row lost, none duplicated: every receipt says the
    // batch is durable (a re-sent batch the victim had committed comes back
    // as its original receipt), and the store holds each batch's records
    // once: the rows it applied (of its own keys), or as the same pushes
    // without a fault left them.
    for (agency, (ids, got)) in &pushed {
        for id in ids {
            let r = &got.receipts[id];
            let duplicate_ok =
                got.resent.contains(id) && r.outcome == BatchOutcome::Duplicate as i32;
            assert!(
                r.outcome == BatchOutcome::Committed as i32 || duplicate_ok,
                "{agency} {id}: {r:?}"
            );
        }
        let at_rest = state.records_of_batches(agency, ids);
        let expected: Vec<u64> = ids
            .iter()
            .map(|id| match expected_at_rest.get(&format!("{agency}/{id}")) {
                Some(n) => *n,
                None => got.receipts[id].accepted - got.receipts[id].superseded,
            })
            .collect();
        assert_eq!(at_rest, expected, "{agency}: records at rest per batch");
    }

    for (id, r) in &hrss.receipts {
        if id.starts_with("hrss-g") {
            assert_eq!((r.accepted, r.superseded), (100, 0), "{id}");
        }
    }

    // Consumers pulling through either survivor get the same feed, holding
    // every acknowledged social-insurance record once.
    let consumer = pki.client("union/assistance");
    let through_r1 = feed(channel(&r1, &consumer).await.unwrap()).await.unwrap();
    let through_r2 = feed(channel(&r2, &consumer).await.unwrap()).await.unwrap();
    assert_eq!(through_r1, through_r2);
    let ids: BTreeSet<&String> = through_r1.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), through_r1.len(), "a record delivered twice");
    let hrss_rows: u64 = state
        .records_of_batches("hrss", &pushed["hrss"].0)
        .iter()
        .sum();
    assert_eq!(through_r1.len() as u64, hrss_rows);
    assert!(through_r1.windows(2).all(|w| w[0].0 < w[1].0));

    // One audit log: an export from either survivor verifies, and holds the
    // commit of every batch once, the killed replica's among them.
    let out = tempfile::tempdir().unwrap();
    let auditor = pki.client("auditor/compliance");
    for (name, server) in [("r1", &r1), ("r2", &r2)] {
        let path = out.path().join(format!("{name}.jsonl"));
        gateway_cli::cmd::audit::export_to_file(channel(server, &auditor).await.unwrap(), &path)
            .await
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let verifier = crate::audit_support::verifier(&state);
        let verified =
            gateway::audit::export::verify(std::io::BufReader::new(file), &verifier, None)
                .unwrap_or_else(|e| panic!("{name}'s export: {e:?}"));
        let mut committed = committed_in_log(channel(server, &auditor).await.unwrap()).await;
        assert!(verified.size as usize >= committed.len());
        committed.sort();
        let mut expected: Vec<String> = pushed
            .values()
            .flat_map(|(ids, _)| ids.iter().cloned())
            .collect();
        expected.sort();
        assert_eq!(committed, expected, "{name}: each batch committed once");
    }
    let through_victim: Vec<&String> = hrss
        .receipts
        .iter()
        .filter(|(id, r)| !hrss.resent.contains(*id) && r.outcome == BatchOutcome::Committed as i32)
        .map(|(id, _)| id)
        .collect();
    assert!(through_victim.len() >= 8, "{through_victim:?}");
    // The killed replica's commits are the database's: a batch it
    // acknowledged, sent again to a survivor, gets its original receipt.
    let batch = sample_batches("hrss", "hrss.csv", 4).remove(0);
    assert!(
        through_victim.contains(&&batch.batch_id),
        "{through_victim:?}"
    );
    let again = hrss.receipts[&batch.batch_id].clone();
    let receipts = push_batches(
        &channel(&r2, &pki.client("agency/hrss")).await.unwrap(),
        vec![batch],
    )
    .await;
    assert_eq!(receipts[0].outcome, BatchOutcome::Duplicate as i32);
    assert_eq!(
        (receipts[0].accepted, receipts[0].rows_received),
        (again.accepted, again.rows_received)
    );
    let duplicates = hrss
        .receipts
        .values()
        .filter(|r| r.outcome == BatchOutcome::Duplicate as i32)
        .count();
    eprintln!(
        "hrss: {} batches acknowledged by the killed replica, {} re-sent, {duplicates} of them answered DUPLICATE",
        through_victim.len(),
        hrss.resent.len()
    );
}

async fn health(channel: &Channel) -> Result<i32, tonic::Status> {
    let mut client = HealthClient::new(channel.clone());
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(PROMPT, call).await {
        Ok(answer) => Ok(answer?.into_inner().status),
        Err(_) => panic!("a health check hung"),
    }
}

async fn wait_for_health(channel: &Channel, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    while health(channel).await.ok() != Some(want as i32) {
        assert!(Instant::now() < deadline, "health never said {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One push of `rows` fresh hrss rows and one pull, each bounded by
/// [`PROMPT`] (a hang fails the test): the code of the first that fails.
async fn push_and_pull(
    agency: &Channel,
    consumer: &Channel,
    batch_id: &str,
    start: u64,
) -> tonic::Code {
    let batch = PushBatch {
        batch_id: batch_id.into(),
        format: gateway::proto::NativeFormat::CsvGbk as i32,
        header: hrss_header(),
        rows: synthetic_hrss_rows(start, 5),
        first_row: 1,
    };
    let push = async {
        let mut receipts = AgencyIngestClient::new(agency.clone())
            .push(tokio_stream::iter(vec![batch]))
            .await?
            .into_inner();
        match receipts.message().await? {
            Some(r) if r.outcome == BatchOutcome::Committed as i32 => Ok(()),
            other => panic!("{batch_id}: {other:?}"),
        }
    };
    let pushed: Result<(), tonic::Status> = tokio::time::timeout(PROMPT, push)
        .await
        .unwrap_or_else(|_| panic!("push {batch_id} hung"));
    if let Err(status) = pushed {
        return status.code();
    }
    match tokio::time::timeout(PROMPT, feed(consumer.clone())).await {
        Ok(Ok(_)) => tonic::Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => panic!("pull after {batch_id} hung"),
    }
}

/// Until a push and a pull both succeed (within `within`): the codes of
/// the attempts that failed, each of which must be UNAVAILABLE.
async fn until_served(
    agency: &Channel,
    consumer: &Channel,
    tag: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    for attempt in 0u64.. {
        let code = push_and_pull(
            agency,
            consumer,
            &format!("{tag}-{attempt}"),
            500_000 + attempt * 10,
        )
        .await;
        match code {
            tonic::Code::Ok => return started.elapsed(),
            tonic::Code::Unavailable => {}
            other => panic!("{tag}: a call failed with {other:?}, not UNAVAILABLE"),
        }
        assert!(started.elapsed() < within, "{tag}: service did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// One replica on `state`'s database (at `store_url` when given), serving
/// a push and a pull and reporting SERVING: it, and channels to it as
/// agency/hrss and as union/assistance.
async fn serving_replica(
    pki: &TestPki,
    state: &ServerState,
    store_url: Option<&str>,
) -> (ProcessServer, Channel, Channel) {
    let replica = ProcessServer::start_replica(binary(), pki, state, "r0", store_url);
    let agency = channel(&replica, &pki.client("agency/hrss")).await.unwrap();
    let consumer = channel(&replica, &pki.client("union/assistance"))
        .await
        .unwrap();
    assert_eq!(
        push_and_pull(&agency, &consumer, "before", 0).await,
        tonic::Code::Ok
    );
    wait_for_health(&agency, ServingStatus::Serving, Duration::from_secs(5)).await;
    (replica, agency, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_database_connections_give_unavailable_and_service_resumes() {
    let pki = pki();
    let state = ServerState::new();
    let (_replica, agency, consumer) = serving_replica(&pki, &state, None).await;

    // Calls keep coming while every connection of the replica to its
    // database is terminated, several times over.
    let db = state.database().unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name()
    );
    let busy = {
        let (agency, consumer) = (agency.clone(), consumer.clone());
        tokio::spawn(async move {
            let mut codes = Vec::new();
            for i in 0..30u64 {
                codes.push(
                    push_and_pull(&agency, &consumer, &format!("during-{i}"), 1_000 + i * 10).await,
                );
            }
            codes
        })
    };
    let mut terminated = 0;
    for _ in 0..5 {
        let db = state.database().unwrap();
        terminated += tokio::task::block_in_place(|| db.query_text(&terminate)).len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        terminated > 0,
        "no connection of the replica was terminated"
    );
    let codes = busy.await.unwrap();
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, tonic::Code::Ok | tonic::Code::Unavailable)),
        "{codes:?}"
    );
    eprintln!(
        "{terminated} connections terminated; {} of {} push+pull rounds UNAVAILABLE",
        codes
            .iter()
            .filter(|c| **c == tonic::Code::Unavailable)
            .count(),
        codes.len()
    );

    // Service is back by itself, the same process, within a few seconds.
    until_served(&agency, &consumer, "after", Duration::from_secs(5)).await;
    wait_for_health(&agency, ServingStatus::Serving, Duration::from_secs(5)).await;
}

/// A TCP proxy to the database that the test can cut (every connection
/// dropped, new ones closed at once) and restore.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    drop(client);
                    continue;
                }
                let (upstream, mut watch) = (upstream.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { addr, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_gives_unavailable_and_not_serving_until_it_is_back() {
    let pki = pki();
    let state = ServerState::new();
    let url = state.database().unwrap().url().to_string();
    // host:port of the database, between the user@ and the database name.
    let authority_start = url.find('@').unwrap() + 1;
    let authority_end = authority_start + url[authority_start..].find('/').unwrap();
    let upstream = url[authority_start..authority_end].to_string();
    let proxy = Proxy::start(upstream.clone()).await;
    let through_proxy = url.replacen(&upstream, &proxy.addr.to_string(), 1);
    let (replica, agency, consumer) = serving_replica(&pki, &state, Some(&through_proxy)).await;

    proxy.set_cut(true);
    let cut = Instant::now();
    // Every call fails promptly with UNAVAILABLE while the database is out of reach.
    for i in 0..3u64 {
        let started = Instant::now();
        let code = push_and_pull(&agency, &consumer, &format!("cut-{i}"), 1_000 + i * 10).await;
        assert_eq!(code, tonic::Code::Unavailable, "call {i} while cut");
        assert!(started.elapsed() < PROMPT, "{:?}", started.elapsed());
    }
    wait_for_health(&agency, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let not_serving_after = cut.elapsed();
    // And it stays so while the cut lasts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        health(&agency).await.unwrap(),
        ServingStatus::NotServing as i32
    );

    proxy.set_cut(false);
    let restored = Instant::now();
    wait_for_health(&agency, ServingStatus::Serving, Duration::from_secs(5)).await;
    let serving_after = restored.elapsed();
    until_served(&agency, &consumer, "after", Duration::from_secs(5)).await;
    eprintln!(
        "NOT_SERVING {not_serving_after:?} after the cut, SERVING {serving_after:?} after the restore"
    );
    drop(replica);
}
