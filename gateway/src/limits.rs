//! Limits per identity, as one tower layer behind the identity layer: a token
//! bucket (calls per second, with a burst) and a cap on concurrent calls, per
//! agency, consumer or auditor, with per-identity overrides. Over a limit the
//! caller gets `RESOURCE_EXHAUSTED` at once, with a retry hint (message and
//! `retry-after-ms` metadata), never a hang. A call that has not answered by
//! its deadline ends with `DEADLINE_EXCEEDED`. (A caller's own shorter
//! `grpc-timeout` is enforced by its gRPC library, and by tonic's server.)
//! Refusals are audited (floods counted, see `audit/repeats.rs`). Message
//! sizes are set on the server itself (see [`crate::serve`]).

use crate::audit::repeats::Repeats;
use crate::audit::{self, AuditEvent, Denied};
use crate::identity::Principal;
use crate::metrics::{Metrics, Refused};
use crate::store::Store;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

/// One identity's limits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Sustained calls per second.
    pub rate_per_second: f64,
    /// Calls allowed at once above the sustained rate.
    pub burst: u32,
    /// Calls in flight at the same time.
    pub max_concurrent: u32,
}

/// The `[limits]` configuration section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Per-identity defaults. Env: `GATEWAY_LIMITS_RATE`, `GATEWAY_LIMITS_BURST`,
    /// `GATEWAY_LIMITS_CONCURRENCY`.
    pub rate_per_second: f64,
    pub burst: u32,
    pub max_concurrent: u32,
    /// Deadline for a call to produce its response (a stream: to open; a
    /// followed pull may then stay open). Env: `GATEWAY_LIMITS_TIMEOUT`.
    pub request_timeout_secs: u64,
    /// Largest push message in bytes (one batch). The server holds a whole
    /// message before it decodes it, so this times `max_push_streams` bounds
    /// what one agency can make it hold. Env: `GATEWAY_LIMITS_MAX_MESSAGE`.
    pub max_message_bytes: usize,
    /// Largest request message of every other call (pulls, look-ups,
    /// re-identifications, audit queries: a few short fields). Env:
    /// `GATEWAY_LIMITS_MAX_REQUEST`.
    pub max_request_bytes: usize,
    /// Push streams one identity may hold open at once (on top of
    /// `max_concurrent`). Env: `GATEWAY_LIMITS_MAX_PUSH_STREAMS`.
    pub max_push_streams: u32,
    /// Rows in one batch; a larger batch is rejected whole, before its rows
    /// are decoded. Env: `GATEWAY_LIMITS_MAX_ROWS`.
    pub max_rows_per_batch: u64,
    /// Bytes in one row (and in a batch's CSV header); a batch with a larger
    /// one is rejected whole, before its rows are decoded. Env:
    /// `GATEWAY_LIMITS_MAX_ROW_BYTES`.
    pub max_row_bytes: usize,
    /// Row rejections a receipt lists (the first ones); counts by code cover
    /// them all. Env: `GATEWAY_LIMITS_MAX_REJECTIONS`.
    pub max_rejections_listed: usize,
    /// Batches per second one agency may push (sustained), with a burst:
    /// a stream of batches counts against it batch by batch, as calls count
    /// against `rate_per_second`. Env: `GATEWAY_LIMITS_BATCH_RATE`,
    /// `GATEWAY_LIMITS_BATCH_BURST`.
    pub batch_rate_per_second: f64,
    pub batch_burst: u32,
    /// Refusals of the same kind from the same source (a caller, a peer
    /// address) are audited one by one only once per this many seconds; the
    /// ones between are counted, and one entry records the count
    /// (`audit/repeats.rs`). Env: `GATEWAY_LIMITS_REFUSAL_WINDOW`.
    pub refusal_window_secs: u64,
    /// TLS handshakes in progress at most; further connections wait in the
    /// listen backlog. Env: `GATEWAY_LIMITS_MAX_HANDSHAKES`.
    pub max_handshakes: usize,
    /// On shutdown (SIGTERM), calls still open this many seconds after the
    /// server stopped accepting are cut off: the drain ends within it. Env:
    /// `GATEWAY_LIMITS_SHUTDOWN_GRACE`.
    pub shutdown_grace_secs: u64,
    /// Overrides by identity, e.g. `[limits.identities."agency/hrss"]`.
    pub identities: BTreeMap<String, Limit>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rate_per_second: 50.0,
            burst: 100,
            max_concurrent: 16,
            request_timeout_secs: 60,
            max_message_bytes: 16 * 1024 * 1024,
            max_request_bytes: 1024 * 1024,
            max_push_streams: 4,
            max_rows_per_batch: 10_000,
            max_row_bytes: 64 * 1024,
            max_rejections_listed: 1_000,
            batch_rate_per_second: 50.0,
            batch_burst: 100,
            refusal_window_secs: 60,
            max_handshakes: 512,
            shutdown_grace_secs: 20,
            identities: BTreeMap::new(),
        }
    }
}

impl LimitsConfig {
    pub fn limit_for(&self, identity: &str) -> Limit {
        self.identities.get(identity).copied().unwrap_or(Limit {
            rate_per_second: self.rate_per_second,
            burst: self.burst,
            max_concurrent: self.max_concurrent,
        })
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct State {
    config: LimitsConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    push_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Refusals audited: the first of a window per identity, call and code as
    /// it happens, the rest counted (a flood cannot flood the audit log).
    refusals: Arc<Repeats<RefusedCall>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

enum Refusal {
    Rate { retry_after: Duration, limit: Limit },
    Concurrency { limit: Limit },
    PushStreams { max: u32 },
}

/// Spends a token of the bucket of `key` (refilled at `rate` a second, up to
/// `burst`), or says how long until one is free.
fn take_from(
    buckets: &Mutex<HashMap<String, Bucket>>,
    key: &str,
    rate: f64,
    burst: u32,
) -> Result<(), Duration> {
    let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let capacity = f64::from(burst.max(1));
    let b = buckets.entry(key.to_string()).or_insert(Bucket {
        tokens: capacity,
        updated: now,
    });
    let refill = now.duration_since(b.updated).as_secs_f64() * rate;
    b.tokens = (b.tokens + refill).min(capacity);
    b.updated = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        let wait = if rate > 0.0 {
            (1.0 - b.tokens) / rate
        } else {
            60.0
        };
        Err(Duration::from_secs_f64(wait))
    }
}

/// Token buckets by identity with one rate for all (e.g. batches per second
/// per agency: [`LimitsConfig::batch_rate_per_second`]).
pub struct TokenBuckets {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    pub fn new(rate: f64, burst: u32) -> Self {
        TokenBuckets {
            rate,
            burst,
            buckets: Mutex::default(),
        }
    }

    /// Spends one token of `identity`'s bucket; `Err(wait)` when empty.
    pub fn take(&self, identity: &str) -> Result<(), Duration> {
        take_from(&self.buckets, identity, self.rate, self.burst)
    }
}

impl State {
    fn take_token(&self, identity: &str, limit: Limit) -> Result<(), Refusal> {
        take_from(&self.buckets, identity, limit.rate_per_second, limit.burst)
            .map_err(|retry_after| Refusal::Rate { retry_after, limit })
    }

    /// A push stream's slot: an agency holds at most `max_push_streams`
    /// open (each may make the server hold a whole message).
    fn take_push_slot(&self, identity: &str) -> Result<OwnedSemaphorePermit, Refusal> {
        let max = self.config.max_push_streams;
        let sem = self
            .push_slots
            .lock()
            .expect("limits lock")
            .entry(identity.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max as usize)))
            .clone();
        sem.try_acquire_owned()
            .map_err(|_| Refusal::PushStreams { max })
    }

    fn take_slot(&self, identity: &str, limit: Limit) -> Result<OwnedSemaphorePermit, Refusal> {
        let sem = self
            .slots
            .lock()
            .expect("limits lock")
            .entry(identity.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limit.max_concurrent as usize)))
            .clone();
        sem.try_acquire_owned()
            .map_err(|_| Refusal::Concurrency { limit })
    }
}

/// A response body that holds concurrency permits until it is dropped.
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
    _push: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A refused call, as its refusals are counted: caller, call, code.
pub type RefusedCall = (String, String, &'static str);

impl crate::audit::repeats::Source for RefusedCall {
    fn describe(&self) -> String {
        let (identity, rpc, code) = self;
        format!("call {identity} {rpc} {code}")
    }
}

/// The tally of refused calls (this layer's and the role matrix's), whose
/// summaries are `denied` entries with `repeated` set.
pub fn refused_calls(store: Arc<dyn Store>, window: Duration) -> Arc<Repeats<RefusedCall>> {
    Repeats::new(
        store,
        window,
        (
            audit::ANONYMOUS.to_string(),
            "*".to_string(),
            "other_callers",
        ),
        Box::new(|(identity, rpc, code), repeated, window| {
            Denied {
                rpc,
                code,
                reason: &format!("refused {repeated} more times ({code})"),
                repeated,
                within_secs: window.as_secs().max(1),
                refused_text: None,
            }
            .entry(identity)
        }),
    )
}

/// Tower layer: see the module documentation.
#[derive(Clone)]
pub struct LimitLayer {
    state: Arc<State>,
}

impl LimitLayer {
    pub fn new(config: LimitsConfig, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let window = Duration::from_secs(config.refusal_window_secs);
        LimitLayer {
            state: Arc::new(State {
                config,
                buckets: Mutex::default(),
                slots: Mutex::default(),
                push_slots: Mutex::default(),
                refusals: refused_calls(store.clone(), window),
                store,
                metrics,
            }),
        }
    }

    /// Queues the summaries of the refusals counted so far (at shutdown).
    pub fn flush_refusals(&self) {
        self.state.refusals.flush();
    }
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> tower::Service<http::Request<Body>> for Limited<S>
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
        // The identity layer runs first; without a principal it has already refused.
        let Some(identity) = req.extensions().get::<Principal>().map(ToString::to_string) else {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(req));
        };
        let limit = self.state.config.limit_for(&identity);
        let pushing = req.uri().path() == crate::ingest::PUSH_PATH;
        let admitted = self.state.take_slot(&identity, limit).and_then(|permit| {
            let push = match pushing {
                true => Some(self.state.take_push_slot(&identity)?),
                false => None,
            };
            self.state
                .take_token(&identity, limit)
                .map(|()| (permit, push))
        });
        match admitted {
            Ok((permit, push)) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let deadline = Duration::from_secs(self.state.config.request_timeout_secs.max(1));
                // Shares the request's bytes: the path is copied out only if
                // the deadline passes.
                let uri = req.uri().clone();
                let state = self.state.clone();
                Box::pin(async move {
                    // The permit lives as long as the response body: an open
                    // stream (a followed pull, a long push) counts as in flight.
                    match tokio::time::timeout(deadline, inner.call(req)).await {
                        Ok(response) => Ok(response?.map(|body| {
                            Body::new(PermitBody {
                                inner: body,
                                _permit: permit,
                                _push: push,
                            })
                        })),
                        // The call is dropped unanswered. (Whatever it had
                        // already queued for the audit log is still written:
                        // the log may record an answer that was never sent,
                        // never the other way round.)
                        Err(_) => {
                            let path = uri.path().to_string();
                            let message = format!(
                                "{path} did not answer within its deadline of {} s",
                                deadline.as_secs()
                            );
                            let status = tonic::Status::deadline_exceeded(message.clone());
                            // Nothing leaves, so the answer need not wait for
                            // the entry (the store may be why the call was slow).
                            tokio::spawn(async move {
                                refuse(&state, &identity, &path, "deadline_exceeded", &message)
                                    .await;
                            });
                            Ok(status.into_http())
                        }
                    }
                })
            }
            Err(refusal) => {
                let (message, retry_ms, code) = match refusal {
                    Refusal::Rate { retry_after, limit } => (
                        format!(
                            "rate limit for {identity} ({} calls/s, burst {}) exceeded; retry in {} ms",
                            limit.rate_per_second,
                            limit.burst,
                            retry_after.as_millis().max(1)
                        ),
                        retry_after.as_millis().max(1) as u64,
                        "rate_limited",
                    ),
                    Refusal::Concurrency { limit } => (
                        format!(
                            "{identity} already has {} calls in flight (the limit); retry when one finishes",
                            limit.max_concurrent
                        ),
                        100,
                        "too_many_concurrent_calls",
                    ),
                    Refusal::PushStreams { max } => (
                        format!(
                            "{identity} already has {max} push streams open (max_push_streams); retry when one ends"
                        ),
                        100,
                        "too_many_push_streams",
                    ),
                };
                let path = req.uri().path().to_string();
                let state = self.state.clone();
                Box::pin(async move {
                    refuse(&state, &identity, &path, code, &message).await;
                    Ok(exhausted(message, retry_ms).into_http())
                })
            }
        }
    }
}

/// Logs a refusal and audits it: the first of its window as it happens, the
/// repeats counted into one summary entry.
async fn refuse(state: &State, identity: &str, path: &str, code: &'static str, message: &str) {
    tracing::warn!(caller = %identity, rpc = %path, code, "call refused by a limit");
    state.metrics.record(Refused { rpc: path, code });
    let _ = record_refusal(
        &state.refusals,
        &state.store,
        identity,
        path,
        code,
        message,
        None,
    )
    .await;
}

/// Audits a refusal through a tally of refused calls: the first of its
/// window (per caller, call and code) as a `denied` entry, durably before
/// the caller hears of it; the repeats are counted into the window's summary.
pub async fn record_refusal(
    refusals: &Repeats<RefusedCall>,
    store: &Arc<dyn Store>,
    identity: &str,
    rpc: &str,
    code: &'static str,
    reason: &str,
    refused_text: Option<audit::TextDigest>,
) -> Result<(), tonic::Status> {
    if !refusals
        .first(&(identity.to_string(), rpc.to_string(), code))
        .await
    {
        return Ok(());
    }
    let entry = Denied {
        rpc,
        code,
        reason,
        repeated: 0,
        within_secs: 0,
        refused_text,
    }
    .entry(identity);
    audit::record(store, vec![entry]).await
}

/// `RESOURCE_EXHAUSTED` with its retry hint (message and `retry-after-ms`).
pub fn exhausted(message: String, retry_ms: u64) -> tonic::Status {
    let mut status = tonic::Status::resource_exhausted(message);
    if let Ok(v) = retry_ms.to_string().parse() {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_per_identity() {
        let mut c = LimitsConfig::default();
        c.identities.insert(
            "agency/hrss".into(),
            Limit {
                rate_per_second: 500.0,
                burst: 10,
                max_concurrent: 2,
            },
        );
        assert_eq!(c.limit_for("agency/hrss").max_concurrent, 2);
        assert_eq!(c.limit_for("union/assistance").max_concurrent, 16);
    }
}
