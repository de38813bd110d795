//! An operator sees what the gateway did without reading its logs. After the
//! six agencies push their sample exports, a consumer pulls, follows and looks
//! up, and some calls and handshakes are refused, the Prometheus scrape
//! endpoint's counters match what was pushed (rows by agency, outcome and
//! rejection code exactly as `labels.jsonl` has them), every label value
//! belongs to a known finite set, and no identifier of the samples (identity
//! number or name, even one typed as a purpose or into a path) appears
//! anywhere in it. The same metrics leave over OTLP: an in-process collector
//! (the generated `MetricsService`) receives them.

use adapters::{Agency, RecordKind};
use bytes::Bytes;
use gateway::client::{PushOptions, push_file};
use gateway::metrics::MetricsOptions;
use gateway::proto::union_exchange_client::UnionExchangeClient;
use gateway::proto::{LookupRequest, PullRequest};
use gateway_tests::{
    ServerState, TestPki, TestServer, hrss_personal_values, labels, raw, sample, shipped_policies,
    tls_handshake,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SAMPLES: [(&str, &str); 6] = [
    ("public_security", "public_security.jsonl"),
    ("hrss", "hrss.csv"),
    ("market_regulation", "market_regulation.jsonl"),
    ("tax", "tax.csv"),
    ("housing", "housing.jsonl"),
    ("work_safety", "work_safety.jsonl"),
];

/// One sample line of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (comments skipped; label values unescaped).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            let end = loop {
                let (i, c) = chars.next().expect("labels end with `}`");
                match c {
                    '}' => break i,
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("a closed label value").1 {
                                '"' => break,
                                '\\' => match chars.next().unwrap().1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            };
            rest = &inner[end + 1..];
        }
        let value = match rest.trim() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a value in {line}")),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The sum of the samples of `name` whose labels include `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Every value each label may take: finite sets the gateway's code and its
/// shipped policies name.
fn known_label_values() -> BTreeMap<&'static str, BTreeSet<String>> {
    let set = |values: &[&str]| {
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<_>>()
    };
    let policies = policies::PolicySet::load_dir(&shipped_policies()).unwrap();
    let consumers: BTreeSet<String> = policies.consumers().map(str::to_string).collect();
    let purposes: BTreeSet<String> = policies
        .consumers()
        .flat_map(|c| policies.get(c).unwrap().purposes.clone())
        .collect();
    let mut services = set(&[gateway::metrics::OTHER]);
    let mut methods = set(&[gateway::metrics::OTHER]);
    for (path, ..) in gateway::authz::ROUTES {
        let (service, method) = path[1..].rsplit_once('/').unwrap();
        services.insert(service.to_string());
        methods.insert(method.to_string());
    }
    // Rejection codes (specification §1.9, and whole batches).
    let codes = set(&[
        "id_checksum",
        "id_birth_date",
        "id_format",
        "uscc_checksum",
        "uscc_format",
        "bad_date",
        "bad_amount",
        "bad_phone",
        "bad_format",
        "out_of_range",
        "unknown_code",
        "missing_field",
        "area_code",
        "field_mismatch",
        "encoding",
        "bad_batch_id",
        "batch_id_holds_identifier",
        "missing_format",
        "no_adapter",
        "format_mismatch",
        "missing_header",
        "missing_column",
        "unknown_column",
        "duplicate_column",
        "bad_header",
        "too_many_rows",
        "row_too_large",
        "header_too_large",
        "batch_id_reused",
    ]);
    // Refusals: the role matrix and identity, the limits, the policies, and
    // failed handshakes.
    let mut reasons = set(&[
        "no_certificate",
        "unparseable_certificate",
        "no_uri_san",
        "ambiguous_uri_san",
        "wrong_trust_domain",
        "unknown_role",
        "unknown_agency",
        "bad_name",
        "not_in_allow_list",
        "role_not_permitted",
        "rate_limited",
        "too_many_concurrent_calls",
        "too_many_push_streams",
        "deadline_exceeded",
        "batch_rate",
        "no_operation",
        "no_policy",
        "purpose_not_allowed",
        "operation_not_granted",
        "kind_not_released",
        "reidentification_rate",
        "invalid_token",
        "field_no_longer_sealed",
        "policy_withdrawn",
        "case_number_holds_identifier",
    ]);
    reasons.extend(
        gateway::tls::RefusalReason::ALL
            .iter()
            .map(|r| r.code().to_string()),
    );
    BTreeMap::from([
        (
            "agency",
            Agency::ALL.iter().map(|a| a.id().into()).collect(),
        ),
        (
            "outcome",
            set(&[
                "applied",
                "superseded",
                "rejected",
                "committed",
                "duplicate",
            ]),
        ),
        ("code", codes),
        ("consumer", consumers),
        ("purpose", purposes),
        (
            "kind",
            RecordKind::ALL.iter().map(|k| k.id().into()).collect(),
        ),
        ("reason", reasons),
        (
            "operation",
            set(&["batch", "pull_page", "lookup", "reidentification"]),
        ),
        (
            "queue",
            set(&["audit_entries", "writes_waiting", "index_backlog"]),
        ),
        ("rpc_system", set(&["grpc"])),
        ("rpc_service", services),
        ("rpc_method", methods),
        (
            "rpc_grpc_status_code",
            (0..=16).map(|c: i32| c.to_string()).collect(),
        ),
        ("service_name", set(&["exchange-gateway"])),
        ("telemetry_sdk_language", set(&["rust"])),
        ("telemetry_sdk_name", set(&["opentelemetry"])),
    ])
}

/// Scrapes until `ready` holds of the samples (some are recorded off the
/// request path), or gives up after a few seconds.
async fn scrape_until(server: &TestServer, ready: impl Fn(&[Sample]) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..50 {
        text = server.scrape().await;
        if ready(&parse(&text)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test]
async fn the_scrape_endpoint_counts_what_was_pushed_with_bounded_labels_and_no_identifiers() {
    let mut pki = TestPki::new();
    for (agency, _) in SAMPLES {
        pki.issue(&format!("agency/{agency}"));
    }
    pki.issue("union/assistance");
    let state = ServerState::new();
    let options = MetricsOptions {
        scrape: true,
        ..Default::default()
    };
    let server = TestServer::start_with_metrics(&pki, &state, options).await;
    let (ids, names) = hrss_personal_values();

    // Every agency pushes its sample in batches of five; hrss twice (the
    // second time every batch is a re-send).
    let opts = PushOptions {
        batch_rows: 5,
        ..Default::default()
    };
    let mut batches = BTreeMap::new();
    for (agency, file) in SAMPLES {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        let summary = push_file(channel, &sample(file), &opts, |_| {})
            .await
            .unwrap();
        batches.insert(agency, summary.batches);
    }
    let hrss = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let again = push_file(hrss.clone(), &sample("hrss.csv"), &opts, |_| {})
        .await
        .unwrap();
    assert_eq!(again.duplicates, batches["hrss"]);

    // The consumer pulls its social-insurance records to the end, looks one
    // applicant up, and opens a followed pull.
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut client = UnionExchangeClient::new(union.clone());
    let mut pulled = client
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut delivered, mut last_cursor) = (0, 0);
    while let Some(event) = pulled.message().await.unwrap() {
        last_cursor = event.cursor;
        if matches!(
            event.event,
            Some(gateway::proto::pull_event::Event::Record(_))
        ) {
            delivered += 1;
        }
    }
    assert!(delivered > 0);
    client
        .lookup(LookupRequest {
            // 马伟红, who has accepted rows in the sample.
            id_number: "340207197607111133".into(),
            case_number: "KN-2026-0042".into(),
            purpose: "hardship_application".into(),
        })
        .await
        .unwrap();
    let follow = client
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            cursor: last_cursor,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Refusals: a purpose outside the policy (a name typed as the purpose), an
    // agency calling Pull, a path the allow-list does not name (an identity
    // number in it), and a handshake without a certificate.
    let refused = client
        .pull(PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: names[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = UnionExchangeClient::new(hrss.clone())
        .pull(PullRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let unlisted = raw::call(
        union.clone(),
        "/exchange.v1.UnionExchange/340207197607111133",
        vec![Bytes::new()],
        1 << 20,
    )
    .await;
    assert!(unlisted.is_err());
    assert!(
        tls_handshake(server.addr, &pki.anonymous_client())
            .await
            .is_err()
    );

    let text = scrape_until(&server, |s| {
        sum(s, "gateway_tls_handshake_failures_total", &[]) > 0.0
            && sum(s, "gateway_pull_follow_streams", &[]) > 0.0
            && s.iter()
                .any(|s| s.name == "gateway_audit_checkpoint_age_seconds")
    })
    .await;
    let samples = parse(&text);
    let value = |name: &str, with: &[(&str, &str)]| sum(&samples, name, with);

    // Rows by agency, outcome and rejection code: exactly the labels.
    for (agency, _) in SAMPLES {
        let labels = labels(agency);
        let accepted = labels.iter().filter(|l| l.accept).count() as f64;
        let rows = "gateway_ingest_rows_total";
        let kept = value(rows, &[("agency", agency), ("outcome", "applied")])
            + value(rows, &[("agency", agency), ("outcome", "superseded")]);
        assert_eq!(kept, accepted, "{agency}: rows accepted");
        let mut by_code = BTreeMap::<String, f64>::new();
        for l in labels.iter().filter(|l| !l.accept) {
            *by_code.entry(l.code.clone().unwrap()).or_default() += 1.0;
        }
        let scraped: BTreeMap<String, f64> = samples
            .iter()
            .filter(|s| s.name == rows)
            .filter(|s| s.labels["agency"] == agency && s.labels["outcome"] == "rejected")
            .map(|s| (s.labels["code"].clone(), s.value))
            .collect();
        assert_eq!(scraped, by_code, "{agency}: rows rejected by code");
        let committed = [("agency", agency), ("outcome", "committed")];
        let batches_total = "gateway_ingest_batches_total";
        assert_eq!(value(batches_total, &committed), batches[agency] as f64);
    }
    let hrss_duplicates = [("agency", "hrss"), ("outcome", "duplicate")];
    assert_eq!(
        value("gateway_ingest_batches_total", &hrss_duplicates),
        batches["hrss"] as f64
    );

    // What the consumer received, and that it is caught up.
    let assistance = [
        ("consumer", "assistance"),
        ("purpose", "hardship_screening"),
        ("kind", "social_insurance"),
    ];
    assert_eq!(
        value("gateway_pull_records_total", &assistance),
        delivered as f64
    );
    let consumer = [("consumer", "assistance")];
    assert_eq!(value("gateway_lookups_total", &consumer), 1.0);
    assert_eq!(
        value("gateway_lookup_duration_seconds_count", &consumer),
        1.0
    );
    assert_eq!(value("gateway_pull_follow_streams", &consumer), 1.0);
    assert_eq!(value("gateway_pull_consumer_lag", &consumer), 0.0);

    // Refusals by reason, handshakes by reason.
    let refusals = "gateway_refusals_total";
    for (method, reason) in [
        ("Pull", "purpose_not_allowed"),
        ("Pull", "role_not_permitted"),
        (gateway::metrics::OTHER, "not_in_allow_list"),
    ] {
        let with = [("rpc_method", method), ("reason", reason)];
        assert_eq!(value(refusals, &with), 1.0, "{method} {reason}");
    }
    let no_certificate = [("reason", "no_certificate")];
    assert_eq!(
        value("gateway_tls_handshake_failures_total", &no_certificate),
        1.0
    );

    // RPCs by method and status (OTel RPC conventions).
    let rpc = "rpc_server_duration_seconds_count";
    let push_ok = [
        ("rpc_system", "grpc"),
        ("rpc_service", "exchange.v1.AgencyIngest"),
        ("rpc_method", "Push"),
        ("rpc_grpc_status_code", "0"),
    ];
    assert_eq!(value(rpc, &push_ok), 7.0);
    let pull_denied = [("rpc_method", "Pull"), ("rpc_grpc_status_code", "7")];
    assert_eq!(value(rpc, &pull_denied), 2.0);
    let lookup_ok = [("rpc_method", "Lookup"), ("rpc_grpc_status_code", "0")];
    assert_eq!(value(rpc, &lookup_ok), 1.0);

    // The audit log and the commits.
    let committed: u64 = batches.values().sum();
    let commits = "gateway_store_commit_duration_seconds_count";
    assert_eq!(value(commits, &[("operation", "batch")]), committed as f64);
    assert_eq!(value(commits, &[("operation", "lookup")]), 1.0);
    assert!(value(commits, &[("operation", "pull_page")]) >= 1.0);
    let size = server.gateway.store.audit_size().unwrap() as f64;
    let tree = value("gateway_audit_tree_size", &[]);
    assert!(tree > 0.0 && tree <= size, "{tree} of {size}");
    assert!(value("gateway_audit_entries_total", &[]) > 0.0);
    assert!(value("gateway_audit_checkpoint_age_seconds", &[]) >= 0.0);
    // The store's queues: every one reported (idle now, or nearly).
    for queue in ["audit_entries", "writes_waiting", "index_backlog"] {
        assert!(
            samples.iter().any(|s| s.name == "gateway_store_queue_depth"
                && s.labels.iter().any(|(k, v)| k == "queue" && v == queue)),
            "no depth for {queue}"
        );
        let depth = value("gateway_store_queue_depth", &[("queue", queue)]);
        assert!((0.0..1_000.0).contains(&depth), "{queue}: {depth}");
    }

    // Every label value belongs to a known finite set.
    let known = known_label_values();
    for s in &samples {
        for (key, v) in &s.labels {
            if key == "le" {
                assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{s:?}");
                continue;
            }
            if key == "telemetry_sdk_version" {
                assert!(v.split('.').all(|n| n.parse::<u32>().is_ok()), "{s:?}");
                continue;
            }
            let allowed = known
                .get(key.as_str())
                .unwrap_or_else(|| panic!("unknown label `{key}` in {s:?}"));
            assert!(allowed.contains(v), "label {key}={v:?} in {s:?}");
        }
    }
    // No identifier of the samples, anywhere.
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "an identity number is in the scrape"
        );
    }
    for name in &names {
        assert!(!text.contains(name.as_str()), "a name is in the scrape");
    }

    // The followed pull ends: no stream open any more.
    drop(follow);
    scrape_until(&server, |s| {
        sum(s, "gateway_pull_follow_streams", &consumer) == 0.0
    })
    .await;
    let samples = parse(&server.scrape().await);
    assert_eq!(sum(&samples, "gateway_pull_follow_streams", &consumer), 0.0);
    // Only /metrics is served.
    let (status, _) = server.scrape_path("/").await;
    assert!(status.contains(" 404 "), "{status}");
    server.stop().await;
}

/// A minimal OTLP metrics collector: keeps every export it receives.
#[derive(Clone, Default)]
struct Collector {
    received: std::sync::Arc<
        std::sync::Mutex<
            Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest>,
        >,
    >,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Collector {
    /// The latest cumulative value of the sum `name` for the data points
    /// whose attributes include `with`, added up.
    fn latest_sum(&self, name: &str, with: &[(&str, &str)]) -> Option<u64> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
        let received = self.received.lock().unwrap();
        let export = received.iter().rev().find(|e| {
            e.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == name)
        })?;
        let mut total = 0;
        for metric in export
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
        {
            let Some(Data::Sum(sum)) = &metric.data else {
                continue;
            };
            for point in &sum.data_points {
                let has = |(k, v): &(&str, &str)| {
                    point.attributes.iter().any(|a| {
                        a.key == *k
                            && matches!(
                                a.value.as_ref().and_then(|v| v.value.as_ref()),
                                Some(Value::StringValue(s)) if s == v
                            )
                    })
                };
                if with.iter().all(has)
                    && let Some(number_data_point::Value::AsInt(n)) = point.value
                {
                    total += n as u64;
                }
            }
        }
        Some(total)
    }
}

#[tokio::test]
async fn metrics_are_exported_over_otlp_to_a_collector() {
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let state = ServerState::new();
    let options = MetricsOptions {
        otlp_endpoint: endpoint,
        export_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let server = TestServer::start_with_metrics(&pki, &state, options).await;
    let channel = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let summary = push_file(
        channel,
        &sample("hrss.csv"),
        &PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(summary.accepted > 0);

    let applied = [("agency", "hrss"), ("outcome", "applied")];
    let mut seen = None;
    for _ in 0..100 {
        seen = collector.latest_sum("gateway.ingest.rows", &applied);
        if seen == Some(summary.accepted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        Some(summary.accepted),
        "the rows counter arrived over OTLP"
    );
    let resource = collector.received.lock().unwrap()[0].resource_metrics[0]
        .resource
        .clone()
        .unwrap();
    assert!(
        resource.attributes.iter().any(|a| a.key == "service.name"),
        "{resource:?}"
    );
    server.stop().await;
    receiver.abort();
}
