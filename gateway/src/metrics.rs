//! Metrics for the people who run the gateway: how many rows each agency
//! pushed and why rows were rejected, what each consumer received and how far
//! behind it is, look-ups, refusals, failed handshakes, the audit log's growth
//! and checkpoints, commit latency and RPC latency by method and status.
//!
//! Every instrument is defined here and fed only by the typed events below
//! (as audit entries are, `audit/mod.rs`), so what a metric means and which
//! labels it carries is read in one place, and call sites stay one line.
//! Labels are bounded sets by construction: a label value is a `&'static str`
//! the code itself names (an agency, a record kind, a rejection or refusal
//! code, a method of the allow-list, where every other path is one fixed
//! `_OTHER`), or a consumer or purpose that a policy in force names, passed
//! only once the call was authorised. Never a batch id, case number, identity
//! number, name, caller text or raw path.
//!
//! Instruments use the OpenTelemetry metrics API; the SDK exports them over
//! OTLP when `[telemetry] otlp_endpoint` is set and serves them in the
//! Prometheus text format on `[telemetry] metrics_listen` (through the
//! OpenTelemetry Prometheus reader and the `prometheus` crate's encoder).
//! Each [`crate::Gateway`] owns its own meter provider: two gateways in one
//! process (the tests) never mix their counts.

use crate::store::{Receipt, Store};
use adapters::{Agency, RecordKind, RowError, RowErrorCode};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::body::Body;

/// The instrumentation scope and the `service.name` of the resource.
const SERVICE: &str = "exchange-gateway";

/// Bucket boundaries of the duration histograms, in seconds: from a cached
/// look-up (about a millisecond) to a long push or followed pull.
const DURATION_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How the `rpc.service` and `rpc.method` of a path the allow-list does not
/// name are recorded (the OpenTelemetry conventions' word for "other").
pub const OTHER: &str = "_OTHER";

/// Where metrics go.
#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// OTLP/gRPC collector; empty: no export.
    pub otlp_endpoint: String,
    /// Keep the data for a Prometheus scrape endpoint ([`serve_scrape`]).
    pub scrape: bool,
    /// How often metrics are exported over OTLP; `None`: the SDK's default
    /// (60 s, or `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds).
    pub export_interval: Option<Duration>,
}

impl MetricsOptions {
    /// The `[telemetry]` section's choices.
    pub fn from_config(config: &crate::config::TelemetryConfig) -> MetricsOptions {
        MetricsOptions {
            otlp_endpoint: config.otlp_endpoint.clone(),
            scrape: config.metrics_listen.is_some(),
            export_interval: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up the Prometheus reader: {0}")]
    Prometheus(String),
    #[error("cannot set up the OTLP metrics exporter: {0}")]
    Otlp(String),
}

/// The gateway's instruments and the provider that collects them.
pub struct Metrics {
    provider: SdkMeterProvider,
    /// The scrape endpoint's registry, when there is one.
    registry: Option<prometheus::Registry>,
    rpc_duration: Histogram<f64>,
    rows: Counter<u64>,
    batches: Counter<u64>,
    records: Counter<u64>,
    follow_streams: UpDownCounter<i64>,
    lookups: Counter<u64>,
    lookup_duration: Histogram<f64>,
    reidentifications: Counter<u64>,
    refusals: Counter<u64>,
    handshake_failures: Counter<u64>,
    commit_duration: Histogram<f64>,
    /// Each consumer's position in the change feed: the cursor last sent to
    /// it (or the head it was caught up with), for its lag.
    positions: Arc<Mutex<HashMap<String, u64>>>,
    /// Whether any reader collects: observable instruments registered on a
    /// provider without readers are refused by the SDK with an error log.
    collected: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("scrape", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics collected for the readers `options` asks for. Must run inside
    /// a tokio runtime when OTLP is on (its channel is created there).
    pub fn new(options: &MetricsOptions) -> Result<Metrics, MetricsError> {
        let mut builder = SdkMeterProvider::builder().with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE)
                .build(),
        );
        let registry = if options.scrape {
            let registry = prometheus::Registry::new();
            let reader = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                // Every sample would otherwise carry the scope's name and version.
                .scope_info_enabled(false)
                .build()
                .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
            builder = builder.with_reader(reader);
            Some(registry)
        } else {
            None
        };
        if !options.otlp_endpoint.is_empty() {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(options.otlp_endpoint.clone())
                .build()
                .map_err(|e| MetricsError::Otlp(e.to_string()))?;
            let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter);
            if let Some(interval) = options.export_interval {
                reader = reader.with_interval(interval);
            }
            builder = builder.with_reader(reader.build());
        }
        let collected = registry.is_some() || !options.otlp_endpoint.is_empty();
        Ok(Metrics::on(builder.build(), registry, collected))
    }

    /// Metrics that go nowhere (no reader: recording costs next to nothing).
    pub fn disabled() -> Metrics {
        Metrics::on(SdkMeterProvider::builder().build(), None, false)
    }

    fn on(
        provider: SdkMeterProvider,
        registry: Option<prometheus::Registry>,
        collected: bool,
    ) -> Metrics {
        let meter = provider.meter(SERVICE);
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Metrics {
            rpc_duration: seconds(
                "rpc.server.duration",
                "Duration of inbound RPCs, to the end of the response stream",
            ),
            rows: counter(
                "gateway.ingest.rows",
                "Rows pushed, by agency and outcome (applied, superseded, rejected) and, for rejected rows, the code of the first rule the row failed or of the batch's rejection",
            ),
            batches: counter(
                "gateway.ingest.batches",
                "Batches pushed, by agency and outcome (committed, duplicate, rejected) and, for rejected batches, the code",
            ),
            records: counter(
                "gateway.pull.records",
                "Records delivered by pulls (after their page was audited), by consumer, purpose and kind",
            ),
            follow_streams: meter
                .i64_up_down_counter("gateway.pull.follow_streams")
                .with_description("Followed pulls open, by consumer")
                .build(),
            lookups: counter("gateway.lookups", "Look-ups answered, by consumer"),
            lookup_duration: seconds(
                "gateway.lookup.duration",
                "Duration of answered look-ups, by consumer",
            ),
            reidentifications: counter(
                "gateway.reidentifications",
                "Sealed values opened by re-identification, by consumer",
            ),
            refusals: counter(
                "gateway.refusals",
                "Calls refused by the role matrix, a limit or a policy, by method and reason code",
            ),
            handshake_failures: counter(
                "gateway.tls.handshake_failures",
                "TLS handshakes refused or failed, by reason code",
            ),
            commit_duration: seconds(
                "gateway.store.commit.duration",
                "Time from handing a durable write to the store to its commit, by operation",
            ),
            positions: Arc::default(),
            provider,
            registry,
            collected,
        }
    }

    /// Registers the instruments read at collection time: the audit log's
    /// size, the age of its last checkpoint and each consumer's lag behind
    /// the change feed `feed`. Called once, when the gateway is set up.
    pub fn observe(&self, store: Arc<dyn Store>, feed: watch::Receiver<u64>) {
        if !self.collected {
            return;
        }
        let meter = self.provider.meter(SERVICE);
        let started_at = store.audit_size().unwrap_or(0);
        let s = store.clone();
        meter
            .u64_observable_counter("gateway.audit.entries")
            .with_description("Audit entries appended since the gateway started")
            .with_callback(move |o| {
                if let Ok(size) = s.audit_size() {
                    o.observe(size.saturating_sub(started_at), &[]);
                }
            })
            .build();
        let s = store.clone();
        meter
            .u64_observable_gauge("gateway.audit.tree_size")
            .with_description("Entries in the audit log's Merkle tree")
            .with_callback(move |o| {
                if let Ok(size) = s.audit_size() {
                    o.observe(size, &[]);
                }
            })
            .build();
        let s = store.clone();
        meter
            .f64_observable_gauge("gateway.audit.checkpoint.age")
            .with_unit("s")
            .with_description("Seconds since the audit log's last signed checkpoint")
            .with_callback(move |o| {
                if let Ok(Some(last)) = s.latest_checkpoint() {
                    let age_ms = crate::audit::now_ms().saturating_sub(last.signed_ms);
                    o.observe(age_ms.max(0) as f64 / 1000.0, &[]);
                }
            })
            .build();
        meter
            .u64_observable_gauge("gateway.store.queue_depth")
            .with_description(
                "Work waiting inside the store, by queue (audit_entries: queued for the next group commit; writes_waiting: for the writer; index_backlog: audit subjects not yet indexed)",
            )
            .with_callback(move |o| {
                let q = store.queue_depths();
                for (queue, depth) in [
                    ("audit_entries", q.audit_entries),
                    ("writes_waiting", q.writes_waiting),
                    ("index_backlog", q.index_backlog),
                ] {
                    o.observe(depth, &[KeyValue::new("queue", queue)]);
                }
            })
            .build();
        let positions = self.positions.clone();
        meter
            .u64_observable_gauge("gateway.pull.consumer_lag")
            .with_description(
                "Changes in the feed after each consumer's position (the cursor last sent to it, or the head it caught up with)",
            )
            .with_callback(move |o| {
                let head = *feed.borrow();
                let positions = positions.lock().unwrap_or_else(|p| p.into_inner());
                for (consumer, position) in positions.iter() {
                    o.observe(
                        head.saturating_sub(*position),
                        &[KeyValue::new("consumer", consumer.clone())],
                    );
                }
            })
            .build();
    }

    /// Records one event.
    pub fn record(&self, event: impl MetricEvent) {
        event.record(self);
    }

    /// Runs `commit` (a durable write) and records how long it took.
    pub fn time_commit<T>(&self, operation: Commit, commit: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = commit();
        self.record_commit(operation, started.elapsed());
        result
    }

    /// Awaits `commit` (a durable write) and records how long it took.
    pub async fn time_commit_async<T>(
        &self,
        operation: Commit,
        commit: impl Future<Output = T>,
    ) -> T {
        let started = Instant::now();
        let result = commit.await;
        self.record_commit(operation, started.elapsed());
        result
    }

    fn record_commit(&self, operation: Commit, elapsed: Duration) {
        self.commit_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("operation", operation.as_str())],
        );
    }

    /// Counts a followed pull as open until the returned guard is dropped.
    pub fn follow_stream(&self, consumer: &str) -> FollowStream {
        let labels = [KeyValue::new("consumer", consumer.to_string())];
        self.follow_streams.add(1, &labels);
        FollowStream {
            counter: self.follow_streams.clone(),
            labels,
        }
    }

    /// The metrics in the Prometheus text exposition format, collected now
    /// (the audit-log instruments read the store: call on a blocking thread).
    /// `None` without a scrape endpoint.
    pub fn encode_text(&self) -> Option<Result<String, String>> {
        use prometheus::Encoder as _;
        let registry = self.registry.as_ref()?;
        let encoder = prometheus::TextEncoder::new();
        let mut out = Vec::new();
        Some(
            encoder
                .encode(&registry.gather(), &mut out)
                .map_err(|e| e.to_string())
                .and_then(|()| String::from_utf8(out).map_err(|e| e.to_string())),
        )
    }

    /// Exports what is pending and stops the readers. Blocking: with OTLP
    /// on, the export needs the runtime's other threads.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "metrics shutdown");
        }
    }
}

/// A followed pull, counted as open while this lives.
pub struct FollowStream {
    counter: UpDownCounter<i64>,
    labels: [KeyValue; 1],
}

impl Drop for FollowStream {
    fn drop(&mut self) {
        self.counter.add(-1, &self.labels);
    }
}

/// A durable write whose latency is recorded (`gateway.store.commit.duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// A pushed batch: its records, receipt and audit entry.
    Batch,
    /// The audit entry of a pull page, before the page is sent.
    PullPage,
    /// The audit entry of a look-up answer.
    Lookup,
    /// The audit entry (and sealed note) of a re-identification.
    Reidentification,
}

impl Commit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Commit::Batch => "batch",
            Commit::PullPage => "pull_page",
            Commit::Lookup => "lookup",
            Commit::Reidentification => "reidentification",
        }
    }
}

/// Something that happened, recorded in the instruments it concerns.
pub trait MetricEvent {
    fn record(self, metrics: &Metrics);
}

/// A method as metrics name it: service and method from the allow-list
/// ([`crate::authz::ROUTES`]), or [`OTHER`] for any path it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub service: &'static str,
    pub method: &'static str,
}

impl Route {
    pub fn of(path: &str) -> Route {
        crate::authz::ROUTES
            .iter()
            .find(|(listed, ..)| *listed == path)
            .and_then(|(listed, ..)| listed.strip_prefix('/')?.rsplit_once('/'))
            .map_or(
                Route {
                    service: OTHER,
                    method: OTHER,
                },
                |(service, method)| Route { service, method },
            )
    }
}

/// An RPC ended (its response stream, for a stream) with `code`.
pub struct RpcFinished {
    pub route: Route,
    pub code: tonic::Code,
    pub elapsed: Duration,
}

impl MetricEvent for RpcFinished {
    fn record(self, m: &Metrics) {
        m.rpc_duration.record(
            self.elapsed.as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.route.service),
                KeyValue::new("rpc.method", self.route.method),
                KeyValue::new("rpc.grpc.status_code", self.code as i64),
            ],
        );
    }
}

/// Rejected rows of a batch by the code of the first rule each failed (a
/// receipt lists all of them; here each row counts once).
#[derive(Debug, Clone, Default)]
pub struct RejectedRows(BTreeMap<RowErrorCode, u64>);

impl RejectedRows {
    pub fn add(&mut self, errors: &[RowError]) {
        if let Some(first) = errors.first() {
            *self.0.entry(first.code).or_insert(0) += 1;
        }
    }
}

/// A batch committed: its rows applied, superseded and rejected.
pub struct BatchCommitted<'a> {
    pub agency: Agency,
    pub receipt: &'a Receipt,
    pub rejected: &'a RejectedRows,
}

impl MetricEvent for BatchCommitted<'_> {
    fn record(self, m: &Metrics) {
        let agency = KeyValue::new("agency", self.agency.id());
        m.batches
            .add(1, &[agency.clone(), KeyValue::new("outcome", "committed")]);
        let applied = self
            .receipt
            .accepted
            .saturating_sub(self.receipt.superseded);
        for (outcome, rows) in [
            ("applied", applied),
            ("superseded", self.receipt.superseded),
        ] {
            if rows > 0 {
                m.rows
                    .add(rows, &[agency.clone(), KeyValue::new("outcome", outcome)]);
            }
        }
        for (code, rows) in &self.rejected.0 {
            m.rows.add(
                *rows,
                &[
                    agency.clone(),
                    KeyValue::new("outcome", "rejected"),
                    KeyValue::new("code", code.as_str()),
                ],
            );
        }
    }
}

/// A batch re-sent: its original receipt returned, nothing applied.
pub struct BatchDuplicate {
    pub agency: Agency,
}

impl MetricEvent for BatchDuplicate {
    fn record(self, m: &Metrics) {
        m.batches.add(
            1,
            &[
                KeyValue::new("agency", self.agency.id()),
                KeyValue::new("outcome", "duplicate"),
            ],
        );
    }
}

/// A batch rejected whole with `code`: its rows count as rejected with it.
pub struct BatchRejected {
    pub agency: Agency,
    pub code: &'static str,
    pub rows: u64,
}

impl MetricEvent for BatchRejected {
    fn record(self, m: &Metrics) {
        let labels = [
            KeyValue::new("agency", self.agency.id()),
            KeyValue::new("outcome", "rejected"),
            KeyValue::new("code", self.code),
        ];
        m.batches.add(1, &labels);
        if self.rows > 0 {
            m.rows.add(self.rows, &labels);
        }
    }
}

/// Records of a pull page by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindTally([u64; RecordKind::ALL.len()]);

impl KindTally {
    pub fn add(&mut self, kind: RecordKind) {
        if let Some(i) = RecordKind::ALL.iter().position(|k| *k == kind) {
            self.0[i] += 1;
        }
    }
}

/// A pull page audited and handed to the consumer's stream. `consumer` and
/// `purpose` are the authorised ones (a policy's).
pub struct PageDelivered<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub records: &'a KindTally,
    pub to_cursor: u64,
}

impl MetricEvent for PageDelivered<'_> {
    fn record(self, m: &Metrics) {
        for (kind, n) in RecordKind::ALL.iter().zip(self.records.0) {
            if n > 0 {
                m.records.add(
                    n,
                    &[
                        KeyValue::new("consumer", self.consumer.to_string()),
                        KeyValue::new("purpose", self.purpose.to_string()),
                        KeyValue::new("kind", kind.id()),
                    ],
                );
            }
        }
        m.record(CaughtUp {
            consumer: self.consumer,
            position: self.to_cursor,
        });
    }
}

/// An authorised consumer's pull has read the feed up to `position` (the
/// last record sent, or a head it found nothing after).
pub struct CaughtUp<'a> {
    pub consumer: &'a str,
    pub position: u64,
}

impl MetricEvent for CaughtUp<'_> {
    fn record(self, m: &Metrics) {
        let mut positions = m.positions.lock().unwrap_or_else(|p| p.into_inner());
        match positions.get_mut(self.consumer) {
            Some(p) => *p = (*p).max(self.position),
            None => {
                positions.insert(self.consumer.to_string(), self.position);
            }
        }
    }
}

/// A look-up answered to an authorised consumer.
pub struct LookedUp<'a> {
    pub consumer: &'a str,
    pub elapsed: Duration,
}

impl MetricEvent for LookedUp<'_> {
    fn record(self, m: &Metrics) {
        let labels = [KeyValue::new("consumer", self.consumer.to_string())];
        m.lookups.add(1, &labels);
        m.lookup_duration
            .record(self.elapsed.as_secs_f64(), &labels);
    }
}

/// A sealed value opened for an authorised consumer.
pub struct Reidentified<'a> {
    pub consumer: &'a str,
}

impl MetricEvent for Reidentified<'_> {
    fn record(self, m: &Metrics) {
        m.reidentifications
            .add(1, &[KeyValue::new("consumer", self.consumer.to_string())]);
    }
}

/// A call refused (role matrix, limit or policy) with a stable `code`; `rpc`
/// is the path called (only its allow-list name is recorded).
pub struct Refused<'a> {
    pub rpc: &'a str,
    pub code: &'static str,
}

impl MetricEvent for Refused<'_> {
    fn record(self, m: &Metrics) {
        let route = Route::of(self.rpc);
        m.refusals.add(
            1,
            &[
                KeyValue::new("rpc.service", route.service),
                KeyValue::new("rpc.method", route.method),
                KeyValue::new("reason", self.code),
            ],
        );
    }
}

/// A TLS handshake refused or failed.
pub struct HandshakeRefused {
    pub reason: crate::tls::RefusalReason,
}

impl MetricEvent for HandshakeRefused {
    fn record(self, m: &Metrics) {
        m.handshake_failures
            .add(1, &[KeyValue::new("reason", self.reason.code())]);
    }
}

/// Tower layer recording [`RpcFinished`] for every call, refused ones too:
/// composed outermost in [`crate::serve`]. A stream's duration runs to its
/// end, and its status is the one in its trailers; a response the caller
/// abandons is `CANCELLED`.
#[derive(Clone)]
pub struct RpcLayer {
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub fn new(metrics: Arc<Metrics>) -> RpcLayer {
        RpcLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcMetered<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<http::Request<Body>> for RpcMetered<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let pending = Pending {
            metrics: self.metrics.clone(),
            route: Route::of(req.uri().path()),
            started: Instant::now(),
        };
        // Standard tower pattern: call the clone that was driven ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match inner.call(req).await {
                Ok(response) => {
                    // A trailers-only answer (an error) has its status here.
                    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                        pending.finish(status.code());
                        return Ok(response);
                    }
                    Ok(response.map(|body| {
                        Body::new(MeteredBody {
                            inner: body,
                            pending: Some(pending),
                        })
                    }))
                }
                Err(e) => {
                    pending.finish(tonic::Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// An RPC whose end has not been recorded yet.
struct Pending {
    metrics: Arc<Metrics>,
    route: Route,
    started: Instant,
}

impl Pending {
    fn finish(self, code: tonic::Code) {
        self.metrics.record(RpcFinished {
            route: self.route,
            code,
            elapsed: self.started.elapsed(),
        });
    }
}

/// A response body that records its RPC's end: at its trailers, its error,
/// or when dropped unfinished.
struct MeteredBody {
    inner: Body,
    pending: Option<Pending>,
}

impl MeteredBody {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(pending) = self.pending.take() {
            pending.finish(code);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = tonic::Status::from_header_map(trailers)
                        .map_or(tonic::Code::Unknown, |s| s.code());
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            // A gRPC response without a status.
            Poll::Ready(None) => self.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` until the
/// task is aborted. Any other path is 404.
pub async fn serve_scrape(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    let scrape = move || {
        let metrics = metrics.clone();
        async move {
            // Collection reads the store (audit-log instruments).
            match tokio::task::spawn_blocking(move || metrics.encode_text()).await {
                Ok(Some(Ok(text))) => {
                    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
                }
                Ok(Some(Err(e))) => {
                    tracing::error!(error = %e, "metrics scrape failed");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

/// Binds `[telemetry] metrics_listen`, if set, and serves the scrape
/// endpoint there (abort the returned task to stop it).
pub async fn start_scrape(
    listen: Option<SocketAddr>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "metrics scrape endpoint (GET /metrics)");
    Ok(Some(tokio::spawn(serve_scrape(listener, metrics))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_come_from_the_allow_list_and_anything_else_is_other() {
        assert_eq!(
            Route::of("/exchange.v1.AgencyIngest/Push"),
            Route {
                service: "exchange.v1.AgencyIngest",
                method: "Push"
            }
        );
        for path in ["/exchange.v1.UnionExchange/Extract", "/x", "", "/张三/1"] {
            assert_eq!(Route::of(path).method, OTHER, "{path}");
            assert_eq!(Route::of(path).service, OTHER, "{path}");
        }
    }
}
